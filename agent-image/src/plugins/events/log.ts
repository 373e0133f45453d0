/**
 * The event log of one agent's supervisor (DESIGN.md flow 4): a NATS connection, the
 * JetStream stream (created when missing), the drain of the on-disk outbox (outbox.ts)
 * into the stream, queries (query.ts) and durable consumers (consume.ts).
 *
 * Publishing protocol (JetStream docs, "Message Deduplication" and "Publishing"): each
 * event is a JetStream publish on `<prefix>.<team>.<agent>.<type>` whose `Nats-Msg-Id`
 * header is the event's id; the stream drops a message whose id it has seen within its
 * `duplicate_window` and answers the PubAck with `duplicate: true`. The outbox marks an
 * event done only after its PubAck, so a crash between the two re-sends it and the stream
 * drops the copy: at-least-once publishing, exactly-once storage within the window.
 * Events are published one at a time, oldest first, so the stream holds them in the order
 * they were recorded.
 *
 * While NATS is unreachable the drain retries with capped exponential backoff (250 ms ..
 * 15 s, jittered) and never throws; the outage is logged once when it starts and once when
 * it ends. The NATS client itself reconnects forever (`maxReconnectAttempts: -1`).
 */
import { jetstream, jetstreamManager, JetStreamApiCodes, JetStreamApiError, type JetStreamClient, type JetStreamManager, RetentionPolicy, StorageType, DiscardPolicy } from '@nats-io/jetstream';
import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
import type { EventsConfig } from '../../contract/contract.ts';
import type { Logger } from '../../lib/log.ts';
import { nextBackoff, sleep } from '../../lib/backoff.ts';
import { consumeEvents, type ConsumeOptions, type Consumption, type EventHandler } from './consume.ts';
import type { EventMetrics } from './metrics.ts';
import type { EventOutbox } from '../../core/outbox.ts';
import { queryEvents, type EventQuery } from './query.ts';
import { publishAgentEvent } from './publish.ts';
import type { EventEnvelope } from '../../core/event-schema.ts';
import { eventSubject, natsServers, redactUrl, streamSubjects } from './subject.ts';

/** Time a JetStream request (publish, stream info) may take before it counts as failed (ms). */
const REQUEST_TIMEOUT_MS = 5000;
const BACKOFF_INITIAL_MS = 250;
const BACKOFF_MAX_MS = 15_000;
/** A publish the server refuses (an API error, not a connection problem) this many times is dropped, or one bad event would block the outbox forever. */
const MAX_REFUSALS = 10;

/**
 * The JetStream stream configuration of the log: limits retention, file storage, oldest
 * discarded first. JetStream refuses a duplicate window longer than max_age, so the
 * window is clamped to it.
 */
export function streamConfig(config: EventsConfig) {
  const dupSeconds = config.maxAgeSeconds > 0 ? Math.min(config.duplicateWindowSeconds, config.maxAgeSeconds) : config.duplicateWindowSeconds;
  return {
    name: config.stream,
    description: 'agent-smith event log: <prefix>.<team>.<agent>.<type>',
    subjects: streamSubjects(config.subjectPrefix),
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    max_age: nanos(config.maxAgeSeconds * 1000),
    max_msgs: config.maxMessages,
    max_bytes: config.maxBytes,
    duplicate_window: nanos(dupSeconds * 1000),
    num_replicas: 1,
  };
}

/**
 * Makes sure the stream exists: creates it with streamConfig() when missing. An existing
 * stream is left as it is (it is shared by every agent of the prefix, and an operator may
 * have tuned it).
 * @returns `created`, and `subjects`: the existing stream's subjects when they do not
 *   include `<prefix>.>` (publishes to it will then fail), else undefined
 * @throws the NATS error when JetStream cannot be reached or refuses
 */
export async function ensureStream(jsm: JetStreamManager, config: EventsConfig): Promise<{ created: boolean; subjects?: string[] | undefined }> {
  const want = streamConfig(config);
  try {
    const info = await jsm.streams.info(config.stream);
    const subjects = info.config.subjects ?? [];
    const binds = want.subjects.every((s) => subjects.includes(s) || subjects.includes('>'));
    return { created: false, subjects: binds ? undefined : subjects };
  } catch (err) {
    if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound)) throw err;
  }
  try {
    await jsm.streams.add(want);
    return { created: true };
  } catch (err) {
    // Another agent created it between our info and add (10058: stream name already in use).
    if (!(err instanceof JetStreamApiError && err.code === 10058)) throw err;
    return { created: false };
  }
}

/**
 * Connects to NATS for a short-lived client (the `events` command): no reconnect.
 * @throws the connection error (e.g. ECONNREFUSED) after `timeoutMs`
 */
