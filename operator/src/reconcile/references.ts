/**
 * What an Agent refers to (its persona ConfigMap, its credential Secrets, the cluster
 * objects it names, the Services and API server it dials), judged from the `Observed`
 * snapshot gather.ts read. Pure: each check returns a condition, so a user sees every
 * broken reference at once, with the field and the fix.
 */
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { parseCaBundle } from '../../../agent-image/src/contract/ca-bundle.ts';
import type { Agent } from '../api/agent.ts';
import { ConditionType, Reason } from '../api/constants.ts';
import type { ApiServerAddress, ServiceAddress } from '../render/networkpolicy.ts';
import { personaJsonProblem, type PersonaFiles } from '../render/persona.ts';
import type { ConditionInput } from './conditions.ts';
import type { Observed } from './observed.ts';

/** `"a", "b"` or `no keys`, for messages naming what an object has. */
function keyList(keys: string[]): string {
  return keys.length ? keys.map((k) => `"${k}"`).join(', ') : 'no keys';
}

/** PersonaResolved, and the persona files when resolved (inline instructions, or the ConfigMap's keys). */
export function resolvePersona(observed: Pick<Observed, 'agent' | 'configMaps'>): { condition: ConditionInput; files?: PersonaFiles } {
  const { agent } = observed;
  const { persona } = agent.spec;
  const type = ConditionType.PersonaResolved;
  if (!persona.configMapRef) {
    return {
      condition: { type, status: 'True', reason: Reason.AsExpected, message: persona.instructions ? 'inline persona' : 'no persona given; the shared rules only' },
      files: { ...(persona.instructions ? { claudeMd: persona.instructions } : {}), subagents: {} },
    };
  }
  const namespace = agent.metadata.namespace ?? 'default';
  const name = persona.configMapRef.name;
  const cm = observed.configMaps.get(name);
  if (!cm) {
    return {
      condition: { type, status: 'False', reason: Reason.PersonaNotFound, message: `spec.persona.configMapRef: ConfigMap ${namespace}/${name} not found; create it or fix the name` },
    };
  }
  const data = cm.data ?? {};
  if (data['CLAUDE.md'] === undefined) {
    const keys = Object.keys(data);
    return {
      condition: {
        type,
        status: 'False',
        reason: Reason.PersonaInvalid,
        message: `spec.persona.configMapRef: ConfigMap ${namespace}/${name} has no CLAUDE.md key (it has ${keyList(keys)}); add the persona text under CLAUDE.md`,
      },
    };
  }
  const problem = personaJsonProblem({ settingsJson: data['settings.json'], mcpJson: data['mcp.json'] });
  if (problem) {
    return {
      condition: {
        type,
        status: 'False',
        reason: Reason.PersonaInvalid,
        message: `spec.persona.configMapRef: ConfigMap ${namespace}/${name} ${problem}; fix that key of the ConfigMap (kubectl edit configmap ${name} -n ${namespace})`,
      },
    };
  }
  const subagents: Record<string, string> = {};
  for (const [key, value] of Object.entries(data)) {
    const m = /^subagent\.(.+)\.md$/.exec(key);
    if (m?.[1]) subagents[m[1]] = value;
  }
  return {
    condition: { type, status: 'True', reason: Reason.AsExpected, message: `from ConfigMap ${namespace}/${name}` },
    files: {
      ...(data['CLAUDE.md'] !== undefined ? { claudeMd: data['CLAUDE.md'] } : {}),
      ...(data['settings.json'] !== undefined ? { settingsJson: data['settings.json'] } : {}),
      ...(data['mcp.json'] !== undefined ? { mcpJson: data['mcp.json'] } : {}),
      subagents,
    },
  };
}

/** The Secret keys CredentialsResolved checks, each with the spec field that names it. Pure. */
function credentialSecretRefs(agent: Agent): Array<{ field: string; name: string; key: string }> {
  const refs = agent.spec.egress.credentials.map((c, i) => ({ field: `spec.egress.credentials[${i}] (${c.name}).secretRef`, ...c.secretRef }));
  if (agent.spec.matrix) refs.push({ field: 'spec.matrix.accessTokenSecretRef', ...agent.spec.matrix.accessTokenSecretRef });
  return refs;
}

