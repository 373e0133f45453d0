/**
 * What an Agent's pod may reach beside the proxy, as the operator renders it against the
 * real control plane:
 *
 * - spec.kubernetesAccess: the `kubernetes` Service in `default` is a declared in-cluster
 *   destination: its cluster IP in NO_PROXY (kubectl dials it directly, no interception,
 *   no credential swap) and in the contract's allowCidrs (egress-init lets it through),
 *   its name in the contract's egress.inClusterHosts under iptables (the proxy's DNS
 *   resolves it), and a NetworkPolicy rule for the API server endpoints of its EndpointSlices.
 * - spec.egress.upstreamCaConfigMapRef: a missing ConfigMap, a missing key and a bundle
 *   that is not PEM each show in ReferencesResolved with the fix, and leave the running
 *   pod as it is; a good bundle is mounted into the proxy, and a change of it rolls the pod.
 */
import { DiscoveryV1Api, type KubernetesObject, type V1StatefulSet } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { stringify } from 'yaml';
import { generateEgressCa } from '../../operator/src/pki/egress-ca.ts';
import { kubeClients, kubectl, makeNamespace, waitFor, type KubeClients } from '../support/kube.ts';

interface AgentObject extends KubernetesObject {
  status?: { phase?: string; observedGeneration?: number; conditions?: { type: string; status: string; reason: string; message: string }[] };
}

const kubeconfig = inject('kubeconfig');
let c: KubeClients;
let ns: { name: string; remove: () => Promise<void> };
const cleanups: Array<() => Promise<void>> = [];

const read = async (name: string) =>
  (await c.custom.getNamespacedCustomObject({ group: 'agentsmith.dev', version: 'v1alpha1', namespace: ns.name, plural: 'agents', name })) as AgentObject;
const cond = (a: AgentObject, type: string) => a.status?.conditions?.find((x) => x.type === type);
const apply = async (name: string, spec: Record<string, unknown>) => {
  const r = await kubectl(kubeconfig, ['apply', '-f', '-'], stringify({ apiVersion: 'agentsmith.dev/v1alpha1', kind: 'Agent', metadata: { name, namespace: ns.name }, spec }));
  expect(r.stderr).toBe('');
};
const envOf = (sts: V1StatefulSet, container: string, name: string) =>
  [...(sts.spec?.template.spec?.initContainers ?? []), ...(sts.spec?.template.spec?.containers ?? [])].find((x) => x.name === container)?.env?.find((e) => e.name === name)?.value;
const hashOf = (sts: V1StatefulSet) => sts.spec?.template.metadata?.annotations?.['agentsmith.dev/config-hash'];

beforeAll(async () => {
  c = kubeClients(kubeconfig);
  ns = await makeNamespace(c, 'cluster-access');
});
afterAll(async () => {
  for (const f of cleanups) await f().catch(() => undefined);
  await ns?.remove();
});

