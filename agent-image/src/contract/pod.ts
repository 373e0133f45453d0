/**
 * Names the operator renders into the agent pod and the pod's programs (and `agent-smith
 * attach`) rely on: containers, the subcommands each container runs, the probe paths,
 * the tmux session, and the environment variables the operator sets. Ports and in-pod
 * paths are in contract.ts, the trust variables in trust.ts, the upstream CA wire in
 * ca-bundle.ts.
 */

/** The containers of the agent pod (DESIGN.md pod layout), by role. */
export const CONTAINERS = {
  /** Init container (iptables mode only): installs the egress firewall. */
  egressInit: 'egress-init',
  /** Native sidecar: the egress proxy, the one process that reaches the network. */
  egressProxy: 'egress-proxy',
  /** Init container: trusts the egress CA, assembles the harness's home, clones the repositories. */
  setup: 'setup',
  /** The supervisor and the CLI in tmux; its restarts are the Agent's `status.restarts`; `attach` execs into it. */
  agent: 'agent',
} as const;

/** Name of the container that runs the supervisor and the CLI. */
export const AGENT_CONTAINER = CONTAINERS.agent;

/** The `agent-smith` subcommand each container runs (agent-image/src/cli.ts). */
export const SUBCOMMANDS = {
  egressInit: 'egress-init',
  egressProxy: 'proxy',
  setup: 'setup',
  agent: 'supervise',
} as const;

/** Paths of the supervisor's and the proxy's probe endpoints (the kubelet's probes; both answer GET). */
export const PROBE_PATHS = {
  /** 200 while the process is alive (liveness). */
  healthz: '/healthz',
  /** 200 once it can serve, else 503 with the reason (startup, readiness). */
  readyz: '/readyz',
} as const;

/** The tmux session the supervisor keeps the CLI in; `agent-smith attach` attaches to it. */
export const TMUX_SESSION = 'main';

/**
 * Environment variables the operator sets in the pod's containers (besides HOME, the
 * trust and the proxy variables).
 */
export const POD_ENV = {
  /** Path of the pod contract file (every container but the proxy's health has it). */
  contract: 'AGENT_SMITH_CONTRACT',
  /** Name of the pod (downward API). */
  podName: 'AGENT_SMITH_POD_NAME',
  /** Namespace of the pod (downward API). */
  namespace: 'AGENT_SMITH_NAMESPACE',
  /** egress-init: the UID whose connections leave the pod directly (the proxy's). */
  proxyUid: 'AGENT_SMITH_PROXY_UID',
  /** egress-init: the port the firewall redirects to (the proxy's). */
  proxyPort: 'AGENT_SMITH_PROXY_PORT',
  /** egress-init and the proxy: the port of the proxy's DNS listener, where the firewall sends port 53 (default PROXY_DNS_PORT; the proxy takes 0 = a free port). */
  proxyDnsPort: 'AGENT_SMITH_PROXY_DNS_PORT',
} as const;

/** The Agent resource, `agents.agentsmith.dev/v1alpha1`: the operator serves it, `agent-smith attach` reads it. */
export const AGENT_API = { group: 'agentsmith.dev', version: 'v1alpha1', kind: 'Agent', plural: 'agents', singular: 'agent' } as const;

/** The pod of an Agent: its StatefulSet is named after the Agent and has one replica, so the pod is `<name>-0`. */
export function agentPodName(agentName: string): string {
  return `${agentName}-0`;
}