/** A Secret or ConfigMap in the Agent's namespace that its spec names. */
export interface ObjectReference {
  kind: 'Secret' | 'ConfigMap';
  namespace: string;
  name: string;
}

/**
 * Every Secret and ConfigMap the checks below read for `agent`: the persona ConfigMap
 * (spec.persona.configMapRef), the upstream CA ConfigMap (spec.egress.upstreamCaConfigMapRef),
 * the credential Secrets (spec.egress.credentials[].secretRef),
 * the Matrix access token Secret (spec.matrix.accessTokenSecretRef) and the image pull
 * Secrets (spec.pod.imagePullSecrets), each once. A change to any of them can change a
 * condition, so the operator watches them (operator.ts). Pure.
 */
export function referencedObjects(agent: Agent): ObjectReference[] {
  const namespace = agent.metadata.namespace ?? 'default';
  const seen = new Map<string, ObjectReference>();
  const add = (kind: ObjectReference['kind'], name: string) => seen.set(`${kind}/${name}`, { kind, namespace, name });
  if (agent.spec.persona.configMapRef) add('ConfigMap', agent.spec.persona.configMapRef.name);
  if (agent.spec.egress.upstreamCaConfigMapRef) add('ConfigMap', agent.spec.egress.upstreamCaConfigMapRef.name);
  for (const { name } of credentialSecretRefs(agent)) add('Secret', name);
  for (const { name } of agent.spec.pod?.imagePullSecrets ?? []) add('Secret', name);
  return [...seen.values()];
}

/**
 * CredentialsResolved: every `spec.egress.credentials[i].secretRef` names an existing
 * Secret that has the key, with a non-empty value. Values are read only to check they
 * exist and are never returned, logged or copied: the pod mounts the Secrets directly
 * into the egress-proxy container.
 */
export function checkCredentials(observed: Pick<Observed, 'agent' | 'secrets'>): ConditionInput {
  const { agent } = observed;
  const type = ConditionType.CredentialsResolved;
  const refs = credentialSecretRefs(agent);
  if (!refs.length) return { type, status: 'True', reason: Reason.AsExpected, message: 'no credentials configured' };
  const namespace = agent.metadata.namespace ?? 'default';
  const problems: string[] = [];
  for (const { field, name, key } of refs) {
    const secret = observed.secrets.get(name);
    if (!secret) problems.push(`${field}: Secret ${namespace}/${name} not found; create it or fix the name`);
    else if (!secret.data?.[key] && !secret.stringData?.[key]) {
      const keys = Object.keys(secret.data ?? {});
      problems.push(`${field}: Secret ${namespace}/${name} has no key "${key}" (or it is empty); it has ${keyList(keys)}`);
    }
  }
  return problems.length
    ? { type, status: 'False', reason: Reason.CredentialsMissing, message: problems.join('; ') }
    : { type, status: 'True', reason: Reason.AsExpected, message: `${refs.length} credential(s) found` };
}

/** What {@link resolveUpstreamCa} found: the checked PEM bundle, or what is wrong with the reference. */
export interface UpstreamCaResolution {
  /** The ConfigMap key's text, every certificate in it parsed; unset when the field is, or on a problem. */
  pem?: string;
  /** `spec.egress.upstreamCaConfigMapRef: ... ; <the fix>` when the ConfigMap or key is missing or not PEM. */
  problem?: { reason: typeof Reason.ReferenceNotFound | typeof Reason.ReferenceInvalid; message: string };
}

/**
 * The PEM bundle of spec.egress.upstreamCaConfigMapRef: the ConfigMap exists in the
 * Agent's namespace, has the key (in `data`, or `binaryData` as UTF-8), and every
 * certificate block in it parses (the proxy's own check, agent-image/src/contract/ca-bundle.ts
 * parseCaBundle), so a pod is never rolled out with a bundle its proxy would refuse.
 */