describe('spec.kubernetesAccess', () => {
  it("makes the API server a direct destination: its Service IP in NO_PROXY and allowCidrs, its endpoints in the NetworkPolicy", async () => {
    const svc = await c.core.readNamespacedService({ name: 'kubernetes', namespace: 'default' });
    const ip = svc.spec?.clusterIP ?? '';
    expect(ip).toMatch(/^[0-9a-f.:]+$/);
    const discovery = c.kc.makeApiClient(DiscoveryV1Api);
    const list = () => discovery.listNamespacedEndpointSlice({ namespace: 'default', labelSelector: 'kubernetes.io/service-name=kubernetes' });
    let slices = await list();
    if (!slices.items.some((s) => s.endpoints?.length)) {
      // The kwok control plane runs kube-apiserver with --endpoint-reconciler-type=none (its
      // address is loopback, which an EndpointSlice cannot hold): publish what a real
      // control plane publishes, an API server on 6443 (a documentation address).
      await discovery.createNamespacedEndpointSlice({
        namespace: 'default',
        body: {
          metadata: { name: 'kubernetes-test', labels: { 'kubernetes.io/service-name': 'kubernetes', 'endpointslice.kubernetes.io/managed-by': 'agent-smith-test' } },
          addressType: 'IPv4',
          endpoints: [{ addresses: ['192.0.2.10'], conditions: { ready: true } }],
          ports: [{ name: 'https', port: 6443, protocol: 'TCP' }],
        },
      });
      cleanups.push(() => discovery.deleteNamespacedEndpointSlice({ name: 'kubernetes-test', namespace: 'default' }).then(() => undefined));
      slices = await list();
    }
    const endpoints = slices.items.flatMap((s) => (s.endpoints ?? []).flatMap((e) => e.addresses));
    const ports = slices.items.flatMap((s) => (s.ports ?? []).map((p) => p.port));

    for (const enforcement of ['iptables', 'proxy-env']) {
      const name = `kubebot-${enforcement}`;
      await apply(name, { persona: { instructions: 'You read the cluster.' }, kubernetesAccess: { clusterRole: 'view' }, egress: { allow: ['github.com'], enforcement } });
      const sts = await waitFor(`${name}'s StatefulSet`, () => c.apps.readNamespacedStatefulSet({ name, namespace: ns.name }).catch(() => undefined), 30_000);
      expect(sts.spec?.template.spec?.automountServiceAccountToken).toBe(true);
      for (const container of ['setup', 'agent']) {
        for (const v of ['NO_PROXY', 'no_proxy']) expect(envOf(sts, container, v)?.split(','), `${enforcement} ${container} ${v}`).toContain(ip);
      }
      const cm = await c.core.readNamespacedConfigMap({ name: `${name}-config`, namespace: ns.name });
      const contract = JSON.parse(cm.data?.['contract.json'] ?? '{}') as { egress: { allowCidrs: string[]; inClusterHosts?: string[] } };
      expect(contract.egress.allowCidrs).toContain(`${ip}/${ip.includes(':') ? 128 : 32}`);
      // Under iptables the proxy answers the pod's DNS (egress-init sends port 53 to it) and
      // resolves the API server's name as a declared in-cluster destination.
      expect(contract.egress.inClusterHosts).toEqual(enforcement === 'iptables' ? ['kubernetes.default.svc'] : undefined);
      expect(envOf(sts, 'egress-init', 'AGENT_SMITH_PROXY_DNS_PORT')).toBe(enforcement === 'iptables' ? '15053' : undefined);
      const np = await c.networking.readNamespacedNetworkPolicy({ name, namespace: ns.name });
      expect(np.spec?.egress).toContainEqual({
        to: endpoints.map((a) => ({ ipBlock: { cidr: `${a}/${a.includes(':') ? 128 : 32}` } })),
        ports: ports.map((port) => ({ protocol: 'TCP', port })),
      });
    }
  });

  it('adds none of it without kubernetesAccess', async () => {
    const ip = (await c.core.readNamespacedService({ name: 'kubernetes', namespace: 'default' })).spec?.clusterIP ?? '';
    await apply('plainbot', { persona: { instructions: 'You do not read the cluster.' }, egress: { allow: ['github.com'] } });
    const sts = await waitFor("plainbot's StatefulSet", () => c.apps.readNamespacedStatefulSet({ name: 'plainbot', namespace: ns.name }).catch(() => undefined), 30_000);
    expect(envOf(sts, 'agent', 'NO_PROXY')?.split(',')).not.toContain(ip);
    const np = await c.networking.readNamespacedNetworkPolicy({ name: 'plainbot', namespace: ns.name });
    expect(JSON.stringify(np.spec?.egress)).not.toContain('ipBlock');
  });
});

