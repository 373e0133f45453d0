/**
 * One /sync batch of the Matrix bridge (bridge.ts): invites answered, each joined room's
 * timeline (a limited one filled from /messages) read event by event, taken messages put
 * into the inbox, then the batch's reactions and notices sent. It works on a copy of the
 * bridge's state; the bridge saves the copy with the batch's token only when the whole
 * batch went through, so a failure retries the whole batch (the inbox recognises ids).
 *
 * One bad event never stops the agent: one that fails on its own content is skipped
 * (skipEvent) with one warning line and the `events_failed` metric, and answered when a
 * person sent it; a transient failure (homeserver away) fails the batch, until the batch's
 * last try (MAX_BATCH_ATTEMPTS), from which the event is skipped as `unavailable`.
 * Failures of our own volume (the inbox or state file) are never blamed on an event.
 */
import type { Logger } from '../../lib/log.ts';
import { REVIEW_REQUEST_KEY, reviewRequestId } from '../../core/review-request.ts';
import { InboxFullError, MAX_MESSAGE_CHARS } from '../../core/inbox.ts';
import type { BridgeOptions } from './bridge.ts';
import { MatrixError, withRetry, type MatrixClient, type MatrixEvent, type SyncResponse } from './client.ts';
import { OWN_MEMORY, remember, rememberAnswerThread, type BridgeState } from './state.ts';
import type { MatrixSends, Outgoing, SkipReason } from './sends.ts';
import { APPROVAL_KEY, type MatrixApprovals } from './approvals.ts';
import { decide, MAX_AGENT_RUN, mentions, relationOf, threadOf, type Decision, type Who } from './triggers.ts';
import { clip, eventFault, isEventId, isPlainObject, isRoomId, isUserId, relationFault } from './validate.ts';

/** Event types the bridge asks /sync for: messages, and what it must see to not deliver twice or too early. */
export const TIMELINE_TYPES = ['m.room.message', 'm.room.redaction', 'm.room.encrypted', 'm.room.member', 'm.room.encryption', 'm.reaction'];
/** Pages of /messages fetched to fill one limited timeline (100 events each). */
const MAX_GAP_PAGES = 20;

/** What a batch needs of the bridge: its options, client and sends, and the state it keeps between batches. */
export interface BatchContext {
  readonly opts: BridgeOptions;
  /** Approvals over chat: a live event that answers a request is consumed there (approvals.ts). */
  readonly approvals?: Pick<MatrixApprovals, 'take'> | undefined;
  readonly client: MatrixClient;
  readonly sends: MatrixSends;
  readonly log: Logger;
  /** The bridge's stop. */
  readonly signal: AbortSignal;
  readonly allowedUsers: ReadonlySet<string>;
  /** Room ids of spec.matrix.rooms once joined (an invite to one is accepted). */
  readonly configuredRooms: ReadonlySet<string>;
  /** Matrix ids of the other agents of the team (the roster); replaced when the roster changes. */
  agents: ReadonlySet<string>;
  /** Thread the answer to a recently taken event goes to (also in the saved state), so matrix_reply answers there by event id alone. */
  readonly threadByEvent: Map<string, string>;
  /** Ids of events skipped lately, so a retried batch does not log or count them again. */
  readonly skipped: Set<string>;
}

