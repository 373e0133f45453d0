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
 * The access token is read from a file (a Secret mount), held only in this process, sent
 * only in the Authorization header; it is never logged, put in an environment or a pane.
 */
import { createHash, randomUUID } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log.ts';
import { REVIEW_REQUEST_KEY, reviewRequestId } from '../review/fanout.ts';
import type { EventOutbox } from '../events/outbox.ts';
import type { Inbox, InboxMessage } from '../supervisor/inbox.ts';
import { MAX_MESSAGE_CHARS } from '../supervisor/inbox.ts';
import { MatrixClient, MatrixError, withRetry, type MatrixEvent, type StrippedStateEvent, type SyncResponse } from './client.ts';
import type { MatrixMetrics } from './metrics.ts';
import { BridgeStateStore, remember, type BridgeState } from './state.ts';
import { decide, MAX_AGENT_RUN, relationOf, threadOf, type Decision, type Who } from './triggers.ts';

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

export type BridgeStateName = 'starting' | 'syncing' | 'reconnecting' | 'unauthorized' | 'stopped';

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
export const TIMELINE_TYPES = ['m.room.message', 'm.room.redaction', 'm.room.encrypted', 'm.room.member'];
/** A readiness grace: a failed /sync right after a good one does not make the pod unready at once (ms). */
const READY_GRACE_MS = 60_000;
/** Pages of /messages fetched to fill one limited timeline (100 events each). */
const MAX_GAP_PAGES = 20;
const EYES = '👀';