export function resolveUpstreamCa(observed: Pick<Observed, 'agent' | 'configMaps'>): UpstreamCaResolution {
  const { agent } = observed;
  const ref = agent.spec.egress.upstreamCaConfigMapRef;
  if (!ref) return {};
  const namespace = agent.metadata.namespace ?? 'default';
  const field = 'spec.egress.upstreamCaConfigMapRef';
  const cm = observed.configMaps.get(ref.name);
  if (!cm) {
    return {
      problem: {
        reason: Reason.ReferenceNotFound,
        message: `${field}: ConfigMap ${namespace}/${ref.name} not found; create it (kubectl create configmap ${ref.name} -n ${namespace} --from-file=${ref.key}=<ca-bundle.pem>) or fix the name`,
      },
    };
  }
  const binary = cm.binaryData?.[ref.key];
  const text = cm.data?.[ref.key] ?? (binary !== undefined ? Buffer.from(binary, 'base64').toString('utf8') : undefined);
  if (text === undefined) {
    const keys = [...Object.keys(cm.data ?? {}), ...Object.keys(cm.binaryData ?? {})];
    return {
      problem: {
        reason: Reason.ReferenceNotFound,
        message: `${field}: ConfigMap ${namespace}/${ref.name} has no key "${ref.key}" (it has ${keyList(keys)}); put the PEM bundle under "${ref.key}" or fix the key`,
      },
    };
  }
  try {
    parseCaBundle(text);
  } catch (err) {
    return {
      problem: {
        reason: Reason.ReferenceInvalid,
        message: `${field}: key "${ref.key}" of ConfigMap ${namespace}/${ref.name}: ${(err as Error).message}; put the CA certificates there in PEM form`,
      },
    };
  }
  return { pem: text };
}

/**
 * ReferencesResolved: the cluster objects the spec names exist — the ClusterRole of
 * spec.kubernetesAccess, the StorageClass of spec.storage, the pull Secrets of
 * spec.pod.imagePullSecrets — and the upstream CA bundle of
 * spec.egress.upstreamCaConfigMapRef, as `upstreamCa` ({@link resolveUpstreamCa}) found
 * it, is usable. Without them the pod would be unusable or never start. The reason is
 * ReferenceNotFound when something is missing, else ReferenceInvalid.
 */
export function checkClusterReferences(observed: Pick<Observed, 'agent' | 'secrets' | 'clusterRole' | 'storageClass'>, upstreamCa: UpstreamCaResolution = {}): ConditionInput {
  const { agent, clusterRole, storageClass } = observed;
  const type = ConditionType.ReferencesResolved;
  const namespace = agent.metadata.namespace ?? 'default';
  const problems: string[] = [];
  if (clusterRole && !clusterRole.found) {
    problems.push(`spec.kubernetesAccess.clusterRole: ClusterRole "${clusterRole.name}" not found; name an existing one (kubectl get clusterroles)`);
  }
  if (storageClass && !storageClass.found) {
    problems.push(`spec.storage.storageClassName: StorageClass "${storageClass.name}" not found; name an existing one (kubectl get storageclasses) or leave it unset for the default`);
  }
  for (const [i, s] of (agent.spec.pod?.imagePullSecrets ?? []).entries()) {
    if (!observed.secrets.get(s.name)) {
      problems.push(`spec.pod.imagePullSecrets[${i}]: Secret ${namespace}/${s.name} not found; create it or remove the entry`);
    }
  }
  if (upstreamCa.problem) problems.push(upstreamCa.problem.message);
  const invalidOnly = problems.length === 1 && upstreamCa.problem?.reason === Reason.ReferenceInvalid;
  return problems.length
    ? { type, status: 'False', reason: invalidOnly ? Reason.ReferenceInvalid : Reason.ReferenceNotFound, message: problems.join('; ') }
    : { type, status: 'True', reason: Reason.AsExpected, message: 'every referenced object exists' };
}

/** The cluster IPs of a Service (spec.clusterIPs, else spec.clusterIP), without a headless `None`. */
function clusterIPsOf(svc: V1Service | undefined): string[] {
  return (svc?.spec?.clusterIPs ?? (svc?.spec?.clusterIP ? [svc.spec.clusterIP] : [])).filter((ip) => ip && ip !== 'None');
}

/**
 * The cluster IPs of the in-cluster Services the spec names for the supervisor's own
 * connections (render/networkpolicy.ts inClusterServices: the NATS server, a Matrix
 * homeserver), for the pod's allowCidrs and hostAliases. Only under iptables enforcement:
 * the supervisor dials these Services directly (NO_PROXY holds in-cluster names), which only
 * egress-init's rules can block, and hostAliases are rendered in that mode only; under
 * proxy-env nothing stops a direct connection, so that Agent gets none (gather.ts reads
 * none for it).
 * @returns `addresses`: {host as the spec writes it, spec.clusterIPs}; `unresolved`:
 *   `<namespace>/<name> (not found | headless: no cluster IP)` for a Service that is missing
 *   or has no cluster IP, left out of `addresses` (the caller logs it; the agent still
 *   runs, its events wait in the outbox)
 */