/** One batch being handled: the state copy it writes, and what it sends at the end. */
interface Batch {
  readonly ctx: BatchContext;
  readonly draft: BridgeState;
  readonly since: string | undefined;
  /** The first /sync of this bridge (no token): everything in it is history. */
  readonly first: boolean;
  /** The batch's last try: a transient failure skips the event instead of failing the batch. */
  readonly lastTry: boolean;
  readonly out: Outgoing;
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

function localpart(userId: string): string {
  return userId.slice(1).split(':')[0] ?? userId;
}

/** The names the agent answers to in a body: its Agent name and its user id's localpart. */
function namesOf(ctx: BatchContext): string[] {
  return [ctx.opts.agentName, localpart(ctx.opts.config.userId)];
}

/**
 * Handles one /sync response against a copy of `state` (see the module comment).
 * @returns the copy with the batch's token, to be saved; undefined when the bridge stopped
 *   before the batch's sends were done (the batch is left to the next start)
 * @throws what fails the batch (a transient failure before the last try, our own volume)
 */
export async function handleBatch(ctx: BatchContext, state: BridgeState, res: SyncResponse, since: string | undefined, lastTry: boolean): Promise<BridgeState | undefined> {
  const b: Batch = { ctx, draft: structuredClone(state), since, first: since === undefined, lastTry, out: { eyes: [], warnings: [], encrypted: [] } };
  const { draft } = b;
  // Read loosely: a homeserver's odd shape skips a room or an event, never the batch.
  const rooms: Record<string, unknown> = isPlainObject(res.rooms) ? res.rooms : {};

  for (const [roomId, invite] of Object.entries(isPlainObject(rooms.invite) ? rooms.invite : {})) {
    if (!isRoomId(roomId)) continue; // the invite stays unanswered; nothing to address it by
    const events: unknown[] = isPlainObject(invite) && isPlainObject(invite.invite_state) && Array.isArray(invite.invite_state.events) ? invite.invite_state.events : [];
    await handleInvite(ctx, roomId, events.filter(isPlainObject));
  }
  for (const [roomId, room] of Object.entries(isPlainObject(rooms.join) ? rooms.join : {})) {
    if (!isRoomId(roomId) || !isPlainObject(room)) {
      ctx.opts.metrics.eventsFailed.inc({ reason: 'invalid_id' });
      ctx.log.warn({ room: clip(roomId) }, 'Matrix room skipped: its room id is not valid');
      continue;
    }
    await handleJoinedRoom(b, roomId, room);
  }
  for (const roomId of Object.keys(isPlainObject(rooms.leave) ? rooms.leave : {})) {
    draft.joined = draft.joined.filter((r) => r !== roomId);
    delete draft.agentRun[roomId];
  }

  await sendOutgoing(b);
  // Stopping cut the reactions short: leave the batch to the next start (the inbox knows its ids).
  if (ctx.signal.aborted) return undefined;
  draft.since = res.next_batch;
  return draft;
}

/** The batch's 👀 reactions, warnings (at most MAX_AGENT_RUN notices per room) and encrypted-room notices. */
async function sendOutgoing({ ctx, draft, lastTry, out }: Batch): Promise<void> {
  for (const r of out.eyes) await ctx.sends.eyes(r.room, r.event, lastTry);
  // At most MAX_AGENT_RUN notices per room and batch: a flood of bad messages gets ⚠️ reactions, not a flood of notices.
  const notices = new Map<string, number>();
  for (const w of out.warnings) {
    const n = notices.get(w.room) ?? 0;
    const notice = w.notice && n < MAX_AGENT_RUN;
    if (notice) notices.set(w.room, n + 1);
    await ctx.sends.warning({ ...w, notice }, lastTry);
  }
  for (const room of out.encrypted) if (!draft.encryptedRooms.includes(room)) await ctx.sends.tellEncrypted(room, draft, lastTry);
}

/** One joined room of the batch: its timeline (gap filled), whether it is encrypted, then its events in order. */
async function handleJoinedRoom(b: Batch, roomId: string, room: Record<string, unknown>): Promise<void> {
  const { ctx, draft, first } = b;
  const timeline = isPlainObject(room.timeline) ? room.timeline : {};
  const wasJoined = draft.joined.includes(roomId);
  const events = await timelineEvents(b, roomId, timeline, wasJoined);
  const state: unknown[] = isPlainObject(room.state) && Array.isArray(room.state.events) ? room.state.events : [];
  if ([...state, ...events].some((e) => isPlainObject(e) && (e.type === 'm.room.encryption' || e.type === 'm.room.encrypted'))) b.out.encrypted.push(roomId);
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
      skipEvent(b, roomId, raw, live, { reason: fault.reason, field: fault.field });
      continue;
    }
    const ev = raw as MatrixEvent;
    if (ev.type === 'm.room.member') {
      if (ev.state_key === ctx.opts.config.userId && ev.content.membership === 'join') live = !first;
      continue;
    }
    if (ev.type === 'm.room.encryption') continue;
    try {
      await handleEvent(b, roomId, ev, live);
    } catch (err) {
      const kind = failureKind(err);
      if (ctx.signal.aborted || kind === 'local' || (kind === 'transient' && !b.lastTry)) throw err;
      skipEvent(b, roomId, ev, live, { reason: kind === 'transient' ? 'unavailable' : 'error', err });
    }
  }
  if (!wasJoined) draft.joined.push(roomId);
}

