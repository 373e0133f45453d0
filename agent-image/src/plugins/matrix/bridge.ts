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
 * The bridge is the sync loop and the agent's tools; one batch is handled in batch.ts, and
 * what the bridge sends (reactions, notices, answers) in sends.ts.
 *
 * The access token is read from a file (a Secret mount), held only in this process, sent
 * only in the Authorization header; it is never logged, put in an environment or a pane.
 */
import { randomUUID } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../../lib/log.ts';
import { DEFAULT_APPROVAL_TIMEOUT_SECONDS } from '../../contract/contract.ts';
import { parseRoster } from '../../contract/roster.ts';
import { REVIEW_REQUEST_KEY } from '../../core/review-request.ts';
import type { EventOutbox } from '../../core/outbox.ts';
import type { Inbox, InboxMessage } from '../../core/inbox.ts';
import { handleBatch, TIMELINE_TYPES, type BatchContext } from './batch.ts';
import { MatrixClient, MatrixError, withRetry, type SyncResponse } from './client.ts';
import type { MatrixMetrics } from './metrics.ts';
import { MatrixSends } from './sends.ts';
import { ApprovalMetrics, MatrixApprovals } from './approvals.ts';
import { Registry } from 'prom-client';
import { BridgeStateStore, freshState, type BridgeState } from './state.ts';
import { MAX_AGENT_RUN, threadOf } from './triggers.ts';
import { clip, isEventId } from './validate.ts';


