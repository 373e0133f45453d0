/**
 * Durable consumers of the event log, for components that act on events (e.g. the review
 * fan-out on `pr_opened`). A JetStream durable pull consumer keeps its position on the
 * server, so a consumer stopped (or a supervisor restarted) resumes after the last event
 * it acknowledged (JetStream docs, "Consumers": durable, AckPolicy explicit, AckWait,
 * MaxDeliver).
 */
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, JetStreamApiCodes, JetStreamApiError, type ConsumerMessages, type JsMsg } from '@nats-io/jetstream';
import { nanos, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '../log.ts';
import { nextBackoff, sleep } from './backoff.ts';
import { EventEnvelope } from './schema.ts';
import { streamSubjects } from './subject.ts';

const DEFAULT_MAX_DELIVER = 10;

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
 * delivery fails: that one is logged as an error and the event skipped. Delivery is
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
  let messages: ConsumerMessages | undefined;
  signal.addEventListener('abort', () => void messages?.close(), { once: true });

  const handle = async (m: JsMsg) => {
    let event: EventEnvelope;
    try {
      event = EventEnvelope.parse(m.json());
    } catch (err) {
      log.warn({ seq: m.seq, subject: m.subject, err: (err as Error).message }, 'not an event envelope; terminating it');
      m.term('not an agent-smith event envelope');
      return;
    }
    const deliveryCount = m.info.deliveryCount;
    try {
      await handler(event, { subject: m.subject, seq: m.seq, deliveryCount });
    } catch (err) {
      if (deliveryCount >= maxDeliver) {
        // The server would not deliver it again anyway (max_deliver): say so, once.
        log.error({ eventId: event.id, type: event.type, deliveryCount, err: err instanceof Error ? err.message : err }, 'event handler failed on the last delivery; the event is skipped');
        m.term('the handler failed on the last delivery');
        return;
      }
      const delay = Math.min(60_000, 1000 * 2 ** (deliveryCount - 1));
      log.warn({ eventId: event.id, type: event.type, deliveryCount, delayMs: delay, err: err instanceof Error ? err.message : err }, 'event handler failed; redelivery later');
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
        messages = await consumer.consume({ max_messages: 16 });
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
