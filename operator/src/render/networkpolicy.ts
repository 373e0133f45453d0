import type { V1NetworkPolicy, V1NetworkPolicyEgressRule } from '@kubernetes/client-node';
import type { Agent } from '../api/agent.ts';
import { childMeta, childNames, selectorLabels } from './meta.ts';
import { SUPERVISOR_PORT } from '../../../agent-image/src/contract/contract.ts';

const NAMESPACE_LABEL = 'kubernetes.io/metadata.name';

/**
 * An in-cluster Service a URL points at (`<svc>.<ns>.svc[.cluster.local]`), with its port,
 * or undefined for any other host. Pure.
 */
export function inClusterService(url: string, defaultPort: number): InClusterService | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined;
  }
  const host = u.hostname.replace(/\.$/, '');
  const m = /^([a-z0-9-]+)\.([a-z0-9-]+)\.svc(\.cluster\.local)?$/.exec(host);
  if (!m?.[1] || !m[2]) return undefined;
  return { host, name: m[1], namespace: m[2], port: u.port ? Number(u.port) : defaultPort };
}

/** A Service of the cluster that the spec names by its DNS name (`<name>.<namespace>.svc[.cluster.local]`). */
export interface InClusterService {
  /** The host name as the spec writes it, without a trailing dot. */
  host: string;
  name: string;
  namespace: string;
  port: number;
}

/** Where an in-cluster Service the spec names is reached: its cluster IPs (no DNS needed). */
export interface ServiceAddress {
  /** The host name as the spec writes it. */
  host: string;
  /** spec.clusterIPs of the Service (IPv4 and/or IPv6). */
  addresses: string[];
}

/**
 * allowCidrs entries for the Services' addresses (/32, /128), after `allowCidrs`, without
 * duplicates. In iptables mode (egress-init) the agent's UID reaches nothing but loopback,
 * the proxy (its DNS included) and allowCidrs: the supervisor's own NATS and Matrix
 * connections (not HTTP through the proxy) need these. Pure.
 */
export function withServiceCidrs(allowCidrs: readonly string[], services: readonly ServiceAddress[]): string[] {
  const out = [...allowCidrs];
  for (const a of services.flatMap((s) => s.addresses)) {
    const cidr = hostCidr(a);
    if (!out.includes(cidr)) out.push(cidr);
  }
  return out;
}

/**
 * Where the Kubernetes API server is reached from a pod: the `kubernetes` Service in
 * `default` (what KUBERNETES_SERVICE_HOST/PORT name, and what in-cluster kubeconfigs dial)
 * and the endpoints behind it. Resolved by the reconciler (reconcile/references.ts
 * resolveApiServer) only for an Agent with spec.kubernetesAccess.clusterRole.
 */
export interface ApiServerAddress {
  /** spec.clusterIPs of default/kubernetes (IPv4 and/or IPv6), e.g. ['10.0.0.1']. */
  clusterIPs: string[];
  /** The Service's TCP ports, e.g. [443]. */
  servicePorts: number[];
  /** Ready endpoint addresses of its EndpointSlices (the API servers), e.g. ['192.168.1.10']. */
  endpointAddresses: string[];
  /** TCP ports of those EndpointSlices, e.g. [6443]. */
  endpointPorts: number[];
}

/**
 * The CIDRs the agent reaches directly beside `allowCidrs`: the cluster IPs of the
 * in-cluster Services (NATS, Matrix) and of the API server (kubernetesAccess), /32 or
 * /128 each, after `allowCidrs`, without duplicates. Pure.
 */
export function directCidrs(allowCidrs: readonly string[], services: readonly ServiceAddress[], apiServer?: ApiServerAddress): string[] {
  return withServiceCidrs(allowCidrs, [...services, ...(apiServer ? [{ host: 'kubernetes.default.svc', addresses: apiServer.clusterIPs }] : [])]);
}

/** `ip/32` or `ip/128`. */
function hostCidr(ip: string): string {
  return `${ip}/${ip.includes(':') ? 128 : 32}`;
}

