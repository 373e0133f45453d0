/**
 * Report: the Agent's status and the Events that tell of it, decided from the snapshot,
 * the plan and what applying it found. Pure (the time is passed in); act.ts writes them.
 */
import type { V1StatefulSet } from '@kubernetes/client-node';
import type { AgentStatus } from '../api/status.ts';
import { ConditionType, Reason } from '../api/constants.ts';
import { childNames } from '../render/meta.ts';
import { findCondition } from './conditions.ts';
import type { Observed } from './observed.ts';
import type { Blocked, LogNote, Plan, PlannedEvent } from './plan.ts';
import { computeStatus, restartNote, sameStatus } from './status.ts';

/**
 * How soon an Agent blocked on a missing reference is looked at again, in ms. A missing
 * Secret or ConfigMap is noticed sooner (its creation is watched); this covers the
 * cluster-scoped references (ClusterRole, StorageClass), which are not.
 */
export const BLOCKED_RETRY_MS = 10_000;

/** What applying the plan found (act.ts applyPlan). */
export interface ActOutcome {
  /** The StatefulSet as applied, or as cached when it needed no write. */
  statefulSet?: V1StatefulSet;
  /** `HTTP 422: ...` when the API server refused the StatefulSet. */
  rejected?: string;
  /** The new egress CA could not be created: one exists that the cache has not seen yet (nothing was applied). */
  caExists?: boolean;
}

/** The status to write and what to say about it. */
export interface Report {
  status: AgentStatus;
  /** False when the stored status is already this one (no write, no Event). */
  write: boolean;
  /** Events to record once the status is written: condition transitions, a restart. */
  events: PlannedEvent[];
  /** Log lines to write once the status is written. */
  notes: LogNote[];
  /** What blocks the Agent, if anything (the plan's, or a refused StatefulSet). */
  blocked?: Blocked;
  /** When to reconcile again, in ms: the resync, or BLOCKED_RETRY_MS for a `poll` block (an `on-change` block ends in a TerminalError instead). */
  requeueAfterMs: number;
}

/** Ready reasons of a pod on its way up: not worth an Event while Ready was never True or stays False. */
const ON_THE_WAY: ReadonlySet<string> = new Set([Reason.PodMissing, Reason.PodPending]);

/**
 * An Event for each condition whose status or reason changed (transitions only). Ready:
 * when it turns True or False, or stays False for a reason that is not a pod on its way
 * up (PodMissing, PodPending); so creating an Agent records one Event, when it is Ready.
 */
export function transitionEvents(before: AgentStatus | undefined, after: AgentStatus): { events: PlannedEvent[]; notes: LogNote[] } {
  const events: PlannedEvent[] = [];
  const notes: LogNote[] = [];
  for (const cond of after.conditions ?? []) {
    const prev = findCondition(before?.conditions, cond.type);
    if (prev && prev.status === cond.status && prev.reason === cond.reason) continue;
    // Ready and the reference checks are worth an event; the rest follow from them.
    const healthy = cond.status === (cond.type === 'Degraded' ? 'False' : 'True');
    if (cond.type === ConditionType.Ready) {
      notes.push({ level: 'info', fields: { ready: cond.status, reason: cond.reason }, msg: cond.message });
      const turned = prev ? prev.status !== cond.status : cond.status === 'True';
      if (turned || (cond.status === 'False' && !ON_THE_WAY.has(cond.reason))) events.push({ type: 'Normal', reason: cond.reason, note: cond.message });
    } else if (!healthy && cond.type !== ConditionType.Progressing) {
      events.push({ type: 'Warning', reason: cond.reason, note: cond.message });
    }
  }
  return { events, notes };
}

/** The plan's block, or the StatefulSet's refusal (422: the rendered object is invalid, so only a spec change helps). */
function blockOf(o: Observed, plan: Plan, outcome: ActOutcome): Blocked | undefined {
  if (plan.blocked) return plan.blocked;
  if (outcome.rejected === undefined) return undefined;
  const name = childNames(o.agent.metadata.name).statefulSet;
  return { reason: Reason.ApplyFailed, message: `StatefulSet ${name} rejected: ${outcome.rejected}`, retry: 'on-change' };
}

/**
 * The Agent's status from the snapshot, the plan and the apply's outcome, and the Events
 * of its changes.
 * @param now the time of this reconcile
 * @param resyncMs the operator's resync period (the requeue of an Agent at rest), in ms
 */
export function planReport(o: Observed, plan: Plan, outcome: ActOutcome, now: Date, resyncMs: number): Report {
  const blocked = blockOf(o, plan, outcome);
  const pod = o.pod;
  const status = computeStatus(
    o.agent,
    {
      ...(outcome.statefulSet ?? o.children.statefulSet ? { statefulSet: outcome.statefulSet ?? o.children.statefulSet } : {}),
      ...(pod ? { pod } : {}),
      checks: plan.checks,
      ...(blocked ? { blocked: { reason: blocked.reason, message: blocked.message } } : {}),
      ...(plan.storageDrift ? { storageDrift: plan.storageDrift } : {}),
    },
    now.toISOString(),
  );
  const write = !sameStatus(o.agent.status, status, true);
  const { events, notes } = write ? transitionEvents(o.agent.status, status) : { events: [], notes: [] };
  const restarted = write ? restartNote(o.agent.status?.restarts, pod) : undefined;
  if (restarted) {
    notes.push({ level: 'info', fields: { restarts: status.restarts }, msg: restarted });
    events.push({ type: 'Warning', reason: Reason.ContainerRestarted, note: restarted });
  }
  const requeueAfterMs = blocked?.retry === 'poll' ? Math.min(resyncMs, BLOCKED_RETRY_MS) : resyncMs;
  return { status, write, events, notes, ...(blocked ? { blocked } : {}), requeueAfterMs };
}