/** A room's timeline events; a timeline the homeserver cut short (`limited`) is filled from /messages first. */
async function timelineEvents({ ctx, first, since, lastTry }: Batch, roomId: string, timeline: Record<string, unknown>, wasJoined: boolean): Promise<unknown[]> {
  const events: unknown[] = Array.isArray(timeline.events) ? timeline.events : [];
  if (!(timeline.limited && !first && wasJoined && typeof timeline.prev_batch === 'string')) return events;
  try {
    const gap = await fillGap(ctx, roomId, timeline.prev_batch, since);
    if (gap.length) ctx.log.info({ room: roomId, events: gap.length }, 'timeline was limited; filled the gap from /messages');
    return [...gap, ...events];
  } catch (err) {
    if (ctx.signal.aborted || (failureKind(err) !== 'event' && !lastTry)) throw err;
    ctx.log.warn({ room: roomId, error: clip((err as Error).message, 200) }, 'cannot fill a limited timeline from /messages; the messages in the gap are not delivered');
    return events;
  }
}

/** Timeline events between `since` and `prevBatch`, oldest first (client-server API GET /messages, `to`). */
async function fillGap(ctx: BatchContext, roomId: string, prevBatch: string, since: string | undefined): Promise<MatrixEvent[]> {
  const out: MatrixEvent[] = [];
  let from = prevBatch;
  for (let page = 0; page < MAX_GAP_PAGES; page++) {
    const r = await ctx.client.messages(roomId, { from, to: since, dir: 'b', limit: 100, filter: { types: TIMELINE_TYPES }, signal: ctx.signal });
    out.push(...r.chunk);
    if (!r.end || r.chunk.length === 0) return out.reverse();
    from = r.end;
  }
  ctx.log.warn({ room: roomId, fetched: out.length }, 'gap larger than the bridge fetches; older messages in it are not delivered');
  return out.reverse();
}

/**
 * Skips one event that cannot be handled: one warning line (ids clipped, no content) and
 * the `events_failed` metric, once per event even when its batch is retried, and, for a person's live message, a visible answer: a
 * notice when the agent would have taken it (allow-listed sender or a mention), a ⚠️
 * reaction otherwise (and beyond MAX_AGENT_RUN notices in a room per batch). Never for
 * the agent's own events or another agent's (no loops).
 */
function skipEvent({ ctx, draft, out }: Batch, roomId: string, raw: unknown, live: boolean, why: { reason: SkipReason; field?: string | undefined; err?: unknown }): void {
  const { reason, field, err } = why;
  const ev = isPlainObject(raw) ? raw : {};
  const key = `${roomId} ${clip(ev.event_id)}`;
  if (!ctx.skipped.has(key)) {
    ctx.skipped.add(key);
    if (ctx.skipped.size > OWN_MEMORY) ctx.skipped.delete(ctx.skipped.values().next().value!);
    ctx.opts.metrics.eventsFailed.inc({ reason });
    ctx.log.warn(
      { room: roomId, event: clip(ev.event_id), sender: clip(ev.sender), type: clip(ev.type, 40), reason, ...(field ? { field } : {}), ...(err ? { error: clip((err as Error).message, 200) } : {}) },
      'Matrix event skipped: it cannot be handled on its own content',
    );
  }
  if (!isEventId(ev.event_id) || !isUserId(ev.sender) || ev.sender === ctx.opts.config.userId || ev.type !== 'm.room.message') return;
  const content = isPlainObject(ev.content) ? ev.content : {};
  if (ctx.agents.has(ev.sender) || content.msgtype === 'm.notice') return;
  // A person's message: the run of agent messages in the room starts again.
  draft.agentRun[roomId] = 0;
  if (!live) return;
  let wanted = ctx.allowedUsers.has(ev.sender);
  try {
    wanted ||= mentions(content, { userId: ctx.opts.config.userId, names: namesOf(ctx) });
  } catch {
    // a content the mention rules cannot read: not known to be for the agent
  }
  const thread = relationFault(content) ? undefined : threadOf(content);
  out.warnings.push({ room: roomId, event: ev.event_id, reason, notice: wanted, thread });
}