/** The contract's `matrix` section. */
export interface MatrixConfig {
  homeserverUrl: string;
  userId: string;
  allowedUsers: string[];
  rooms: string[];
  /** Approvals over chat (approvals.ts): the room asked when the task did not come from Matrix (else rooms[0]), and how long an answer is waited for. */
  approvals?: { room?: string | undefined; timeoutSeconds: number } | undefined;
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
  /** The approvals' metrics (approvals.ts); the supervisor's registry. Without them the bridge makes its own. */
  approvalMetrics?: ApprovalMetrics;
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

/** State event types the bridge asks /sync for: whether a room is encrypted (client-server API "m.room.encryption"). */
export const STATE_TYPES = ['m.room.encryption'];
/** Attempts at one batch (while /sync answers) before an event that still fails it is skipped. */
export const MAX_BATCH_ATTEMPTS = 5;
/** From this many failed attempts at the same batch, the bridge is `stalled` (not ready). */
const STALLED_AFTER = 2;
/** A readiness grace: a failed /sync right after a good one does not make the pod unready at once (ms). */
const READY_GRACE_MS = 60_000;

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

/** Refused by the loop guard (too many agent messages in a row in the room). */
export class LoopGuardError extends Error {
  override name = 'LoopGuardError';
}

/** The metric label of a failed /sync. */
function syncErrorKind(e: MatrixError | undefined): 'error' | 'unreachable' | 'rate_limited' | 'unauthorized' | 'server' | 'client' {
  if (!e) return 'error';
  if (e.status === 0) return 'unreachable';
  if (e.status === 429) return 'rate_limited';
  if (e.status === 401 || e.status === 403) return 'unauthorized';
  return e.status >= 500 ? 'server' : 'client';
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
  private rosterCheckedAt = 0;
  private rosterMtime = 0;
  /** The batch (by its `since` token) that failed, and how many times in a row. */
  private failing: { since: string | undefined; attempts: number } | undefined;
  /** What a batch works with (batch.ts): the sends, the roster's agents, the threads of taken events, the skipped events. */
  private readonly batch: BatchContext;
  private readonly sends: MatrixSends;
  private readonly configuredRooms = new Set<string>();
  /** The room id of spec.matrix.rooms[0], the team room review requests go to, once joined. */
  private teamRoomId: string | undefined;
  /** The room id of spec.matrix.approvals.room, once joined. */
  private approvalsRoomId: string | undefined;
  /** Approvals over chat: the port core/approval.ts's Approver, answered from the sync loop. */
  readonly approvals: MatrixApprovals;

  constructor(opts: BridgeOptions) {
    this.opts = opts;
    this.log = opts.log.child({ component: 'matrix' });
    this.client = new MatrixClient({ homeserverUrl: opts.config.homeserverUrl, accessToken: () => this.readToken() });
    this.store = new BridgeStateStore(opts.stateDir);
    this.timelineLimit = opts.timelineLimit ?? 50;
    this.syncTimeoutMs = opts.syncTimeoutMs ?? 30_000;
    this.state = freshState(opts.config.homeserverUrl, opts.config.userId);
    this.sends = new MatrixSends({ client: this.client, metrics: opts.metrics, log: this.log, signal: this.abort.signal, outbox: opts.outbox });
    this.approvals = new MatrixApprovals({
      client: this.client,
      signal: this.abort.signal,
      agentName: opts.agentName,
      self: opts.config.userId,
      approvers: new Set(opts.config.allowedUsers),
      timeoutSeconds: opts.config.approvals?.timeoutSeconds ?? DEFAULT_APPROVAL_TIMEOUT_SECONDS,
      joined: (room) => this.state.joined.includes(room),
      fallbackRoom: () => this.approvalsRoomId ?? this.teamRoomId,
      outbox: opts.outbox,
      metrics: opts.approvalMetrics ?? new ApprovalMetrics(new Registry()),
      log: this.log,
    });
    this.batch = {
      approvals: this.approvals,
      opts,
      client: this.client,
      sends: this.sends,
      log: this.log,
      signal: this.abort.signal,
      allowedUsers: new Set(opts.config.allowedUsers),
      configuredRooms: this.configuredRooms,
      agents: new Set<string>(),
      threadByEvent: new Map<string, string>(),
      skipped: new Set<string>(),
    };
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
    for (const [event, thread] of Object.entries(this.state.answerThreads)) this.batch.threadByEvent.set(event, thread);
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
    const conn = { delay: initial, verified: false, joinsStarted: false };
    while (!signal.aborted) {
      let res: SyncResponse;
      const since = this.state.since;
      try {
        res = await this.sync(since, conn);
        conn.delay = initial;
      } catch (err) {
        if (signal.aborted) break;
        await this.syncFailed(err, conn);
        conn.delay = Math.min(conn.delay * 2, max);
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
        await this.batchFailed(err, since, attempt, { initial, max });
      }
    }
  }

  /** One /sync (after checking the token's user once, and starting the joins once); marks the bridge syncing. */
  private async sync(since: string | undefined, conn: { verified: boolean; joinsStarted: boolean }): Promise<SyncResponse> {
    const signal = this.abort.signal;
    if (!conn.verified) {
      const me = await this.client.whoami(signal);
      if (me !== this.opts.config.userId) {
        throw new MatrixError(`the access token belongs to ${me}, not to spec.matrix.userId ${this.opts.config.userId}`, 403, 'M_FORBIDDEN');
      }
      conn.verified = true;
    }
    if (!conn.joinsStarted) {
      conn.joinsStarted = true;
      void this.joinConfiguredRooms();
    }
    // The first /sync of a run returns at once (no long poll), so a restarted bridge is ready without waiting for news.
    const res = await this.client.sync({ since, filter: syncFilter(this.timelineLimit), timeoutMs: since && this.lastSyncOkAt ? this.syncTimeoutMs : 0, signal });
    if (this.status_ !== 'syncing' && this.status_ !== 'stalled') this.log.info({ resumed: since !== undefined }, 'Matrix connected: syncing');
    // A stalled bridge stays stalled (not ready) until its batch goes through.
    if (this.status_ !== 'stalled') {
      this.status_ = 'syncing';
      this.lastError = undefined;
    }
    this.lastSyncOkAt = Date.now();
    this.opts.metrics.connected.set(1);
    return res;
  }

  /** A failed /sync: counted, logged, the bridge reconnecting (or unauthorized: the token is checked again); waits the backoff or the homeserver's retry_after_ms. */
  private async syncFailed(err: unknown, conn: { delay: number; verified: boolean }): Promise<void> {
    const e = err instanceof MatrixError ? err : undefined;
    const kind = syncErrorKind(e);
    this.opts.metrics.syncErrors.inc({ kind });
    this.opts.metrics.connected.set(0);
    this.status_ = kind === 'unauthorized' ? 'unauthorized' : 'reconnecting';
    if (kind === 'unauthorized') conn.verified = false;
    // The homeserver's error text can be long or carry anything: clipped for the log and /readyz.
    this.lastError = clip((err as Error).message, 200);
    const waitMs = e?.retryAfterMs ?? conn.delay;
    this.log.warn({ kind, error: this.lastError, retryInMs: waitMs }, 'Matrix sync failed; retrying');
    await sleep(waitMs, undefined, { signal: this.abort.signal }).catch(() => undefined);
  }

  /** A failed batch (while /sync answers): counted, stalled from STALLED_AFTER attempts, retried after its own backoff. */
  private async batchFailed(err: unknown, since: string | undefined, attempt: number, backoff: { initial: number; max: number }): Promise<void> {
    this.failing = { since, attempts: attempt };
    this.opts.metrics.batchFailures.inc();
    const error = clip((err as Error).message, 200);
    this.lastError = `a /sync batch failed ${attempt} time(s) in a row while the homeserver answers: ${error}`;
    if (attempt >= STALLED_AFTER) this.status_ = 'stalled';
    // Its own backoff: the /sync before the next attempt answers at once (the batch is still there).
    const waitMs = Math.min(backoff.initial * 2 ** (attempt - 1), backoff.max);
    this.log.warn({ attempt, error, retryInMs: waitMs, skipAfter: MAX_BATCH_ATTEMPTS }, 'Matrix batch failed; retrying it');
    await sleep(waitMs, undefined, { signal: this.abort.signal }).catch(() => undefined);
  }

  /** Joins spec.matrix.rooms and spec.matrix.approvals.room (ids or aliases), retrying each until it works. */
  private async joinConfiguredRooms(): Promise<void> {
    const approvalsRoom = this.opts.config.approvals?.room;
    const rooms = [...new Set([...this.opts.config.rooms, ...(approvalsRoom ? [approvalsRoom] : [])])];
    await Promise.all(
      rooms.map(async (room) => {
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
          if (room === approvalsRoom) this.approvalsRoomId = id;
          this.log.info({ room, roomId: id }, 'joined a configured room');
        } catch (err) {
          if (!this.abort.signal.aborted) this.log.error({ room, error: (err as Error).message }, 'cannot join a configured room; is the agent invited, and is the room id right?');
        }
      }),
    );
  }