export function connectOnce(natsUrl: string, name: string, timeoutMs = REQUEST_TIMEOUT_MS): Promise<NatsConnection> {
  return connect({ servers: natsServers(natsUrl), name, timeout: timeoutMs, reconnect: false });
}

export interface EventLogOptions {
  config: EventsConfig;
  outbox: EventOutbox;
  log: Logger;
  metrics?: EventMetrics | undefined;
}

export interface PublishResult {
  id: string;
  subject: string;
}

export class EventLog {
  readonly config: EventsConfig;
  readonly outbox: EventOutbox;
  private readonly log: Logger;
  private readonly metrics: EventMetrics | undefined;
  private readonly stopping = new AbortController();
  private nc: NatsConnection | undefined;
  private connecting: Promise<NatsConnection> | undefined;
  private streamReadyOn: NatsConnection | undefined;
  private js: { nc: NatsConnection; client: JetStreamClient } | undefined;
  private outageSince: number | undefined;
  private warnedSubjects = false;
  private drainDone: Promise<void> = Promise.resolve();
  private readonly consumers = new Set<Consumption>();

  constructor(opts: EventLogOptions) {
    this.config = opts.config;
    this.outbox = opts.outbox;
    this.log = opts.log.child({ component: 'events', nats: redactUrl(opts.config.natsUrl), stream: opts.config.stream });
    this.metrics = opts.metrics;
  }

  /** Starts draining the outbox (in the background; never rejects). */
  start(): void {
    this.drainDone = this.drain().catch((err: unknown) => this.log.error({ err }, 'event drain stopped unexpectedly'));
  }

  /**
   * Stops: gives the drain up to `flushMs` (ms, default 3000; none while NATS is
   * unreachable) to publish what is pending (e.g. `agent_stopped`), stops the consumers,
   * closes the connection. What is left stays in the outbox for the next start. Never rejects.
   */
  async stop(flushMs = 3000): Promise<void> {
    const deadline = Date.now() + flushMs;
    while (this.outbox.pending > 0 && this.outageSince === undefined && Date.now() < deadline) await sleep(50);
    this.stopping.abort();
    await Promise.all([...this.consumers].map((c) => c.stop()));
    await this.drainDone;
    const nc = this.nc;
    this.nc = undefined;
    if (nc && !nc.isClosed()) await nc.close().catch(() => undefined);
    this.metrics?.connected.set(0);
  }

  /** The subject an event of this agent is published on. */
  subject(event: Pick<EventEnvelope, 'team' | 'agent' | 'type'>): string {
    return eventSubject(this.config.subjectPrefix, event);
  }

  /**
   * Publishes an event of the agent (what the MCP tool `publish_event` does): validates
   * `type` and `data` (schema.ts), fills id, time, agent and team, and appends it to the
   * outbox, which the drain publishes as soon as NATS takes it.
   * @returns `{ok: true, id, subject}`, or `{ok: false, error}` naming the bad field
   */
  async publish(type: unknown, data: unknown): Promise<({ ok: true; event: EventEnvelope } & PublishResult) | { ok: false; error: string }> {
    const r = await publishAgentEvent(this.outbox, this.config, type, data);
    return r.ok ? { ok: true, id: r.id, subject: this.subject(r.event), event: r.event } : r;
  }

  /**
   * The events matching `q`, oldest first (see queryEvents).
   * @throws when NATS cannot be reached within the request timeout
   */
  async query(q: Omit<EventQuery, 'stream' | 'subjectPrefix'>): Promise<EventEnvelope[]> {
    const nc = await this.connection();
    return queryEvents(nc, { ...q, stream: this.config.stream, subjectPrefix: this.config.subjectPrefix });
  }

  /**
   * Runs `handler` for every event on a durable pull consumer of the stream (see
   * consumeEvents for the delivery guarantees). Reconnects and resumes on its own;
   * stopped by the returned handle or by stop().
   */
  consume(opts: ConsumeOptions, handler: EventHandler): Consumption {
    const c = consumeEvents(
      {
        stream: this.config.stream,
        subjectPrefix: this.config.subjectPrefix,
        log: this.log,
        connection: async () => {
          const nc = await this.connection();
          await this.ensureStreamOn(nc);
          return nc;
        },
        signal: this.stopping.signal,
      },
      opts,
      handler,
    );
    this.consumers.add(c);
    return {
      stop: async () => {
        this.consumers.delete(c);
        await c.stop();
      },
    };
  }

