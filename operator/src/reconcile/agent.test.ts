/**
 * The reconciler end to end over fake clients: what it writes, and how it ends (a result,
 * or a typed error the controller handles).
 */
import type { KubernetesObject } from '@kubernetes/client-node';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { Clients } from '../kube/clients.ts';
import { RetryAfter, TerminalError } from '../runtime/errors.ts';
import { Agent } from '../api/agent.ts';
import { ANNOTATION_CA_ALLOWLIST, ANNOTATION_CA_NOT_AFTER } from '../render/egress-ca-secret.ts';
import { makeAgentReconciler, makeRosterReconciler, rosterKey } from './agent.ts';
import { allowlistHash } from './egress-ca.ts';
import { BLOCKED_RETRY_MS } from './report.ts';

const log = pino({ level: 'silent' });
const RESYNC = 60_000;

/** What else the fake cluster holds: the Agent's stored status, cached children and pod, and whether a create finds the object there already (409). */
interface World {
  status?: Record<string, unknown>;
  children?: Record<string, KubernetesObject>;
  pod?: Record<string, unknown>;
  createConflicts?: boolean;
}

/** A cluster of one Agent: API writes are recorded; reads of what it names answer `reads` (404 when absent). */
function setup(spec: Record<string, unknown>, reads: Record<string, unknown> = {}, world: World = {}) {
  const writes: string[] = [];
  const agent: KubernetesObject = { apiVersion: 'agentsmith.dev/v1alpha1', kind: 'Agent', metadata: { name: 'a', namespace: 'ns', uid: 'u', generation: 1, resourceVersion: '1' }, spec, ...(world.status ? { status: world.status } : {}) } as KubernetesObject;
  const read = (kind: string) => ({ name }: { name: string }) => {
    writes.push(`get ${kind}/${name}`);
    const r = reads[`${kind}/${name}`];
    if (r instanceof Error) return Promise.reject(r);
    return r ? Promise.resolve(r) : Promise.reject(Object.assign(new Error('not found'), { code: 404 }));
  };
  const clients = {
    core: { readNamespacedSecret: read('Secret'), readNamespacedConfigMap: read('ConfigMap'), readNamespacedService: read('Service') },
    rbac: { readClusterRole: read('ClusterRole') },
    storage: { readStorageClass: read('StorageClass') },
    objects: {
      patch: (obj: KubernetesObject) => (writes.push(`apply ${obj.kind}/${obj.metadata?.name}`), Promise.resolve(obj)),
      create: (obj: KubernetesObject) => {
        writes.push(`create ${obj.kind}/${obj.metadata?.name}`);
        return world.createConflicts ? Promise.reject(Object.assign(new Error('already exists'), { code: 409 })) : Promise.resolve(obj);
      },
    },
    custom: { patchNamespacedCustomObjectStatus: ({ body }: { body: { status: { phase: string } } }) => (writes.push(`status ${body.status.phase}`), Promise.resolve({})) },
    events: { createNamespacedEvent: ({ body }: { body: { reason: string } }) => (writes.push(`event ${body.reason}`), Promise.resolve({})) },
  } as unknown as Clients;
  const reconcile = makeAgentReconciler({
    clients,
    caches: { agent: () => agent, agents: () => [agent], child: (kind, _ns, name) => world.children?.[`${kind}/${name}`] as never, pod: () => world.pod },
    image: 'example.org/agent:1',
    shared: { claudeMd: '# Shared\n', settingsJson: '{}' },
    resyncMs: RESYNC,
    now: () => new Date('2026-06-01T00:00:00Z'),
  });
  return { writes, run: (light = false) => reconcile('ns/a', log, { light }) };
}

