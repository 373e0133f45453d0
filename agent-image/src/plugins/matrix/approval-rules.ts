/**
 * The pure rules of approvals over chat (approvals.ts does the I/O): what an answer says,
 * who may give it, what the room is shown, and which "always" rule a request matches.
 *
 * Answers (docs/matrix-bridge.md "Approvals"):
 * - a reaction to the request: ✅ or 👍 approves, ❌ or 👎 denies (variation selectors
 *   and skin tones are ignored);
 * - a reply to the request, or a message in its thread, of one line made only of
 *   `approve`/`yes` (also `approved`, `allow`, `y`) or `deny`/`no` (also `denied`,
 *   `reject`, `n`), with `always` and `please` allowed around it, case-insensitive,
 *   punctuation ignored: `approve always`, `Yes, always!`, `no`. `always` with an
 *   approval remembers it. Any other text ("yes, but first ...") is not an answer (it
 *   reaches the agent as a normal message).
 * Only senders in spec.matrix.allowedUsers count.
 */
import { createHash } from 'node:crypto';
import { redactText } from '../../lib/redact.ts';
import { cutText } from '../../core/delivery.ts';

/** Pending requests at most; one more is denied at once (a runaway loop cannot flood the room). */
export const MAX_PENDING = 8;
/** UTF-16 code units of the tool input shown in the room (after redaction and escaping); longer input is cut with "…" and a note of how much is not shown. */
export const MAX_SUMMARY_CHARS = 500;
/** UTF-16 code units of a tool name kept (shown, and in the "always" key). */
export const MAX_TOOL_CHARS = 200;
/** "Always" rules remembered per supervisor (oldest dropped beyond). */
export const MAX_RULES = 100;
/** Longest answer read (UTF-16 code units, reply fallback lines removed): a longer message is not an answer. */
export const MAX_ANSWER_CHARS = 200;

export type Verdict = 'approve' | 'deny';
export interface Answer {
  verdict: Verdict;
  always: boolean;
}

const APPROVE_WORDS = new Set(['approve', 'approved', 'yes', 'y', 'allow']);
const DENY_WORDS = new Set(['deny', 'denied', 'no', 'n', 'reject']);
const FILLER_WORDS = new Set(['always', 'please']);

/** The verdict of a reaction key, or undefined for any other key. */
export function reactionVerdict(key: string): Verdict | undefined {
  // U+FE0E/FE0F (text/emoji presentation) and the skin tone modifiers U+1F3FB..1F3FF.
  const k = key.replace(/[\uFE0E\uFE0F]|\uD83C[\uDFFB-\uDFFF]/g, '');
  if (k === '✅' || k === '👍' || k === '✔') return 'approve';
  if (k === '❌' || k === '👎' || k === '✖') return 'deny';
  return undefined;
}

/**
 * The answer a message body gives, or undefined when it is not one. Reply fallbacks
 * (`> <@alice:hs> ...` lines, Matrix's rich reply quoting) are skipped.
 */
export function parseAnswer(body: string): Answer | undefined {
  const text = body
    .split('\n')
    .filter((l) => !l.startsWith('>'))
    .join('\n')
    .trim();
  if (!text || text.length > MAX_ANSWER_CHARS || text.includes('\n')) return undefined;
  const words = text.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter(Boolean);
  // Only the verdict, "always" and "please": "yes, but first ..." is a question, not an answer.
  if (!words.every((w) => APPROVE_WORDS.has(w) || DENY_WORDS.has(w) || FILLER_WORDS.has(w))) return undefined;
  const approve = words.filter((w) => APPROVE_WORDS.has(w)).length;
  const deny = words.filter((w) => DENY_WORDS.has(w)).length;
  if (approve > 0 && deny === 0) return { verdict: 'approve', always: words.includes('always') };
  // "always" never widens a denial into a rule.
  if (deny > 0 && approve === 0) return { verdict: 'deny', always: false };
  return undefined;
}

/** Whether `sender` may answer: in spec.matrix.allowedUsers, and not the agent itself. */
export function mayAnswer(sender: string, approvers: ReadonlySet<string>, self: string): boolean {
  return sender !== self && approvers.has(sender);
}

/** JSON with object keys sorted, so the same input always gives the same text. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/**
 * The key of an "always" rule: the session, the tool and its exact input (canonical JSON;
 * Bash's free-text `description` is left out, the command is kept whole). A rule matches
 * only the very same call in the same CLI session: approving `git push origin fix` always
 * does not approve `git push origin main`.
 */
export function ruleKey(sessionId: string, tool: string, input: Record<string, unknown>): string {
  const what = { ...input };
  if (tool === 'Bash') delete what.description;
  return createHash('sha256').update(`${sessionId}\n${tool}\n${canonical(what)}`).digest('hex');
}

/** `text` cut to at most `max` UTF-16 code units with "…" (core/delivery.ts cutText: never between the halves of a surrogate pair). */
export function cut(text: string, max: number): string {
  return text.length <= max ? text : `${cutText(text, max - 1)}…`;
}

/** What the room is shown of a tool call (`summarize`), and how much of it was cut. */
export interface Summary {
  text: string;
  /** UTF-16 code units of the (redacted, escaped) summary not shown; 0 when it is whole. */
  hidden: number;
}

/** Unicode format characters (bidi controls U+202A-202E and U+2066-2069, zero-width U+200B-200F, U+FEFF, ...) and control characters but tab and LF. */
const INVISIBLE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\p{Cf}]/gu;

/**
 * What the room is shown of a tool call: Bash's command, a file tool's path (and the
 * start of its new content), a URL, else the whole input as JSON; then the canonical JSON
 * of the input keys not shown that way (e.g. `replace_all`, `run_in_background`,
 * MultiEdit's `edits`; Bash's free-text `description` left out); URL userinfo and
 * passwords removed (lib/redact.ts, nothing else), control and format characters (bidi
 * controls, zero-width characters) shown as `\u{..}`; cut to at most `max` UTF-16 code
 * units with "…" (`hidden` says how many were not shown).
 */
export function summary(tool: string, input: Record<string, unknown>, max = MAX_SUMMARY_CHARS): Summary {
  const shown = new Set<string>();
  const str = (k: string) => {
    if (typeof input[k] !== 'string') return undefined;
    shown.add(k);
    return input[k];
  };
  let text: string;
  if (tool === 'Bash' && typeof input.command === 'string') {
    text = str('command')!;
    shown.add('description');
  } else if (typeof input.file_path === 'string') {
    const oldString = str('old_string');
    text = [str('file_path'), oldString !== undefined ? `replace: ${oldString}` : undefined, str('content') ?? str('new_string')].filter((x) => x !== undefined).join('\n');
  } else if (typeof input.url === 'string') text = str('url')!;
  else {
    text = canonical(input);
    for (const k of Object.keys(input)) shown.add(k);
  }
  const rest = Object.fromEntries(Object.entries(input).filter(([k]) => !shown.has(k)));
  if (Object.keys(rest).length) text += `\n${canonical(rest)}`;
  const safe = redactText(text.toWellFormed()).replace(INVISIBLE, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
  const out = cut(safe, max);
  return { text: out, hidden: out === safe ? 0 : safe.length - (out.length - 1) };
}

/** `summary(...).text`: the summary as the room is shown it, before any note of what was cut. */
export function summarize(tool: string, input: Record<string, unknown>, max = MAX_SUMMARY_CHARS): string {
  return summary(tool, input, max).text;
}
