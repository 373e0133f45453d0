/**
 * Makes the demo services (services.ts), which run on this machine, reachable from pods the
 * way a cluster reaches such things: a Service per service in namespace
 * {@link DEMO_NAMESPACE}, without a selector, with an EndpointSlice pointing at the address
 * the service listens on (the real node's pod gateway, a host address every pod reaches),
 * and DNS names for the three that stand in for public hosts (`github.com` → the git
 * server's Service, `api.github.com` → the GitHub API fake's, `api.anthropic.com` → the
 * model's) in the hosts file CoreDNS serves.
 *
 * So the pods use ordinary in-cluster names (`synapse.agent-smith-demo.svc.cluster.local`,
 * `nats.agent-smith-demo.svc.cluster.local`) and the real public names; nothing in the
 * product knows it is a demo.
 *
 * Source for selector-less Services with hand-made EndpointSlices: Kubernetes docs,
 * "Services without selectors" (the slice carries the label `kubernetes.io/service-name`
 * and port names matching the Service's).
 */
import { appendFile } from 'node:fs/promises';
import type { DemoServices } from './services.ts';

/** The namespace of the demo services' Services. */
export const DEMO_NAMESPACE = 'agent-smith-demo';

/** Where pods reach the demo services. */
export interface InClusterDemo {
  /** `http://synapse.agent-smith-demo.svc.cluster.local:8008` */
  homeserverUrl: string;
  /** `nats://nats.agent-smith-demo.svc.cluster.local:4222` */
  natsUrl: string;
  /** The ClusterIPs the public stand-ins resolve to (github.com, api.github.com, api.anthropic.com): the proxy dials them, so they go in allowCidrs. */
  publicStandIns: Record<string, string>;
}

/** Runs kubectl with the cluster's credentials; `input` is piped to stdin. Resolves to stdout; rejects with kubectl's stderr. */
export type Kubectl = (args: string[], input?: string) => Promise<string>;

interface Published {
  name: string;
  /** The port pods use. */
  port: number;
  /** Where the service listens on the host. */
  target: URL;
  /** A public name that resolves to this Service in the cluster. */
  dnsName?: string;
}

/**
 * Applies the namespace, Services and EndpointSlices, waits for the ClusterIPs and appends
 * the public stand-ins to `dnsHostsFile` (CoreDNS reloads it within seconds).
 * @param services the running demo services; they must listen on `podGateway` (startDemoServices' `host`)
 * @throws Error when kubectl fails or a Service gets no ClusterIP
 */
export async function publishDemoServices(services: DemoServices, kubectl: Kubectl, dnsHostsFile: string): Promise<InClusterDemo> {
  const published: Published[] = [
    { name: 'synapse', port: 8008, target: new URL(services.homeserverUrl) },
    { name: 'nats', port: 4222, target: new URL(services.natsUrl) },
    { name: 'github', port: 443, target: new URL(services.git.url), dnsName: 'github.com' },
    { name: 'github-api', port: 443, target: new URL(services.github.fake.url), dnsName: 'api.github.com' },
    { name: 'anthropic', port: 443, target: new URL(services.model.url), dnsName: 'api.anthropic.com' },
  ];

  const docs: object[] = [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: DEMO_NAMESPACE } }];
  for (const p of published) {
    docs.push(
      { apiVersion: 'v1', kind: 'Service', metadata: { name: p.name, namespace: DEMO_NAMESPACE }, spec: { ports: [{ name: 'main', port: p.port, targetPort: Number(p.target.port), protocol: 'TCP' }] } },
      {
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name: `${p.name}-host`, namespace: DEMO_NAMESPACE, labels: { 'kubernetes.io/service-name': p.name, 'endpointslice.kubernetes.io/managed-by': 'agent-smith-demo' } },
        addressType: 'IPv4',
        endpoints: [{ addresses: [p.target.hostname], conditions: { ready: true } }],
        ports: [{ name: 'main', port: Number(p.target.port), protocol: 'TCP' }],
      },
    );
  }
  await kubectl(['apply', '-f', '-'], docs.map((d) => JSON.stringify(d)).join('\n'));

  const publicStandIns: Record<string, string> = {};
  const lines: string[] = [];
  for (const p of published.filter((x) => x.dnsName)) {
    const ip = (await kubectl(['get', 'service', '-n', DEMO_NAMESPACE, p.name, '-o', 'jsonpath={.spec.clusterIP}'])).trim();
    if (!/^\d+\.\d+\.\d+\.\d+$/.test(ip)) throw new Error(`Service ${DEMO_NAMESPACE}/${p.name} has no IPv4 ClusterIP (got "${ip}")`);
    publicStandIns[p.dnsName!] = ip;
    lines.push(`${ip} ${p.dnsName}`);
  }
  await appendFile(dnsHostsFile, lines.join('\n') + '\n');
  const svc = (name: string) => `${name}.${DEMO_NAMESPACE}.svc.cluster.local`;
  return { homeserverUrl: `http://${svc('synapse')}:8008`, natsUrl: `nats://${svc('nats')}:4222`, publicStandIns };
}
