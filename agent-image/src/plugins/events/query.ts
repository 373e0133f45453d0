/**
 * Queries of the event log: by team, agent, type and start time, read with a JetStream
 * ordered consumer (ephemeral, no acks, in memory on the server, deleted afterwards; the
 * server also removes it after 5 minutes idle). The filter is a subject (subject.ts) and
 * the start time is the consumer's `deliver_policy: by_start_time` with `opt_start_time`
 * (JetStream docs, "Consumers": DeliverPolicy), so the server does the selection.
 */
import { DeliverPolicy, jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { EventEnvelope } from '../../core/event-schema.ts';
import { filterSubject } from './subject.ts';

/** Default and cap of `limit`. */
export const QUERY_DEFAULT_LIMIT = 100;
export const QUERY_MAX_LIMIT = 10_000;

export interface EventQuery {
  stream: string;
  subjectPrefix: string;
  team?: string | undefined;
  agent?: string | undefined;
  type?: string | undefined;
  /** Only events the stream stored at or after this time. */
  since?: Date | undefined;
  /** The newest `limit` matching events are returned (default 100, at most 10 000). */
  limit?: number | undefined;
}

/**
 * The events matching `q`, oldest first: the last `limit` of them when more match. A
 * message whose body is not an event envelope is skipped.
 * @throws when the stream does not exist (JetStreamApiError, stream not found) or NATS does not answer
 */
export async function queryEvents(nc: NatsConnection, q: EventQuery): Promise<EventEnvelope[]> {
  const limit = Math.min(Math.max(1, q.limit ?? QUERY_DEFAULT_LIMIT), QUERY_MAX_LIMIT);
  const js = jetstream(nc);
  const consumer = await js.consumers.get(q.stream, {
    filter_subjects: filterSubject(q.subjectPrefix, q),
    ...(q.since ? { opt_start_time: q.since.toISOString() } : { deliver_policy: DeliverPolicy.All }),
  });
  try {
    const out: EventEnvelope[] = [];
    let pending = (await consumer.info(true)).num_pending;
    while (pending > 0) {
      const batch = await consumer.fetch({ max_messages: Math.min(pending, 256), expires: 2000 });
      let got = 0;
      for await (const m of batch) {
        got++;
        pending = m.info.pending;
        const parsed = EventEnvelope.safeParse(safeJson(m.string()));
        if (parsed.success) {
          out.push(parsed.data);
          // Keep only the newest `limit` (trimmed in bulk: shifting per message is quadratic).
          if (out.length >= 2 * limit) out.splice(0, out.length - limit);
        }
      }
      if (got === 0) break;
    }
    return out.slice(-limit);
  } finally {
    await consumer.delete().catch(() => undefined);
  }
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}
