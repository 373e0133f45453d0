/**
 * The Matrix bridge (DESIGN.md flow 2): the supervisor's own connection to the homeserver.
 * It long-polls /sync with a filter, decides per message whether the agent takes it
 * (triggers.ts), puts taken messages into the durable supervisor inbox, acknowledges
 * messages with a 👀 reaction, and sends the agent's answers (the `matrix_reply` and
 * `matrix_react` MCP tools, tools.ts).
 *
 * Exactly once across restarts: a batch's events are put into the inbox (durable, keyed by
 * event id) before the batch's `next_batch` token is written to the home volume; a restart
 * in between replays the batch, and the inbox recognises the ids. Reactions use a
 * transaction id derived from the event id, so a replayed 👀 is the same event.
 *
 * Outages: every failed /sync waits (500 ms doubling to 30 s, or exactly the homeserver's
 * `retry_after_ms` on 429) and resumes from the saved token. A timeline the homeserver cut
 * short (`limited`) is filled from /messages between the previous token and the batch.
 *
 * One bad event never stops the agent. Each event is checked against the spec's bounds
 * (validate.ts) and handled on its own: one that fails on its own content (an id over 255
 * bytes, a relation of the wrong shape, anything our checks or the inbox refuse) is skipped
 * with one warning line, counted (`..._matrix_events_failed_total{reason}`) and, when a
 * person sent it and the agent would have taken it, answered with a short m.notice saying
 * it did not get through (a ⚠️ reaction for a person's message it would not have taken).
 * A homeserver that is away (transport error, 429, 5xx) fails the batch instead, which is
 * retried from the saved token with backoff; while the same batch keeps failing although
 * /sync answers, the bridge is `stalled` (not ready, so /readyz fails), and from the
 * MAX_BATCH_ATTEMPTS-th attempt an event that still fails is skipped as `unavailable`.
 * Failures of our own volume (the inbox or state file) are never blamed on an event.
 *
 * Threads: every message the agent takes carries the thread its answer goes to (inbox
 * `meta.thread`): its own thread; for a rich reply to a message whose thread the agent is
 * in, that thread; else, for a message at the top level, a new thread rooted at it (as many
 * bots answer), so `matrix_reply` by event id answers there. Those threads,
 * and threads the agent posted in, are remembered (state.ts, bounded): a person's
 * follow-up in one reaches the agent without naming it again.
 *
 * Encrypted rooms: the bridge has no end-to-end encryption. A room with `m.room.encryption`
 * (or an `m.room.encrypted` event) gets one m.notice saying so, once per room across
 * restarts, with a warning line, a `matrix_encrypted_room` event and a metric; a person's
 * encrypted message gets a ⚠️ reaction.
 *
 * The access token is read from a file (a Secret mount), held only in this process, sent
 * only in the Authorization header; it is never logged, put in an environment or a pane.
 */
import { createHash, randomUUID } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../../lib/log.ts';
import { REVIEW_REQUEST_KEY, reviewRequestId } from '../../core/review-request.ts';
import type { EventOutbox } from '../../core/outbox.ts';
import type { Inbox, InboxMessage } from '../../core/inbox.ts';
import { InboxFullError, MAX_MESSAGE_CHARS } from '../../core/inbox.ts';
import { MatrixClient, MatrixError, withRetry, type MatrixEvent, type SyncResponse } from './client.ts';
import type { MatrixMetrics } from './metrics.ts';
import { BridgeStateStore, freshState, OWN_MEMORY, remember, rememberAnswerThread, type BridgeState } from './state.ts';
import { decide, MAX_AGENT_RUN, mentions, relationOf, threadOf, type Decision, type Who } from './triggers.ts';
import { clip, eventFault, isEventId, isPlainObject, isRoomId, isUserId, relationFault, type EventFault } from './validate.ts';

/** The contract's `matrix` section. */
export interface MatrixConfig {
  homeserverUrl: string;
  userId: string;
  allowedUsers: string[];
  rooms: string[];
}

export interface BridgeOptions {
  config: MatrixConfig;
  /** The Agent's name (a name the agent answers to in a body). */
  agentName: string;
  /** File holding the access token (a Secret mount). Read at start and again after a 401. */
  tokenFile: string;
  /** The team roster (roster.json, `{agents: [{name, matrix?}]}`); its Matrix ids are other agents. */
  rosterFile?: string;
  /** agent-smith's state folder on the home volume. */
  stateDir: string;
  inbox: Pick<Inbox, 'put'>;
  metrics: MatrixMetrics;
  log: Logger;
  outbox?: Pick<EventOutbox, 'emit'>;
  /** Called for each message newly put into the inbox. */
  onDelivered?: (m: InboxMessage) => void;
  /** Timeline events per room per /sync (more are fetched from /messages). Default 50. */
  timelineLimit?: number;
  /** /sync long-poll time (ms). Default 30 s. */
  syncTimeoutMs?: number;
  /** Reconnect delay: first and cap (ms). Default 500 ms, 30 s. */
  backoffInitialMs?: number;
  backoffMaxMs?: number;
}

/** `stalled`: /sync answers but the same batch keeps failing (not ready). */
export type BridgeStateName = 'starting' | 'syncing' | 'stalled' | 'reconnecting' | 'unauthorized' | 'stopped';

export interface BridgeStatus {
  state: BridgeStateName;
  userId: string;
  homeserverUrl: string;
  /** Rooms the agent is joined to. */
  rooms: string[];
  /** RFC 3339 time of the last successful /sync. */
  lastSyncAt?: string | undefined;
  /** The last failure, one line (no token, no query values). */
  lastError?: string | undefined;
}

