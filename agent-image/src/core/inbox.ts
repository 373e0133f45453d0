/**
 * The supervisor inbox: a durable FIFO of messages for the harness, on the home volume,
 * so nothing taken (a Matrix mention, a PR comment, a review request) is lost when the
 * supervisor or the pod restarts.
 *
 * Layout under `dir`: `pending/<seq>-<id>.json` (one file per message, written to a
 * temporary name and renamed, so a crash never leaves half a message) and
 * `delivered.json` (the ids of the last DELIVERED_MEMORY delivered messages, so a
 * producer that retries with the same id does not deliver twice). Delivery is
 * at-least-once: a message stays pending until `ack`.
 *
 * A message the harness cannot be given (supervisor.ts counts the attempts) is set aside
 * with `deadLetter`: its file moves to `dead/` with the reason (the last DEAD_MEMORY
 * are kept), its id joins the delivered ids (a producer's retry does not bring it back),
 * and the messages behind it move on. `large/` holds the full text of messages too long
 * to hand over whole (delivery.ts).
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../lib/files.ts';

/** How many delivered ids are remembered for de-duplication. */
export const DELIVERED_MEMORY = 5000;
/**
 * Largest message text accepted (UTF-16 code units, JavaScript's string length). A
 * Matrix event is at most 65536 bytes of JSON (Matrix spec, client-server API, "Size
 * limits"), so any body a homeserver accepts is shorter, in any script: a UTF-8 byte
 * never counts as more than one code unit.
 */
export const MAX_MESSAGE_CHARS = 64 * 1024;
/** Most context entries of one message, and their longest key and value (characters). */
export const MAX_META_ENTRIES = 16;
export const MAX_META_KEY_CHARS = 64;
export const MAX_META_VALUE_CHARS = 1024;
/** Dead letters kept in `dead/` (oldest removed first). */
export const DEAD_MEMORY = 1000;
/** Most messages pending at once; `put` refuses more (InboxFullError) rather than fill the home volume. */
export const MAX_PENDING = 1000;

/** `put` found MAX_PENDING messages waiting: the harness is not taking them; try again later. */
export class InboxFullError extends Error {
  override name = 'InboxFullError';
}

export const InboxMessageInput = z.object({
  /** Producer's id (e.g. a Matrix event id); the same id is never delivered twice. Generated when absent. */
  id: z.string().min(1).max(256).optional(),
  /** Where it came from: matrix, github, review, api, ... */
  source: z.string().min(1).max(64),
  /** The message; a lone UTF-16 surrogate (half of a character cut in two) becomes U+FFFD. */
  text: z
    .string()
    .min(1)
    .max(MAX_MESSAGE_CHARS)
    .transform((t) => t.toWellFormed()),
  /** Context shown to the agent with the message: room, sender, event id, thread, PR url ... */
  meta: z
    .record(z.string().min(1).max(MAX_META_KEY_CHARS), z.string().max(MAX_META_VALUE_CHARS))
    .refine((m) => Object.keys(m).length <= MAX_META_ENTRIES, `at most ${MAX_META_ENTRIES} entries`)
    .default({}),
});
export type InboxMessageInput = z.input<typeof InboxMessageInput>;

export interface InboxMessage {
  id: string;
  source: string;
  text: string;
  meta: Record<string, string>;
  /** RFC 3339 time it entered the inbox. */
  receivedAt: string;
  seq: number;
}

/** Whether `put` stored a new message or recognised its id. */
export type PutResult = { message: InboxMessage; duplicate: boolean };

/** A message set aside (`dead/<file>.json`): the message, why, and after how many attempts. */
export interface DeadLetter extends InboxMessage {
  reason: string;
  attempts: number;
  /** RFC 3339 time it was set aside. */
  deadAt: string;
}

