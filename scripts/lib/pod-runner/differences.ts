/**
 * Where the development pod runner differs from a kubelet. Printed at start-up as one
 * block and kept in step with the README's "Development pod runner" section.
 */
export const DIFFERENCES: readonly string[] = [
  'Images: nothing is pulled or unpacked. The agent image runs from this checkout (agent-smith -> agent-image/bin/agent-smith, tini dropped, the host\'s git/tmux/sh); agent-smith-dev/shell runs its command with the host\'s tools; any other image is refused (ErrImagePull).',
  'File system: no mount namespace. Each container gets a root directory on the host in which every volume mount is a symlink; AGENT_SMITH_ROOT points to it, TMPDIR and TMUX_TMPDIR to its /tmp (a short directory /tmp/pod-runner-<hash>, for Unix socket path limits), and env values and arguments that are in-pod paths under a mount are rewritten to it. Other absolute paths are the host\'s. readOnly mounts are not enforced (projected files are read-only by mode).',
  'Network: no network namespace. Every pod uses the host\'s network with podIP/hostIP 127.0.0.1. Every declared containerPort (and the agent image\'s 8080, 15090, 15001, 15021) is remapped to a free host port, passed as POD_RUNNER_PORT_<port> and the agent image\'s AGENT_SMITH_PORT, AGENT_SMITH_LOCAL_PORT, AGENT_SMITH_PROXY_PORT, AGENT_SMITH_PROXY_HEALTH_PORT; loopback URLs in env (HTTPS_PROXY ...) and probes use the remapped ports. Services do not route to these pods.',
  'egress-init is skipped (its iptables rules belong in the pod\'s own network namespace): egress is not enforced; only clients that honour HTTPS_PROXY go through the proxy.',
  'Processes: no PID namespace or cgroup. Each container runs in its own process group and session, as under tini -g; SIGTERM goes to the group; processes are tracked by an environment marker, and what is left of a container when its main process exits is killed. resources (requests/limits) are not enforced, no OOM kills.',
  'Users: with the runner as root, containers run as runAsUser/runAsGroup (else the image\'s USER) with fsGroup and supplementalGroups as extra groups (setpriv), no-new-privs and dropped capabilities; without root everything runs as the runner\'s user. seccomp, AppArmor and SELinux are not applied.',
  'Volumes: configMap, secret, downwardAPI, projected (incl. serviceAccountToken), emptyDir (medium Memory is disk), persistentVolumeClaim (the bound PV\'s hostPath, else a directory under the state dir) and hostPath only. fsGroup ownership is applied to claims as to block volumes (a kubelet skips hostPath PVs).',
  'Not supported: kubectl logs/exec/attach/port-forward (no kubelet API; logs are files under <state dir>/logs), stdin/tty (stdin is /dev/null), activeDeadlineSeconds, emptyDir sizeLimit, lifecycle hooks (postStart, preStop), gRPC probes, terminationMessagePath, service environment variables (KUBERNETES_SERVICE_HOST ...), in-cluster config from the service account mount, ephemeral containers, image pull secrets.',
  'Restarts: the kubelet\'s crash-loop backoff (immediate, then 10 s doubling to 5 min) unless configured shorter. Liveness/startup failures kill and restart the container. A runner restart starts its pods again from their init containers; on runner shutdown pods are stopped and marked Failed (reason PodRunnerStopped) and the Node NotReady.',
];

/** The start-up block: one log message, one line per difference. */
export function differencesBlock(nodeName: string): string {
  return [
    `pod-runner: a DEVELOPMENT tool that runs the pods bound to node "${nodeName}" as local processes. It is not a kubelet and not for production. Where it differs:`,
    ...DIFFERENCES.map((d) => `  - ${d}`),
  ].join('\n');
}