/**
 * NetworkPolicy egress rules that admit the Kubernetes API server (spec.kubernetesAccess),
 * none without `apiServer`. Most CNIs (Calico, Cilium, kube-router, ...) evaluate egress
 * policy after kube-proxy (or their own service handling) has translated the Service IP
 * to an endpoint, so the rule that matters names the endpoints: the addresses and ports of
 * the `kubernetes` Service's EndpointSlices (the API servers, often on 6443 outside the
 * pod network). A second rule admits the cluster IP on the Service port for the CNIs that
 * match before the translation. Re-rendered from the live EndpointSlices at each
 * reconcile (at least every resync), so a moved API server is followed. Pure.
 */
export function apiServerEgressRules(apiServer: ApiServerAddress | undefined): V1NetworkPolicyEgressRule[] {
  if (!apiServer) return [];
  const rules: V1NetworkPolicyEgressRule[] = [];
  if (apiServer.endpointAddresses.length && apiServer.endpointPorts.length) {
    rules.push({
      to: apiServer.endpointAddresses.map((ip) => ({ ipBlock: { cidr: hostCidr(ip) } })),
      ports: apiServer.endpointPorts.map((port) => ({ protocol: 'TCP', port })),
    });
  }
  if (apiServer.clusterIPs.length && apiServer.servicePorts.length) {
    rules.push({
      to: apiServer.clusterIPs.map((ip) => ({ ipBlock: { cidr: hostCidr(ip) } })),
      ports: apiServer.servicePorts.map((port) => ({ protocol: 'TCP', port })),
    });
  }
  return rules;
}

/** The in-cluster Services the agent's supervisor talks to itself: the NATS server of spec.events and the Matrix homeserver of spec.matrix. Pure. */
export function inClusterServices(agent: Agent): InClusterService[] {
  return [
    agent.spec.events ? inClusterService(agent.spec.events.natsUrl.split(',')[0]!.replace(/^(nats|tls):/, 'http:'), 4222) : undefined,
    agent.spec.matrix ? inClusterService(agent.spec.matrix.homeserverUrl, agent.spec.matrix.homeserverUrl.startsWith('https:') ? 443 : 80) : undefined,
  ].filter((s): s is InClusterService => s !== undefined);
}

/**
 * The agent pod's NetworkPolicy, a second wall behind the egress proxy: egress only to
 * DNS, to the in-cluster services the spec names (NATS, a Matrix homeserver), to the
 * CIDRs of `egress.allowCidrs`, to the Kubernetes API server when `apiServer` is given
 * (spec.kubernetesAccess; {@link apiServerEgressRules}), and to ports 80 and 443 (which
 * the proxy then filters by host); ingress only to the supervisor's HTTP port (probes,
 * metrics). Pure.
 */
export function renderNetworkPolicy(agent: Agent, apiServer?: ApiServerAddress): V1NetworkPolicy {
  const egress: V1NetworkPolicyEgressRule[] = [
    // DNS, wherever the cluster runs it.
    { ports: [{ protocol: 'UDP', port: 53 }, { protocol: 'TCP', port: 53 }] },
    { ports: [{ protocol: 'TCP', port: 80 }, { protocol: 'TCP', port: 443 }] },
  ];
  for (const svc of inClusterServices(agent)) {
    egress.push({ to: [{ namespaceSelector: { matchLabels: { [NAMESPACE_LABEL]: svc.namespace } } }], ports: [{ protocol: 'TCP', port: svc.port }] });
  }
  if (agent.spec.egress.allowCidrs.length) {
    egress.push({ to: agent.spec.egress.allowCidrs.map((cidr) => ({ ipBlock: { cidr } })) });
  }
  egress.push(...apiServerEgressRules(apiServer));
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: childMeta(agent, childNames(agent.metadata.name).networkPolicy, 'agent'),
    spec: {
      podSelector: { matchLabels: selectorLabels(agent) },
      policyTypes: ['Ingress', 'Egress'],
      ingress: [{ ports: [{ protocol: 'TCP', port: SUPERVISOR_PORT }] }],
      egress,
    },
  };
}
