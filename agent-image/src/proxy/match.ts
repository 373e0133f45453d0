/**
 * Byte-level search for secret values and their stubs in the encodings they commonly
 * travel in, and the two streaming transforms built on it: a scrubber (replace) and a
 * guard (stop at the first hit). Pure: no I/O.
 *
 * Streams are scanned chunk by chunk with a hold-back: the bytes at the end of a chunk
 * that could be the start of a needle are kept until the next chunk decides. Unlike a
 * fixed hold-back of (longest needle - 1) bytes (sandbox-runtime's body substitution),
 * only a suffix that really is a proper prefix of some needle is held (at most longest
 * needle - 1 bytes): a server-sent event ending in "\n\n" is never delayed, because no
 * needle starts with a line break.
 */
import { Transform, type TransformCallback } from 'node:stream';

/** One byte string to find, what replaces it when scrubbing, and a caller-defined tag. */
export interface Needle<T> {
  bytes: Buffer;
  replacement: Buffer;
  tag: T;
}

/**
 * The forms a secret (or a stub) takes on the wire, as strings, in a fixed order so that
 * `encodedForms(real)[i]` and `encodedForms(stub)[i]` are the same encoding of the two:
 *
 * - raw;
 * - percent-encoded (RFC 3986 section 2.1), upper- and lower-case hex, and the
 *   form-urlencoded variant (space as `+`); skipped where equal to raw;
 * - JSON string escaping (RFC 8259 section 7), where it differs;
 * - base64 (RFC 4648 section 4) and base64url (section 5) at each of the three byte
 *   alignments the value can start at inside a longer encoded string (as in
 *   `Basic base64("x-access-token:" + value)`): only the characters that depend on the
 *   value's bits alone (the "core"), so a hit does not depend on the neighbouring bytes.
 *   Where the value ends the encoded data (`user:<value>`), the form up to the end and
 *   its padding is exact and comes first, so it is replaced whole. Elsewhere at most 4
 *   bits at each end of the value are not covered: a scrubbed base64 form leaks at most
 *   8 bits of a secret, never the value.
 *
 * Forms shorter than 8 characters are dropped (they would match ordinary text).
 */
export function encodedForms(value: string): string[] {
  const out: string[] = [value];
  const pct = encodeURIComponent(value);
  out.push(pct, pct.replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase()), pct.replace(/%20/g, '+'));
  out.push(JSON.stringify(value).slice(1, -1));
  const bytes = Buffer.from(value, 'utf8');
  for (let align = 0; align < 3; align++) {
    const padded = Buffer.concat([Buffer.alloc(align), bytes]);
    const b64 = padded.toString('base64');
    const start = Math.ceil((8 * align) / 6);
    const end = Math.floor((8 * (align + bytes.length)) / 6);
    const core = b64.slice(start, end);
    // The value ending the encoded data: the last group (and its padding) is then
    // determined by the value alone, so that form is matched and replaced exactly.
    const tail = b64.slice(start);
    const url = (t: string) => t.replace(/\+/g, '-').replace(/\//g, '_');
    out.push(tail, url(tail), url(tail).replace(/=+$/, ''), core, url(core));
  }
  return out;
}

/** Needles for `secret` -> `replacement`, one per distinct encoded form of `secret`. */
export function needlesFor<T>(secret: string, replacement: string, tag: T): Array<Needle<T>> {
  const from = encodedForms(secret);
  const to = encodedForms(replacement);
  const seen = new Set<string>();
  const out: Array<Needle<T>> = [];
  from.forEach((form, i) => {
    if (form.length < 8 || seen.has(form)) return;
    seen.add(form);
    out.push({ bytes: Buffer.from(form, 'utf8'), replacement: Buffer.from(to[i] ?? replacement, 'utf8'), tag });
  });
  return out;
}

export interface Hit<T> {
  index: number;
  needle: Needle<T>;
}

/**
 * A set of needles searched together: earliest hit first; at one position the longest
 * needle wins (so a raw secret beats a base64 core that happens to start there).
 */