/** One valid timeline event (eventFault found nothing): decide, then deliver or acknowledge. @throws what a lookup or the inbox throws (handleJoinedRoom sorts it) */
async function handleEvent(b: Batch, roomId: string, ev: MatrixEvent, live: boolean): Promise<void> {
  const { ctx, draft, out } = b;
  const m = ctx.opts.metrics;
  // The filter bounds the types; a homeserver that ignores it does not grow the label set.
  m.received.inc({ type: TIMELINE_TYPES.includes(ev.type) ? ev.type : 'other' });
  const who: Who = {
    userId: ctx.opts.config.userId,
    names: namesOf(ctx),
    allowedUsers: ctx.allowedUsers,
    agents: ctx.agents,
  };
  const run = draft.agentRun[roomId] ?? 0;
  let d: Decision = decide(ev, who, run);
  if (d.action === 'need_reply_check') d = decide(ev, who, run, await repliesToSelf(ctx, roomId, ev, draft));
  if (d.action === 'need_reply_check') return; // unreachable: decide answers once replyToSelf is known

  if (d.action === 'ignore' && d.reason === 'own') {
    remember(draft.own, ev.event_id);
    const thread = threadOf(ev.content);
    if (thread) remember(draft.threads, thread);
  }
  // The loop guard counts messages in timeline order: an agent's adds one, a person's resets.
  // The supervisor's approval posts are not the agent talking: they do not count either.
  const counts = ev.type === 'm.room.message' && !(APPROVAL_KEY in ev.content && ev.sender === ctx.opts.config.userId) && !(d.action === 'ignore' && (d.reason === 'edit' || d.reason === 'redacted' || d.reason === 'empty'));
  if (counts) draft.agentRun[roomId] = d.agent ? run + 1 : 0;

  if (!live) {
    m.ignored.inc({ reason: 'history' });
    return;
  }
  if (ctx.approvals?.take(roomId, ev)) {
    m.ignored.inc({ reason: 'approval_answer' });
    return;
  }
  if (d.action === 'ignore') {
    m.ignored.inc({ reason: d.reason });
    ctx.log.debug({ room: roomId, event: ev.event_id, sender: ev.sender, reason: d.reason }, 'Matrix event not delivered');
    if (d.reason === 'loop_guard') ctx.log.info({ room: roomId, event: ev.event_id, sender: ev.sender, run: run + 1 }, `loop guard: more than ${MAX_AGENT_RUN} agent messages in a row; not delivered`);
    if (d.react) out.eyes.push({ room: roomId, event: ev.event_id });
    // A person's encrypted message: ⚠️ (the room was told once why), not silence.
    if (d.reason === 'encrypted' && ev.sender !== ctx.opts.config.userId && !ctx.agents.has(ev.sender)) out.warnings.push({ room: roomId, event: ev.event_id, reason: 'error', notice: false });
    return;
  }
  await deliver(b, roomId, ev, d);
}

/**
 * Puts a message the agent takes into the inbox (under the review request's id when it is
 * a teammate's review request), with the thread its answer goes to, and queues its 👀.
 */
