/**
 * Durable consumers of the event log, for components that act on events (e.g. the review
 * fan-out on `pr_opened`). A JetStream durable pull consumer keeps its position on the
 * server, so a consumer stopped (or a supervisor restarted) resumes after the last event
 * it acknowledged (JetStream docs, "Consumers": durable, AckPolicy explicit, AckWait,
 * MaxDeliver).
 *
 * One bad event never stops a consumer: an event that is not an envelope, is larger than
 * MAX_EVENT_BYTES, or that its handler refuses for its content (SkipEvent, or a ZodError
 * from a check of its data) is terminated at once; a handler that fails otherwise, or
 * runs past its time limit, gets the event again later, up to `maxDeliver` deliveries,
 * then the event is terminated. Each skip is logged once (one bounded line, no payload)
 * and counted in `agentsmith_events_consumer_skipped_total{consumer,reason}`.
 */
import { Counter, type Registry } from 'prom-client';
import { ZodError } from 'zod';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, JetStreamApiCodes, JetStreamApiError, type ConsumerMessages, type JsMsg } from '@nats-io/jetstream';
import { nanos, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '../../lib/log.ts';
import { nextBackoff, sleep } from '../../lib/backoff.ts';
import { EventEnvelope } from '../../core/event-schema.ts';
import { streamSubjects } from './subject.ts';

const DEFAULT_MAX_DELIVER = 10;
const DEFAULT_ACK_WAIT_MS = 60_000;
/** Largest event payload handled (bytes); a larger message is terminated unread. The supervisor's own events are a few hundred bytes. */
export const MAX_EVENT_BYTES = 256 * 1024;
/** Longest text of an error kept in a log line (characters). */
const MAX_ERROR_CHARS = 300;

/**
 * Thrown by a handler for an event it can never handle because of the event's own content
 * (a field it needs is missing or absurd): the event is terminated at once, logged once
 * and counted, instead of being redelivered `maxDeliver` times. A ZodError counts the same.
 */
export class SkipEvent extends Error {
  override name = 'SkipEvent';
}

/** Why a consumer skipped an event (metric label). */
export type SkipReason = 'malformed' | 'too_large' | 'rejected' | 'failed';

/** The consumers' Prometheus metrics, on the supervisor's registry (/metrics of the pod's `http` port). One per registry. */
export class ConsumerMetrics {
  readonly skipped: Counter<'consumer' | 'reason'>;
  readonly retries: Counter<'consumer'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.skipped = new Counter({
      name: 'agentsmith_events_consumer_skipped_total',
      help: 'events a durable consumer terminated without handling them, by consumer and reason (malformed: not an event envelope, too_large, rejected: the handler refused its content, failed: the handler failed on the last delivery)',
      labelNames: ['consumer', 'reason'] as const,
      registers,
    });
    this.retries = new Counter({
      name: 'agentsmith_events_consumer_retries_total',
      help: 'events a durable consumer asked to have redelivered after its handler failed or timed out, by consumer',
      labelNames: ['consumer'] as const,
      registers,
    });
  }
}

export interface ConsumeOptions {
  /**
   * Durable consumer name: the server keeps the position under it. One name per purpose
   * and agent (e.g. `review-fanout-infrabot`); two processes with the same name share the
   * work (each event goes to one of them). Letters, digits, `-` and `_`.
   */
  durable: string;
  /** Subject filter (subject.ts filterSubject, e.g. `agents.homelab.*.pr_opened`); default every subject of the prefix. */
  filterSubject?: string | undefined;
  /** Where a new durable starts: `new` (default: events published from now on) or `all` (the whole stream). Ignored when it exists. */
  deliver?: 'new' | 'all' | undefined;
  /** Time the server waits for the ack before it redelivers (ms, default 60 000): keep it above the handler's longest run. */
  ackWaitMs?: number | undefined;
  /** Deliveries of one event before the server gives up on it (default 10). */
  maxDeliver?: number | undefined;
  /** Longest one handler call may take before the event counts as failed (ms, default: half of ackWaitMs, so it fails before the server redelivers). */
  handlerTimeoutMs?: number | undefined;
  /** Where skips and retries are counted. */
  metrics?: ConsumerMetrics | undefined;
}

