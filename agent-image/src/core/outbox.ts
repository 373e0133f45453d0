/**
 * The on-disk outbox of the event log (DESIGN.md flow 4): every event the supervisor
 * records or the agent publishes is appended here first, on the home volume, and the
 * event log's drain (log.ts EventLog) publishes it to JetStream in order. It holds events
 * while NATS is away and across a supervisor restart.
 *
 * Files, under `<stateDir>/events/`:
 * - `outbox.jsonl`: one event envelope (schema.ts) per line, oldest first, append-only
 *   between compactions.
 * - `outbox.done`: the id of the last event of the file that is done (stored by the
 *   stream, or dropped). Everything up to and including it is done; an id not in the file
 *   (after a compaction or truncation) means nothing in the file is done. So no order of
 *   crashes between the two files loses an event: the worst case re-sends some, which the
 *   stream drops by their Nats-Msg-Id (log.ts).
 *
 * Bounded: beyond `maxEvents` pending events the oldest are dropped (one warning per
 * overflow, a counter per event), so a long NATS outage cannot fill the home volume.
 * Not fsync'ed per event: a process crash loses nothing, a node crash may lose the last
 * events written (an fsync per event would cost more than these events are worth).
 *
 * One writer: the supervisor process. Operations are serialised in one promise chain.
 */
import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readFile, appendFile, truncate } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../lib/files.ts';
import type { Logger } from '../lib/log.ts';
import { EventEnvelope } from './event-schema.ts';

/** Default bound of the outbox (events); the contract's `events.outboxMaxEvents` overrides it. */
export const OUTBOX_MAX_EVENTS = 10_000;
/** Rewrite the file once this many lines at its head are done (and they outnumber the pending ones). */
const COMPACT_AFTER_LINES = 1000;

/** The outbox's two gauges (plugins/events/metrics.ts EventMetrics provides them). */
export interface OutboxMetrics {
  /** Events on disk not yet stored by the stream. */
  outboxPending: { set(value: number): void };
  /** Oldest events dropped unpublished because the outbox was full. */
  outboxDropped: { inc(value?: number): void };
}

export interface OutboxOptions {
  /** agent-smith's state folder on the home volume (Layout.stateDir). */
  stateDir: string;
  agent: string;
  team?: string | undefined;
  log: Logger;
  /** Most pending events kept; the oldest beyond it are dropped. Default OUTBOX_MAX_EVENTS. */
  maxEvents?: number | undefined;
  metrics?: OutboxMetrics | undefined;
}

