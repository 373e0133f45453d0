import type { V1Pod, V1StatefulSet } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { Agent } from '../api/agent.ts';
import { findCondition } from './conditions.ts';
import { computeStatus, restartNote, sameStatus } from './status.ts';

function agent(spec: Record<string, unknown> = {}, generation = 3): Agent {
  return Agent.parse({ apiVersion: 'agentsmith.dev/v1alpha1', kind: 'Agent', metadata: { name: 'devbot', namespace: 'ns', uid: 'u', generation }, spec });
}

const sts = (ready: number, extra: Partial<NonNullable<V1StatefulSet['status']>> = {}): V1StatefulSet => ({
  metadata: { name: 'devbot', generation: 2 },
  status: { observedGeneration: 2, replicas: 1, readyReplicas: ready, currentRevision: 'r1', updateRevision: 'r1', ...extra },
});

const pod = (ready: boolean, phase = 'Running', waiting?: string): V1Pod => ({
  metadata: { name: 'devbot-0' },
  status: {
    phase,
    conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }],
    containerStatuses: [{ name: 'agent', ready, restartCount: 2, image: 'i', imageID: '', ...(waiting ? { state: { waiting: { reason: waiting } } } : {}) }],
  },
});

const T0 = '2026-01-01T00:00:00.000Z';
const T1 = '2026-01-01T00:05:00.000Z';

