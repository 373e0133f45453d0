/**
 * Two operator replicas with --leader-elect: exactly one leads (holds the Lease and
 * reconciles); when it is killed the other takes over once the lease expires, and when
 * it stops gracefully it hands the lease over at once.
 */
import { CoordinationV1Api } from '@kubernetes/client-node';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { kubeClients, waitFor } from '../support/kube.ts';
import { startOperator, TEST_SHARD_LABEL, type OperatorProcess } from '../support/operator.ts';

const kubeconfig = inject('kubeconfig');
const leaseName = `leader-test-${Math.random().toString(36).slice(2, 8)}`;
const coordination = kubeClients(kubeconfig).kc.makeApiClient(CoordinationV1Api);

interface Replica extends OperatorProcess {
  /** The identity it logs when it starts waiting for the lease. */
  identity: () => string | undefined;
}

function startReplica(): Replica {
  // These replicas reconcile only test-shard Agents of a shard no test creates, so they
  // never act beside the suite's operator; the election is seen in the Lease and logs.
  const op = startOperator(kubeconfig, ['--leader-elect', '--leader-election-namespace', 'default', '--leader-election-id', leaseName, '--agent-selector', `${TEST_SHARD_LABEL}=${leaseName}`]);
  return { ...op, identity: () => /"identity":"([^"]+)"/.exec(op.log())?.[1] };
}

const holder = async () => (await coordination.readNamespacedLease({ name: leaseName, namespace: 'default' })).spec?.holderIdentity;
const replicas: Replica[] = [];
afterAll(async () => {
  for (const r of replicas) r.proc.kill('SIGKILL');
  await Promise.all(replicas.map((r) => r.exited));
  await coordination.deleteNamespacedLease({ name: leaseName, namespace: 'default' }).catch(() => undefined);
});

describe('leader election', () => {
  it('lets exactly one of two replicas lead, and fails over when the leader is killed', async () => {
    replicas.push(startReplica(), startReplica());
    const [a, b] = replicas as [Replica, Replica];
    await waitFor('both replicas to know their identity', async () => a.identity() && b.identity(), 30_000);
    const first = await waitFor('a leader', async () => holder(), 30_000);
    expect([a.identity(), b.identity()]).toContain(first);
    const leader = first === a.identity() ? a : b;
    const standby = leader === a ? b : a;
    await waitFor('the leader to start its workers', async () => leader.log().includes('operator ready (leader)'), 30_000);
    // The standby keeps waiting while the leader renews.
    await new Promise((r) => setTimeout(r, 5_000));
    expect(standby.log()).not.toContain('became leader');
    expect(await holder()).toBe(leader.identity());

    const killedAt = Date.now();
    leader.proc.kill('SIGKILL');
    await waitFor('the standby to take over', async () => (await holder()) === standby.identity() && standby.log().includes('operator ready (leader)'), 40_000, 500);
    const failoverMs = Date.now() - killedAt;
    expect(failoverMs).toBeLessThan(25_000); // lease 15 s + retry 2 s, with slack for a loaded machine
  }, 120_000);

  it('hands the lease over at once on a graceful stop', async () => {
    const current = replicas.find((r) => r.proc.exitCode === null && r.proc.signalCode === null)!;
    const next = startReplica();
    replicas.push(next);
    await waitFor('the new replica to wait for the lease', async () => next.log().includes('waiting to become leader'), 30_000);
    const stoppedAt = Date.now();
    current.proc.kill('SIGTERM');
    await current.exited;
    expect(current.log()).toContain('released the leader lease');
    await waitFor('the new replica to lead', async () => (await holder()) === next.identity(), 15_000, 250);
    expect(Date.now() - stoppedAt).toBeLessThan(10_000);
  }, 60_000);
});
