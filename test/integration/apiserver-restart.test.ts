/**
 * kube-apiserver restarted under the running operator: its watches resume, and a change
 * made after the restart is reconciled. (Runs on the local control plane only: it asks
 * `localcluster up` to restart the API server with SIGUSR1.)
 */
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { stringify } from 'yaml';
import { kubeClients, kubectl, makeNamespace, waitFor, type KubeClients } from '../support/kube.ts';

const kubeconfig = inject('kubeconfig');
const clusterPid = inject('clusterPid');
let c: KubeClients;
let ns: { name: string; remove: () => Promise<void> };

const ready = async (name: string) => {
  const a = (await c.custom.getNamespacedCustomObject({ group: 'agentsmith.dev', version: 'v1alpha1', namespace: ns.name, plural: 'agents', name })) as {
    status?: { conditions?: { type: string; status: string }[] };
  };
  return a.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True') ?? false;
};
const apply = (name: string) =>
  kubectl(kubeconfig, ['apply', '-f', '-'], stringify({ apiVersion: 'agentsmith.dev/v1alpha1', kind: 'Agent', metadata: { name, namespace: ns.name }, spec: { egress: { allow: ['github.com'] } } }));

beforeAll(async () => {
  c = kubeClients(kubeconfig);
  ns = await makeNamespace(c, 'restart');
});
afterAll(async () => ns?.remove());

describe('a kube-apiserver restart', () => {
  it('is survived: watches resume and later changes are reconciled', async () => {
    expect(clusterPid, 'needs the local control plane').toBeGreaterThan(0);
    await apply('before');
    await waitFor('before Ready', () => ready('before'), 60_000);

    process.kill(clusterPid, 'SIGUSR1');
    // Down first (so we really test a restart), then up again.
    await waitFor('the API server to go away', async () => (await kubectl(kubeconfig, ['get', '--raw', '/readyz', '--request-timeout=1s'])).code !== 0, 30_000, 100);
    await waitFor('the API server to be back', async () => (await kubectl(kubeconfig, ['get', '--raw', '/readyz', '--request-timeout=2s'])).code === 0, 60_000, 250);

    // A change to an existing Agent, and a new Agent, both made after the restart.
    await c.custom.patchNamespacedCustomObject(
      { group: 'agentsmith.dev', version: 'v1alpha1', namespace: ns.name, plural: 'agents', name: 'before', body: [{ op: 'add', path: '/spec/suspend', value: true }] },
      setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
    );
    await apply('after');
    await waitFor('the suspend to reach the StatefulSet', async () => (await c.apps.readNamespacedStatefulSet({ name: 'before', namespace: ns.name })).spec?.replicas === 0, 60_000);
    await waitFor('after Ready', () => ready('after'), 60_000);
  }, 180_000);
});