async function deliver({ ctx, draft, out }: Batch, roomId: string, ev: MatrixEvent, d: Decision & { action: 'deliver' }): Promise<void> {
  const m = ctx.opts.metrics;
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
  const { message, duplicate } = await ctx.opts.inbox.put({
    id: reviewOf ? reviewRequestId(reviewOf) : ev.event_id,
    source: 'matrix',
    text: body.length > MAX_MESSAGE_CHARS ? `${body.slice(0, MAX_MESSAGE_CHARS - 20)} [... cut]` : body,
    meta: { room: roomId, sender: ev.sender, event: ev.event_id, ...(thread ? { thread } : {}) },
  });
  if (thread) {
    remember(draft.threads, thread);
    rememberAnswerThread(draft.answerThreads, ev.event_id, thread);
    ctx.threadByEvent.delete(ev.event_id);
    ctx.threadByEvent.set(ev.event_id, thread);
    if (ctx.threadByEvent.size > OWN_MEMORY) ctx.threadByEvent.delete(ctx.threadByEvent.keys().next().value!);
  }
  if (!duplicate) {
    m.delivered.inc({ reason: d.reason });
    m.deliverySeconds.observe(Math.max(0, Date.now() - ev.origin_server_ts) / 1000);
    ctx.opts.onDelivered?.(message);
    ctx.log.info({ room: roomId, event: ev.event_id, sender: ev.sender, trigger: d.reason, ...(thread ? { thread } : {}) }, 'Matrix message put in the inbox');
    void ctx.opts.outbox?.emit('message_received', { source: 'matrix', room: roomId, event: ev.event_id, sender: ev.sender, trigger: d.reason });
  }
  out.eyes.push({ room: roomId, event: ev.event_id });
}

/**
 * Whether a message follows up on the agent: it is in a thread the agent is in (it posted
 * there or took a message there), it replies to a message the agent took at the top level,
 * or its thread root or the event it answers is the agent's.
 */
async function repliesToSelf(ctx: BatchContext, roomId: string, ev: MatrixEvent, draft: BridgeState): Promise<boolean> {
  const rel = relationOf(ev.content);
  const root = rel.relType === 'm.thread' ? rel.eventId : undefined;
  if (root && draft.threads.includes(root)) return true;
  if (rel.inReplyTo && draft.threads.includes(rel.inReplyTo)) return true;
  // Ids are event ids here (eventFault checked the relation), so a lookup is a short, valid request.
  const ids = [root, rel.inReplyTo].filter((x): x is string => isEventId(x));
  if (ids.some((id) => draft.own.includes(id))) return true;
  for (const id of ids) {
    try {
      if ((await ctx.client.event(roomId, id, ctx.signal)).sender === ctx.opts.config.userId) return true;
    } catch (err) {
      // A transient failure retries the batch; an event we may not see (404, 403) is not the agent's.
      if (err instanceof MatrixError && err.transient) throw err;
    }
  }
  return false;
}

/** Accepts an invite from an allow-listed user (or to a configured room), refuses others. `events` are its stripped state, read loosely. */
async function handleInvite(ctx: BatchContext, roomId: string, events: Array<Record<string, unknown>>): Promise<void> {
  const self = ctx.opts.config.userId;
  const sender = events.find((e) => e.type === 'm.room.member' && e.state_key === self && isPlainObject(e.content) && e.content.membership === 'invite')?.sender;
  const inviter = isUserId(sender) ? sender : undefined;
  try {
    if ((inviter && ctx.allowedUsers.has(inviter)) || ctx.configuredRooms.has(roomId) || ctx.opts.config.rooms.includes(roomId) || ctx.opts.config.approvals?.room === roomId) {
      await withRetry(() => ctx.client.join(roomId, ctx.signal), { attempts: 3, signal: ctx.signal });
      ctx.log.info({ room: roomId, inviter }, 'accepted an invite');
      void ctx.opts.outbox?.emit('matrix_room_joined', { room: roomId, inviter });
    } else {
      await withRetry(() => ctx.client.leave(roomId, ctx.signal), { attempts: 3, signal: ctx.signal });
      ctx.opts.metrics.ignored.inc({ reason: 'invite_refused' });
      ctx.log.info({ room: roomId, inviter }, 'refused an invite from a user not in spec.matrix.allowedUsers');
    }
  } catch (err) {
    // The invite stays in /sync until answered: the next batch tries again.
    ctx.log.warn({ room: roomId, inviter, error: clip((err as Error).message, 200) }, 'cannot answer an invite; will try again');
  }
}