describe('computeStatus', () => {
  it('is Pending with PodMissing until the pod exists', () => {
    const s = computeStatus(agent(), { statefulSet: sts(0) }, T0);
    expect(s.phase).toBe('Pending');
    expect(findCondition(s.conditions, 'Ready')).toMatchObject({ status: 'False', reason: 'PodMissing', observedGeneration: 3 });
    expect(findCondition(s.conditions, 'Progressing')).toMatchObject({ status: 'True' });
  });

  it('completes the rollout when the pod of the update revision is Ready, before the StatefulSet counts it (one status write, not two)', () => {
    const current = { ...pod(true), metadata: { name: 'devbot-0', labels: { 'controller-revision-hash': 'r1' } } };
    expect(findCondition(computeStatus(agent(), { statefulSet: sts(0), pod: current }, T0).conditions, 'Progressing')).toMatchObject({ status: 'False', reason: 'RolloutComplete' });
    const old = { ...pod(true), metadata: { name: 'devbot-0', labels: { 'controller-revision-hash': 'r0' } } };
    expect(findCondition(computeStatus(agent(), { statefulSet: sts(0), pod: old }, T0).conditions, 'Progressing')).toMatchObject({ status: 'True', reason: 'RolloutInProgress' });
  });

  it('sees no change worth a write in the wording of a pod being created, but does in a problem', () => {
    const before = computeStatus(agent(), { statefulSet: sts(0), pod: pod(false, 'Pending') }, T0);
    const creating = computeStatus(agent(), { statefulSet: sts(0), pod: pod(false, 'Pending', 'ContainerCreating') }, T0);
    const pulling = computeStatus(agent(), { statefulSet: sts(0), pod: pod(false, 'Pending', 'ImagePullBackOff') }, T0);
    expect(sameStatus(before, creating)).toBe(false);
    expect(sameStatus(before, creating, true)).toBe(true);
    expect(sameStatus(before, pulling, true)).toBe(false);
  });

  it('is Ready when the pod is ready and the rollout is complete, with restarts counted', () => {
    const s = computeStatus(agent(), { statefulSet: sts(1), pod: pod(true) }, T0);
    expect(s).toMatchObject({ phase: 'Ready', observedGeneration: 3, podName: 'devbot-0', restarts: 2 });
    expect(findCondition(s.conditions, 'Ready')).toMatchObject({ status: 'True', reason: 'PodReady' });
    expect(findCondition(s.conditions, 'Progressing')).toMatchObject({ status: 'False', reason: 'RolloutComplete' });
  });

  it('reports a crash loop as Degraded', () => {
    const s = computeStatus(agent(), { statefulSet: sts(0), pod: pod(false, 'Running', 'CrashLoopBackOff') }, T0);
    expect(s.phase).toBe('Degraded');
    expect(findCondition(s.conditions, 'Degraded')).toMatchObject({ status: 'True', reason: 'ContainerRestarting' });
    expect(findCondition(s.conditions, 'Ready')?.message).toContain('CrashLoopBackOff');
  });

  it('says which container crash-loops, how often it restarted and how it last ended', () => {
    const p = pod(false, 'Running', 'CrashLoopBackOff');
    const agentStatus = p.status?.containerStatuses?.[0];
    if (agentStatus) agentStatus.lastState = { terminated: { exitCode: 137, reason: 'Error', finishedAt: new Date(T0) } };
    const s = computeStatus(agent(), { statefulSet: sts(0), pod: p }, T0);
    expect(findCondition(s.conditions, 'Degraded')?.message).toBe('container agent of pod devbot-0 is in CrashLoopBackOff: 2 restart(s), last exit code 137 (Error) at 2026-01-01T00:00:00Z');
  });

  it('notes a grown restart count of the agent container, and nothing otherwise', () => {
    const p = pod(true);
    const agentStatus = p.status?.containerStatuses?.[0];
    if (agentStatus) agentStatus.lastState = { terminated: { exitCode: 137, reason: 'Error' } };
    expect(restartNote(1, p)).toBe('container agent of pod devbot-0 restarted: 2 restart(s), last exit code 137 (Error)');
    expect(restartNote(undefined, p)).toContain('2 restart(s)');
    expect(restartNote(2, p)).toBeUndefined();
    // Between the exit and the next start the exit is still the current state.
    if (agentStatus) agentStatus.state = { terminated: { exitCode: 143, reason: 'Error' } };
    expect(restartNote(1, p)).toBe('container agent of pod devbot-0 restarted: 2 restart(s), last exit code 143 (Error)');
    expect(restartNote(5, p)).toBeUndefined();
    expect(restartNote(0, undefined)).toBeUndefined();
  });

  it('leaves a running pod\'s readiness alone when the spec is blocked, and says so as Degraded', () => {
    const blocked = { reason: 'PersonaInvalid', message: 'ConfigMap ns/x key "settings.json" is not valid JSON' };
    const s = computeStatus(agent(), { statefulSet: sts(1), pod: pod(true), blocked }, T0);
    expect(s.phase).toBe('Degraded');
    expect(findCondition(s.conditions, 'Ready')).toMatchObject({ status: 'True', reason: 'PodReady' });
    expect(findCondition(s.conditions, 'Degraded')).toMatchObject({ status: 'True', reason: 'PersonaInvalid' });
    expect(findCondition(s.conditions, 'Degraded')?.message).toBe('ConfigMap ns/x key "settings.json" is not valid JSON; pod devbot-0 is left running with its current spec until this is fixed');
    expect(findCondition(s.conditions, 'Progressing')).toMatchObject({ status: 'False', reason: 'PersonaInvalid' });
    expect(s.restarts).toBe(2);
  });

  it('is Suspended when spec.suspend is set', () => {
    const s = computeStatus(agent({ suspend: true }), { statefulSet: sts(0, { replicas: 0 }) }, T0);
    expect(s.phase).toBe('Suspended');
    expect(findCondition(s.conditions, 'Ready')).toMatchObject({ status: 'False', reason: 'Suspended' });
    expect(s.podName).toBeUndefined();
  });

  it('is Failed with the reason when the spec is blocked', () => {
    const s = computeStatus(agent(), { blocked: { reason: 'PersonaNotFound', message: 'ConfigMap ns/x not found' } }, T0);
    expect(s.phase).toBe('Failed');
    expect(findCondition(s.conditions, 'Ready')).toMatchObject({ status: 'False', reason: 'PersonaNotFound', message: 'ConfigMap ns/x not found' });
  });

  it('keeps lastTransitionTime while a status holds, and moves it when it changes', () => {
    const first = computeStatus(agent(), { statefulSet: sts(1), pod: pod(true) }, T0);
    const again = computeStatus({ ...agent(), status: first }, { statefulSet: sts(1), pod: pod(true) }, T1);
    expect(findCondition(again.conditions, 'Ready')?.lastTransitionTime).toBe(T0);
    expect(sameStatus(first, again)).toBe(true);
    const down = computeStatus({ ...agent(), status: first }, { statefulSet: sts(0), pod: pod(false) }, T1);
    expect(findCondition(down.conditions, 'Ready')?.lastTransitionTime).toBe(T1);
    expect(sameStatus(first, down)).toBe(false);
  });

  it('says when storage cannot follow the spec, without touching readiness', () => {
    const s = computeStatus(agent(), { statefulSet: sts(1), pod: pod(true), storageDrift: 'home=5Gi -> home=10Gi' }, T0);
    expect(s.phase).toBe('Ready');
    expect(findCondition(s.conditions, 'StorageInSync')).toMatchObject({ status: 'False', reason: 'VolumeClaimTemplatesImmutable' });
    expect(findCondition(s.conditions, 'StorageInSync')?.message).toContain('home=5Gi -> home=10Gi');
  });

  it('shows a rollout in progress while revisions differ', () => {
    const s = computeStatus(agent(), { statefulSet: sts(1, { updateRevision: 'r2' }), pod: pod(true) }, T0);
    expect(findCondition(s.conditions, 'Progressing')).toMatchObject({ status: 'True', reason: 'RolloutInProgress', message: 'rolling out revision r2' });
  });
});