/** Event types the bridge asks /sync for: messages, and what it must see to not deliver twice or too early. */
export const TIMELINE_TYPES = ['m.room.message', 'm.room.redaction', 'm.room.encrypted', 'm.room.member', 'm.room.encryption'];
/** State event types the bridge asks /sync for: whether a room is encrypted (client-server API "m.room.encryption"). */
export const STATE_TYPES = ['m.room.encryption'];
/** Attempts at one batch (while /sync answers) before an event that still fails it is skipped. */
export const MAX_BATCH_ATTEMPTS = 5;
/** From this many failed attempts at the same batch, the bridge is `stalled` (not ready). */
const STALLED_AFTER = 2;
/** A readiness grace: a failed /sync right after a good one does not make the pod unready at once (ms). */
const READY_GRACE_MS = 60_000;
/** Pages of /messages fetched to fill one limited timeline (100 events each). */
const MAX_GAP_PAGES = 20;
const EYES = '👀';
const WARNING = '⚠️';

/** Why a skipped event did not get through, in general terms, for the person who sent it. */
const SKIP_REASON: Record<SkipReason, string> = {
  invalid_id: 'it carries an id that is not a valid Matrix id',
  invalid_relation: 'it replies to or threads on an event id that is not valid (longer than the 255 bytes the Matrix spec allows, or malformed)',
  invalid_content: 'one of its fields has the wrong type or size',
  too_large: 'it is larger than the 64 KB the Matrix spec allows for an event',
  unavailable: 'the message it refers to could not be looked up',
  error: 'it could not be processed',
};
/** Why an event is skipped: a fault of its content (validate.ts), a lookup that kept failing, or an error of ours on it. */
type SkipReason = EventFault['reason'] | 'unavailable' | 'error';

/** What a batch sends after its events are in the inbox. */
interface Outgoing {
  eyes: Array<{ room: string; event: string }>;
  warnings: Array<{ room: string; event: string; reason: SkipReason; notice: boolean; thread?: string | undefined }>;
  encrypted: string[];
}

/**
 * How a failure while handling one event is treated: `transient` (the homeserver is away:
 * retry the batch), `local` (our volume, or an inbox full of messages the agent has not
 * taken: retry the batch, never blame the event), `event`
 * (the event itself: skip it).
 */
function failureKind(err: unknown): 'transient' | 'local' | 'event' {
  if (err instanceof MatrixError) return err.transient ? 'transient' : 'event';
  // The agent has not taken the messages before it: back pressure, not this event's fault.
  // The batch waits (the homeserver keeps the events) and the bridge shows as stalled.
  if (err instanceof InboxFullError) return 'local';
  const e = err as NodeJS.ErrnoException;
  if (typeof e?.code === 'string' && typeof e.syscall === 'string') return 'local';
  return 'event';
}


/** The /sync filter: only the room timelines, only the event types the bridge handles (client-server API "Filtering"). */
export function syncFilter(timelineLimit: number): object {
  return {
    account_data: { types: [] },
    presence: { types: [] },
    room: {
      account_data: { types: [] },
      ephemeral: { types: [] },
      state: { types: STATE_TYPES, lazy_load_members: true },
      timeline: { types: TIMELINE_TYPES, limit: timelineLimit },
    },
  };
}

/** A transaction id that is the same for the same purpose and event, so a replay sends nothing new. */
function txnFor(purpose: string, eventId: string): string {
  return `${purpose}-${createHash('sha256').update(eventId).digest('hex').slice(0, 32)}`;
}

/** Refused by the loop guard (too many agent messages in a row in the room). */
export class LoopGuardError extends Error {
  override name = 'LoopGuardError';
}

export class MatrixBridge {
  readonly client: MatrixClient;
  private readonly opts: BridgeOptions;
  private readonly log: Logger;
  private readonly store: BridgeStateStore;
  private readonly timelineLimit: number;
  private readonly syncTimeoutMs: number;
  private state: BridgeState;
  private status_: BridgeStateName = 'starting';
  private lastSyncOkAt = 0;
  private lastError: string | undefined;
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private agents = new Set<string>();
  private rosterCheckedAt = 0;
  private rosterMtime = 0;
  /** Thread the answer to a recently taken event goes to (also in the saved state), so matrix_reply answers there by event id alone. */
  private readonly threadByEvent = new Map<string, string>();
  /** Ids of events skipped lately, so a retried batch does not log or count them again. */
  private readonly skipped = new Set<string>();
  /** The batch (by its `since` token) that failed, and how many times in a row. */
  private failing: { since: string | undefined; attempts: number } | undefined;
  private readonly allowedUsers: Set<string>;
  private configuredRooms = new Set<string>();
  /** The room id of spec.matrix.rooms[0], the team room review requests go to, once joined. */
  private teamRoomId: string | undefined;

  constructor(opts: BridgeOptions) {
    this.opts = opts;
    this.log = opts.log.child({ component: 'matrix' });
    this.client = new MatrixClient({ homeserverUrl: opts.config.homeserverUrl, accessToken: () => this.readToken() });
    this.store = new BridgeStateStore(opts.stateDir);
    this.timelineLimit = opts.timelineLimit ?? 50;
    this.syncTimeoutMs = opts.syncTimeoutMs ?? 30_000;
    this.allowedUsers = new Set(opts.config.allowedUsers);
    this.state = freshState(opts.config.homeserverUrl, opts.config.userId);
  }