export class Matcher<T> {
  readonly needles: ReadonlyArray<Needle<T>>;
  /** Length of the longest needle (bytes); a hold-back never exceeds this minus one. */
  readonly maxLength: number;
  readonly #byFirstByte = new Map<number, Array<Needle<T>>>();
  /**
   * The needles as strings, when every needle is ASCII (tokens and their encoded forms
   * are): a string is then searched as it is, without its UTF-8 copy. Exact: every byte
   * of a non-ASCII character's UTF-8 form (U+FFFD for a lone surrogate included) is
   * 0x80 or above, so an ASCII needle's bytes occur in UTF-8(text) exactly where its
   * characters occur in `text`. Only the common no-hit answer is taken from it; a hit
   * is located on the bytes as before.
   */
  readonly #ascii: readonly string[] | undefined;

  constructor(needles: ReadonlyArray<Needle<T>>) {
    this.needles = needles.filter((n) => n.bytes.length > 0);
    this.maxLength = Math.max(0, ...this.needles.map((n) => n.bytes.length));
    this.#ascii = this.needles.every((n) => n.bytes.every((b) => b < 0x80)) ? this.needles.map((n) => n.bytes.toString('latin1')) : undefined;
    for (const n of this.needles) {
      const first = n.bytes[0] as number;
      const list = this.#byFirstByte.get(first) ?? [];
      list.push(n);
      this.#byFirstByte.set(first, list);
    }
  }

  get empty(): boolean {
    return this.needles.length === 0;
  }

  /** Every hit in `buf`, left to right, non-overlapping (scanning resumes after each hit). */
  *hits(buf: Buffer, from = 0): Generator<Hit<T>> {
    // Next index of each needle at or after the scan position, recomputed only when
    // the scan has passed it: one pass of indexOf per needle per buffer in the common case.
    const next = this.needles.map((n) => buf.indexOf(n.bytes, from));
    let pos = from;
    for (;;) {
      let best = -1;
      for (let i = 0; i < next.length; i++) {
        if ((next[i] as number) >= 0 && (next[i] as number) < pos) next[i] = buf.indexOf((this.needles[i] as Needle<T>).bytes, pos);
        const at = next[i] as number;
        if (at < 0) continue;
        if (best < 0 || at < (next[best] as number) || (at === next[best] && (this.needles[i] as Needle<T>).bytes.length > (this.needles[best] as Needle<T>).bytes.length)) best = i;
      }
      if (best < 0) return;
      const needle = this.needles[best] as Needle<T>;
      const index = next[best] as number;
      yield { index, needle };
      pos = index + needle.bytes.length;
    }
  }

