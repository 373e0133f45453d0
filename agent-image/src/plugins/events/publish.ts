/**
 * Publishing an event of the agent into the outbox (the MCP tool `publish_event`,
 * EventLog.publish). Free of the NATS client, so a supervisor without `spec.events` does
 * not load it.
 */
import type { EventsConfig } from '../../contract/contract.ts';
import type { EventOutbox } from '../../core/outbox.ts';
import { validateAgentEvent, type EventEnvelope } from '../../core/event-schema.ts';
import { eventSubject } from './subject.ts';

/**
 * Validates and records an event of the agent (the MCP tool `publish_event`). With no
 * event log configured (`config` undefined) the event is only recorded in the outbox.
 * @returns the id, the envelope and, when configured, the subject; or the validation error naming the field
 */
export async function publishAgentEvent(
  outbox: EventOutbox,
  config: Pick<EventsConfig, 'subjectPrefix'> | undefined,
  type: unknown,
  data: unknown,
): Promise<{ ok: true; id: string; subject?: string; event: EventEnvelope } | { ok: false; error: string }> {
  const v = validateAgentEvent(type, data);
  if (!v.ok) return v;
  const event = outbox.envelope(v.event.type, v.event.data);
  await outbox.append(event);
  return { ok: true, id: event.id, event, ...(config ? { subject: eventSubject(config.subjectPrefix, event) } : {}) };
}
