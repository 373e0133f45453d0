import type { V1Pod, V1StatefulSet } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { Agent } from '../api/agent.ts';
import type { AgentStatus } from '../api/status.ts';
import { findCondition } from './conditions.ts';
import type { Observed } from './observed.ts';
import { plan, type PlanSettings } from './plan.ts';
import { BLOCKED_RETRY_MS, planReport, transitionEvents } from './report.ts';

const now = new Date('2026-06-01T00:00:00Z');
const RESYNC = 300_000;
const settings: PlanSettings = { image: 'example.org/agent:1', shared: { claudeMd: '# Shared\n', settingsJson: '{}' } };
const ca = { action: 'keep', certPem: 'CERT', keyPem: 'KEY' } as const;

function agent(spec: Record<string, unknown>, status?: AgentStatus): Agent {
  return Agent.parse({ apiVersion: 'agentsmith.dev/v1alpha1', kind: 'Agent', metadata: { name: 'devbot', namespace: 'ns', uid: 'u', generation: 2 }, spec, ...(status ? { status } : {}) });
}
const observe = (a: Agent, over: Partial<Observed> = {}): Observed => ({ agent: a, configMaps: new Map(), secrets: new Map(), services: [], children: {}, teammates: [], ...over });

const pod = (restarts: number): V1Pod => ({
  metadata: { name: 'devbot-0' },
  status: {
    phase: 'Running',
    conditions: [{ type: 'Ready', status: 'True' }],
    containerStatuses: [{ name: 'agent', ready: true, restartCount: restarts, image: 'i', imageID: '', lastState: { terminated: { exitCode: 137, reason: 'Error' } } }],
  },
});
const spec = { persona: { instructions: 'hi' }, egress: { allow: ['github.com'] } };
/** The StatefulSet as rendered for `spec`, rolled out and ready (as the API server would hold it). */
const readySts: V1StatefulSet = {
  ...plan(observe(agent(spec)), settings, ca).statefulSet,
  status: { observedGeneration: 0, replicas: 1, readyReplicas: 1, currentRevision: 'r', updateRevision: 'r' },
};

describe('planReport', () => {
  it('becomes Ready with a Normal event on the transition, then writes and says nothing while nothing changes', () => {
    const o = observe(agent(spec), { pod: pod(0) });
    const first = planReport(o, plan(o, settings, ca), { statefulSet: readySts }, now, RESYNC);
    expect(first).toMatchObject({ write: true, requeueAfterMs: RESYNC });
    expect(first.status.phase).toBe('Ready');
    expect(first.events).toEqual([{ type: 'Normal', reason: 'PodReady', note: 'pod devbot-0 is ready' }]);
    const o2 = observe(agent(spec, first.status), { pod: pod(0), children: { statefulSet: readySts } });
    const again = planReport(o2, plan(o2, settings, ca), {}, new Date('2026-06-01T00:05:00Z'), RESYNC);
    expect(again).toMatchObject({ write: false, events: [] });
  });

  it('warns when the agent container restarted since the last status', () => {
    const o = observe(agent(spec), { pod: pod(0) });
    const before = planReport(o, plan(o, settings, ca), { statefulSet: readySts }, now, RESYNC).status;
    const o2 = observe(agent(spec, before), { pod: pod(2), children: { statefulSet: readySts } });
    const r = planReport(o2, plan(o2, settings, ca), {}, now, RESYNC);
    expect(r.events.map((e) => [e.type, e.reason])).toEqual([['Warning', 'ContainerRestarted']]);
    expect(r.events[0]?.note).toMatch(/^container agent of pod devbot-0 restarted: 2 restart\(s\), last exit code 137 \(Error\)/);
  });

  it('shows a StatefulSet the API server refused as ApplyFailed, to be fixed in the spec (no timed retry)', () => {
    const o = observe(agent(spec));
    const r = planReport(o, plan(o, settings, ca), { rejected: 'HTTP 422: spec.template: Invalid value' }, now, RESYNC);
    expect(r.blocked).toEqual({ reason: 'ApplyFailed', message: 'StatefulSet devbot rejected: HTTP 422: spec.template: Invalid value', retry: 'on-change' });
    expect(r.status.phase).toBe('Failed');
    expect(findCondition(r.status.conditions, 'Ready')).toMatchObject({ status: 'False', reason: 'ApplyFailed' });
    expect(r.events).toContainEqual({ type: 'Warning', reason: 'ApplyFailed', note: 'StatefulSet devbot rejected: HTTP 422: spec.template: Invalid value' });
  });

  it('looks at an Agent blocked on a missing reference again within BLOCKED_RETRY_MS', () => {
    const a = agent({ persona: { configMapRef: { name: 'p' } } });
    const o = observe(a, { configMaps: new Map([['p', undefined]]) });
    const r = planReport(o, plan(o, settings), {}, now, RESYNC);
    expect(r.requeueAfterMs).toBe(BLOCKED_RETRY_MS);
    expect(findCondition(r.status.conditions, 'PersonaResolved')).toMatchObject({ status: 'False', reason: 'PersonaNotFound' });
    expect(r.events.map((e) => [e.type, e.reason])).toEqual([
      ['Normal', 'PersonaNotFound'],
      ['Warning', 'PersonaNotFound'],
      ['Warning', 'PersonaNotFound'],
    ]);
  });
});

describe('transitionEvents', () => {
  const ready = (status: string, reason: string): AgentStatus => ({ phase: 'Pending', conditions: [{ type: 'Ready', status, reason, message: reason, lastTransitionTime: '2026-01-01T00:00:00Z' }] }) as AgentStatus;
  const reasons = (before: AgentStatus | undefined, after: AgentStatus) => transitionEvents(before, after).events.map((e) => e.reason);

  it('records one Event for a new Agent, when it turns Ready, not for each step of its pod coming up', () => {
    expect(reasons(undefined, ready('False', 'PodMissing'))).toEqual([]);
    expect(reasons(ready('False', 'PodMissing'), ready('False', 'PodPending'))).toEqual([]);
    expect(reasons(ready('False', 'PodPending'), ready('True', 'PodReady'))).toEqual(['PodReady']);
  });

  it('records a Ready pod going unready, and a not-ready reason that is not a pod on its way up', () => {
    expect(reasons(ready('True', 'PodReady'), ready('False', 'PodPending'))).toEqual(['PodPending']);
    expect(reasons(ready('False', 'PodPending'), ready('False', 'PodNotReady'))).toEqual(['PodNotReady']);
    expect(reasons(undefined, ready('True', 'PodReady'))).toEqual(['PodReady']);
  });
});
