/**
 * The walking skeleton, against a real kube-apiserver, controller-manager, scheduler and
 * kwok nodes, with the operator running as its own process: apply an Agent, see its
 * children and its pod, change it, suspend it, delete it.
 */
import { PatchStrategy, setHeaderOptions, type KubernetesObject, type V1StatefulSet } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { stringify } from 'yaml';
import { kubeClients, kubectl, makeNamespace, waitFor, type KubeClients } from '../support/kube.ts';

interface AgentObject extends KubernetesObject {
  spec: Record<string, unknown>;
  status?: {
    observedGeneration?: number;
    phase?: string;
    podName?: string;
    conditions?: { type: string; status: string; reason: string; message: string; observedGeneration?: number }[];
  };
}

const kubeconfig = inject('kubeconfig');
const jsonPatch = setHeaderOptions('Content-Type', PatchStrategy.JsonPatch);
let c: KubeClients;
let ns: { name: string; remove: () => Promise<void> };

function agentManifest(namespace: string, spec: Record<string, unknown>): string {
  return stringify({ apiVersion: 'agentsmith.dev/v1alpha1', kind: 'Agent', metadata: { name: 'devbot', namespace }, spec });
}

async function readAgent(): Promise<AgentObject> {
  return (await c.custom.getNamespacedCustomObject({ group: 'agentsmith.dev', version: 'v1alpha1', namespace: ns.name, plural: 'agents', name: 'devbot' })) as AgentObject;
}

const condition = (a: AgentObject, type: string) => a.status?.conditions?.find((x) => x.type === type);

beforeAll(async () => {
  c = kubeClients(kubeconfig);
  ns = await makeNamespace(c, 'lifecycle');
});
afterAll(async () => ns?.remove());

describe('an applied Agent', () => {
  const spec = {
    team: 'homelab',
    persona: { instructions: 'You are devbot.' },
    repos: [{ name: 'agent-smith/agent-smith' }],
    egress: { allow: ['github.com'] },
  };

  it('gets a ServiceAccount, ConfigMap, Service and StatefulSet owned by it', async () => {
    const applied = await kubectl(kubeconfig, ['apply', '-f', '-'], agentManifest(ns.name, spec));
    expect(applied.stderr).toBe('');
    expect(applied.stdout).toContain('agent.agentsmith.dev/devbot created');
    const agent = await readAgent();
    const owned = (o: KubernetesObject) => o.metadata?.ownerReferences?.some((r) => r.kind === 'Agent' && r.name === 'devbot' && r.uid === agent.metadata?.uid && r.controller);

    const sts = await waitFor('the StatefulSet', () => c.apps.readNamespacedStatefulSet({ name: 'devbot', namespace: ns.name }));
    expect(owned(sts)).toBe(true);
    expect(sts.spec?.replicas).toBe(1);
    const cm = await c.core.readNamespacedConfigMap({ name: 'devbot-config', namespace: ns.name });
    expect(owned(cm)).toBe(true);
    expect(cm.data?.['CLAUDE.md']).toContain('You are devbot.');
    expect(cm.data?.['CLAUDE.md']).toContain('Rules every agent-smith agent follows');
    const svc = await c.core.readNamespacedService({ name: 'devbot', namespace: ns.name });
    expect(owned(svc)).toBe(true);
    expect(svc.spec?.clusterIP).toBe('None');
    const sa = await c.core.readNamespacedServiceAccount({ name: 'devbot', namespace: ns.name });
    expect(owned(sa)).toBe(true);
  });

  it('gets its pod Running on a kwok node and becomes Ready with observedGeneration = generation', async () => {
    const pod = await waitFor(
      'pod devbot-0 Running',
      async () => {
        const p = await c.core.readNamespacedPod({ name: 'devbot-0', namespace: ns.name });
        return p.status?.phase === 'Running' ? p : undefined;
      },
      120_000,
    );
    expect(pod.spec?.nodeName).toMatch(/^kwok-node-/);
    const agent = await waitFor('Agent Ready=True', async () => {
      const a = await readAgent();
      return condition(a, 'Ready')?.status === 'True' && a.status?.observedGeneration === a.metadata?.generation ? a : undefined;
    });
    expect(agent.status?.phase).toBe('Ready');
    expect(agent.status?.podName).toBe('devbot-0');
    expect(condition(agent, 'Ready')).toMatchObject({ reason: 'PodReady', observedGeneration: agent.metadata?.generation });
    const table = await kubectl(kubeconfig, ['get', 'agents', '-n', ns.name]);
    expect(table.stdout).toMatch(/NAME\s+READY\s+PHASE\s+RESTARTS\s+HARNESS\s+AGE/);
    expect(table.stdout).toMatch(/devbot\s+True\s+Ready\s+0\s+claude/);
  });

  it('follows a spec change into the StatefulSet', async () => {
    const before = await c.apps.readNamespacedStatefulSet({ name: 'devbot', namespace: ns.name });
    const hashBefore = before.spec?.template.metadata?.annotations?.['agentsmith.dev/config-hash'];
    const changed = { ...spec, persona: { instructions: 'You are devbot, now with tests.' }, pod: { nodeSelector: { type: 'kwok' } } };
    expect((await kubectl(kubeconfig, ['apply', '-f', '-'], agentManifest(ns.name, changed))).stdout).toContain('configured');
    const sts = await waitFor('the StatefulSet to follow', async () => {
      const s: V1StatefulSet = await c.apps.readNamespacedStatefulSet({ name: 'devbot', namespace: ns.name });
      return s.spec?.template.spec?.nodeSelector?.type === 'kwok' ? s : undefined;
    });
    expect(sts.spec?.template.metadata?.annotations?.['agentsmith.dev/config-hash']).not.toBe(hashBefore);
    const cm = await c.core.readNamespacedConfigMap({ name: 'devbot-config', namespace: ns.name });
    expect(cm.data?.['CLAUDE.md']).toContain('now with tests');
    await waitFor('Ready again at the new generation', async () => {
      const a = await readAgent();
      return condition(a, 'Ready')?.status === 'True' && a.status?.observedGeneration === a.metadata?.generation && a.metadata?.generation === 2;
    }, 120_000);
  });

  it('keeps its volumes and says so when spec.storage changes', async () => {
    await c.custom.patchNamespacedCustomObject(
      { group: 'agentsmith.dev', version: 'v1alpha1', namespace: ns.name, plural: 'agents', name: 'devbot', body: [{ op: 'add', path: '/spec/storage/home', value: '9Gi' }] },
      jsonPatch,
    );
    const agent = await waitFor('StorageInSync=False', async () => {
      const a = await readAgent();
      return condition(a, 'StorageInSync')?.status === 'False' && a.status?.observedGeneration === a.metadata?.generation ? a : undefined;
    });
    expect(condition(agent, 'StorageInSync')?.message).toContain('home=5Gi -> home=9Gi');
    expect(condition(agent, 'Ready')?.status).toBe('True');
    const sts = await c.apps.readNamespacedStatefulSet({ name: 'devbot', namespace: ns.name });
    expect(sts.spec?.volumeClaimTemplates?.[0]?.spec?.resources?.requests?.storage).toBe('5Gi');
    const events = await kubectl(kubeconfig, ['get', 'events', '-n', ns.name, '--field-selector', 'involvedObject.name=devbot']);
    expect(events.stdout).toContain('VolumeClaimTemplatesImmutable');
  });

  it('scales to zero and says Suspended when suspended', async () => {
    await c.custom.patchNamespacedCustomObject(
      { group: 'agentsmith.dev', version: 'v1alpha1', namespace: ns.name, plural: 'agents', name: 'devbot', body: [{ op: 'add', path: '/spec/suspend', value: true }] },
      jsonPatch,
    );
    const sts = await waitFor('replicas 0', async () => {
      const s = await c.apps.readNamespacedStatefulSet({ name: 'devbot', namespace: ns.name });
      return s.spec?.replicas === 0 ? s : undefined;
    });
    expect(sts.spec?.replicas).toBe(0);
    const agent = await waitFor('phase Suspended', async () => {
      const a = await readAgent();
      return a.status?.phase === 'Suspended' && condition(a, 'Ready')?.reason === 'Suspended' ? a : undefined;
    });
    expect(condition(agent, 'Ready')?.status).toBe('False');
    await waitFor('the pod to go', async () => {
      const pods = await c.core.listNamespacedPod({ namespace: ns.name });
      return pods.items.length === 0;
    }, 120_000);
  });

  it('takes its children with it when deleted', async () => {
    expect((await kubectl(kubeconfig, ['delete', 'agent', 'devbot', '-n', ns.name])).stdout).toContain('deleted');
    await waitFor('the children to be garbage-collected', async () => {
      const [sts, cms, svcs, sas] = await Promise.all([
        c.apps.listNamespacedStatefulSet({ namespace: ns.name }),
        c.core.listNamespacedConfigMap({ namespace: ns.name, labelSelector: 'app.kubernetes.io/managed-by=agent-smith' }),
        c.core.listNamespacedService({ namespace: ns.name }),
        c.core.listNamespacedServiceAccount({ namespace: ns.name, labelSelector: 'app.kubernetes.io/managed-by=agent-smith' }),
      ]);
      return sts.items.length + cms.items.length + svcs.items.length + sas.items.length === 0;
    }, 90_000);
  });
});

