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
import { isPlainObject } from './validate.ts';

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


/** Whether two user ids are the same user: the localpart exactly, the server name case-insensitively (DNS names). */
function sameUser(a: string, b: string): boolean {
  const i = a.indexOf(':');
  const j = b.indexOf(':');
  return i > 0 && j > 0 && a.slice(0, i) === b.slice(0, j) && a.slice(i + 1).toLowerCase() === b.slice(j + 1).toLowerCase();
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/** HTML character references in an attribute value (`&amp;`, `&#64;`, `&#x40;`). */
function decodeEntities(s: string): string {
  return s.replace(/&(#x[0-9a-f]{1,6}|#[0-9]{1,7}|[a-z]{2,4});/gi, (all, ref: string) => {
    if (ref[0] !== '#') return ENTITIES[ref.toLowerCase()] ?? all;
    const code = ref[1] === 'x' || ref[1] === 'X' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
    return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : all;
  });
}

function safeDecode(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

/**
 * The user a link points at, for the two link forms of a user (appendices "Uris"): a
 * matrix.to link `https://matrix.to/#/@user:server` (any percent-encoding, either hex case,
 * with or without `?via=...`) and a Matrix URI `matrix:u/user:server`. Undefined for any
 * other link.
 */
export function linkedUserId(href: string): string | undefined {
  const h = decodeEntities(href).trim();
  let m = /^https?:\/\/matrix\.to\/#\/([^?]*)/i.exec(h);
  if (m) {
    const target = safeDecode(m[1]!.replace(/\/+$/, ''));
    return target?.startsWith('@') ? target : undefined;
  }
  m = /^matrix:(?:\/\/[^/]*\/)?u\/([^?#/]*)/i.exec(h);
  if (m) {
    const target = safeDecode(m[1]!);
    return target ? `@${target}` : undefined;
  }
  return undefined;
}

/** The users linked from `<a href>` pills of an HTML body (client-server API "User and room mentions": a pill is a Matrix URI in the HTML body). */
export function pillUserIds(html: string): string[] {
  const out: string[] = [];
  for (const m of html.matchAll(/\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))/giu)) {
    const id = linkedUserId(m[1] ?? m[2] ?? m[3] ?? '');
    if (id) out.push(id);
  }
  return out;
}

/**
 * URLs in plain text (any scheme://, matrix: URIs, www.): a name inside one is part of an
 * address, not a mention. Every open-ended run is bounded or stops at a character the next
 * part cannot start with, so a 64 KB body is scanned in linear time.
 */
const URL_IN_TEXT = /\b[a-z][a-z0-9+.-]{0,31}:\/\/[^\s<>"]*|\bmatrix:[^\s<>"]+|\bwww\.[^\s<>"]+/giu;
/** User ids in plain text (`@localpart:server[:port]`, appendices "User Identifiers"; historical localparts allow more than today's grammar). */
const USER_ID_IN_TEXT = /@[^\s:@<>"'`]{1,255}:(?:\[[0-9a-f:.]{1,64}\]|[\p{L}\p{N}.-]{1,255})(?::[0-9]{1,5})?/giu;
/** A character a name glued to is part of: letters, digits and marks of any script, `_`, `-`, path and address punctuation. */
const GLUE_BEFORE = String.raw`[\p{L}\p{N}\p{M}_\-/\\#:$!+=~&%@]|[\p{L}\p{N}\p{M}]\.`;
const GLUE_AFTER = String.raw`[\p{L}\p{N}\p{M}_\-/\\@]|\.[\p{L}\p{N}\p{M}]`;

/** Compiled whole-word patterns by name: an agent has two names, so compiled once, not per message. */
const WORD_PATTERNS = new Map<string, RegExp>();

/** The pattern of `name` as a whole word (see {@link mentions}); case-insensitive, Unicode. */
function wholeWord(name: string): RegExp {
  let re = WORD_PATTERNS.get(name);
  if (!re) {
    if (WORD_PATTERNS.size >= 64) WORD_PATTERNS.clear();
    re = new RegExp(`(?<!${GLUE_BEFORE})@?${escapeRegExp(name)}(?!${GLUE_AFTER})`, 'iu');
    WORD_PATTERNS.set(name, re);
  }
  return re;
}

/**
 * Whether the message mentions the agent.
 *
 * - An event with `m.mentions` is judged by it alone: mentioned when
 *   `m.mentions.user_ids` lists the agent's user id (client-server API "User and room
 *   mentions", v1.7; the body-matching push rules `.m.rule.contains_display_name` and
 *   `.m.rule.contains_user_name` "should only be enabled if the event does not have an
 *   `m.mentions` property", "Push rules: default override rules"). `@room` does not count.
 * - Without it (older clients, scripts): a pill in `formatted_body` linking the agent's full
 *   user id in any valid encoding; the full user id in the body; or one of `names` as a
 *   whole word of the body (Unicode letters and digits decide the word; a name inside a
 *   URL, a path, a host name or another user's id is not one).
 */
export function mentions(content: Record<string, unknown>, who: Pick<Who, 'userId' | 'names'>): boolean {
  if (Object.hasOwn(content, 'm.mentions')) {
    const m = content['m.mentions'];
    return isPlainObject(m) && Array.isArray(m.user_ids) && m.user_ids.some((u) => typeof u === 'string' && sameUser(u, who.userId));
  }
  const html = typeof content.formatted_body === 'string' ? content.formatted_body : '';
  if (html && pillUserIds(html).some((u) => sameUser(u, who.userId))) return true;
  let body = typeof content.body === 'string' ? content.body : '';
  let self = false;
  body = body.replace(URL_IN_TEXT, (url) => {
    const id = linkedUserId(url);
    if (id && sameUser(id, who.userId)) self = true;
    return ' ';
  });
  body = body.replace(USER_ID_IN_TEXT, (id) => {
    if (sameUser(id.replace(/[.:]+$/, ''), who.userId)) self = true;
    return ' ';
  });
  if (self) return true;
  return who.names.some((n) => n && wholeWord(n).test(body));
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
