import { V1MicroTime } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { API_VERSION, KIND, type Agent } from '../api/agent.ts';
import { describeError } from '../runtime/errors.ts';
import { cutToBytes } from '../runtime/text.ts';
import type { Clients } from './clients.ts';

/** Name the operator reports as, in events.k8s.io/v1 `reportingController`. */
export const REPORTING_CONTROLLER = 'agentsmith.dev/operator';

export type EventType = 'Normal' | 'Warning';

/** One Event about an Agent, as events.k8s.io/v1 takes it. */
export interface AgentEvent {
  type: EventType;
  /** CamelCase reason, e.g. `Ready`. */
  reason: string;
  /** What the operator did, e.g. `Reconcile`. */
  action: string;
  /** Human-readable text, at most 1 kB (longer is cut). */
  note: string;
}

/** Unique-enough hex suffix for an Event name: the time in ns, with random low digits. */
function eventSuffix(now: Date): string {
  return (BigInt(now.getTime()) * 1_000_000n + BigInt(Math.floor(Math.random() * 1_000_000))).toString(16);
}


/**
 * Records a Kubernetes Event (events.k8s.io/v1) on an Agent, shown by
 * `kubectl describe agent`. Best effort: a failure is logged, never thrown, so an
 * event never fails a reconcile.
 */
export async function recordEvent(clients: Clients, log: Logger, agent: Agent, event: AgentEvent, now: Date = new Date()): Promise<void> {
  const { type, reason, action, note } = event;
  const namespace = agent.metadata.namespace ?? 'default';
  try {
    await clients.events.createNamespacedEvent({
      namespace,
      body: {
        // client-go's naming: <object>.<nanoseconds in hex> (a generateName ending in "."
        // is refused by the Event validation).
        metadata: { name: `${agent.metadata.name}.${eventSuffix(now)}`, namespace },
        // metav1.MicroTime wants six fractional digits; a plain Date would send three,
        // which the API server refuses.
        eventTime: new V1MicroTime(now.getTime()),
        type,
        reason,
        action,
        note: cutToBytes(note, 1024),
        reportingController: REPORTING_CONTROLLER,
        reportingInstance: process.env.POD_NAME ?? 'agent-smith-operator',
        regarding: { apiVersion: API_VERSION, kind: KIND, name: agent.metadata.name, namespace, uid: agent.metadata.uid },
      },
    });
  } catch (err) {
    log.warn({ err: describeError(err), reason }, 'could not record event');
  }
}
