import type { V1ContainerStatus, V1Pod, V1StatefulSet } from '@kubernetes/client-node';
import type { Agent } from '../api/agent.ts';
import type { AgentStatus, Phase } from '../api/status.ts';
import { ConditionType, Reason } from '../api/constants.ts';
import { childNames } from '../render/meta.ts';
import { AGENT_CONTAINER } from '../../../agent-image/src/contract/pod.ts';
import { setConditions, type ConditionInput } from './conditions.ts';

/** What an Agent's status is computed from: its StatefulSet and pod, and what the plan and its apply found (report.ts). */
export interface StatusInputs {
  statefulSet?: V1StatefulSet;
  pod?: V1Pod;
  /** Set when the spec or its references cannot be turned into children (until the spec or a reference changes). */
  blocked?: { reason: string; message: string };
  /** Conditions of the reference checks gathered first (PersonaResolved, CredentialsResolved). */
  checks?: ConditionInput[];
  /** Set when spec.storage asks for volume claims the existing StatefulSet cannot take. */
  storageDrift?: string;
}

function podReady(pod: V1Pod): boolean {
  return pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

/** What is wrong with a container, in one line: waiting (but for PodInitializing) or exited non-zero; undefined when neither. */
function containerProblem(s: V1ContainerStatus): string | undefined {
  const w = s.state?.waiting;
  if (w?.reason && w.reason !== 'PodInitializing') return `container ${s.name} is waiting: ${w.reason}${w.message ? `: ${w.message}` : ''}`;
  const t = s.state?.terminated;
  if (t && t.exitCode !== 0) return `container ${s.name} exited with code ${t.exitCode}${t.reason ? ` (${t.reason})` : ''}`;
  return undefined;
}

/** Why a pod is not ready, in one line, from its conditions and container states. */
function podNotReadyMessage(pod: V1Pod): string {
  const statuses = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])];
  for (const s of statuses) {
    const problem = containerProblem(s);
    if (problem) return problem;
  }
  const scheduled = pod.status?.conditions?.find((c) => c.type === 'PodScheduled');
  if (scheduled?.status === 'False') return `pod is not scheduled: ${scheduled.message ?? scheduled.reason ?? 'unknown'}`;
  return `pod ${pod.metadata?.name} is ${pod.status?.phase ?? 'Pending'} and not ready`;
}

/**
 * How a container last ended, e.g. `exit code 137 (Error) at 2026-01-01T00:00:00Z`: its
 * current state when that is terminated (about to be restarted), else its lastState.
 */
function lastExit(s: V1ContainerStatus): string | undefined {
  const t = s.state?.terminated ?? s.lastState?.terminated;
  if (!t) return undefined;
  const at = t.finishedAt ? ` at ${new Date(t.finishedAt).toISOString().replace(/\.\d{3}Z$/, 'Z')}` : '';
  return `exit code ${t.exitCode}${t.reason ? ` (${t.reason})` : ''}${at}`;
}

/** The message of a container in CrashLoopBackOff: its name, restarts and last exit; undefined when none is. */
function crashLooping(pod: V1Pod): string | undefined {
  for (const s of [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])]) {
    if (s.state?.waiting?.reason !== 'CrashLoopBackOff') continue;
    const exit = lastExit(s);
    return `container ${s.name} of pod ${pod.metadata?.name} is in CrashLoopBackOff: ${s.restartCount} restart(s)${exit ? `, last ${exit}` : ''}`;
  }
  return undefined;
}

/**
 * The Warning event a user sees in `kubectl describe agent` when the agent container's
 * restart count grew since the last status (`before`, `status.restarts`), e.g. `container
 * agent of pod devbot-0 restarted: 2 restart(s), last exit code 137 (Error) at ...`.
 * Undefined when it did not grow (a new pod starts again from 0). Pure.
 */
export function restartNote(before: number | undefined, pod: V1Pod | undefined): string | undefined {
  const agent = pod?.status?.containerStatuses?.find((c) => c.name === AGENT_CONTAINER);
  if (!agent || agent.restartCount <= (before ?? 0)) return undefined;
  const exit = lastExit(agent);
  return `container ${AGENT_CONTAINER} of pod ${pod?.metadata?.name} restarted: ${agent.restartCount} restart(s)${exit ? `, last ${exit}` : ''}`;
}