export function resolveServiceAddresses(observed: Pick<Observed, 'services'>): { addresses: ServiceAddress[]; unresolved: string[] } {
  const addresses: ServiceAddress[] = [];
  const unresolved: string[] = [];
  for (const { ref, live } of observed.services) {
    const ips = clusterIPsOf(live);
    if (ips.length) addresses.push({ host: ref.host, addresses: ips });
    else unresolved.push(`${ref.namespace}/${ref.name}${live ? ' (headless: no cluster IP)' : ' (not found)'}`);
  }
  return { addresses, unresolved };
}

/** The Service in-cluster kubeconfigs dial (KUBERNETES_SERVICE_HOST): `kubernetes` in `default`. */
export const API_SERVER_SERVICE = { name: 'kubernetes', namespace: 'default' } as const;

/** The ready addresses and TCP ports of EndpointSlices, each once, in order. */
function sliceAddresses(slices: readonly V1EndpointSlice[]): { endpointAddresses: string[]; endpointPorts: number[] } {
  const endpointAddresses: string[] = [];
  const endpointPorts: number[] = [];
  for (const slice of slices) {
    for (const ep of slice.endpoints ?? []) {
      // Not-ready endpoints are left out, as kube-proxy leaves them out; unset means ready.
      if (ep.conditions?.ready === false) continue;
      for (const a of ep.addresses) if (!endpointAddresses.includes(a)) endpointAddresses.push(a);
    }
    for (const p of slice.ports ?? []) {
      if ((p.protocol ?? 'TCP') === 'TCP' && p.port !== undefined && !endpointPorts.includes(p.port)) endpointPorts.push(p.port);
    }
  }
  return { endpointAddresses, endpointPorts };
}

/**
 * Where the agent's kubectl reaches the API server, for an Agent with
 * spec.kubernetesAccess.clusterRole (none otherwise; gather.ts reads nothing for it): the
 * cluster IPs and ports of default/kubernetes, and the ready addresses and ports of its
 * EndpointSlices (label kubernetes.io/service-name=kubernetes). Both enforcement modes:
 * NO_PROXY needs the address in each.
 * @returns `apiServer`, undefined when the Service is missing or headless; `unresolved`
 *   says what is missing (the caller logs it; the agent still runs, its kubectl cannot
 *   reach the API server until it resolves). EndpointSlices the operator may not list
 *   (`'forbidden'`: its ClusterRole lacks `list` on discovery.k8s.io endpointslices) are
 *   reported the same way and left out, so the rest of the Agent is still reconciled.
 */
export function resolveApiServer(observed: Pick<Observed, 'agent' | 'apiServer'>): { apiServer?: ApiServerAddress; unresolved: string[] } {
  if (!observed.agent.spec.kubernetesAccess?.clusterRole || !observed.apiServer) return { unresolved: [] };
  const { name, namespace } = API_SERVER_SERVICE;
  const { service: svc, slices } = observed.apiServer;
  const clusterIPs = clusterIPsOf(svc);
  if (!clusterIPs.length) return { unresolved: [`${namespace}/${name}${svc ? ' (headless: no cluster IP)' : ' (not found)'}`] };
  const servicePorts = (svc?.spec?.ports ?? []).filter((p) => (p.protocol ?? 'TCP') === 'TCP').map((p) => p.port);
  const unresolved: string[] = [];
  const { endpointAddresses, endpointPorts } = slices === 'forbidden' ? { endpointAddresses: [], endpointPorts: [] } : sliceAddresses(slices);
  if (slices === 'forbidden') unresolved.push(`EndpointSlices of ${namespace}/${name} (forbidden: grant the operator list on discovery.k8s.io endpointslices)`);
  else if (!endpointAddresses.length) unresolved.push(`EndpointSlices of ${namespace}/${name} (no ready endpoint)`);
  return { apiServer: { clusterIPs, servicePorts, endpointAddresses, endpointPorts }, unresolved };
}
