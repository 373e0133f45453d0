/**
 * Which room messages reach the agent (DESIGN.md flow 2, issue 7 "Triggers" and "Loop
 * prevention"). Pure: the bridge gathers the facts (who the agent is, who its teammates
 * are, how many agent messages the room has seen in a row, whether the message answers the
 * agent) and this decides.
 *
 * Event shapes (Matrix client-server API, spec.matrix.org/latest/client-server-api):
 * - intentional mentions: `content["m.mentions"].user_ids` (v1.7);
 * - threads: `content["m.relates_to"] = {rel_type: "m.thread", event_id: <root>, ...}`;
 *   rich replies: `content["m.relates_to"]["m.in_reply_to"].event_id`;
 * - edits: `content["m.relates_to"].rel_type == "m.replace"` (the original is delivered once;
 *   its edits are not delivered again);
 * - redactions: `m.room.redaction` events, and redacted events (`unsigned.redacted_because`,
 *   content stripped);
 * - `m.notice`: "intended for automated clients" that must not answer each other in loops
 *   (m.notice msgtype), so a notice counts as an agent's message.
 */
import type { MatrixEvent } from './client.ts';

/** At most this many agent messages in a row per room without a human in between. */
export const MAX_AGENT_RUN = 3;

export type DeliverReason = 'mention' | 'allowlist' | 'thread';
export type IgnoreReason =
  | 'own'
  | 'history'
  | 'not_message'
  | 'redaction'
  | 'redacted'
  | 'empty'
  | 'edit'
  | 'encrypted'
  | 'agent_not_named'
  | 'loop_guard'
  | 'not_triggered';

export type Decision =
  | { action: 'deliver'; reason: DeliverReason; agent: boolean }
  | { action: 'ignore'; reason: IgnoreReason; agent: boolean; /** 👀 it anyway: a person's message the agent saw and stays silent on. */ react: boolean }
  /** Only a reply-to-the-agent check can still make it a trigger: ask again with `replyToSelf`. */
  | { action: 'need_reply_check' };

export interface Who {
  /** The agent's own Matrix user id. */
  userId: string;
  /** Names the agent answers to in a body (its Agent name, its user id's localpart), compared case-insensitively as words. */
  names: string[];
  /** Senders whose every message is taken (spec.matrix.allowedUsers). */
  allowedUsers: ReadonlySet<string>;
  /** Other agents' user ids (the team roster). A sender of m.notice counts as an agent too. */
  agents: ReadonlySet<string>;
}

export interface Relation {
  relType?: string;
  /** The related event (the thread root for m.thread, the edited event for m.replace). */
  eventId?: string;
  /** `m.in_reply_to.event_id`. */
  inReplyTo?: string;
}

/** The `m.relates_to` of an event's content, loosely read. */
export function relationOf(content: Record<string, unknown>): Relation {
  const r = content['m.relates_to'];
  if (!r || typeof r !== 'object') return {};
  const rel = r as Record<string, unknown>;
  const reply = rel['m.in_reply_to'] as Record<string, unknown> | undefined;
  return {
    ...(typeof rel.rel_type === 'string' ? { relType: rel.rel_type } : {}),
    ...(typeof rel.event_id === 'string' ? { eventId: rel.event_id } : {}),
    ...(reply && typeof reply.event_id === 'string' ? { inReplyTo: reply.event_id } : {}),
  };
}

/** The thread root of an event in a thread, else undefined. */
export function threadOf(content: Record<string, unknown>): string | undefined {
  const r = relationOf(content);
  return r.relType === 'm.thread' ? r.eventId : undefined;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Whether the message names the agent: m.mentions, its user id, or one of its names as a word in the body. */
export function mentions(content: Record<string, unknown>, who: Pick<Who, 'userId' | 'names'>): boolean {
  const m = content['m.mentions'] as { user_ids?: unknown } | undefined;
  if (m && Array.isArray(m.user_ids) && m.user_ids.includes(who.userId)) return true;
  const body = typeof content.body === 'string' ? content.body : '';
  const html = typeof content.formatted_body === 'string' ? content.formatted_body : '';
  const id = who.userId.toLowerCase();
  if (body.toLowerCase().includes(id) || html.toLowerCase().includes(id) || html.includes(encodeURIComponent(who.userId))) return true;
  return who.names.some((n) => n && new RegExp(`(^|[^\\w-])@?${escapeRegExp(n)}($|[^\\w-])`, 'i').test(body));
}

/**
 * Decides about one timeline event. `agentRun` is the number of agent messages in a row in
 * the room before this one; the caller adds one when `agent` is true in the answer, and
 * resets to zero for a person's message (any message that is not `agent`). `replyToSelf`
 * is left undefined until a `need_reply_check` asks for it.
 */
export function decide(ev: Pick<MatrixEvent, 'type' | 'sender' | 'content' | 'unsigned'>, who: Who, agentRun: number, replyToSelf?: boolean): Decision {
  const own = ev.sender === who.userId;
  if (ev.type === 'm.room.redaction') return { action: 'ignore', reason: 'redaction', agent: false, react: false };
  if (ev.type === 'm.room.encrypted') return { action: 'ignore', reason: 'encrypted', agent: own, react: false };
  if (ev.type !== 'm.room.message') return { action: 'ignore', reason: 'not_message', agent: false, react: false };
  if (own) return { action: 'ignore', reason: 'own', agent: true, react: false };
  if (ev.unsigned?.redacted_because !== undefined || typeof ev.content.body !== 'string') {
    return { action: 'ignore', reason: 'redacted', agent: false, react: false };
  }
  if (!ev.content.body.trim()) return { action: 'ignore', reason: 'empty', agent: false, react: false };
  const relation = relationOf(ev.content);
  const agent = who.agents.has(ev.sender) || ev.content.msgtype === 'm.notice';
  // An edit of a message changes a message already seen; it is not a new request.
  if (relation.relType === 'm.replace') return { action: 'ignore', reason: 'edit', agent, react: false };
  const named = mentions(ev.content, who);
  if (agent) {
    if (!named) return { action: 'ignore', reason: 'agent_not_named', agent, react: false };
    if (agentRun + 1 > MAX_AGENT_RUN) return { action: 'ignore', reason: 'loop_guard', agent, react: false };
    return { action: 'deliver', reason: 'mention', agent };
  }
  if (named) return { action: 'deliver', reason: 'mention', agent };
  if (who.allowedUsers.has(ev.sender)) return { action: 'deliver', reason: 'allowlist', agent };
  if (relation.eventId === undefined && relation.inReplyTo === undefined) return { action: 'ignore', reason: 'not_triggered', agent, react: true };
  if (replyToSelf === undefined) return { action: 'need_reply_check' };
  if (replyToSelf) return { action: 'deliver', reason: 'thread', agent };
  return { action: 'ignore', reason: 'not_triggered', agent, react: true };
}