/** The /sync filter: only the room timelines, only the event types the bridge handles (client-server API "Filtering"). */
export function syncFilter(timelineLimit: number): object {
  return {
    account_data: { types: [] },
    presence: { types: [] },
    room: {
      account_data: { types: [] },
      ephemeral: { types: [] },
      state: { types: [], lazy_load_members: true },
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
  /** Thread of recently delivered events, so matrix_reply answers in the thread by event id alone. */
  private readonly threadByEvent = new Map<string, string>();
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
    this.state = { homeserverUrl: opts.config.homeserverUrl, userId: opts.config.userId, joined: [], agentRun: {}, own: [], threads: [] };
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

  /** Ready while syncing (or within a short grace after the last good /sync). */
  ready(): { ok: boolean; reason: string } {
    if (this.status_ === 'syncing') return { ok: true, reason: 'Matrix syncing' };
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
        const since = this.state.since;
        const res = await this.client.sync({ since, filter: syncFilter(this.timelineLimit), timeoutMs: since ? this.syncTimeoutMs : 0, signal });
        if (this.status_ !== 'syncing') this.log.info({ resumed: since !== undefined }, 'Matrix connected: syncing');
        this.status_ = 'syncing';
        this.lastSyncOkAt = Date.now();
        this.lastError = undefined;
        this.opts.metrics.connected.set(1);
        delay = initial;
        await this.handleBatch(res, since);
      } catch (err) {
        if (signal.aborted) break;
        const e = err instanceof MatrixError ? err : undefined;
        const kind = !e ? 'error' : e.status === 0 ? 'unreachable' : e.status === 429 ? 'rate_limited' : e.status === 401 || e.status === 403 ? 'unauthorized' : e.status >= 500 ? 'server' : 'client';
        this.opts.metrics.syncErrors.inc({ kind });
        this.opts.metrics.connected.set(0);
        this.status_ = kind === 'unauthorized' ? 'unauthorized' : 'reconnecting';
        if (kind === 'unauthorized') verified = false;
        this.lastError = (err as Error).message;
        const waitMs = e?.retryAfterMs ?? delay;
        this.log.warn({ kind, error: this.lastError, retryInMs: waitMs }, 'Matrix sync failed; retrying');
        await sleep(waitMs, undefined, { signal }).catch(() => undefined);
        delay = Math.min(delay * 2, max);
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
   * are saved only when every event is handled (so a failure retries the whole batch).
   */
  private async handleBatch(res: SyncResponse, since: string | undefined): Promise<void> {
    const draft: BridgeState = structuredClone(this.state);
    const first = since === undefined;
    await this.refreshRoster();
    const reactions: Array<{ room: string; event: string }> = [];

    for (const [roomId, invite] of Object.entries(res.rooms?.invite ?? {})) await this.handleInvite(roomId, invite.invite_state?.events ?? []);

    for (const [roomId, room] of Object.entries(res.rooms?.join ?? {})) {
      let events = room.timeline?.events ?? [];
      const wasJoined = draft.joined.includes(roomId);
      if (room.timeline?.limited && !first && wasJoined && room.timeline.prev_batch) {
        const gap = await this.fillGap(roomId, room.timeline.prev_batch, since);
        if (gap.length) this.log.info({ room: roomId, events: gap.length }, 'timeline was limited; filled the gap from /messages');
        events = [...gap, ...events];
      }
      // In a room joined during this batch, what came before the agent's own join is history.
      let live = wasJoined && !first;
      for (const ev of events) {
        if (ev.type === 'm.room.member') {
          if (ev.state_key === this.opts.config.userId && ev.content.membership === 'join') live = !first;
          continue;
        }
        await this.handleEvent(roomId, ev, draft, live, reactions);
      }
      if (!wasJoined) draft.joined.push(roomId);
    }
    for (const roomId of Object.keys(res.rooms?.leave ?? {})) {
      draft.joined = draft.joined.filter((r) => r !== roomId);
      delete draft.agentRun[roomId];
    }

    for (const r of reactions) await this.sendEyes(r.room, r.event);
    // Stopping cut the reactions short: leave the batch to the next start (the inbox knows its ids).
    if (this.abort.signal.aborted) return;
    draft.since = res.next_batch;
    await this.store.save(draft);
    this.state = draft;
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

  private async handleEvent(roomId: string, ev: MatrixEvent, draft: BridgeState, live: boolean, reactions: Array<{ room: string; event: string }>): Promise<void> {
    const m = this.opts.metrics;
    m.received.inc({ type: ev.type });
    const who: Who = {
      userId: this.opts.config.userId,
      names: [this.opts.agentName, localpart(this.opts.config.userId)],
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
      if (d.react) reactions.push({ room: roomId, event: ev.event_id });
      return;
    }
    const thread = threadOf(ev.content);
    const body = String(ev.content.body);
    // A teammate's review request also arrives from the event log under this id: delivered once.
    const review = ev.content[REVIEW_REQUEST_KEY] as { event_id?: unknown } | undefined;
    const { message, duplicate } = await this.opts.inbox.put({
      id: review && typeof review.event_id === 'string' && d.agent ? reviewRequestId(review.event_id) : ev.event_id,
      source: 'matrix',
      text: body.length > MAX_MESSAGE_CHARS ? `${body.slice(0, MAX_MESSAGE_CHARS - 20)} [... cut]` : body,
      meta: { room: roomId, sender: ev.sender, event: ev.event_id, ...(thread ? { thread } : {}) },
    });
    if (thread) {
      this.threadByEvent.set(ev.event_id, thread);
      if (this.threadByEvent.size > 1000) this.threadByEvent.delete(this.threadByEvent.keys().next().value!);
    }
    if (!duplicate) {
      m.delivered.inc({ reason: d.reason });
      m.deliverySeconds.observe(Math.max(0, Date.now() - ev.origin_server_ts) / 1000);
      this.opts.onDelivered?.(message);
      this.log.info({ room: roomId, event: ev.event_id, sender: ev.sender, trigger: d.reason, ...(thread ? { thread } : {}) }, 'Matrix message put in the inbox');
      void this.opts.outbox?.emit('message_received', { source: 'matrix', room: roomId, event: ev.event_id, sender: ev.sender, trigger: d.reason });
    }
    reactions.push({ room: roomId, event: ev.event_id });
  }

  /** Whether a message replies to the agent: its thread root or the event it answers is the agent's, or the agent posted in its thread. */
  private async repliesToSelf(roomId: string, ev: MatrixEvent, draft: BridgeState): Promise<boolean> {
    const rel = relationOf(ev.content);
    const root = rel.relType === 'm.thread' ? rel.eventId : undefined;
    if (root && draft.threads.includes(root)) return true;
    const ids = [root, rel.inReplyTo].filter((x): x is string => typeof x === 'string');
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

  private async handleInvite(roomId: string, events: StrippedStateEvent[]): Promise<void> {
    const self = this.opts.config.userId;
    const inviter = events.find((e) => e.type === 'm.room.member' && e.state_key === self && e.content.membership === 'invite')?.sender;
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
      this.log.warn({ room: roomId, inviter, error: (err as Error).message }, 'cannot answer an invite; will try again');
    }
  }

  /**
   * The 👀 acknowledgement. A transient failure (homeserver away) fails the batch, so the
   * sync loop's backoff retries it from the saved token (the inbox recognises the messages,
   * the transaction id makes the reaction the same event); a refusal (no permission to
   * react in the room) is logged and skipped.
   */
  private async sendEyes(roomId: string, eventId: string): Promise<void> {
    try {
      await this.sendReaction(roomId, eventId, EYES, txnFor('eyes', eventId), 2);
    } catch (err) {
      if (this.abort.signal.aborted) return;
      if (err instanceof MatrixError && err.transient) throw err;
      this.log.warn({ room: roomId, event: eventId, error: (err as Error).message }, `cannot send the ${EYES} reaction`);
    }
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
   * when given, else in the thread of `event` when that was a threaded message; a rich
   * reply to `event` otherwise. Retries transient failures with the same transaction id.
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
    const thread = args.thread ?? (args.event ? this.threadByEvent.get(args.event) : undefined);
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
   * Review fan-out (agent-image/src/review/fanout.ts): an `m.notice` in the team room
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