describe('spec.egress.upstreamCaConfigMapRef', () => {
  const spec = { persona: { instructions: 'You work behind TLS inspection.' }, egress: { allow: ['github.com'], upstreamCaConfigMapRef: { name: 'corp-ca', key: 'ca.crt' } } };
  const references = async (want: (c: { status: string; reason: string; message: string } | undefined) => boolean) =>
    waitFor('ReferencesResolved', async () => {
      const a = await read('corpbot');
      const r = cond(a, 'ReferencesResolved');
      return want(r) ? r : undefined;
    }, 30_000);

  it('names a missing ConfigMap and renders no pod, then mounts a good bundle into the proxy only', async () => {
    await apply('corpbot', spec);
    const missing = await references((r) => r?.status === 'False');
    expect(missing).toMatchObject({ reason: 'ReferenceNotFound', message: `spec.egress.upstreamCaConfigMapRef: ConfigMap ${ns.name}/corp-ca not found; create it (kubectl create configmap corp-ca -n ${ns.name} --from-file=ca.crt=<ca-bundle.pem>) or fix the name` });
    expect((await c.apps.listNamespacedStatefulSet({ namespace: ns.name, labelSelector: 'agentsmith.dev/agent=corpbot' })).items).toHaveLength(0);

    const { certPem } = await generateEgressCa({ agent: 'corp/root', allow: ['github.com'], now: new Date(), validityDays: 30 });
    // A created ConfigMap is watched: picked up within seconds.
    await c.core.createNamespacedConfigMap({ namespace: ns.name, body: { metadata: { name: 'corp-ca' }, data: { 'ca.crt': certPem } } });
    await references((r) => r?.status === 'True');
    const sts = await waitFor("corpbot's StatefulSet", () => c.apps.readNamespacedStatefulSet({ name: 'corpbot', namespace: ns.name }).catch(() => undefined), 30_000);
    const pod = sts.spec!.template.spec!;
    expect(pod.volumes).toContainEqual({ name: 'upstream-ca', configMap: { name: 'corp-ca', items: [{ key: 'ca.crt', path: 'ca.crt' }], defaultMode: 0o444 } });
    for (const ct of [...(pod.initContainers ?? []), ...pod.containers]) {
      const mounted = (ct.volumeMounts ?? []).some((m) => m.name === 'upstream-ca');
      expect(mounted, ct.name).toBe(ct.name === 'egress-proxy');
    }
    expect(envOf(sts, 'egress-proxy', 'AGENT_SMITH_UPSTREAM_CA')).toBe('/etc/agent-smith/upstream-ca/ca.crt');
  });

  it('keeps the running pod when the bundle breaks, and rolls it when the bundle changes', async () => {
    const before = await c.apps.readNamespacedStatefulSet({ name: 'corpbot', namespace: ns.name });
    await c.core.replaceNamespacedConfigMap({ name: 'corp-ca', namespace: ns.name, body: { metadata: { name: 'corp-ca' }, data: { 'ca.crt': 'not a certificate' } } });
    const invalid = await references((r) => r?.status === 'False');
    expect(invalid).toMatchObject({ reason: 'ReferenceInvalid' });
    expect(invalid?.message).toContain(`spec.egress.upstreamCaConfigMapRef: key "ca.crt" of ConfigMap ${ns.name}/corp-ca: no PEM certificate in it`);
    expect(hashOf(await c.apps.readNamespacedStatefulSet({ name: 'corpbot', namespace: ns.name }))).toBe(hashOf(before));

    await c.core.replaceNamespacedConfigMap({ name: 'corp-ca', namespace: ns.name, body: { metadata: { name: 'corp-ca' }, data: { other: 'x' } } });
    const noKey = await references((r) => r?.message.includes('has no key') === true);
    expect(noKey).toMatchObject({ status: 'False', reason: 'ReferenceNotFound' });
    expect(noKey?.message).toContain('(it has "other"); put the PEM bundle under "ca.crt" or fix the key');

    const { certPem } = await generateEgressCa({ agent: 'corp/root-2', allow: ['github.com'], now: new Date(), validityDays: 30 });
    await c.core.replaceNamespacedConfigMap({ name: 'corp-ca', namespace: ns.name, body: { metadata: { name: 'corp-ca' }, data: { 'ca.crt': certPem } } });
    await references((r) => r?.status === 'True');
    const after = await waitFor('the pod template to change', async () => {
      const s = await c.apps.readNamespacedStatefulSet({ name: 'corpbot', namespace: ns.name });
      return hashOf(s) !== hashOf(before) ? s : undefined;
    }, 30_000);
    expect(hashOf(after)).toBeDefined();
  });
});