  /**
   * Handles one /sync response (batch.ts) against a copy of the state; the copy and the new
   * token are saved only when the batch went through (so a failure retries the whole
   * batch). From the MAX_BATCH_ATTEMPTS-th attempt an event that still fails is skipped.
   */
  private async handleBatch(res: SyncResponse, since: string | undefined, attempt: number): Promise<void> {
    await this.refreshRoster();
    const draft = await handleBatch(this.batch, this.state, res, since, attempt >= MAX_BATCH_ATTEMPTS);
    if (!draft) return;
    await this.store.save(draft);
    this.state = draft;
  }

  private async refreshRoster(): Promise<void> {
    const file = this.opts.rosterFile;
    if (!file || Date.now() - this.rosterCheckedAt < 10_000) return;
    this.rosterCheckedAt = Date.now();
    try {
      const mtime = (await stat(file)).mtimeMs;
      if (mtime === this.rosterMtime) return;
      this.rosterMtime = mtime;
      const teammates = parseRoster(await readFile(file, 'utf8'));
      this.batch.agents = new Set(teammates.flatMap((t) => (t.matrix && t.matrix !== this.opts.config.userId ? [t.matrix] : [])));
    } catch (err) {
      // No roster (no team): no known teammates; m.notice still marks agents. A roster
      // that cannot be read is said once per version of the file (rosterMtime is set).
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ file, error: err instanceof Error ? err.message.slice(0, 200) : 'unknown' }, 'cannot read the team roster; teammates are not known as agents');
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
      return await this.sends.reply(args, thread);
    } catch (err) {
      // Synapse: "Cannot start threads from an event with a relation" (400).
      if (!(err instanceof MatrixError && err.status === 400 && thread && thread === args.event)) throw err;
      this.log.info({ room: args.room, event: args.event }, 'cannot start a thread at that message; answering with a plain reply');
      return this.sends.reply(args, undefined);
    }
  }

  /** The thread the answer to `eventId` goes to: remembered when it was taken, else its own thread (one lookup), else none. */
  private async answerThread(roomId: string, eventId: string): Promise<string | undefined> {
    const known = this.batch.threadByEvent.get(eventId);
    if (known || !isEventId(eventId)) return known;
    try {
      const thread = threadOf((await this.client.event(roomId, eventId, this.abort.signal)).content);
      return isEventId(thread) ? thread : undefined;
    } catch {
      return undefined; // not visible to the agent: a plain reply
    }
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
    return this.sends.reaction(args.room, args.event, args.key, `react-${randomUUID()}`);
  }
}
