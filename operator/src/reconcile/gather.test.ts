import type { KubernetesObject } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { Agent } from '../api/agent.ts';
import type { Clients } from '../kube/clients.ts';
import { TemporaryError } from '../runtime/errors.ts';
import { gather, type GatherSources } from './gather.ts';
import type { Caches } from './observed.ts';

const now = new Date('2026-06-01T00:00:00Z');
const agent = (spec: Record<string, unknown>) =>
  Agent.parse({ apiVersion: 'agentsmith.dev/v1alpha1', kind: 'Agent', metadata: { name: 'a', namespace: 'ns', uid: 'u' }, spec });
const status = (code: number) => Object.assign(new Error('from the fake API server'), { code });

/**
 * Clients that answer reads from `objects` (`Kind/namespace/name`; a missing one is a 404
 * as the API server sends it) and record every request as `Kind/namespace/name`.
 */
function fakeSources(objects: Record<string, unknown>, failing: Record<string, number> = {}): { sources: GatherSources; requests: string[] } {
  const requests: string[] = [];
  const read = (kind: string) => ({ name, namespace }: { name: string; namespace?: string }) => {
    const key = [kind, namespace, name].filter(Boolean).join('/');
    requests.push(key);
    if (failing[key]) return Promise.reject(status(failing[key]));
    return key in objects ? Promise.resolve(objects[key]) : Promise.reject(status(404));
  };
  const clients = {
    core: { readNamespacedSecret: read('Secret'), readNamespacedConfigMap: read('ConfigMap'), readNamespacedService: read('Service') },
    rbac: { readClusterRole: read('ClusterRole') },
    storage: { readStorageClass: read('StorageClass') },
    discovery: {
      listNamespacedEndpointSlice: ({ namespace }: { namespace: string }) => {
        requests.push(`EndpointSlices/${namespace}`);
        return failing[`EndpointSlices/${namespace}`] ? Promise.reject(status(failing[`EndpointSlices/${namespace}`]!)) : Promise.resolve({ items: [] });
      },
    },
  } as unknown as Clients;
  const caches: Caches = { agent: () => undefined, agents: () => [], child: () => undefined, pod: () => undefined };
  return { sources: { clients, caches, teammates: () => [] }, requests };
}

describe('gather', () => {
  it('reads nothing from the API server for an Agent that names nothing and has no CA cached (the CA is created, not looked up)', async () => {
    const { sources, requests } = fakeSources({});
    const o = await gather(sources, agent({ persona: { instructions: 'hi' } }), now);
    expect(requests).toEqual([]);
    expect(o).toMatchObject({ services: [], teammates: [], children: {} });
    expect(o.apiServer).toBeUndefined();
    expect(o.egressCaSecret).toBeUndefined();
  });

  it('reads each named Secret and ConfigMap once, and records a missing one as looked up and not found', async () => {
    const cred = (name: string, secret: string) => ({ name, hosts: ['api.github.com'], secretRef: { name: secret, key: 'token' } });
    const { sources, requests } = fakeSources({ 'Secret/ns/tokens': { data: { token: 'dA==' } }, 'ConfigMap/ns/persona': { data: {} } });
    const o = await gather(
      sources,
      agent({ persona: { configMapRef: { name: 'persona' } }, egress: { allow: ['api.github.com'], credentials: [cred('a', 'tokens'), cred('b', 'gone')] }, pod: { imagePullSecrets: [{ name: 'tokens' }] } }),
      now,
    );
    expect(requests.filter((r) => r === 'Secret/ns/tokens')).toHaveLength(1);
    expect([...o.secrets.entries()].sort()).toEqual([['gone', undefined], ['tokens', { data: { token: 'dA==' } }]]);
    expect(o.configMaps.get('persona')).toEqual({ data: {} });
  });

  it('asks whether the named ClusterRole and StorageClass exist, and reads the API server for kubernetesAccess', async () => {
    const { sources } = fakeSources({ 'ClusterRole/view': {}, 'Service/default/kubernetes': { spec: { clusterIP: '10.0.0.1' } } }, { 'EndpointSlices/default': 403 });
    const o = await gather(sources, agent({ persona: { instructions: 'hi' }, kubernetesAccess: { clusterRole: 'view' }, storage: { storageClassName: 'fast' } }), now);
    expect(o.clusterRole).toEqual({ name: 'view', found: true });
    expect(o.storageClass).toEqual({ name: 'fast', found: false });
    expect(o.apiServer).toEqual({ service: { spec: { clusterIP: '10.0.0.1' } }, slices: 'forbidden' });
  });

  it('reads the in-cluster Services of spec.events under iptables enforcement only', async () => {
    const events = { natsUrl: 'nats://nats.messaging.svc:4222', subjects: ['x'] };
    const proxied = fakeSources({});
    await gather(proxied.sources, agent({ persona: { instructions: 'hi' }, egress: { enforcement: 'proxy-env' }, events }), now);
    expect(proxied.requests.filter((r) => r.startsWith('Service/'))).toEqual([]);
    const enforced = fakeSources({ 'Service/messaging/nats': { spec: { clusterIP: '10.0.0.9' } } });
    const o = await gather(enforced.sources, agent({ persona: { instructions: 'hi' }, egress: { enforcement: 'iptables' }, events }), now);
    expect(o.services.map((x) => [x.ref.namespace, x.ref.name, x.live])).toEqual([['messaging', 'nats', { spec: { clusterIP: '10.0.0.9' } }]]);
  });

  it('fails with a TemporaryError naming the read when the API server fails other than with 404', async () => {
    const { sources } = fakeSources({}, { 'Secret/ns/tokens': 500 });
    const a = agent({ persona: { instructions: 'hi' }, egress: { allow: ['api.github.com'], credentials: [{ name: 'a', hosts: ['api.github.com'], secretRef: { name: 'tokens', key: 'k' } }] } });
    const err = await gather(sources, a, now).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TemporaryError);
    expect((err as Error).message).toBe('reading Secret ns/tokens: HTTP 500: from the fake API server');
  });

  it('takes children and the pod from the caches, not the API server', async () => {
    const { sources, requests } = fakeSources({});
    const sts = { kind: 'StatefulSet', metadata: { name: 'a' } } as KubernetesObject;
    sources.caches = { ...sources.caches, child: (kind, _ns, name) => (kind === 'StatefulSet' && name === 'a' ? sts : undefined) as never, pod: (_ns, name) => (name === 'a-0' ? { metadata: { name } } : undefined) };
    const o = await gather(sources, agent({ persona: { instructions: 'hi' } }), now);
    expect(o.children).toEqual({ statefulSet: sts });
    expect(o.pod).toEqual({ metadata: { name: 'a-0' } });
    expect(requests).toEqual([]);
  });

  it('confirms with a live read a cached CA that would be replaced (the cache may lag our own newer one)', async () => {
    const live = { metadata: { name: 'a-egress-ca' }, data: { 'ca.crt': 'Yw==', 'ca.key': 'aw==' } };
    const { sources, requests } = fakeSources({ 'Secret/ns/a-egress-ca': live });
    sources.caches = { ...sources.caches, child: (kind, _ns, name) => (kind === 'Secret' && name === 'a-egress-ca' ? { metadata: { name } } : undefined) as never };
    const o = await gather(sources, agent({ persona: { instructions: 'hi' } }), now);
    expect(requests).toEqual(['Secret/ns/a-egress-ca']);
    expect(o.egressCaSecret).toEqual(live);
  });
});
