/**
 * Ready follows the pod, and a burst costs few requests (issue 18 items 4 and 5): a
 * burst of Agents of one team is created at once; for each, the time its pod is seen
 * Ready and the time the Agent is seen Ready are taken from two watches, and the
 * operator's own metrics count its reconciles and its write requests for the burst. The
 * operator is the suite's (test/support/global-setup.ts): a real kube-apiserver, kwok
 * nodes that make pods Ready.
 */
import { Watch, type KubernetesObject, type V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { stringify } from 'yaml';
import { kubeClients, kubectl, makeNamespace, waitFor, waitForNoTerminatingNamespace } from '../support/kube.ts';
import { operatorCounts } from '../support/metrics.ts';

const kubeconfig = inject('kubeconfig');
const base = inject('operatorHttp');
const N = 80;
let ns: { name: string; remove: () => Promise<void> };

const isReady = (conds: Array<{ type: string; status: string }> | undefined) => conds?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;

/** The p-th percentile (0..1) of `xs`, nearest rank. */
function percentile(xs: number[], p: number): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] ?? NaN;
}

beforeAll(async () => {
  ns = await makeNamespace(kubeClients(kubeconfig), 'latency');
});
afterAll(async () => ns?.remove());

describe(`a burst of ${N} Agents of one team`, () => {
  it('has each Agent Ready within about a second of its pod, with a few reconciles and writes per Agent', async () => {
    const { kc } = kubeClients(kubeconfig);
    const podReadyAt = new Map<string, number>();
    const agentReadyAt = new Map<string, number>();
    const watch = new Watch(kc);
    const watches = await Promise.all([
      watch.watch(`/api/v1/namespaces/${ns.name}/pods`, {}, (_type: string, pod: V1Pod) => {
        const agent = pod.metadata?.labels?.['app.kubernetes.io/instance'];
        if (agent && !podReadyAt.has(agent) && isReady(pod.status?.conditions)) podReadyAt.set(agent, Date.now());
      }, () => {}),
      watch.watch(`/apis/agentsmith.dev/v1alpha1/namespaces/${ns.name}/agents`, {}, (_type: string, a: KubernetesObject & { status?: { conditions?: Array<{ type: string; status: string }> } }) => {
        const name = a.metadata?.name ?? '';
        if (!agentReadyAt.has(name) && isReady(a.status?.conditions)) agentReadyAt.set(name, Date.now());
      }, () => {}),
    ]);
    try {
      // Counted from a cluster at rest: an earlier file's namespace still terminating would add its writes.
      await waitForNoTerminatingNamespace(kubeClients(kubeconfig));
      const before = await operatorCounts(`${base}/metrics`);
      const manifests = Array.from({ length: N }, (_, i) =>
        stringify({
          apiVersion: 'agentsmith.dev/v1alpha1',
          kind: 'Agent',
          metadata: { name: `burst-${i}`, namespace: ns.name },
          spec: { team: 'crowd', persona: { instructions: `You are burst-${i}.` }, egress: { allow: ['github.com'] } },
        }),
      ).join('---\n');
      expect((await kubectl(kubeconfig, ['apply', '-f', '-'], manifests)).code).toBe(0);
      await waitFor(`all ${N} Agents Ready`, () => agentReadyAt.size === N, 240_000, 500);
      // Let the roster and the last status writes land.
      await new Promise((r) => setTimeout(r, 3_000));

      const lags = [...agentReadyAt].map(([name, at]) => at - (podReadyAt.get(name) ?? NaN));
      expect(lags.filter((l) => Number.isNaN(l)), 'every Ready Agent has a Ready pod').toEqual([]);
      const median = percentile(lags, 0.5);
      const p90 = percentile(lags, 0.9);
      console.log(`Agent Ready after its pod: median ${median} ms, p90 ${p90} ms, max ${Math.max(...lags)} ms`);
      expect(median).toBeLessThan(1_000);
      expect(p90).toBeLessThan(2_000);

      // Per Agent: one full reconcile and a few status-only ones (the pod and StatefulSet
      // moving); no reconcile per teammate, none for our own status writes and applies.
      const after = await operatorCounts(`${base}/metrics`);
      const perAgentReconciles = (after.reconciles - before.reconciles) / N;
      // The floor is the 7 applies of an Agent's children (here 6: no RoleBinding, and the
      // roster is one per team); over it: the Agent's status writes (Pending, then Ready) and one Event.
      const perAgentWrites = (after.writes - before.writes) / N;
      const per = [...after.writesBy].map(([k, v]) => `${k}: ${((v - (before.writesBy.get(k) ?? 0)) / N).toFixed(2)}`).join(', ');
      console.log(`per Agent: ${perAgentReconciles.toFixed(2)} reconciles, ${perAgentWrites.toFixed(2)} write requests (${per})`);
      expect(perAgentReconciles).toBeLessThan(15);
      expect(perAgentWrites).toBeLessThan(11);
    } finally {
      for (const w of watches) w.abort();
    }
  }, 300_000);

});
