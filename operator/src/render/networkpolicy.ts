import type { V1NetworkPolicy, V1NetworkPolicyEgressRule } from '@kubernetes/client-node';
import type { Agent } from '../api/agent.ts';
import { childMeta, childNames, selectorLabels } from './meta.ts';
import { SUPERVISOR_PORT } from './service.ts';

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
 * the proxy and allowCidrs, and has no DNS: the supervisor's own NATS and Matrix
 * connections (not HTTP through the proxy) need these. Pure.
 */
export function withServiceCidrs(allowCidrs: readonly string[], services: readonly ServiceAddress[]): string[] {
  const out = [...allowCidrs];
  for (const a of services.flatMap((s) => s.addresses)) {
    const cidr = `${a}/${a.includes(':') ? 128 : 32}`;
    if (!out.includes(cidr)) out.push(cidr);
  }
  return out;
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
 * CIDRs of `egress.allowCidrs`, and to ports 80 and 443 (which the proxy then filters by
 * host); ingress only to the supervisor's HTTP port (probes, metrics). Pure.
 */
export function renderNetworkPolicy(agent: Agent): V1NetworkPolicy {
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