  private async readToken(): Promise<string> {
    let token: string;
    try {
      token = (await readFile(this.opts.tokenFile, 'utf8')).trim();
    } catch (err) {
      throw new Error(`cannot read the Matrix access token file ${this.opts.tokenFile} (${(err as NodeJS.ErrnoException).code ?? 'error'}); is spec.matrix.accessTokenSecretRef's Secret there?`);
    }
    if (!token) throw new Error(`the Matrix access token file ${this.opts.tokenFile} is empty`);
    return token;
  }

  /** Loads the saved state and starts the sync loop and the joins of the configured rooms in the background. */
  async start(): Promise<void> {
    this.state = await this.store.load(this.opts.config.homeserverUrl, this.opts.config.userId);
    for (const [event, thread] of Object.entries(this.state.answerThreads)) this.threadByEvent.set(event, thread);
    this.log.info({ userId: this.state.userId, resumed: this.state.since !== undefined, rooms: this.opts.config.rooms }, 'Matrix bridge starting');
    this.loop = this.run().catch((err: unknown) => this.log.error({ err }, 'Matrix sync loop ended'));
  }

  /** Stops the sync loop (an in-flight batch finishes its inbox writes first). */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
    this.status_ = 'stopped';
    this.opts.metrics.connected.set(0);
  }

  status(): BridgeStatus {
    return {
      state: this.status_,
      userId: this.opts.config.userId,
      homeserverUrl: this.opts.config.homeserverUrl,
      rooms: [...this.state.joined],
      lastSyncAt: this.lastSyncOkAt ? new Date(this.lastSyncOkAt).toISOString() : undefined,
      lastError: this.lastError,
    };
  }

  /** Ready while syncing (or within a short grace after the last good /sync); never while a batch keeps failing (`stalled`). */
  ready(): { ok: boolean; reason: string } {
    if (this.status_ === 'syncing') return { ok: true, reason: 'Matrix syncing' };
    if (this.status_ === 'stalled') return { ok: false, reason: `Matrix stalled: ${this.lastError ?? 'a /sync batch keeps failing'}` };
    if (this.lastSyncOkAt && Date.now() - this.lastSyncOkAt < READY_GRACE_MS) return { ok: true, reason: `Matrix ${this.status_} (last sync ${Math.round((Date.now() - this.lastSyncOkAt) / 1000)}s ago)` };
    return { ok: false, reason: `Matrix ${this.status_}${this.lastError ? `: ${this.lastError}` : ''}` };
  }

  // --- the sync loop ---------------------------------------------------------------

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    const initial = this.opts.backoffInitialMs ?? 500;
    const max = this.opts.backoffMaxMs ?? 30_000;
    let delay = initial;
    let verified = false;
    let joinsStarted = false;
    while (!signal.aborted) {
      let res: SyncResponse;
      let since: string | undefined;
      try {
        if (!verified) {
          const me = await this.client.whoami(signal);
          if (me !== this.opts.config.userId) {
            throw new MatrixError(`the access token belongs to ${me}, not to spec.matrix.userId ${this.opts.config.userId}`, 403, 'M_FORBIDDEN');
          }
          verified = true;
        }
        if (!joinsStarted) {
          joinsStarted = true;
          void this.joinConfiguredRooms();
        }
        since = this.state.since;
        // The first /sync of a run returns at once (no long poll), so a restarted bridge is ready without waiting for news.
        res = await this.client.sync({ since, filter: syncFilter(this.timelineLimit), timeoutMs: since && this.lastSyncOkAt ? this.syncTimeoutMs : 0, signal });
        if (this.status_ !== 'syncing' && this.status_ !== 'stalled') this.log.info({ resumed: since !== undefined }, 'Matrix connected: syncing');
        // A stalled bridge stays stalled (not ready) until its batch goes through.
        if (this.status_ !== 'stalled') {
          this.status_ = 'syncing';
          this.lastError = undefined;
        }
        this.lastSyncOkAt = Date.now();
        this.opts.metrics.connected.set(1);
        delay = initial;
      } catch (err) {
        if (signal.aborted) break;
        const e = err instanceof MatrixError ? err : undefined;
        const kind = !e ? 'error' : e.status === 0 ? 'unreachable' : e.status === 429 ? 'rate_limited' : e.status === 401 || e.status === 403 ? 'unauthorized' : e.status >= 500 ? 'server' : 'client';
        this.opts.metrics.syncErrors.inc({ kind });
        this.opts.metrics.connected.set(0);
        this.status_ = kind === 'unauthorized' ? 'unauthorized' : 'reconnecting';
        if (kind === 'unauthorized') verified = false;
        // The homeserver's error text can be long or carry anything: clipped for the log and /readyz.
        this.lastError = clip((err as Error).message, 200);
        const waitMs = e?.retryAfterMs ?? delay;
        this.log.warn({ kind, error: this.lastError, retryInMs: waitMs }, 'Matrix sync failed; retrying');
        await sleep(waitMs, undefined, { signal }).catch(() => undefined);
        delay = Math.min(delay * 2, max);
        continue;
      }
      // The homeserver answered /sync: a failure from here on is this batch's (an event
      // whose lookup keeps failing, a reaction that cannot be sent, our own volume).
      const attempt = this.failing && this.failing.since === since ? this.failing.attempts + 1 : 1;
      try {
        await this.handleBatch(res, since, attempt);
        if (this.failing) this.log.info({ attempts: this.failing.attempts + 1 }, 'Matrix batch handled after failed attempts; syncing');
        this.failing = undefined;
        this.status_ = 'syncing';
        this.lastError = undefined;
      } catch (err) {
        if (signal.aborted) break;
        this.failing = { since, attempts: attempt };
        this.opts.metrics.batchFailures.inc();
        const error = clip((err as Error).message, 200);
        this.lastError = `a /sync batch failed ${attempt} time(s) in a row while the homeserver answers: ${error}`;
        if (attempt >= STALLED_AFTER) this.status_ = 'stalled';
        // Its own backoff: the /sync before the next attempt answers at once (the batch is still there).
        const waitMs = Math.min(initial * 2 ** (attempt - 1), max);
        this.log.warn({ attempt, error, retryInMs: waitMs, skipAfter: MAX_BATCH_ATTEMPTS }, 'Matrix batch failed; retrying it');
        await sleep(waitMs, undefined, { signal }).catch(() => undefined);
      }
    }
  }

  /** Joins spec.matrix.rooms (ids or aliases), retrying each until it works. */
  private async joinConfiguredRooms(): Promise<void> {
    await Promise.all(
      this.opts.config.rooms.map(async (room) => {
        try {
          const id = await withRetry(() => this.client.join(room, this.abort.signal), {
            attempts: Number.POSITIVE_INFINITY,
            initialMs: 1000,
            maxMs: 300_000,
            signal: this.abort.signal,
            onRetry: (err, waitMs) => this.log.warn({ room, error: err.message, retryInMs: waitMs }, 'cannot join a configured room yet'),
          });
          this.configuredRooms.add(id);
          if (room === this.opts.config.rooms[0]) this.teamRoomId = id;
          this.log.info({ room, roomId: id }, 'joined a configured room');
        } catch (err) {
          if (!this.abort.signal.aborted) this.log.error({ room, error: (err as Error).message }, 'cannot join a configured room; is the agent invited, and is the room id right?');
        }
      }),
    );
  }

  /**
   * Handles one /sync response against a copy of the state; the copy and the new token
   * are saved only when the batch went through (so a failure retries the whole batch).
   * Each event is handled on its own: one that fails on its own content is skipped
   * (skipEvent); a transient failure fails the batch, until `attempt` reaches
   * MAX_BATCH_ATTEMPTS, from which it is skipped too.
   */
  private async handleBatch(res: SyncResponse, since: string | undefined, attempt: number): Promise<void> {
    const draft: BridgeState = structuredClone(this.state);
    const first = since === undefined;
    const lastTry = attempt >= MAX_BATCH_ATTEMPTS;
    await this.refreshRoster();
    const out: Outgoing = { eyes: [], warnings: [], encrypted: [] };
    // Read loosely: a homeserver's odd shape skips a room or an event, never the batch.
    const rooms: Record<string, unknown> = isPlainObject(res.rooms) ? res.rooms : {};

    for (const [roomId, invite] of Object.entries(isPlainObject(rooms.invite) ? rooms.invite : {})) {
      if (!isRoomId(roomId)) continue; // the invite stays unanswered; nothing to address it by
      const events: unknown[] = isPlainObject(invite) && isPlainObject(invite.invite_state) && Array.isArray(invite.invite_state.events) ? invite.invite_state.events : [];
      await this.handleInvite(roomId, events.filter(isPlainObject));
    }

    for (const [roomId, room] of Object.entries(isPlainObject(rooms.join) ? rooms.join : {})) {
      if (!isRoomId(roomId) || !isPlainObject(room)) {
        this.opts.metrics.eventsFailed.inc({ reason: 'invalid_id' });
        this.log.warn({ room: clip(roomId) }, 'Matrix room skipped: its room id is not valid');
        continue;
      }
      const timeline = isPlainObject(room.timeline) ? room.timeline : {};
      let events: unknown[] = Array.isArray(timeline.events) ? timeline.events : [];
      const wasJoined = draft.joined.includes(roomId);
      if (timeline.limited && !first && wasJoined && typeof timeline.prev_batch === 'string') {
        try {
          const gap = await this.fillGap(roomId, timeline.prev_batch, since);
          if (gap.length) this.log.info({ room: roomId, events: gap.length }, 'timeline was limited; filled the gap from /messages');
          events = [...gap, ...events];
        } catch (err) {
          if (this.abort.signal.aborted || (failureKind(err) !== 'event' && !lastTry)) throw err;
          this.log.warn({ room: roomId, error: clip((err as Error).message, 200) }, 'cannot fill a limited timeline from /messages; the messages in the gap are not delivered');
        }
      }
      const state: unknown[] = isPlainObject(room.state) && Array.isArray(room.state.events) ? room.state.events : [];
      if ([...state, ...events].some((e) => isPlainObject(e) && (e.type === 'm.room.encryption' || e.type === 'm.room.encrypted'))) out.encrypted.push(roomId);
      // In a room joined during this batch, what came before the agent's own join is history.
      let live = wasJoined && !first;
      for (const raw of events) {
        let fault: ReturnType<typeof eventFault>;
        try {
          fault = eventFault(raw);
        } catch {
          // JSON.stringify of content nested past the stack's depth throws: the event is bad.
          fault = { reason: 'invalid_content', field: 'content' };
        }
        if (fault) {
          this.skipEvent(roomId, raw, fault.reason, fault.field, undefined, draft, live, out);
          continue;
        }
        const ev = raw as MatrixEvent;
        if (ev.type === 'm.room.member') {
          if (ev.state_key === this.opts.config.userId && ev.content.membership === 'join') live = !first;
          continue;
        }
        if (ev.type === 'm.room.encryption') continue;
        try {
          await this.handleEvent(roomId, ev, draft, live, out);
        } catch (err) {
          const kind = failureKind(err);
          if (this.abort.signal.aborted || kind === 'local' || (kind === 'transient' && !lastTry)) throw err;
          this.skipEvent(roomId, ev, kind === 'transient' ? 'unavailable' : 'error', undefined, err, draft, live, out);
        }
      }
      if (!wasJoined) draft.joined.push(roomId);
    }
    for (const roomId of Object.keys(isPlainObject(rooms.leave) ? rooms.leave : {})) {
      draft.joined = draft.joined.filter((r) => r !== roomId);
      delete draft.agentRun[roomId];
    }

    for (const r of out.eyes) await this.sendEyes(r.room, r.event, lastTry);
    // At most MAX_AGENT_RUN notices per room and batch: a flood of bad messages gets ⚠️ reactions, not a flood of notices.
    const notices = new Map<string, number>();
    for (const w of out.warnings) {
      const n = notices.get(w.room) ?? 0;
      const notice = w.notice && n < MAX_AGENT_RUN;
      if (notice) notices.set(w.room, n + 1);
      await this.sendWarning({ ...w, notice }, lastTry);
    }
    for (const room of out.encrypted) if (!draft.encryptedRooms.includes(room)) await this.tellEncrypted(room, draft, lastTry);
    // Stopping cut the reactions short: leave the batch to the next start (the inbox knows its ids).
    if (this.abort.signal.aborted) return;
    draft.since = res.next_batch;
    await this.store.save(draft);
    this.state = draft;
  }

  /**
   * Skips one event that cannot be handled: one warning line (ids clipped, no content) and
   * the `events_failed` metric, once per event even when its batch is retried, and, for a person's live message, a visible answer: a
   * notice when the agent would have taken it (allow-listed sender or a mention), a ⚠️
   * reaction otherwise (and beyond MAX_AGENT_RUN notices in a room per batch). Never for
   * the agent's own events or another agent's (no loops).
   */
  private skipEvent(roomId: string, raw: unknown, reason: SkipReason, field: string | undefined, err: unknown, draft: BridgeState, live: boolean, out: Outgoing): void {
    const ev = isPlainObject(raw) ? raw : {};
    const key = `${roomId} ${clip(ev.event_id)}`;
    if (!this.skipped.has(key)) {
      this.skipped.add(key);
      if (this.skipped.size > OWN_MEMORY) this.skipped.delete(this.skipped.values().next().value!);
      this.opts.metrics.eventsFailed.inc({ reason });
      this.log.warn(
        { room: roomId, event: clip(ev.event_id), sender: clip(ev.sender), type: clip(ev.type, 40), reason, ...(field ? { field } : {}), ...(err ? { error: clip((err as Error).message, 200) } : {}) },
        'Matrix event skipped: it cannot be handled on its own content',
      );
    }
    if (!isEventId(ev.event_id) || !isUserId(ev.sender) || ev.sender === this.opts.config.userId || ev.type !== 'm.room.message') return;
    const content = isPlainObject(ev.content) ? ev.content : {};
    if (this.agents.has(ev.sender) || content.msgtype === 'm.notice') return;
    // A person's message: the run of agent messages in the room starts again.
    draft.agentRun[roomId] = 0;
    if (!live) return;
    let wanted = this.allowedUsers.has(ev.sender);
    try {
      wanted ||= mentions(content, { userId: this.opts.config.userId, names: this.names() });
    } catch {
      // a content the mention rules cannot read: not known to be for the agent
    }
    const thread = relationFault(content) ? undefined : threadOf(content);
    out.warnings.push({ room: roomId, event: ev.event_id, reason, notice: wanted, thread });
  }

  private names(): string[] {
    return [this.opts.agentName, localpart(this.opts.config.userId)];
  }

  /** Timeline events between `since` and `prevBatch`, oldest first (client-server API GET /messages, `to`). */
  private async fillGap(roomId: string, prevBatch: string, since: string | undefined): Promise<MatrixEvent[]> {
    const out: MatrixEvent[] = [];
    let from = prevBatch;
    for (let page = 0; page < MAX_GAP_PAGES; page++) {
      const r = await this.client.messages(roomId, { from, to: since, dir: 'b', limit: 100, filter: { types: TIMELINE_TYPES }, signal: this.abort.signal });
      out.push(...r.chunk);
      if (!r.end || r.chunk.length === 0) return out.reverse();
      from = r.end;
    }
    this.log.warn({ room: roomId, fetched: out.length }, 'gap larger than the bridge fetches; older messages in it are not delivered');
    return out.reverse();
  }

  /** One valid timeline event (eventFault found nothing): decide, then deliver or acknowledge. @throws what a lookup or the inbox throws (handleBatch sorts it) */
  private async handleEvent(roomId: string, ev: MatrixEvent, draft: BridgeState, live: boolean, out: Outgoing): Promise<void> {
    const m = this.opts.metrics;
    // The filter bounds the types; a homeserver that ignores it does not grow the label set.
    m.received.inc({ type: TIMELINE_TYPES.includes(ev.type) ? ev.type : 'other' });
    const who: Who = {
      userId: this.opts.config.userId,
      names: this.names(),
      allowedUsers: this.allowedUsers,
      agents: this.agents,
    };
    const run = draft.agentRun[roomId] ?? 0;
    let d: Decision = decide(ev, who, run);
    if (d.action === 'need_reply_check') d = decide(ev, who, run, await this.repliesToSelf(roomId, ev, draft));
    if (d.action === 'need_reply_check') return; // unreachable: decide answers once replyToSelf is known

    if (d.action === 'ignore' && d.reason === 'own') {
      remember(draft.own, ev.event_id);
      const thread = threadOf(ev.content);
      if (thread) remember(draft.threads, thread);
    }
    // The loop guard counts messages in timeline order: an agent's adds one, a person's resets.
    const counts = ev.type === 'm.room.message' && !(d.action === 'ignore' && (d.reason === 'edit' || d.reason === 'redacted' || d.reason === 'empty'));
    if (counts) draft.agentRun[roomId] = d.agent ? run + 1 : 0;

    if (!live) {
      m.ignored.inc({ reason: 'history' });
      return;
    }
    if (d.action === 'ignore') {
      m.ignored.inc({ reason: d.reason });
      this.log.debug({ room: roomId, event: ev.event_id, sender: ev.sender, reason: d.reason }, 'Matrix event not delivered');
      if (d.reason === 'loop_guard') this.log.info({ room: roomId, event: ev.event_id, sender: ev.sender, run: run + 1 }, `loop guard: more than ${MAX_AGENT_RUN} agent messages in a row; not delivered`);
      if (d.react) out.eyes.push({ room: roomId, event: ev.event_id });
      // A person's encrypted message: ⚠️ (the room was told once why), not silence.
      if (d.reason === 'encrypted' && ev.sender !== this.opts.config.userId && !this.agents.has(ev.sender)) out.warnings.push({ room: roomId, event: ev.event_id, reason: 'error', notice: false });
      return;
    }
    // The answer goes to the message's thread; for a rich reply to a message whose thread the
    // agent is in, to that thread; else to a new thread rooted at this top-level message.
    // Either way a person's follow-up there reaches the agent (repliesToSelf). A message with
    // another relation (m.reference ...) cannot be a thread root (Synapse refuses "Cannot
    // start threads from an event with a relation"): its answer is a plain reply.
    const rel = relationOf(ev.content);
    const thread = threadOf(ev.content) ?? (rel.inReplyTo && draft.threads.includes(rel.inReplyTo) ? rel.inReplyTo : rel.relType === undefined ? ev.event_id : undefined);
    const body = String(ev.content.body);
    // A teammate's review request also arrives from the event log under this id: delivered once.
    const review = ev.content[REVIEW_REQUEST_KEY];
    // Its id is the event log's (a UUID): bounded so the inbox id stays within the inbox's 256 characters.
    const reviewOf = isPlainObject(review) && typeof review.event_id === 'string' && /^[\x21-\x7e]{1,200}$/.test(review.event_id) && d.agent ? review.event_id : undefined;
    const { message, duplicate } = await this.opts.inbox.put({
      id: reviewOf ? reviewRequestId(reviewOf) : ev.event_id,
      source: 'matrix',
      text: body.length > MAX_MESSAGE_CHARS ? `${body.slice(0, MAX_MESSAGE_CHARS - 20)} [... cut]` : body,
      meta: { room: roomId, sender: ev.sender, event: ev.event_id, ...(thread ? { thread } : {}) },
    });
    if (thread) {
      remember(draft.threads, thread);
      rememberAnswerThread(draft.answerThreads, ev.event_id, thread);
      this.threadByEvent.delete(ev.event_id);
      this.threadByEvent.set(ev.event_id, thread);
      if (this.threadByEvent.size > OWN_MEMORY) this.threadByEvent.delete(this.threadByEvent.keys().next().value!);
    }
    if (!duplicate) {
      m.delivered.inc({ reason: d.reason });
      m.deliverySeconds.observe(Math.max(0, Date.now() - ev.origin_server_ts) / 1000);
      this.opts.onDelivered?.(message);
      this.log.info({ room: roomId, event: ev.event_id, sender: ev.sender, trigger: d.reason, ...(thread ? { thread } : {}) }, 'Matrix message put in the inbox');
      void this.opts.outbox?.emit('message_received', { source: 'matrix', room: roomId, event: ev.event_id, sender: ev.sender, trigger: d.reason });
    }
    out.eyes.push({ room: roomId, event: ev.event_id });
  }

  /**
   * Whether a message follows up on the agent: it is in a thread the agent is in (it posted
   * there or took a message there), it replies to a message the agent took at the top level,
   * or its thread root or the event it answers is the agent's.
   */
  private async repliesToSelf(roomId: string, ev: MatrixEvent, draft: BridgeState): Promise<boolean> {
    const rel = relationOf(ev.content);
    const root = rel.relType === 'm.thread' ? rel.eventId : undefined;
    if (root && draft.threads.includes(root)) return true;
    if (rel.inReplyTo && draft.threads.includes(rel.inReplyTo)) return true;
    // Ids are event ids here (eventFault checked the relation), so a lookup is a short, valid request.
    const ids = [root, rel.inReplyTo].filter((x): x is string => isEventId(x));
    if (ids.some((id) => draft.own.includes(id))) return true;
    for (const id of ids) {
      try {
        if ((await this.client.event(roomId, id, this.abort.signal)).sender === this.opts.config.userId) return true;
      } catch (err) {
        // A transient failure retries the batch; an event we may not see (404, 403) is not the agent's.
        if (err instanceof MatrixError && err.transient) throw err;
      }
    }
    return false;
  }

  /** Accepts an invite from an allow-listed user (or to a configured room), refuses others. `events` are its stripped state, read loosely. */
  private async handleInvite(roomId: string, events: Array<Record<string, unknown>>): Promise<void> {
    const self = this.opts.config.userId;
    const sender = events.find((e) => e.type === 'm.room.member' && e.state_key === self && isPlainObject(e.content) && e.content.membership === 'invite')?.sender;
    const inviter = isUserId(sender) ? sender : undefined;
    try {
      if ((inviter && this.allowedUsers.has(inviter)) || this.configuredRooms.has(roomId) || this.opts.config.rooms.includes(roomId)) {
        await withRetry(() => this.client.join(roomId, this.abort.signal), { attempts: 3, signal: this.abort.signal });
        this.log.info({ room: roomId, inviter }, 'accepted an invite');
        void this.opts.outbox?.emit('matrix_room_joined', { room: roomId, inviter });
      } else {
        await withRetry(() => this.client.leave(roomId, this.abort.signal), { attempts: 3, signal: this.abort.signal });
        this.opts.metrics.ignored.inc({ reason: 'invite_refused' });
        this.log.info({ room: roomId, inviter }, 'refused an invite from a user not in spec.matrix.allowedUsers');
      }
    } catch (err) {
      // The invite stays in /sync until answered: the next batch tries again.
      this.log.warn({ room: roomId, inviter, error: clip((err as Error).message, 200) }, 'cannot answer an invite; will try again');
    }
  }

  /**
   * The 👀 acknowledgement. A transient failure (homeserver away) fails the batch, so the
   * sync loop's backoff retries it from the saved token (the inbox recognises the messages,
   * the transaction id makes the reaction the same event), except on the batch's last try;
   * a refusal (no permission to react in the room) is logged and skipped.
   */
  private async sendEyes(roomId: string, eventId: string, lastTry: boolean): Promise<void> {
    try {
      await this.sendReaction(roomId, eventId, EYES, txnFor('eyes', eventId), 2);
    } catch (err) {
      this.sendFailed(err, lastTry, { room: roomId, event: eventId }, `cannot send the ${EYES} reaction`);
    }
  }

  /** Rethrows a transient failure to retry the batch (not on its last try, not when stopping); logs anything else. */
  private sendFailed(err: unknown, lastTry: boolean, where: Record<string, string>, msg: string): void {
    if (this.abort.signal.aborted) return;
    if (err instanceof MatrixError && err.transient && !lastTry) throw err;
    this.log.warn({ ...where, error: clip((err as Error).message, 200) }, msg);
  }

  /**
   * Tells the sender of a skipped message that it did not get through: a short m.notice in
   * reply (in its thread when that is valid) saying why in general terms, or a ⚠️ reaction
   * when `notice` is false. The transaction id comes from the event id, so a retried batch
   * sends the same event.
   */
  private async sendWarning(w: Outgoing['warnings'][number], lastTry: boolean): Promise<void> {
    try {
      if (!w.notice) {
        await this.sendReaction(w.room, w.event, WARNING, txnFor('warn', w.event), 2);
        return;
      }
      const content = {
        msgtype: 'm.notice',
        body: `${WARNING} This message did not reach me: ${SKIP_REASON[w.reason]}. Please send it again without that.`,
        'm.mentions': {},
        'm.relates_to': w.thread
          ? { rel_type: 'm.thread', event_id: w.thread, is_falling_back: false, 'm.in_reply_to': { event_id: w.event } }
          : { 'm.in_reply_to': { event_id: w.event } },
      };
      await withRetry(() => this.client.send(w.room, 'm.room.message', content, txnFor('refused', w.event), this.abort.signal), { attempts: 2, signal: this.abort.signal });
    } catch (err) {
      this.sendFailed(err, lastTry, { room: w.room, event: w.event }, 'cannot tell the sender that a message was skipped');
    }
  }

  /**
   * Says once in an encrypted room that the agent cannot read it (the bridge has no
   * end-to-end encryption): an m.notice (transaction id from the room id, so a retry is the
   * same event), a warning line, a `matrix_encrypted_room` event and the metric. Remembered
   * in the state even when the room refuses the notice (power levels), so it is not retried
   * on every batch; a transient failure retries the batch.
   */
  private async tellEncrypted(roomId: string, draft: BridgeState, lastTry: boolean): Promise<void> {
    const content = {
      msgtype: 'm.notice',
      body: `${WARNING} I cannot read end-to-end encrypted messages, so nothing encrypted in this room reaches me. Talk to me in an unencrypted room.`,
      'm.mentions': {},
    };
    let sent = true;
    try {
      await withRetry(() => this.client.send(roomId, 'm.room.message', content, txnFor('encrypted', roomId), this.abort.signal), { attempts: 2, signal: this.abort.signal });
    } catch (err) {
      this.sendFailed(err, lastTry, { room: roomId }, 'cannot post the encrypted-room notice');
      sent = false;
    }
    remember(draft.encryptedRooms, roomId);
    this.opts.metrics.encryptedRooms.inc();
    this.log.warn({ room: roomId, noticeSent: sent }, 'Matrix room is end-to-end encrypted: the agent cannot read its messages (told the room once)');
    void this.opts.outbox?.emit('matrix_encrypted_room', { room: roomId, noticeSent: sent });
  }

  private async sendReaction(roomId: string, eventId: string, key: string, txnId: string, attempts = 4): Promise<string | undefined> {
    const content = { 'm.relates_to': { rel_type: 'm.annotation', event_id: eventId, key } };
    try {
      const id = await withRetry(() => this.client.send(roomId, 'm.reaction', content, txnId, this.abort.signal), { attempts, signal: this.abort.signal });
      this.opts.metrics.reactionsSent.inc();
      return id;
    } catch (err) {
      // Synapse refuses the same annotation twice from one user: it is there already.
      if (err instanceof MatrixError && err.errcode === 'M_DUPLICATE_ANNOTATION') return undefined;
      throw err;
    }
  }

  private async refreshRoster(): Promise<void> {
    const file = this.opts.rosterFile;
    if (!file || Date.now() - this.rosterCheckedAt < 10_000) return;
    this.rosterCheckedAt = Date.now();
    try {
      const mtime = (await stat(file)).mtimeMs;
      if (mtime === this.rosterMtime) return;
      const roster = JSON.parse(await readFile(file, 'utf8')) as { agents?: Array<{ matrix?: unknown }> };
      this.agents = new Set((roster.agents ?? []).map((a) => a.matrix).filter((x): x is string => typeof x === 'string' && x !== this.opts.config.userId));
      this.rosterMtime = mtime;
    } catch {
      // no roster (no team): no known teammates; m.notice still marks agents
    }
  }

  // --- the agent's tools -----------------------------------------------------------

  private checkRoom(room: string): void {
    if (!this.state.joined.includes(room)) {
      throw new Error(`not a room this agent is in: ${room}; rooms: ${this.state.joined.join(', ') || '(none yet)'}`);
    }
  }

  /**
   * Sends the agent's answer as `m.notice` (so other bots do not answer it). In `thread`
   * when given, else in the thread the answer to `event` goes to (the thread it was taken
   * in, or the one rooted at it for a top-level message the agent took; for another event,
   * its own thread if it has one), replying to `event`; a plain rich reply when the
   * homeserver refuses that thread (an event with a relation cannot be a thread root);
   * a top-level message without `event` and `thread`. Retries transient failures with the
   * same transaction id.
   * @returns the new event id
   * @throws LoopGuardError when the room already has MAX_AGENT_RUN agent messages in a row;
   *   Error for a room the agent is not in, MatrixError when the homeserver refuses
   */
  async reply(args: { room: string; text: string; html?: string | undefined; thread?: string | undefined; event?: string | undefined }): Promise<string> {
    this.checkRoom(args.room);
    const run = this.state.agentRun[args.room] ?? 0;
    if (run >= MAX_AGENT_RUN) {
      throw new LoopGuardError(`loop guard: ${run} agent messages in a row in ${args.room} without a person in between; wait for a person to write`);
    }
    const thread = args.thread ?? (args.event ? await this.answerThread(args.room, args.event) : undefined);
    try {
      return await this.sendReply(args, thread);
    } catch (err) {
      // Synapse: "Cannot start threads from an event with a relation" (400).
      if (!(err instanceof MatrixError && err.status === 400 && thread && thread === args.event)) throw err;
      this.log.info({ room: args.room, event: args.event }, 'cannot start a thread at that message; answering with a plain reply');
      return this.sendReply(args, undefined);
    }
  }

  /** The thread the answer to `eventId` goes to: remembered when it was taken, else its own thread (one lookup), else none. */
  private async answerThread(roomId: string, eventId: string): Promise<string | undefined> {
    const known = this.threadByEvent.get(eventId);
    if (known || !isEventId(eventId)) return known;
    try {
      const thread = threadOf((await this.client.event(roomId, eventId, this.abort.signal)).content);
      return isEventId(thread) ? thread : undefined;
    } catch {
      return undefined; // not visible to the agent: a plain reply
    }
  }

  private async sendReply(args: { room: string; text: string; html?: string | undefined; event?: string | undefined }, thread: string | undefined): Promise<string> {
    const relates = thread
      ? { 'm.relates_to': { rel_type: 'm.thread', event_id: thread, is_falling_back: !args.event || args.event === thread, 'm.in_reply_to': { event_id: args.event ?? thread } } }
      : args.event
        ? { 'm.relates_to': { 'm.in_reply_to': { event_id: args.event } } }
        : {};
    const content = {
      msgtype: 'm.notice',
      body: args.text,
      ...(args.html ? { format: 'org.matrix.custom.html', formatted_body: args.html } : {}),
      // Intentional mentions: nobody is pinged by an answer unless the text says so.
      'm.mentions': {},
      ...relates,
    };
    const txnId = `reply-${randomUUID()}`;
    const id = await withRetry(() => this.client.send(args.room, 'm.room.message', content, txnId, this.abort.signal), { attempts: 5, signal: this.abort.signal });
    this.opts.metrics.repliesSent.inc();
    this.log.info({ room: args.room, event: id, ...(thread ? { thread } : {}) }, 'agent replied in Matrix');
    return id;
  }

  /**
   * Review fan-out (agent-image/src/plugins/review/fanout.ts): an `m.notice` in the team room
   * (spec.matrix.rooms[0]) mentioning `mentions` (user ids, `m.mentions.user_ids`), with
   * `dev.agentsmith.review_request: {event_id}` so a reviewer's bridge files it under the
   * same inbox id as the event-log path. The transaction id is derived from `eventId`, so a
   * retry is the same Matrix event. Not subject to the loop guard: it is the agent's
   * supervisor announcing, not the agent answering.
   * @returns the new event id, or undefined when the team room is not joined (yet)
   * @throws MatrixError when the homeserver refuses or stays away through the retries
   */
  async announceReviewRequest(args: { eventId: string; text: string; html: string; mentions: string[] }): Promise<string | undefined> {
    const room = this.teamRoomId;
    if (!room) return undefined;
    const content = {
      msgtype: 'm.notice',
      body: args.text,
      format: 'org.matrix.custom.html',
      formatted_body: args.html,
      'm.mentions': { user_ids: args.mentions },
      [REVIEW_REQUEST_KEY]: { event_id: args.eventId },
    };
    const id = await withRetry(() => this.client.send(room, 'm.room.message', content, `review-${args.eventId}`, this.abort.signal), { attempts: 5, signal: this.abort.signal });
    this.log.info({ room, event: id, mentions: args.mentions }, 'review request announced');
    return id;
  }

  /** Reacts to `event` with `key` (an emoji). @returns the reaction's event id (undefined: it was there already) */
  async react(args: { room: string; event: string; key: string }): Promise<string | undefined> {
    this.checkRoom(args.room);
    return this.sendReaction(args.room, args.event, args.key, `react-${randomUUID()}`);
  }
}

function localpart(userId: string): string {
  return userId.slice(1).split(':')[0] ?? userId;
}
