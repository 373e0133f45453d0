/**
 * Act: carries out a plan (plan.ts) and writes its report (report.ts), only through
 * kube/. Failures are thrown as kube/errors.ts types them (TemporaryError, RetryAfter);
 * a StatefulSet the API server refuses (422) is an outcome, shown in a condition.
 */
import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Agent } from '../api/agent.ts';
import { applyObject, createObject, deleteRoleBinding } from '../kube/apply.ts';
import type { Clients } from '../kube/clients.ts';
import { recordEvent } from '../kube/events.ts';
import { applyAgentStatus } from '../kube/status.ts';
import { TemporaryError } from '../runtime/errors.ts';
import type { LogNote, Plan, PlannedEvent } from './plan.ts';
import type { ActOutcome, Report } from './report.ts';

/** Writes the plan's log lines. */
function writeNotes(log: Logger, notes: readonly LogNote[]): void {
  for (const n of notes) log[n.level](n.fields, n.msg);
}

/** Records `events` on the Agent, in order (best effort: kube/events.ts never throws). */
async function recordEvents(clients: Clients, log: Logger, agent: Agent, events: readonly PlannedEvent[]): Promise<void> {
  for (const e of events) await recordEvent(clients, log, agent, { type: e.type, reason: e.reason, action: 'Reconcile', note: e.note });
}

/**
 * Applies the plan: the new egress CA Secret first (created when the cache held none,
 * applied over a replaced one), then the children that changed (the StatefulSet last,
 * after the others, which are applied concurrently: none refers to another's content),
 * and deletes a leftover RoleBinding.
 * `onApplied` is told each object as stored (to tell the watch's echo of our own write).
 * @returns the StatefulSet as applied (or cached), or why the API server refused it, or
 *   `caExists` when the CA could not be created because one exists that the cache has
 *   not seen yet (nothing else was applied: plan again with it)
 * @throws TemporaryError when another object is refused (422: a rendering bug, retried
 *   with backoff), and what kube/ throws for any other failure
 */
export async function applyPlan(clients: Clients, log: Logger, agent: Agent, plan: Plan, onApplied?: (obj: KubernetesObject) => void): Promise<ActOutcome> {
  // List and SSA responses may lack kind; the caller keys by it.
  const applied = (kind: string | undefined, obj: KubernetesObject) => onApplied?.({ ...obj, kind: obj.kind ?? kind ?? '' });
  writeNotes(log, plan.notes);
  if (plan.egressCa) {
    const { secret, why, notAfter, replaces } = plan.egressCa;
    const done = replaces ? await applyObject(clients, secret) : await createObject(clients, secret);
    if ('exists' in done) return { caExists: true };
    if ('rejected' in done) throw new TemporaryError(`Secret ${secret.metadata?.name} rejected: ${done.rejected}`);
    applied('Secret', 'created' in done ? done.created : done.applied);
    log.info({ secret: secret.metadata?.name, why, notAfter: notAfter.toISOString() }, 'generated the egress CA');
  }
  await recordEvents(clients, log, agent, plan.events);
  const outcome: ActOutcome = {};
  const others = plan.apply.filter((obj) => obj !== plan.statefulSet);
  await Promise.all(
    others.map(async (obj) => {
      const done = await applyObject(clients, obj);
      if ('rejected' in done) throw new TemporaryError(`${obj.kind} ${obj.metadata?.name} rejected: ${done.rejected}`);
      applied(obj.kind, done.applied);
    }),
  );
  if (plan.statefulSet && plan.apply.includes(plan.statefulSet)) {
    const done = await applyObject(clients, plan.statefulSet);
    if ('applied' in done) {
      outcome.statefulSet = done.applied;
      applied('StatefulSet', done.applied);
    } else outcome.rejected = done.rejected;
  }
  if (plan.deleteRoleBinding) await deleteRoleBinding(clients, agent.metadata.namespace ?? 'default', plan.deleteRoleBinding);
  return outcome;
}

/**
 * Writes the report: the status when it changed, then its log lines and Events.
 * @returns false when the Agent is gone (deleted since it was read): nothing more to do
 */
export async function writeReport(clients: Clients, log: Logger, agent: Agent, report: Report): Promise<boolean> {
  if (!report.write) return true;
  const written = await applyAgentStatus(clients, agent.metadata.namespace ?? 'default', agent.metadata.name, report.status);
  if (!written) return false;
  writeNotes(log, report.notes);
  await recordEvents(clients, log, agent, report.events);
  return true;
}