export class Inbox extends EventEmitter<{ message: [InboxMessage] }> {
  /** The inbox folder (`pending/`, `dead/`, `large/`, `delivered.json`). */
  readonly dir: string;
  private readonly pendingDir: string;
  private readonly deadDir: string;
  private readonly deliveredFile: string;
  private deadCount = 0;
  private pending: InboxMessage[] = [];
  private delivered: string[] = [];
  private deliveredSet = new Set<string>();
  private seq = 0;
  private writes: Promise<void> = Promise.resolve();

  constructor(dir: string) {
    super();
    this.dir = dir;
    this.pendingDir = path.join(dir, 'pending');
    this.deadDir = path.join(dir, 'dead');
    this.deliveredFile = path.join(dir, 'delivered.json');
  }

  /** Loads pending messages and delivered ids from disk; removes torn temporary files. */
  async open(): Promise<void> {
    await mkdir(this.pendingDir, { recursive: true });
    const files = (await readdir(this.pendingDir)).sort();
    for (const f of files) {
      const full = path.join(this.pendingDir, f);
      if (!f.endsWith('.json')) {
        await rm(full, { force: true });
        continue;
      }
      try {
        const m = JSON.parse(await readFile(full, 'utf8')) as InboxMessage;
        if (typeof m.id !== 'string' || typeof m.text !== 'string' || typeof m.source !== 'string' || typeof m.seq !== 'number') throw new Error('not a message');
        m.meta = typeof m.meta === 'object' && m.meta !== null ? m.meta : {};
        this.pending.push(m);
        this.seq = Math.max(this.seq, m.seq);
      } catch {
        await rename(full, `${full}.corrupt`).catch(() => undefined);
      }
    }
    try {
      this.delivered = (JSON.parse(await readFile(this.deliveredFile, 'utf8')) as string[]).slice(-DELIVERED_MEMORY);
    } catch {
      this.delivered = [];
    }
    this.deliveredSet = new Set(this.delivered);
    await mkdir(this.deadDir, { recursive: true });
    this.deadCount = (await readdir(this.deadDir)).filter((f) => f.endsWith('.json')).length;
  }

  get size(): number {
    return this.pending.length;
  }

  /** Where the full text of messages too long to hand over whole goes (delivery.ts). */
  get largeDir(): string {
    return path.join(this.dir, 'large');
  }

  /** Messages set aside and kept in `dead/`. */
  get deadLetters(): number {
    return this.deadCount;
  }

  /** The oldest pending message. */
  peek(): InboxMessage | undefined {
    return this.pending[0];
  }

  /**
   * Stores a message durably (resolves after the file is renamed into place) and emits
   * `message`. A message whose id is pending or was delivered is not stored again.
   * @throws z.ZodError naming the field when the input is invalid; InboxFullError when
   *   MAX_PENDING messages are waiting.
   */
  async put(input: InboxMessageInput): Promise<PutResult> {
    const m = InboxMessageInput.parse(input);
    const id = m.id ?? randomUUID();
    const existing = this.pending.find((p) => p.id === id);
    if (existing) return { message: existing, duplicate: true };
    if (this.deliveredSet.has(id)) return { message: { id, source: m.source, text: m.text, meta: m.meta, receivedAt: '', seq: 0 }, duplicate: true };
    if (this.pending.length >= MAX_PENDING) throw new InboxFullError(`the inbox holds ${MAX_PENDING} messages the agent has not taken yet; try again later`);
    const message: InboxMessage = { id, source: m.source, text: m.text, meta: m.meta, receivedAt: new Date().toISOString(), seq: ++this.seq };
    const file = this.fileOf(message);
    await writeFile(`${file}.tmp`, JSON.stringify(message));
    await rename(`${file}.tmp`, file);
    this.pending.push(message);
    this.emit('message', message);
    return { message, duplicate: false };
  }

  /** The first pending message that `match` accepts. */
  findPending(match: (m: InboxMessage) => boolean): InboxMessage | undefined {
    return this.pending.find(match);
  }

