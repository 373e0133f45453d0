import type { V1NetworkPolicy, V1NetworkPolicyEgressRule } from '@kubernetes/client-node';
import type { Agent } from '../api/agent.ts';
import { childMeta, childNames, selectorLabels } from './meta.ts';
import { SUPERVISOR_PORT } from './service.ts';

const NAMESPACE_LABEL = 'kubernetes.io/metadata.name';

/**
 * An in-cluster Service a URL points at (`<svc>.<ns>.svc[.cluster.local]`), with its port,
 * or undefined for any other host. Pure.
 */
export function inClusterService(url: string, defaultPort: number): { namespace: string; port: number } | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined;
  }
  const m = /^[a-z0-9-]+\.([a-z0-9-]+)\.svc(\.cluster\.local)?\.?$/.exec(u.hostname);
  if (!m?.[1]) return undefined;
  return { namespace: m[1], port: u.port ? Number(u.port) : defaultPort };
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
  const services = [
    agent.spec.events ? inClusterService(agent.spec.events.natsUrl.replace(/^(nats|tls):/, 'http:'), 4222) : undefined,
    agent.spec.matrix ? inClusterService(agent.spec.matrix.homeserverUrl, agent.spec.matrix.homeserverUrl.startsWith('https:') ? 443 : 80) : undefined,
  ];
  for (const svc of services) {
    if (!svc) continue;
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