/** A line of the outbox written before events had ids (`{type, time, agent, data}`): a stable id from its text, so a re-send is still a duplicate. */
function legacyId(line: string): string {
  const h = createHash('sha256').update(line).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

export class EventOutbox {
  /** `<stateDir>/events/outbox.jsonl` */
  readonly file: string;
  /** `<stateDir>/events/outbox.done` */
  readonly doneFile: string;
  readonly agent: string;
  readonly team: string | undefined;
  private readonly log: Logger;
  private readonly maxEvents: number;
  private readonly metrics: OutboxOptions['metrics'];
  private pendingEvents: EventEnvelope[] = [];
  /** Lines in the file, done ones included. */
  private lines = 0;
  private loaded: Promise<void> | undefined;
  private chain: Promise<void> = Promise.resolve();
  private readonly waiters = new Set<() => void>();
  /** Events dropped since the outbox last overflowed (0: not overflowing). */
  private droppedInOverflow = 0;

  constructor(opts: OutboxOptions) {
    this.file = path.join(opts.stateDir, 'events', 'outbox.jsonl');
    this.doneFile = path.join(opts.stateDir, 'events', 'outbox.done');
    this.agent = opts.agent;
    this.team = opts.team;
    this.log = opts.log;
    this.maxEvents = opts.maxEvents ?? OUTBOX_MAX_EVENTS;
    this.metrics = opts.metrics;
  }

  /** Reads what a previous run left (once; every other method waits for it). Never throws. */
  open(): Promise<void> {
    this.loaded ??= this.load().catch((err: unknown) => this.log.error({ err, file: this.file }, 'cannot read the event outbox; starting empty'));
    return this.loaded;
  }

  /** Events not yet done, oldest first. */
  get pending(): number {
    return this.pendingEvents.length;
  }

  /** The oldest pending event (after open()). */
  peek(): EventEnvelope | undefined {
    return this.pendingEvents[0];
  }

  /**
   * Records a supervisor event (lifecycle): logs it and appends `{id, type, time, agent,
   * team, data}` to the outbox. Never throws (a full disk is logged, not fatal).
   * Resolves once it is appended (or the append failed and was logged); envelope() and
   * append() give the envelope to a caller that needs its id.
   */
  async emit(type: string, data: Record<string, unknown> = {}): Promise<void> {
    await this.append(this.envelope(type, data));
  }

  /** A new envelope for this agent: a fresh UUID (the Nats-Msg-Id) and the current time (RFC 3339, UTC). */
  envelope(type: string, data: Record<string, unknown>): EventEnvelope {
    return { id: randomUUID(), type, time: new Date().toISOString(), agent: this.agent, ...(this.team ? { team: this.team } : {}), data };
  }

  /** Logs and appends a built envelope. Never throws (logged). */
  append(event: EventEnvelope): Promise<void> {
    this.log.info({ event: event.type, eventId: event.id, ...event.data }, `event ${event.type}`);
    return this.serial('append', async () => {
      this.pendingEvents.push(event);
      this.lines++;
      for (const wake of this.waiters) wake();
      this.waiters.clear();
      await appendFile(this.file, JSON.stringify(event) + '\n');
      if (this.pendingEvents.length > this.maxEvents) await this.drop(this.pendingEvents.length - this.maxEvents);
      this.gauge();
    });
  }

  /**
   * Marks the oldest pending event done (the stream stored it). A no-op when `id` is not
   * the oldest pending event any more (dropped meanwhile).
   */
  markDone(id: string): Promise<void> {
    return this.serial('mark done', async () => {
      if (this.pendingEvents[0]?.id !== id) return;
      this.pendingEvents.shift();
      this.gauge();
      if (this.pendingEvents.length === 0) {
        // The common case while NATS is up: the file empties after every event.
        await truncate(this.file, 0);
        this.lines = 0;
        if (this.droppedInOverflow > 0) {
          this.log.info({ dropped: this.droppedInOverflow }, 'event outbox drained after an overflow');
          this.droppedInOverflow = 0;
        }
      } else {
        await this.compactOrMark(id);
      }
    });
  }

  /** Resolves when an event is pending (at once if one is), or when `signal` aborts. */
  waitForEvent(signal?: AbortSignal): Promise<void> {
    if (this.pendingEvents.length > 0 || signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        this.waiters.delete(wake);
        signal?.removeEventListener('abort', wake);
        resolve();
      };
      this.waiters.add(wake);
      signal?.addEventListener('abort', wake, { once: true });
    });
  }

  /** Resolves when every operation queued so far is written. */
  async flushed(): Promise<void> {
    await this.chain;
  }

  private serial(what: string, op: () => Promise<void>): Promise<void> {
    this.chain = this.chain
      .then(() => this.open())
      .then(op)
      .catch((err: unknown) => this.log.error({ err, file: this.file }, `event outbox: ${what} failed`));
    return this.chain;
  }

  private gauge(): void {
    this.metrics?.outboxPending.set(this.pendingEvents.length);
  }

  private async drop(n: number): Promise<void> {
    const dropped = this.pendingEvents.splice(0, n);
    this.metrics?.outboxDropped.inc(n);
    if (this.droppedInOverflow === 0) {
      this.log.warn(
        { maxEvents: this.maxEvents, oldest: dropped[0]?.time },
        'event outbox full: dropping the oldest events until it drains (is spec.events set and NATS reachable?)',
      );
    }
    this.droppedInOverflow += n;
    await this.compactOrMark(dropped.at(-1)!.id);
  }

  /** Records `id` as the last done line, or rewrites the file when its done head is large. */
  private async compactOrMark(id: string): Promise<void> {
    const done = this.lines - this.pendingEvents.length;
    if (done >= COMPACT_AFTER_LINES && done >= this.pendingEvents.length) await this.rewrite();
    else await writeFileAtomic(this.doneFile, id);
  }

  private async rewrite(): Promise<void> {
    await writeFileAtomic(this.file, this.pendingEvents.map((e) => JSON.stringify(e) + '\n').join(''));
    this.lines = this.pendingEvents.length;
  }

  private async load(): Promise<void> {
    await mkdir(path.dirname(this.file), { recursive: true });
    const text = await readFile(this.file, 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return '';
      throw err;
    });
    const done = (await readFile(this.doneFile, 'utf8').catch(() => '')).trim();
    // A line without its newline was being written when the process died: it is dropped,
    // or the next append would be glued to it.
    const complete = text.slice(0, text.lastIndexOf('\n') + 1);
    const torn = complete.length < text.length;
    const events: EventEnvelope[] = [];
    let unreadable = 0;
    for (const line of complete.split('\n')) {
      if (!line) continue;
      try {
        const raw = JSON.parse(line) as Record<string, unknown>;
        const parsed = EventEnvelope.safeParse(typeof raw.id === 'string' ? raw : { ...raw, id: legacyId(line) });
        if (parsed.success) events.push(parsed.data);
        else unreadable++;
      } catch {
        unreadable++;
      }
    }
    const doneAt = done ? events.findIndex((e) => e.id === done) : -1;
    this.pendingEvents = events.slice(doneAt + 1);
    const overflow = this.pendingEvents.length - this.maxEvents;
    if (overflow > 0) {
      this.pendingEvents.splice(0, overflow);
      this.metrics?.outboxDropped.inc(overflow);
    }
    if (torn || unreadable > 0) this.log.warn({ file: this.file, torn, unreadable }, 'event outbox: skipped unreadable lines');
    if (torn || unreadable > 0 || doneAt >= 0 || overflow > 0) await this.rewrite();
    else this.lines = events.length;
    if (this.pendingEvents.length > 0) this.log.info({ pending: this.pendingEvents.length, dropped: Math.max(0, overflow) }, 'event outbox holds events from before this start');
    this.gauge();
  }
}