  /**
   * Sets a pending message aside: writes it with `reason` and `attempts` to
   * `dead/<file>.json`, then removes it from pending like `ack` (its id is remembered,
   * so a producer's retry is a duplicate). Keeps the newest DEAD_MEMORY dead letters.
   * @returns the dead letter's file, or undefined when the id is not pending
   * @throws the file system's error when `dead/` cannot be written or pruned (the message stays pending)
   */
  async deadLetter(id: string, reason: string, attempts: number): Promise<string | undefined> {
    const m = this.pending.find((p) => p.id === id);
    if (!m) return undefined;
    const file = path.join(this.deadDir, path.basename(this.fileOf(m)));
    const letter: DeadLetter = { ...m, reason, attempts, deadAt: new Date().toISOString() };
    await writeFileAtomic(file, JSON.stringify(letter), 0o600);
    // The folder is read only when it may hold more than DEAD_MEMORY letters.
    if (this.deadCount + 1 > DEAD_MEMORY) {
      const files = (await readdir(this.deadDir)).filter((f) => f.endsWith('.json')).sort();
      for (const old of files.slice(0, Math.max(0, files.length - DEAD_MEMORY))) await rm(path.join(this.deadDir, old), { force: true });
      this.deadCount = Math.min(files.length, DEAD_MEMORY);
    } else {
      this.deadCount++;
    }
    await this.ack(id);
    return file;
  }

  /** Marks a message delivered: removes it from pending, remembers its id. Unknown ids are ignored. */
  async ack(id: string): Promise<boolean> {
    const i = this.pending.findIndex((p) => p.id === id);
    if (i < 0) return false;
    const [m] = this.pending.splice(i, 1);
    this.delivered.push(id);
    this.deliveredSet.add(id);
    if (this.delivered.length > DELIVERED_MEMORY) {
      for (const old of this.delivered.splice(0, this.delivered.length - DELIVERED_MEMORY)) this.deliveredSet.delete(old);
    }
    // Serialise writes of delivered.json; remove the pending file after the id is recorded.
    const snapshot = JSON.stringify(this.delivered);
    this.writes = this.writes.then(async () => {
      await writeFile(`${this.deliveredFile}.tmp`, snapshot);
      await rename(`${this.deliveredFile}.tmp`, this.deliveredFile);
      if (m) await rm(this.fileOf(m), { force: true });
    });
    await this.writes;
    return true;
  }

  private fileOf(m: InboxMessage): string {
    const safeId = m.id.replace(/[^\w.-]/g, '_').slice(0, 80);
    return path.join(this.pendingDir, `${String(m.seq).padStart(12, '0')}-${safeId}.json`);
  }
}

/**
 * The text the harness receives for a message: a line that says it is a real request
 * (Claude Code wraps hook output in a "not user input" system notice), a tagged header with
 * the source and its context (room, sender, event, thread ...), then the message. The id lets the supervisor
 * recognise the prompt when it comes back through the UserPromptSubmit hook.
 */
export function renderMessage(m: Pick<InboxMessage, 'id' | 'source' | 'text' | 'meta'>): string {
  const attrs = Object.entries({ id: m.id, source: m.source, ...m.meta })
    .map(([k, v]) => `${k}="${attrValue(v)}"`)
    .join(' ');
  return (
    `A message for you arrived through agent-smith from ${m.source}. It is a real request from the sender named below: ` +
    `act on it, and answer through the tools its source names.\n<agent-smith-message ${attrs}>\n${m.text}\n</agent-smith-message>`
  );
}

/** A value as renderMessage writes it in the header: no double quotes, on one line. */
export function attrValue(v: string): string {
  return v.replaceAll('"', "'").replace(/[\r\n]/g, ' ');
}

/** The message id in a rendered message (from a UserPromptSubmit prompt), if any: the id as attrValue wrote it. */
export function renderedMessageId(prompt: string): string | undefined {
  return /<agent-smith-message id="([^"]+)"/.exec(prompt)?.[1];
}
