import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { podStatus, type ContainerSnapshot, type PodSnapshot } from './status.ts';

const now = new Date('2026-12-06T13:00:00Z');
const earlier = new Date('2026-12-06T12:00:00Z');
const pod: V1Pod = {
  spec: { containers: [] },
  status: {
    conditions: [
      { type: 'PodScheduled', status: 'True', lastTransitionTime: earlier },
      { type: 'Ready', status: 'False', lastTransitionTime: earlier },
    ],
  },
};

function snap(containers: Partial<ContainerSnapshot>[], over: Partial<PodSnapshot> = {}): PodSnapshot {
  return {
    sandboxReady: true,
    initialized: true,
    startTime: earlier,
    podIP: '127.0.0.1',
    containers: containers.map((c) => ({ name: 'c', image: 'i', role: 'main', state: {}, ready: false, started: false, restartCount: 0, ...c })),
    ...over,
  };
}

const cond = (s: ReturnType<typeof podStatus>, type: string) => s.conditions?.find((c) => c.type === type);

describe('podStatus', () => {
  it('is Pending with Initialized=False naming the init containers that have not completed', () => {
    const s = podStatus(pod, snap([{ name: 'setup', role: 'init', state: { running: { startedAt: now } } }, { name: 'proxy', role: 'sidecar', state: { running: {} } }, { name: 'agent', state: { waiting: { reason: 'PodInitializing' } } }], { initialized: false }), now);
    expect(s.phase).toBe('Pending');
    expect(cond(s, 'Initialized')).toMatchObject({ status: 'False', reason: 'ContainersNotInitialized', message: 'containers with incomplete status: [setup proxy]' });
    expect(s.initContainerStatuses?.map((c) => c.name)).toEqual(['setup', 'proxy']);
    expect(s.containerStatuses?.map((c) => c.name)).toEqual(['agent']);
  });

  it('is Ready only when main containers and sidecars are ready; keeps others\' conditions and unchanged transition times', () => {
    const notReady = podStatus(pod, snap([{ name: 'proxy', role: 'sidecar', ready: false, started: true, state: { running: {} } }, { name: 'agent', ready: true, started: true, state: { running: {} } }]), now);
    expect(notReady.phase).toBe('Running');
    expect(cond(notReady, 'Ready')).toMatchObject({ status: 'False', message: 'containers with unready status: [proxy]', lastTransitionTime: earlier });
    expect(cond(notReady, 'PodScheduled')).toMatchObject({ status: 'True' });
    const ready = podStatus(pod, snap([{ name: 'proxy', role: 'sidecar', ready: true, started: true, state: { running: {} } }, { name: 'agent', ready: true, started: true, state: { running: {} } }]), now);
    expect(cond(ready, 'Ready')).toMatchObject({ status: 'True', lastTransitionTime: now });
    expect(cond(ready, 'ContainersReady')?.status).toBe('True');
  });

  it('stays Running while a crashed container waits to restart, and reports finished pods', () => {
    const backoff = podStatus(pod, snap([{ state: { waiting: { reason: 'CrashLoopBackOff' } }, lastState: { terminated: { exitCode: 1, finishedAt: now } }, restartCount: 2 }]), now);
    expect(backoff.phase).toBe('Running');
    expect(backoff.containerStatuses?.[0]).toMatchObject({ restartCount: 2, lastState: { terminated: { exitCode: 1 } } });
    const done = podStatus(pod, snap([{ state: { terminated: { exitCode: 0, finishedAt: now } } }], { finished: 'Succeeded' }), now);
    expect(done.phase).toBe('Succeeded');
    expect(cond(done, 'Ready')).toMatchObject({ status: 'False', reason: 'PodCompleted' });
  });
});