/** Ready and the phase it implies, from the pod (and whether a container crash-loops). */
function readiness(pod: V1Pod | undefined, podName: string, looping: boolean): { ready: ConditionInput; phase: Phase } {
  const type = ConditionType.Ready;
  if (!pod) return { ready: { type, status: 'False', reason: Reason.PodMissing, message: `waiting for pod ${podName}` }, phase: 'Pending' };
  if (podReady(pod)) return { ready: { type, status: 'True', reason: Reason.PodReady, message: `pod ${podName} is ready` }, phase: looping ? 'Degraded' : 'Ready' };
  const pending = (pod.status?.phase ?? 'Pending') === 'Pending';
  return {
    ready: { type, status: 'False', reason: pending ? Reason.PodPending : Reason.PodNotReady, message: podNotReadyMessage(pod) },
    phase: looping ? 'Degraded' : pending ? 'Pending' : 'Progressing',
  };
}

/**
 * What the rollout still waits for; undefined when it is done. The pod's own Ready (of the
 * StatefulSet's update revision) completes it as the StatefulSet's readyReplicas would a
 * moment later, so an Agent turning Ready costs one status write, not two.
 */
function rolloutMessage(agent: Agent, sts: V1StatefulSet | undefined, pod: V1Pod | undefined): string | undefined {
  if (!sts) return 'creating the StatefulSet';
  const st = sts.status;
  if ((st?.observedGeneration ?? 0) < (sts.metadata?.generation ?? 0)) return 'the StatefulSet controller has not observed the latest spec';
  if (agent.spec.suspend) return (st?.replicas ?? 0) > 0 ? 'scaling down to zero' : undefined;
  if (st?.updateRevision && st.currentRevision !== st.updateRevision) return `rolling out revision ${st.updateRevision}`;
  const podCurrent = pod !== undefined && podReady(pod) && pod.metadata?.labels?.['controller-revision-hash'] === st?.updateRevision;
  if ((st?.readyReplicas ?? 0) < 1 && !podCurrent) return 'waiting for the pod to become ready';
  return undefined;
}

/** Ready, Progressing and Degraded, and the phase they give. */
interface Health {
  conds: ConditionInput[];
  phase: Phase;
}

/** Health of a blocked Agent: Failed, or Degraded while a pod already runs (it keeps its last good spec). */
function blockedHealth(agent: Agent, blocked: NonNullable<StatusInputs['blocked']>, pod: V1Pod | undefined, podName: string): Health {
  const { reason, message } = blocked;
  if (pod && !agent.spec.suspend) {
    // A pod already runs: nothing was applied, so it keeps its last good spec and config
    // (as a Deployment whose new revision cannot roll out stays Available). Ready still
    // tells whether it serves; Degraded says what is blocked.
    const kept = `${message}; pod ${podName} is left running with its current spec until this is fixed`;
    return {
      conds: [
        { type: ConditionType.Progressing, status: 'False', reason, message: kept },
        { type: ConditionType.Degraded, status: 'True', reason, message: kept },
        readiness(pod, podName, false).ready,
      ],
      phase: 'Degraded',
    };
  }
  return {
    conds: [
      { type: ConditionType.Ready, status: 'False', reason, message },
      { type: ConditionType.Progressing, status: 'False', reason, message },
      { type: ConditionType.Degraded, status: 'True', reason, message },
    ],
    phase: 'Failed',
  };
}

/** Health of an Agent whose children were applied: from the rollout, crash loops and the pod. */
function appliedHealth(agent: Agent, sts: V1StatefulSet | undefined, pod: V1Pod | undefined, podName: string): Health {
  const rollout = rolloutMessage(agent, sts, pod);
  const conds: ConditionInput[] = [
    rollout
      ? { type: ConditionType.Progressing, status: 'True', reason: Reason.RolloutInProgress, message: rollout }
      : agent.spec.suspend
        ? { type: ConditionType.Progressing, status: 'False', reason: Reason.ScaledDown, message: 'scaled to zero; volumes kept' }
        : { type: ConditionType.Progressing, status: 'False', reason: Reason.RolloutComplete, message: 'the pod runs the latest spec' },
  ];
  const looping = pod ? crashLooping(pod) : undefined;
  conds.push(
    looping
      ? { type: ConditionType.Degraded, status: 'True', reason: Reason.ContainerRestarting, message: looping }
      : { type: ConditionType.Degraded, status: 'False', reason: Reason.AsExpected, message: 'no container is crash-looping' },
  );
  if (agent.spec.suspend) {
    conds.push({ type: ConditionType.Ready, status: 'False', reason: Reason.Suspended, message: 'spec.suspend is true' });
    return { conds, phase: 'Suspended' };
  }
  const r = readiness(pod, podName, !!looping);
  conds.push(r.ready);
  return { conds, phase: r.phase };
}

