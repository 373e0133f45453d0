/**
 * Two operators with disjoint --agent-selectors on the shard label, each with its own
 * Lease, split the Agents of a namespace: every Agent is reconciled (by its shard alone),
 * each operator caches only its own shard's children, and each holds its own Lease.
 */
import { CoordinationV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { stringify } from 'yaml';
import { LABEL_SHARD } from '../../operator/src/api/constants.ts';
import { kubeClients, kubectl, makeNamespace, waitFor, type KubeClients } from '../support/kube.ts';
import { scrape, sumCounter } from '../support/metrics.ts';
import { startOperator, TEST_SHARD_LABEL, type OperatorProcess } from '../support/operator.ts';

const kubeconfig = inject('kubeconfig');
const PER_SHARD = 6;
let c: KubeClients;
let ns: { name: string; remove: () => Promise<void> };
const operators: OperatorProcess[] = [];
const shards = ['a', 'b'] as const;

beforeAll(async () => {
  c = kubeClients(kubeconfig);
  ns = await makeNamespace(c, 'shards');
});
afterAll(async () => {
  for (const o of operators) o.proc.kill('SIGKILL');
  await Promise.all(operators.map((o) => o.exited));
  const coordination = c.kc.makeApiClient(CoordinationV1Api);
  for (const s of shards) await coordination.deleteNamespacedLease({ name: `${ns.name}-${s}`, namespace: 'default' }).catch(() => undefined);
  await ns?.remove();
});

/** The operator's metrics text, at the port it logged when it started. */
async function metricsOf(op: OperatorProcess): Promise<string> {
  const port = await waitFor('the metrics port in the log', async () => /"metrics":(\d+)/.exec(op.log())?.[1], 30_000);
  return scrape(`http://127.0.0.1:${port}/metrics`);
}

describe('sharding', () => {
  it('splits Agents between two operators by agentsmith.dev/shard, each with its own Lease and only its own children cached', async () => {
    // The shard values are unique to this namespace, so the suite's other operators never match them.
    const value = (s: string) => `${ns.name}-${s}`;
    for (const s of shards) operators.push(startOperator(kubeconfig, ['--agent-selector', `${LABEL_SHARD}=${value(s)}`, '--leader-elect', '--leader-election-namespace', 'default', '--leader-election-id', `${ns.name}-${s}`]));
    const manifests = shards.flatMap((s) =>
      Array.from({ length: PER_SHARD }, (_, i) =>
        stringify({
          apiVersion: 'agentsmith.dev/v1alpha1',
          kind: 'Agent',
          // TEST_SHARD_LABEL keeps the suite's own operator away; one team per shard.
          metadata: { name: `${s}${i}`, namespace: ns.name, labels: { [TEST_SHARD_LABEL]: ns.name, [LABEL_SHARD]: value(s) } },
          spec: { team: `team-${s}`, persona: { instructions: `You are ${s}${i}.` }, egress: { allow: ['github.com'] } },
        }),
      ),
    ).join('---\n');
    expect((await kubectl(kubeconfig, ['apply', '-f', '-'], manifests)).code).toBe(0);

    await waitFor('every Agent reconciled (a StatefulSet each)', async () => (await c.apps.listNamespacedStatefulSet({ namespace: ns.name })).items.length === 2 * PER_SHARD, 120_000, 500);
    const sets = (await c.apps.listNamespacedStatefulSet({ namespace: ns.name })).items;
    for (const set of sets) expect(set.metadata?.labels?.[LABEL_SHARD], set.metadata?.name).toBe(value(set.metadata!.name![0]!));
    const rosters = (await c.core.listNamespacedConfigMap({ namespace: ns.name, labelSelector: 'app.kubernetes.io/component=team-roster' })).items;
    expect(rosters.map((r) => [r.metadata?.name, r.metadata?.labels?.[LABEL_SHARD]]).sort()).toEqual(shards.map((s) => [`team-team-${s}-roster`, value(s)]));

    const coordination = c.kc.makeApiClient(CoordinationV1Api);
    for (const [k, s] of shards.entries()) {
      const op = operators[k]!;
      const identity = await waitFor(`shard ${s} to lead`, async () => (op.log().includes('operator ready (leader)') ? /"identity":"([^"]+)"/.exec(op.log())?.[1] : undefined), 30_000);
      expect((await coordination.readNamespacedLease({ name: `${ns.name}-${s}`, namespace: 'default' })).spec?.holderIdentity).toBe(identity);
      // Its phase gauge counts its own Agents only, and its StatefulSet cache its own children only.
      const metrics = await waitFor(`shard ${s} to count its ${PER_SHARD} Agents`, async () => {
        const text = await metricsOf(op);
        const counted = sumCounter(text, 'agentsmith_agents');
        return counted === PER_SHARD ? text : undefined;
      }, 60_000, 500);
      expect(sumCounter(metrics, 'agentsmith_informer_objects', (l) => l.informer === 'statefulsets')).toBe(PER_SHARD);
    }
  }, 180_000);
});
