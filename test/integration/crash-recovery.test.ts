/**
 * The operator SIGKILLed while 100 Agents are being created: a fresh process converges
 * every Agent to Ready, with exactly one of each child and no orphan.
 */
import type { KubernetesObject } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { stringify } from 'yaml';
import { kubeClients, kubectl, makeNamespace, waitFor, type KubeClients } from '../support/kube.ts';
import { startOperator, TEST_SHARD_LABEL, type OperatorProcess } from '../support/operator.ts';

const kubeconfig = inject('kubeconfig');
const N = 100;
let c: KubeClients;
let ns: { name: string; remove: () => Promise<void> };
const operators: OperatorProcess[] = [];

interface AgentList {
  items: Array<KubernetesObject & { status?: { conditions?: { type: string; status: string }[] } }>;
}

beforeAll(async () => {
  c = kubeClients(kubeconfig);
  ns = await makeNamespace(c, 'crash');
});
afterAll(async () => {
  for (const o of operators) o.proc.kill('SIGKILL');
  await Promise.all(operators.map((o) => o.exited));
  await ns?.remove();
});

describe('an operator killed mid-flight', () => {
  it(`converges ${N} Agents after a restart, without duplicate or orphaned children`, async () => {
    const shard = `${TEST_SHARD_LABEL}=${ns.name}`;
    const args = ['--agent-selector', shard, '--workers', '4'];
    const first = startOperator(kubeconfig, args);
    operators.push(first);
    const manifests = Array.from({ length: N }, (_, i) =>
      stringify({
        apiVersion: 'agentsmith.dev/v1alpha1',
        kind: 'Agent',
        metadata: { name: `a${i}`, namespace: ns.name, labels: { [TEST_SHARD_LABEL]: ns.name } },
        spec: { team: i % 2 ? 'odd' : 'even', persona: { instructions: `You are a${i}.` }, egress: { allow: ['github.com'] } },
      }),
    ).join('---\n');
    expect((await kubectl(kubeconfig, ['apply', '-f', '-'], manifests)).code).toBe(0);

    // Kill it once it is part-way through.
    await waitFor('some StatefulSets', async () => (await c.apps.listNamespacedStatefulSet({ namespace: ns.name })).items.length >= 10, 120_000, 100);
    first.proc.kill('SIGKILL');
    await first.exited;
    const partial = (await c.apps.listNamespacedStatefulSet({ namespace: ns.name })).items.length;
    expect(partial).toBeLessThan(N);

    operators.push(startOperator(kubeconfig, args));
    const ready = async () => {
      const list = (await c.custom.listNamespacedCustomObject({ group: 'agentsmith.dev', version: 'v1alpha1', namespace: ns.name, plural: 'agents' })) as AgentList;
      return list.items.filter((a) => a.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True')).length;
    };
    await waitFor(`all ${N} Agents Ready`, async () => (await ready()) === N, 240_000, 1000);

    const selector = 'app.kubernetes.io/managed-by=agent-smith';
    const [sts, cms, svcs, sas, secrets, nps] = await Promise.all([
      c.apps.listNamespacedStatefulSet({ namespace: ns.name }),
      c.core.listNamespacedConfigMap({ namespace: ns.name, labelSelector: selector }),
      c.core.listNamespacedService({ namespace: ns.name }),
      c.core.listNamespacedServiceAccount({ namespace: ns.name, labelSelector: selector }),
      c.core.listNamespacedSecret({ namespace: ns.name, labelSelector: selector }),
      c.networking.listNamespacedNetworkPolicy({ namespace: ns.name }),
    ]);
    expect(sts.items).toHaveLength(N);
    expect(svcs.items).toHaveLength(N);
    expect(sas.items).toHaveLength(N);
    expect(secrets.items).toHaveLength(N); // one egress CA each
    expect(nps.items).toHaveLength(N);
    expect(cms.items).toHaveLength(N + 2); // one config each, and the two team rosters
    const agentNames = new Set(Array.from({ length: N }, (_, i) => `a${i}`));
    for (const child of [...sts.items, ...svcs.items, ...sas.items, ...secrets.items, ...nps.items]) {
      expect(agentNames.has(child.metadata?.ownerReferences?.[0]?.name ?? '')).toBe(true);
    }
    const roster = cms.items.find((cm) => cm.metadata?.name === 'team-odd-roster');
    expect(roster?.metadata?.ownerReferences).toHaveLength(N / 2);
  }, 420_000);
});
