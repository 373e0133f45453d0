/**
 * The reconciler end to end over fake clients: what it writes, and how it ends (a result,
 * or a typed error the controller handles).
 */
import type { KubernetesObject } from '@kubernetes/client-node';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { Clients } from '../kube/clients.ts';
import { RetryAfter, TerminalError } from '../runtime/errors.ts';
import { makeAgentReconciler } from './agent.ts';
import { BLOCKED_RETRY_MS } from './report.ts';

const log = pino({ level: 'silent' });
const RESYNC = 60_000;

/** A cluster of one Agent: API writes are recorded; reads of what it names answer `reads` (404 when absent). */
function setup(spec: Record<string, unknown>, reads: Record<string, unknown> = {}) {
  const writes: string[] = [];
  const agent: KubernetesObject = { apiVersion: 'agentsmith.dev/v1alpha1', kind: 'Agent', metadata: { name: 'a', namespace: 'ns', uid: 'u', generation: 1 }, spec } as KubernetesObject;
  const read = (kind: string) => ({ name }: { name: string }) => {
    const r = reads[`${kind}/${name}`];
    if (r instanceof Error) return Promise.reject(r);
    return r ? Promise.resolve(r) : Promise.reject(Object.assign(new Error('not found'), { code: 404 }));
  };
  const clients = {
    core: { readNamespacedSecret: read('Secret'), readNamespacedConfigMap: read('ConfigMap'), readNamespacedService: read('Service') },
    rbac: { readClusterRole: read('ClusterRole') },
    storage: { readStorageClass: read('StorageClass') },
    objects: { patch: (obj: KubernetesObject) => (writes.push(`apply ${obj.kind}/${obj.metadata?.name}`), Promise.resolve(obj)) },
    custom: { patchNamespacedCustomObjectStatus: () => (writes.push('status'), Promise.resolve({})) },
    events: { createNamespacedEvent: ({ body }: { body: { reason: string } }) => (writes.push(`event ${body.reason}`), Promise.resolve({})) },
  } as unknown as Clients;
  const reconcile = makeAgentReconciler({
    clients,
    caches: { agent: () => agent, agents: () => [agent], child: () => undefined, pod: () => undefined },
    image: 'example.org/agent:1',
    shared: { claudeMd: '# Shared\n', settingsJson: '{}' },
    resyncMs: RESYNC,
    now: () => new Date('2026-06-01T00:00:00Z'),
  });
  return { writes, run: () => reconcile('ns/a', log) };
}

describe('reconcileAgent', () => {
  it('makes the CA, applies the children and writes the status of a sound Agent, then waits a resync', async () => {
    const { writes, run } = setup({ persona: { instructions: 'hi' }, egress: { allow: ['github.com'] } });
    expect(await run()).toEqual({ requeueAfterMs: RESYNC });
    expect(writes).toEqual([
      'apply Secret/a-egress-ca',
      'event EgressCaGenerated',
      'apply ServiceAccount/a',
      'apply ConfigMap/a-config',
      'apply Service/a',
      'apply NetworkPolicy/a',
      'apply StatefulSet/a',
      'status',
      'event PodMissing',
    ]);
  });

  it('shows a missing reference and looks again within BLOCKED_RETRY_MS, changing no child', async () => {
    const { writes, run } = setup({ persona: { configMapRef: { name: 'gone' } } });
    expect(await run()).toEqual({ requeueAfterMs: BLOCKED_RETRY_MS });
    expect(writes.filter((w) => w.startsWith('apply'))).toEqual([]);
    expect(writes).toContain('status');
  });

  it('writes the condition of a spec only its owner can fix, then ends in a TerminalError (no timed retry)', async () => {
    const { writes, run } = setup({ persona: { instructions: 'hi' }, egress: { allow: ['*.com'] } });
    const err = await run().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TerminalError);
    expect((err as TerminalError).reason).toBe('InvalidSpec');
    expect(writes.filter((w) => w.startsWith('apply'))).toEqual([]);
    expect(writes[0]).toBe('status');
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
    expect(writes).toEqual([]);
  });
});