describe('an Agent whose persona ConfigMap is missing', () => {
  it('says so in its Ready condition, and recovers when the ConfigMap appears', async () => {
    const spec = { persona: { configMapRef: { name: 'nobody-persona' } } };
    await kubectl(kubeconfig, ['apply', '-f', '-'], stringify({ apiVersion: 'agentsmith.dev/v1alpha1', kind: 'Agent', metadata: { name: 'nobody', namespace: ns.name }, spec }));
    const get = async () =>
      (await c.custom.getNamespacedCustomObject({ group: 'agentsmith.dev', version: 'v1alpha1', namespace: ns.name, plural: 'agents', name: 'nobody' })) as AgentObject;
    const blocked = await waitFor('Ready=False PersonaNotFound', async () => {
      const a = await get();
      return condition(a, 'Ready')?.reason === 'PersonaNotFound' ? a : undefined;
    });
    expect(condition(blocked, 'Ready')?.message).toContain(`ConfigMap ${ns.name}/nobody-persona not found`);
    expect(blocked.status?.phase).toBe('Failed');
    const events = await kubectl(kubeconfig, ['get', 'events', '-n', ns.name, '--field-selector', 'involvedObject.name=nobody']);
    expect(events.stdout + events.stderr).toContain('PersonaNotFound');

    await c.core.createNamespacedConfigMap({ namespace: ns.name, body: { metadata: { name: 'nobody-persona' }, data: { 'CLAUDE.md': 'You are nobody.' } } });
    // The reconciler looks again on its blocked-retry period (60 s at most); a nudge
    // through the spec shows the level-based path without waiting for it.
    await c.custom.patchNamespacedCustomObject({
      group: 'agentsmith.dev', version: 'v1alpha1', namespace: ns.name, plural: 'agents', name: 'nobody',
      body: [{ op: 'add', path: '/spec/harness/model', value: 'claude-sonnet-4-5' }],
    }, jsonPatch);
    await waitFor('Ready=True', async () => condition(await get(), 'Ready')?.status === 'True', 120_000);
  });
});