  /** The connection, made on first use; the client reconnects by itself afterwards. */
  private async connection(): Promise<NatsConnection> {
    if (this.stopping.signal.aborted) throw new Error('the event log is stopped');
    if (this.nc && !this.nc.isClosed()) return this.nc;
    this.connecting ??= (async () => {
      try {
        const nc = await connect({
          servers: natsServers(this.config.natsUrl),
          name: `agent-smith ${this.outbox.agent}`,
          timeout: REQUEST_TIMEOUT_MS,
          maxReconnectAttempts: -1,
          reconnectTimeWait: 1000,
          reconnectJitter: 500,
          pingInterval: 20_000,
        });
        this.nc = nc;
        this.metrics?.connected.set(1);
        this.recovered();
        this.watch(nc).catch((err: unknown) => this.log.warn({ err }, 'NATS status watch ended'));
        return nc;
      } finally {
        this.connecting = undefined;
      }
    })();
    return this.connecting;
  }

  private async watch(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') {
        this.metrics?.connected.set(0);
        this.outage('disconnected from NATS');
      } else if (s.type === 'reconnect') {
        this.metrics?.connected.set(1);
        // The server may have lost its store (no persistent volume): check the stream again.
        this.streamReadyOn = undefined;
        // With events pending, the outage ends when one is stored: a publish sent before the
        // reconnect may still time out, and that is the same outage, not a new one.
        if (this.outbox.pending === 0) this.recovered();
      }
    }
    if (this.nc === nc) this.metrics?.connected.set(0);
  }

  private async ensureStreamOn(nc: NatsConnection): Promise<JetStreamClient> {
    if (this.streamReadyOn !== nc) {
      const r = await ensureStream(await jetstreamManager(nc, { timeout: REQUEST_TIMEOUT_MS }), this.config);
      const c = this.config;
      if (r.created) this.log.info({ subjects: streamSubjects(c.subjectPrefix), maxAgeSeconds: c.maxAgeSeconds, maxMessages: c.maxMessages, maxBytes: c.maxBytes }, 'created the event stream');
      if (r.subjects && !this.warnedSubjects) this.log.warn({ subjects: r.subjects, want: streamSubjects(c.subjectPrefix) }, 'the event stream exists but does not bind this prefix; publishes will fail');
      this.warnedSubjects ||= r.subjects !== undefined;
      this.streamReadyOn = nc;
    }
    if (this.js?.nc !== nc) this.js = { nc, client: jetstream(nc, { timeout: REQUEST_TIMEOUT_MS }) };
    return this.js.client;
  }

  /** Logs the start of an outage once. */
  private outage(reason: string, err?: unknown): void {
    if (this.outageSince !== undefined || this.stopping.signal.aborted) return;
    this.outageSince = Date.now();
    this.log.warn({ reason, err: err instanceof Error ? err.message : err, pending: this.outbox.pending }, 'event log unreachable; events wait in the outbox');
  }

  /** Logs the end of an outage once. */
  private recovered(): void {
    if (this.outageSince === undefined) return;
    this.log.info({ outageMs: Date.now() - this.outageSince, pending: this.outbox.pending }, 'event log reachable again; publishing the outbox');
    this.outageSince = undefined;
  }

  private async drain(): Promise<void> {
    const signal = this.stopping.signal;
    await this.outbox.open();
    let backoff = BACKOFF_INITIAL_MS;
    let refusals = 0;
    while (!signal.aborted) {
      const event = this.outbox.peek();
      if (!event) {
        await this.outbox.waitForEvent(signal);
        continue;
      }
      try {
        const js = await this.ensureStreamOn(await this.connection());
        const ack = await js.publish(this.subject(event), JSON.stringify(event), { msgID: event.id, timeout: REQUEST_TIMEOUT_MS });
        await this.outbox.markDone(event.id);
        this.metrics?.published.inc({ type: event.type });
        if (ack.duplicate) this.metrics?.duplicates.inc();
        this.recovered();
        backoff = BACKOFF_INITIAL_MS;
        refusals = 0;
      } catch (err) {
        if (signal.aborted) break;
        this.metrics?.publishErrors.inc();
        // The stream may be gone (deleted, or a server without storage restarted).
        this.streamReadyOn = undefined;
        if (err instanceof JetStreamApiError && ++refusals >= MAX_REFUSALS) {
          this.log.error({ err: err.message, eventId: event.id, type: event.type }, 'the stream refuses this event; dropping it');
          this.metrics?.outboxDropped.inc();
          await this.outbox.markDone(event.id);
          refusals = 0;
          continue;
        }
        this.outage('publish failed', err);
        await sleep(backoff, signal);
        backoff = nextBackoff(backoff, BACKOFF_MAX_MS);
      }
    }
  }
}
