/**
 * An operator at rest writes nothing: with Agents Ready and nothing changing, resyncs
 * reconcile every Agent again and send no create, update, patch or delete. Counted from
 * the operator's own API-request metric. (The suite's operator resyncs every 20 s, so the window holds two resyncs.)
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { stringify } from 'yaml';
import { kubeClients, kubectl, makeNamespace, waitFor, waitForNoTerminatingNamespace } from '../support/kube.ts';
import { operatorCounts } from '../support/metrics.ts';

const kubeconfig = inject('kubeconfig');
const base = inject('operatorHttp');
const N = 50;
const WINDOW_MS = 45_000;
let ns: { name: string; remove: () => Promise<void> };

beforeAll(async () => {
  ns = await makeNamespace(kubeClients(kubeconfig), 'steady');
});
afterAll(async () => ns?.remove());

describe('at rest', () => {
  it(`sends no write request while ${N} Ready Agents are resynced`, async () => {
    const manifests = Array.from({ length: N }, (_, i) =>
      stringify({
        apiVersion: 'agentsmith.dev/v1alpha1',
        kind: 'Agent',
        metadata: { name: `idle-${i}`, namespace: ns.name },
        spec: { team: 'idle', persona: { instructions: `You are idle-${i}.` }, egress: { allow: ['github.com'] } },
      }),
    ).join('---\n');
    expect((await kubectl(kubeconfig, ['apply', '-f', '-'], manifests)).code).toBe(0);
    await waitFor(
      `all ${N} Ready`,
      // One list, not `kubectl wait --all` (kubectl's client-side rate limit makes that slower than its own timeout at this count).
      async () => {
        const list = (await kubeClients(kubeconfig).custom.listNamespacedCustomObject({ group: 'agentsmith.dev', version: 'v1alpha1', namespace: ns.name, plural: 'agents' })) as {
          items: { status?: { conditions?: { type: string; status: string }[] } }[];
        };
        return list.items.filter((a) => a.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True')).length === N;
      },
      180_000,
      1000,
    );
    // Each pod template was written once: no reconcile replaced a CA or otherwise rolled a pod.
    const sts = await kubeClients(kubeconfig).apps.listNamespacedStatefulSet({ namespace: ns.name });
    expect(sts.items.map((s) => s.metadata?.generation).filter((g) => g !== 1)).toEqual([]);
    // Measure once the cluster is at rest.
    await waitForNoTerminatingNamespace(kubeClients(kubeconfig));
    // Let the last status writes and roster updates land.
    await new Promise((r) => setTimeout(r, 3_000));
    const before = await operatorCounts(`${base}/metrics`);
    await new Promise((r) => setTimeout(r, WINDOW_MS));
    const after = await operatorCounts(`${base}/metrics`);
    expect(after.reconciles - before.reconciles, 'resyncs happened in the window, so the check is not vacuous').toBeGreaterThanOrEqual(N);
    expect(after.writes - before.writes).toBe(0);
  }, 300_000);
});