/** StorageInSync: whether spec.storage matches the StatefulSet's (immutable) volume claim templates. */
function storageCondition(drift: string | undefined): ConditionInput {
  if (!drift) return { type: ConditionType.StorageInSync, status: 'True', reason: Reason.AsExpected, message: 'volumes match spec.storage' };
  return {
    type: ConditionType.StorageInSync,
    status: 'False',
    reason: Reason.VolumeClaimTemplatesImmutable,
    message: `spec.storage changed (${drift}) but a StatefulSet's volume claim templates cannot change; the pod keeps its volumes. Resize the PVCs directly (if the StorageClass allows expansion) or recreate the Agent with storage.retainOnDelete=false`,
  };
}

/**
 * Computes an Agent's status from what was observed. Pure: `now` (RFC 3339) is passed in.
 *
 * Conditions: `Ready` (the agent's pod is running and ready), `Progressing` (a rollout or
 * scale is under way), `Degraded` (a container is crash-looping, or the spec is blocked).
 * `phase` summarises them: Failed (blocked) > Suspended > Degraded > Ready > Progressing > Pending.
 */
export function computeStatus(agent: Agent, observed: StatusInputs, now: string): AgentStatus {
  const generation = agent.metadata.generation ?? 0;
  const names = childNames(agent.metadata.name);
  const { statefulSet: sts, pod } = observed;
  const { conds, phase } = observed.blocked ? blockedHealth(agent, observed.blocked, pod, names.pod) : appliedHealth(agent, sts, pod, names.pod);
  conds.push(...(observed.checks ?? []), storageCondition(observed.storageDrift));

  const agentStatus = pod?.status?.containerStatuses?.find((c) => c.name === AGENT_CONTAINER);
  return {
    observedGeneration: generation,
    phase,
    conditions: setConditions(agent.status?.conditions, conds, generation, now),
    statefulSetName: names.statefulSet,
    ...(pod && !agent.spec.suspend ? { podName: names.pod } : {}),
    restarts: agentStatus?.restartCount ?? 0,
  };
}

/**
 * Whether a condition's message only tells routine progress of a pod being created (a
 * rollout under way, the pod not there yet, pending while its containers are created):
 * its successive wordings are not worth a status write of their own. A message that
 * names a problem (unschedulable, an image pull failing, a container exiting) is not.
 */
function routineProgress(c: { type: string; reason: string; message: string }): boolean {
  if (c.type === ConditionType.Progressing) return c.reason === Reason.RolloutInProgress;
  if (c.type !== ConditionType.Ready) return false;
  if (c.reason === Reason.PodMissing) return true;
  // Waiting for its claims to be bound is how every new pod with volume claims starts.
  return c.reason === Reason.PodPending && /is waiting: (ContainerCreating|PodInitializing)$| is Pending and not ready$|^pod is not scheduled: .*unbound immediate PersistentVolumeClaims/.test(c.message);
}

/**
 * True when two statuses are the same (so no write is needed). `forHumans`: also when
 * they differ only in the wording of routine progress (routineProgress), so a pod being
 * created costs a status write per phase, reason or Ready change, not per message.
 */
export function sameStatus(a: AgentStatus | undefined, b: AgentStatus, forHumans = false): boolean {
  return JSON.stringify(normalise(a, forHumans)) === JSON.stringify(normalise(b, forHumans));
}

function normalise(s: AgentStatus | undefined, forHumans: boolean): unknown {
  if (!s) return undefined;
  return {
    conditions: [...(s.conditions ?? [])].sort((x, y) => x.type.localeCompare(y.type)).map((c) => ({
      type: c.type,
      status: c.status,
      reason: c.reason,
      message: forHumans && routineProgress(c) ? 'routine progress' : c.message,
      observedGeneration: c.observedGeneration,
      lastTransitionTime: c.lastTransitionTime,
    })),
    podName: s.podName,
    statefulSetName: s.statefulSetName,
    restarts: s.restarts,
    phase: s.phase,
    observedGeneration: s.observedGeneration,
  };
}
