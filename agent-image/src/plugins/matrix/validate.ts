/**
 * Bounds on what enters the bridge from the homeserver, checked per event so that one bad
 * event is skipped on its own instead of failing its /sync batch. Pure.
 *
 * Protocol facts (Matrix client-server API, spec.matrix.org/latest):
 * - "Size limits": the complete event MUST NOT be larger than 65536 bytes; `sender`,
 *   `room_id` and `event_id` MUST NOT exceed the size limits of their identifiers, `type`
 *   and `state_key` MUST NOT exceed 255 bytes;
 * - appendices "Identifier Grammar": user ids (`@localpart:server`), room ids (`!...`) and
 *   event ids (`$...`) are each at most 255 bytes including the sigil and the domain.
 *
 * An id that is too long, not a string, carries control characters or lone surrogates, or
 * lacks its sigil is refused here, before it reaches a homeserver lookup (a 60 KB id in a
 * URL path makes the homeserver drop the request, which looks like an outage), the inbox
 * (whose schema caps ids and meta values) or a log line.
 */
/** Largest identifier (user, room, event id), and largest `type` / `state_key` (bytes, UTF-8). */
export const MAX_ID_BYTES = 255;
/** Largest event (bytes of its JSON), client-server API "Size limits". */
export const MAX_EVENT_BYTES = 65_536;

/** Why an event is refused: a field named by its path and a reason in general terms. */
export interface EventFault {
  /** `invalid_id` (an id of the event itself), `invalid_relation` (an id it refers to), `invalid_content`, `too_large`. */
  reason: 'invalid_id' | 'invalid_relation' | 'invalid_content' | 'too_large';
  /** The field at fault, e.g. `content.m.relates_to.m.in_reply_to.event_id` (never its value). */
  field: string;
}

function byteLength(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

// Control characters and whitespace never occur in an identifier.
const BAD_ID_CHARS = /[\u0000-\u0020\u007f-\u009f\s]/u;

/** Whether `x` is an identifier with `sigil`: a well-formed string of 2..255 bytes, no whitespace or control characters. */
export function isIdentifier(x: unknown, sigil: '@' | '!' | '$'): x is string {
  return typeof x === 'string' && x.length >= 2 && x.startsWith(sigil) && byteLength(x) <= MAX_ID_BYTES && x.isWellFormed() && !BAD_ID_CHARS.test(x);
}

/** A user id: `@localpart:server`, at most 255 bytes (appendices "User Identifiers"). */
export function isUserId(x: unknown): x is string {
  return isIdentifier(x, '@') && x.indexOf(':') > 1 && x.indexOf(':') < x.length - 1;
}

/** A room id: `!...`, at most 255 bytes (appendices "Room IDs"; v12 rooms have no domain). */
export function isRoomId(x: unknown): x is string {
  return isIdentifier(x, '!');
}

/** An event id: `$...`, at most 255 bytes (appendices "Event IDs"). */
export function isEventId(x: unknown): x is string {
  return isIdentifier(x, '$');
}

/** A JSON object (not null, not an array). */
export function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/**
 * Checks one timeline event's envelope and the parts of its content the bridge acts on.
 * Returns undefined when it is fine. Lenient where a wrong shape can simply be read as
 * absent (a `formatted_body` that is not a string, an `m.mentions` without a list), strict
 * where acting on it would need a bad value (an id the event refers to).
 */
export function eventFault(ev: unknown): EventFault | undefined {
  if (!isPlainObject(ev)) return { reason: 'invalid_content', field: '(event)' };
  if (!isEventId(ev.event_id)) return { reason: 'invalid_id', field: 'event_id' };
  if (!isUserId(ev.sender)) return { reason: 'invalid_id', field: 'sender' };
  if (typeof ev.type !== 'string' || !ev.type || byteLength(ev.type) > MAX_ID_BYTES) return { reason: 'invalid_content', field: 'type' };
  if (ev.state_key !== undefined && (typeof ev.state_key !== 'string' || byteLength(ev.state_key) > MAX_ID_BYTES)) return { reason: 'invalid_content', field: 'state_key' };
  if (!isPlainObject(ev.content)) return { reason: 'invalid_content', field: 'content' };
  if (ev.unsigned !== undefined && !isPlainObject(ev.unsigned)) return { reason: 'invalid_content', field: 'unsigned' };
  if (typeof ev.origin_server_ts !== 'number' || !Number.isFinite(ev.origin_server_ts)) return { reason: 'invalid_content', field: 'origin_server_ts' };
  // The limit is on the federation format, which is larger than this one without `unsigned`
  // (the homeserver's own annotations: aggregations, a redaction's reason).
  if (byteLength(JSON.stringify({ ...ev, unsigned: undefined })) > MAX_EVENT_BYTES) return { reason: 'too_large', field: '(event)' };
  // A message's body is a string unless the message was redacted (client-server API "m.room.message").
  const redacted = isPlainObject(ev.unsigned) && ev.unsigned.redacted_because !== undefined;
  if (ev.type === 'm.room.message' && !redacted && typeof ev.content.body !== 'string') return { reason: 'invalid_content', field: 'content.body' };
  return relationFault(ev.content);
}

/** The relation ids of a content (`m.relates_to.event_id`, `m.relates_to.m.in_reply_to.event_id`) must be event ids when present. */
export function relationFault(content: Record<string, unknown>): EventFault | undefined {
  const rel = content['m.relates_to'];
  if (rel === undefined || rel === null) return undefined; // null: no relation (Synapse accepts it)
  const field = 'content.m.relates_to';
  if (!isPlainObject(rel)) return { reason: 'invalid_relation', field };
  if (rel.rel_type !== undefined && typeof rel.rel_type !== 'string') return { reason: 'invalid_relation', field: `${field}.rel_type` };
  if (rel.event_id !== undefined && !isEventId(rel.event_id)) return { reason: 'invalid_relation', field: `${field}.event_id` };
  const reply = rel['m.in_reply_to'];
  if (reply !== undefined && (!isPlainObject(reply) || !isEventId(reply.event_id))) return { reason: 'invalid_relation', field: `${field}.m.in_reply_to.event_id` };
  return undefined;
}

/** At most `max` characters of `s` (for log lines: an id or an error message quoted from input is never longer). */
export function clip(s: unknown, max = 80): string {
  // Only strings and plain scalars are shown: String() of a hostile object (a toString
  // that is not a function) throws, and one bad field must not throw out of a batch.
  const str = typeof s === 'string' ? s : typeof s === 'number' || typeof s === 'boolean' || s === null || s === undefined ? String(s) : `(${typeof s})`;
  return str.length > max ? `${str.slice(0, max)}…(${str.length} chars)` : str;
}