describe('reconcileAgent', () => {
  it('makes the CA, applies the children and writes the status of a sound Agent, then waits a resync', async () => {
    const { writes, run } = setup({ persona: { instructions: 'hi' }, egress: { allow: ['github.com'] } });
    expect(await run()).toEqual({ requeueAfterMs: RESYNC });
    // No GET before the CA is created, no Event for the first CA or for a pod on its way up.
    expect(writes).toEqual([
      'create Secret/a-egress-ca',
      'apply ServiceAccount/a',
      'apply ConfigMap/a-config',
      'apply Service/a',
      'apply NetworkPolicy/a',
      'apply StatefulSet/a',
      'status Pending',
    ]);
  });

  it('uses the CA someone already created (409) instead of replacing it, and renders with it', async () => {
    const spec = { persona: { instructions: 'hi' }, egress: { allow: ['github.com'] } };
    const parsed = Agent.parse({ apiVersion: 'agentsmith.dev/v1alpha1', kind: 'Agent', metadata: { name: 'a', namespace: 'ns' }, spec });
    const existing = {
      metadata: { name: 'a-egress-ca', annotations: { [ANNOTATION_CA_NOT_AFTER]: '2027-06-01T00:00:00Z', [ANNOTATION_CA_ALLOWLIST]: allowlistHash(parsed) } },
      data: { 'ca.crt': Buffer.from('THEIRCERT').toString('base64'), 'ca.key': Buffer.from('THEIRKEY').toString('base64') },
    };
    const { writes, run } = setup(spec, { 'Secret/a-egress-ca': existing }, { createConflicts: true });
    expect(await run()).toEqual({ requeueAfterMs: RESYNC });
    expect(writes.slice(0, 3)).toEqual(['create Secret/a-egress-ca', 'get Secret/a-egress-ca', 'apply ServiceAccount/a']);
    expect(writes.filter((w) => w.includes('egress-ca'))).toHaveLength(2);
  });


  it('shows a missing reference and looks again within BLOCKED_RETRY_MS, changing no child', async () => {
    const { writes, run } = setup({ persona: { configMapRef: { name: 'gone' } } });
    expect(await run()).toEqual({ requeueAfterMs: BLOCKED_RETRY_MS });
    expect(writes.filter((w) => w.startsWith('apply'))).toEqual([]);
    expect(writes).toContain('status Failed');
  });

  it('writes the condition of a spec only its owner can fix, then ends in a TerminalError (no timed retry)', async () => {
    const { writes, run } = setup({ persona: { instructions: 'hi' }, egress: { allow: ['*.com'] } });
    const err = await run().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TerminalError);
    expect((err as TerminalError).reason).toBe('InvalidSpec');
    expect(writes.filter((w) => w.startsWith('apply'))).toEqual([]);
    expect(writes[0]).toBe('status Failed');
  });

  it('ends in a TerminalError naming the field when the stored Agent does not match the operator schema', async () => {
    const { writes, run } = setup({ persona: { instructions: 'hi' }, storage: { home: 'lots' } });
    const err = await run().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TerminalError);
    expect((err as TerminalError).reason).toBe('SchemaMismatch');
    expect((err as TerminalError).message).toMatch(/^stored Agent does not match the operator schema: spec\.storage\.home: /);
    expect(writes).toEqual([]);
  });

  it('hands a 429 on to the controller as RetryAfter with the server\'s delay, before writing anything', async () => {
    const busy = Object.assign(new Error('too many requests'), { code: 429, headers: { 'retry-after': '2' } });
    const { writes, run } = setup({ persona: { configMapRef: { name: 'p' } } }, { 'ConfigMap/p': busy });
    const err = await run().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RetryAfter);
    expect((err as RetryAfter).delayMs).toBe(2000);
    expect(writes).toEqual(['get ConfigMap/p']);
  });

  describe('light (a pod or StatefulSet status changed)', () => {
    const spec = { persona: { instructions: 'hi' }, egress: { allow: ['github.com'] } };
    const at = '2026-05-01T00:00:00Z';
    const cond = (type: string, status: string, reason: string, message: string) => ({ type, status, reason, message, observedGeneration: 1, lastTransitionTime: at });
    const pending = {
      observedGeneration: 1,
      phase: 'Pending',
      statefulSetName: 'a',
      podName: 'a-0',
      restarts: 0,
      conditions: [
        cond('Progressing', 'True', 'RolloutInProgress', 'waiting for the pod to become ready'),
        cond('Degraded', 'False', 'AsExpected', 'no container is crash-looping'),
        cond('Ready', 'False', 'PodPending', 'pod a-0 is Pending and not ready'),
        cond('SpecValid', 'True', 'AsExpected', 'spec is valid'),
        cond('PersonaResolved', 'True', 'AsExpected', 'ok'),
        cond('CredentialsResolved', 'True', 'AsExpected', 'ok'),
        cond('ReferencesResolved', 'True', 'AsExpected', 'ok'),
        cond('StorageInSync', 'True', 'AsExpected', 'volumes match spec.storage'),
      ],
    };
    const sts = { kind: 'StatefulSet', metadata: { name: 'a', generation: 1 }, status: { observedGeneration: 1, replicas: 1, readyReplicas: 1, currentRevision: 'r1', updateRevision: 'r1' } } as KubernetesObject;
    const readyPod = { metadata: { name: 'a-0' }, status: { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }], containerStatuses: [{ name: 'agent', restartCount: 0, ready: true, image: 'x', imageID: 'x' }] } };

    it('writes only the status (Ready, one Event) from the caches, and the same status again costs nothing while the cache lags our write', async () => {
      const { writes, run } = setup(spec, {}, { status: pending, children: { 'StatefulSet/a': sts }, pod: readyPod });
      expect(await run(true)).toEqual({ requeueAfterMs: RESYNC });
      expect(writes).toEqual(['status Ready', 'event PodReady']);
      await run(true); // the Agent cache still shows Pending (our write not yet seen)
      expect(writes).toEqual(['status Ready', 'event PodReady']);
    });

    it('does not write a status whose only change is the wording of a pod being created', async () => {
      const creating = { metadata: { name: 'a-0' }, status: { phase: 'Pending', containerStatuses: [{ name: 'agent', restartCount: 0, ready: false, image: 'x', imageID: 'x', state: { waiting: { reason: 'ContainerCreating' } } }] } };
      const { writes, run } = setup(spec, {}, { status: pending, children: { 'StatefulSet/a': { ...sts, status: { observedGeneration: 1, replicas: 1, currentRevision: 'r1', updateRevision: 'r1' } } as KubernetesObject }, pod: creating });
      await run(true);
      expect(writes).toEqual([]);
    });

    it('does the full reconcile for an Agent not yet reconciled at its generation', async () => {
      const { writes, run } = setup(spec, {}, { status: { ...pending, observedGeneration: 0 }, children: { 'StatefulSet/a': sts }, pod: readyPod });
      await run(true);
      expect(writes[0]).toBe('create Secret/a-egress-ca');
    });
  });
});

