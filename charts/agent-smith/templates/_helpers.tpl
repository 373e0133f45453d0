{{- define "agent-smith.fullname" -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "agent-smith.labels" -}}
app.kubernetes.io/name: agent-smith-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "agent-smith.selectorLabels" -}}
app.kubernetes.io/name: agent-smith-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