/** Where a delivered event came from: its subject, stream sequence and delivery count (1 = first). */
export interface DeliveryMeta {
  subject: string;
  seq: number;
  deliveryCount: number;
}

/**
 * Called once per delivered event. Resolve to acknowledge it; throw (reject) to have it
 * redelivered later (after 1 s, 2 s, 4 s ... up to 60 s), until its `maxDeliver`-th
 * delivery fails: that one is logged as an error and the event skipped. Throw SkipEvent
 * (or a ZodError) when the event's own content makes it unusable: it is skipped at once,
 * with no redelivery. A call longer than `handlerTimeoutMs` counts as a failure. Delivery is
 * at-least-once: an event can arrive again after an ack that was lost, so handlers must
 * be idempotent (the envelope's `id` is unique).
 */
export type EventHandler = (event: EventEnvelope, meta: DeliveryMeta) => Promise<void>;

export interface Consumption {
  /** Stops consuming; an event being handled is finished (and acked) first. */
  stop(): Promise<void>;
}

export interface ConsumeContext {
  stream: string;
  subjectPrefix: string;
  log: Logger;
  /** The connection, with the stream ensured; rejects while NATS is unreachable. */
  connection: () => Promise<NatsConnection>;
  /** Aborts every consumer (supervisor stopping). */
  signal?: AbortSignal | undefined;
}

/**
 * Creates the durable consumer when missing; when it exists with another filter, updates
 * the filter (the position is kept).
 */
async function ensureDurable(nc: NatsConnection, ctx: ConsumeContext, opts: ConsumeOptions): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const filter = opts.filterSubject ?? streamSubjects(ctx.subjectPrefix)[0]!;
  try {
    const info = await jsm.consumers.info(ctx.stream, opts.durable);
    if (info.config.filter_subject !== filter) await jsm.consumers.update(ctx.stream, opts.durable, { filter_subject: filter });
    return;
  } catch (err) {
    if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.ConsumerNotFound)) throw err;
  }
  await jsm.consumers.add(ctx.stream, {
    durable_name: opts.durable,
    filter_subject: filter,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: opts.deliver === 'all' ? DeliverPolicy.All : DeliverPolicy.New,
    ack_wait: nanos(opts.ackWaitMs ?? 60_000),
    max_deliver: opts.maxDeliver ?? DEFAULT_MAX_DELIVER,
  });
}

/**
 * Runs `handler` for each event of a durable pull consumer `opts.durable` on the stream,
 * one at a time in stream order, acknowledging each after the handler resolves and asking
 * for redelivery (nak with a growing delay) when it throws. A message that is not an event
 * envelope is terminated (never redelivered). Survives NATS outages: the consumer is
 * re-created and consumption resumes with backoff (1 s .. 30 s); it never throws.
 *
 * Example (the review fan-out):
 *   const c = eventLog.consume(
 *     { durable: `review-fanout-${agent}`, filterSubject: filterSubject(prefix, { team, type: 'pr_opened' }) },
 *     async (event) => { if (reviewersOf(event).includes(agent)) await inbox.put(...) },
 *   );
 *   ...
 *   await c.stop();
 */