describe('reconcileRoster', () => {
  const member = (name: string) => ({ apiVersion: 'agentsmith.dev/v1alpha1', kind: 'Agent', metadata: { name, namespace: 'ns', uid: `u-${name}`, generation: 1 }, spec: { team: 'crew', persona: { instructions: 'hi' } } }) as KubernetesObject;

  it('applies the team roster from the team index once, and not again while the cache holds it', async () => {
    const applied: KubernetesObject[] = [];
    const cache: { roster?: KubernetesObject } = {};
    const clients = { objects: { patch: (obj: KubernetesObject) => (applied.push(obj), Promise.resolve(obj)) } } as unknown as Clients;
    const reconcile = makeRosterReconciler({
      clients,
      caches: { agent: () => undefined, agents: () => { throw new Error('the namespace is not listed'); }, child: () => cache.roster as never, pod: () => undefined },
      teamMembers: (ns, team) => (ns === 'ns' && team === 'crew' ? [member('alpha'), member('beta')] : []),
    });
    await reconcile(rosterKey('ns', 'crew'));
    expect(applied.map((o) => o.metadata?.name)).toEqual(['team-crew-roster']);
    expect(applied[0]?.metadata?.ownerReferences?.map((r) => r.name)).toEqual(['alpha', 'beta']);
    cache.roster = applied[0];
    await reconcile(rosterKey('ns', 'crew'));
    expect(applied).toHaveLength(1);
    await reconcile(rosterKey('ns', 'empty'));
    expect(applied).toHaveLength(1);
  });
});
