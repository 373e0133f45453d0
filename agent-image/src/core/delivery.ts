/**
 * What the harness CLI is given for an inbox message, on both delivery routes (the Stop
 * hook's stderr and the paste into pane 0), bounded and safe to type:
 *
 * - Size: a rendered message longer than INLINE_MAX_CHARS is not handed over whole. Its
 *   full text is written to a file under the inbox folder on the home volume (which the
 *   agent can read), and the CLI gets the header, the first part of the text and a
 *   pointer: `[message is N KB; full text in /path]`, at the start and at the end of the
 *   text. A large paste is slow in a TUI (Claude Code redraws its prompt box on every
 *   chunk) and a hook's stderr lands in the model's context whole, so the cap is the
 *   same for both routes.
 * - Characters: C0 and C1 control characters other than tab and newline are shown as
 *   `\u{1b}`-style escapes. tmux pastes bytes as they are: an ESC could end the bracketed
 *   paste (`ESC [201~`) and type the rest as keys; a NUL or a lone UTF-16 surrogate
 *   breaks the CLI's request to its model (JSON with invalid Unicode).
 *
 * Cuts never split a surrogate pair.
 */
import { mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../lib/files.ts';
import { renderMessage, type InboxMessage } from './inbox.ts';

/**
 * Most characters (UTF-16 code units) of a rendered message handed to the CLI. 8 Ki: a
 * page or two of text, pasted into Claude Code in well under a second; longer messages
 * go to a file (see the module comment).
 */
export const INLINE_MAX_CHARS = 8 * 1024;
/** Full texts of large messages kept (oldest removed first). */
export const LARGE_MEMORY = 200;

/** `text` cut to at most `max` UTF-16 code units, never between the two halves of a surrogate pair. */
export function cutText(text: string, max: number): string {
  if (text.length <= max) return text;
  const end = max > 0 && isHighSurrogate(text.charCodeAt(max - 1)) ? max - 1 : max;
  return text.slice(0, end);
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

/**
 * `text` safe to paste into a terminal application and to send to a model: lone
 * surrogates become U+FFFD, CR LF and lone CR become LF, and other control characters
 * (C0 but tab and LF, DEL, C1) become a visible `\u{hex}`.
 */
export function pasteSafe(text: string): string {
  return text
    .toWellFormed()
    .replace(/\r\n?/g, '\n')
    .replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, (c) => `\\u{${c.charCodeAt(0).toString(16)}}`);
}

/** What the CLI is given for one message, and where its full text went when it is too long. */
export interface Delivery {
  /** At most about INLINE_MAX_CHARS characters, pasteSafe. */
  text: string;
  /** The file with the whole rendered message, when `text` is cut. */
  file?: string | undefined;
  /** Size of the message text in UTF-8 bytes. */
  bytes: number;
}

/**
 * The text for the CLI of message `m` (see the module comment). A long message's full
 * rendered text is written (atomically, mode 0600) to `<largeDir>/<seq>-<id>.txt`;
 * writing it again for the same message is harmless.
 * @throws the fs error when the file cannot be written
 */
export async function deliveryText(m: InboxMessage, largeDir: string): Promise<Delivery> {
  const bytes = Buffer.byteLength(m.text, 'utf8');
  const full = renderMessage({ ...m, text: m.text.toWellFormed() });
  if (full.length <= INLINE_MAX_CHARS) return { text: pasteSafe(full), bytes };
  const safeId = m.id.replace(/[^\w.-]/g, '_').slice(0, 80);
  const file = path.join(largeDir, `${String(m.seq).padStart(12, '0')}-${safeId}.txt`);
  await writeFileAtomic(file, full, 0o600);
  await prune(largeDir);
  const kb = Math.ceil(bytes / 1024);
  const pointer = `[message is ${kb} KB; full text in ${file}]`;
  const header = renderMessage({ ...m, text: '' }).length;
  const room = Math.max(1024, INLINE_MAX_CHARS - header - 2 * pointer.length - 64);
  const head = cutText(m.text.toWellFormed(), room);
  const text = `${pointer}\nThe first ${head.length} of its ${m.text.length} characters:\n${head}\n[... cut: read the rest in ${file}]`;
  return { text: pasteSafe(renderMessage({ ...m, text })), file, bytes };
}

/** Removes the oldest files of `dir` beyond LARGE_MEMORY (names sort by inbox sequence). */
async function prune(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const files = (await readdir(dir)).filter((f) => f.endsWith('.txt')).sort();
  for (const f of files.slice(0, Math.max(0, files.length - LARGE_MEMORY))) await rm(path.join(dir, f), { force: true });
}