  /** Whether the string `text` certainly holds no needle (see `#ascii`). */
  #clear(text: string): boolean {
    const ascii = this.#ascii;
    if (!ascii) return false;
    for (const n of ascii) if (text.includes(n)) return false;
    return true;
  }

  /** The first hit in `text` (UTF-8), or undefined. */
  first(text: string | Buffer): Hit<T> | undefined {
    if (typeof text === 'string' && this.#clear(text)) return undefined;
    const buf = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
    for (const hit of this.hits(buf)) return hit;
    return undefined;
  }

  /**
   * Length of the longest suffix of `buf` starting at or after `from` that is a proper
   * prefix of some needle: the bytes a stream must hold back until more data arrives.
   */
  partialSuffix(buf: Buffer, from = 0): number {
    const start = Math.max(from, buf.length - (this.maxLength - 1));
    for (let p = start; p < buf.length; p++) {
      const candidates = this.#byFirstByte.get(buf[p] as number);
      if (!candidates) continue;
      const tail = buf.subarray(p);
      for (const n of candidates) {
        if (n.bytes.length > tail.length && n.bytes.subarray(0, tail.length).equals(tail)) return buf.length - p;
      }
    }
    return 0;
  }

  /** `text` with every hit replaced. @returns the new text and the tags of the hits. */
  replace(text: string): { text: string; tags: T[] } {
    if (this.#clear(text)) return { text, tags: [] };
    const buf = Buffer.from(text, 'utf8');
    const tags: T[] = [];
    const { parts, end } = spliceHits(this, buf, (tag) => tags.push(tag));
    if (!tags.length) return { text, tags };
    parts.push(buf.subarray(end));
    return { text: Buffer.concat(parts).toString('utf8'), tags };
  }
}

/**
 * `buf` cut at every hit: the pieces before each hit, each followed by the needle's
 * replacement, and `end`, the byte offset after the last hit (0 without one), where the
 * untouched rest begins. `onHit` is told each tag in order.
 */
function spliceHits<T>(matcher: Matcher<T>, buf: Buffer, onHit?: (tag: T) => void): { parts: Buffer[]; end: number } {
  const parts: Buffer[] = [];
  let end = 0;
  for (const hit of matcher.hits(buf)) {
    parts.push(buf.subarray(end, hit.index), hit.needle.replacement);
    onHit?.(hit.needle.tag);
    end = hit.index + hit.needle.bytes.length;
  }
  return { parts, end };
}

/** `buf` with every needle replaced (a whole body at once); `onHit` is told each tag. */
export function scrubBuffer<T>(matcher: Matcher<T>, buf: Buffer, onHit?: (tag: T) => void): Buffer {
  const { parts, end } = spliceHits(matcher, buf, onHit);
  if (!parts.length) return buf;
  parts.push(buf.subarray(end));
  return Buffer.concat(parts);
}

/**
 * A Transform that replaces every needle in a byte stream, also across chunk boundaries.
 * Memory: one chunk plus the hold-back (< longest needle). `onHit` is told each tag.
 */
export function scrubStream<T>(matcher: Matcher<T>, onHit?: (tag: T) => void): Transform {
  let carry: Buffer = Buffer.alloc(0);
  return new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      const work = carry.length ? Buffer.concat([carry, chunk]) : chunk;
      const { parts, end } = spliceHits(matcher, work, onHit);
      const hold = matcher.partialSuffix(work, end);
      parts.push(work.subarray(end, work.length - hold));
      // A copy: the carry must not alias a buffer the source may reuse.
      carry = hold ? Buffer.from(work.subarray(work.length - hold)) : Buffer.alloc(0);
      // No hit (the common case): the chunk passes on as it is, not copied (the source
      // hands each chunk over; a downstream consumer holds it like any other chunk).
      const out = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
      cb(null, out.length ? out : undefined);
    },
    flush(cb: TransformCallback) {
      // What is held back is a proper prefix of a needle, never a whole one.
      cb(null, carry.length ? carry : undefined);
    },
  });
}

/** Raised by {@link guardStream} at the first needle; `tag` says which. */
export class GuardHit<T> extends Error {
  override name = 'GuardHit';
  readonly tag: T;
  constructor(tag: T) {
    super('forbidden value in the body');
    this.tag = tag;
  }
}

/**
 * A pass-through Transform that fails with {@link GuardHit} before it forwards any byte
 * of a needle: the bytes that could begin one are held back until the next chunk shows
 * whether it completes, so a needle split across chunks is caught too and none of it
 * leaves. Nothing is changed otherwise; `onBytes` counts what passed.
 */
export function guardStream<T>(matcher: Matcher<T>, onBytes?: (n: number) => void): Transform {
  let carry: Buffer = Buffer.alloc(0);
  return new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      const work = carry.length ? Buffer.concat([carry, chunk]) : chunk;
      const hit = matcher.first(work);
      if (hit) {
        carry = Buffer.alloc(0);
        cb(new GuardHit(hit.needle.tag));
        return;
      }
      const hold = matcher.partialSuffix(work);
      const out = work.subarray(0, work.length - hold);
      carry = Buffer.from(work.subarray(work.length - hold));
      onBytes?.(out.length);
      cb(null, out.length ? out : undefined);
    },
    flush(cb: TransformCallback) {
      onBytes?.(carry.length);
      cb(null, carry.length ? carry : undefined);
    },
  });
}