export function consumeEvents(ctx: ConsumeContext, opts: ConsumeOptions, handler: EventHandler): Consumption {
  const stop = new AbortController();
  const signal = ctx.signal ? AbortSignal.any([stop.signal, ctx.signal]) : stop.signal;
  const log = ctx.log.child({ consumer: opts.durable });
  const maxDeliver = opts.maxDeliver ?? DEFAULT_MAX_DELIVER;
  const handlerTimeoutMs = opts.handlerTimeoutMs ?? (opts.ackWaitMs ?? DEFAULT_ACK_WAIT_MS) / 2;
  let messages: ConsumerMessages | undefined;
  signal.addEventListener('abort', () => void messages?.close(), { once: true });
  const skip = (m: JsMsg, reason: SkipReason, fields: Record<string, unknown>, msg: string) => {
    opts.metrics?.skipped.inc({ consumer: opts.durable, reason });
    (reason === 'failed' ? log.error.bind(log) : log.warn.bind(log))({ seq: m.seq, subject: m.subject.slice(0, 256), reason, ...fields }, msg);
    m.term(reason);
  };

  const handle = async (m: JsMsg) => {
    if (m.data.length > MAX_EVENT_BYTES) {
      skip(m, 'too_large', { bytes: m.data.length, maxBytes: MAX_EVENT_BYTES }, 'event larger than a consumer takes; skipped');
      return;
    }
    let event: EventEnvelope;
    try {
      event = EventEnvelope.parse(m.json());
    } catch (err) {
      skip(m, 'malformed', { err: errorText(err) }, 'not an event envelope; skipped');
      return;
    }
    const deliveryCount = m.info.deliveryCount;
    const ids = { eventId: event.id.slice(0, 128), type: event.type.slice(0, 64), deliveryCount };
    try {
      await withTimeout(handler(event, { subject: m.subject, seq: m.seq, deliveryCount }), handlerTimeoutMs);
    } catch (err) {
      if (err instanceof SkipEvent || err instanceof ZodError) {
        skip(m, 'rejected', { ...ids, err: errorText(err) }, 'the event handler refused the event for its content; skipped');
        return;
      }
      if (deliveryCount >= maxDeliver) {
        // The server would not deliver it again anyway (max_deliver): say so, once.
        skip(m, 'failed', { ...ids, err: errorText(err) }, 'event handler failed on the last delivery; the event is skipped');
        return;
      }
      const delay = Math.min(60_000, 1000 * 2 ** (deliveryCount - 1));
      opts.metrics?.retries.inc({ consumer: opts.durable });
      // Once per event at warn (its first failure); the further redeliveries at debug.
      (deliveryCount === 1 ? log.warn.bind(log) : log.debug.bind(log))(
        { ...ids, delayMs: delay, maxDeliver, err: errorText(err) },
        'event handler failed; redelivery later',
      );
      m.nak(delay);
      return;
    }
    // Double ack: the server confirms it, so an event is acknowledged before the next one
    // is handled. A lost confirmation means the event may come again (at-least-once).
    await m.ackAck().catch((err: unknown) => log.warn({ eventId: event.id, err: (err as Error).message }, 'ack not confirmed; the event may be redelivered'));
  };

  const run = async () => {
    let backoff = 1000;
    let failing = false;
    let started = false;
    while (!signal.aborted) {
      try {
        const nc = await ctx.connection();
        await ensureDurable(nc, ctx, opts);
        const consumer = await jetstream(nc).consumers.get(ctx.stream, opts.durable);
        // One event at a time: the ack wait of a prefetched event runs while the one before it
        // is handled, so a slow handler would have the events behind it redelivered (their
        // delivery counts spent) without ever being handled. Event volume here is small.
        messages = await consumer.consume({ max_messages: 1 });
        if (signal.aborted) await messages.close();
        if (failing) log.info('event consumer running again');
        else if (!started) log.info({ filterSubject: opts.filterSubject }, 'event consumer started');
        started = true;
        failing = false;
        backoff = 1000;
        for await (const m of messages) await handle(m);
        // The iterator ended without a stop (connection closed, consumer deleted): start over.
        await sleep(backoff, signal);
      } catch (err) {
        if (signal.aborted) break;
        if (!failing) log.warn({ err: err instanceof Error ? err.message : err }, 'event consumer cannot run; retrying');
        failing = true;
        await sleep(backoff, signal);
        backoff = nextBackoff(backoff, 30_000);
      }
    }
  };
  const done = run();
  return {
    stop: async () => {
      stop.abort();
      await done;
    },
  };
}

/** An error as one bounded line (a zod error lists every issue; a payload never goes in). */
function errorText(err: unknown): string {
  const text = err instanceof ZodError ? err.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ') : err instanceof Error ? err.message : String(err);
  return text.replace(/\s+/g, ' ').slice(0, MAX_ERROR_CHARS);
}

/** `p`, or a rejection after `ms`: a handler that hangs must not hold the consumer (the next events wait behind it). */
function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the handler did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
