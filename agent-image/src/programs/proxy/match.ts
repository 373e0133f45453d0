/**
 * Byte-level search for secret values and their stubs in the encodings they travel in,
 * and the two streaming transforms built on it: a scrubber (replace) and a guard (stop at
 * the first hit). Pure: no I/O. The one list of forms ({@link secretForms}) serves the
 * response scrubber, the outbound guard and the log redactor alike (swap.ts).
 *
 * The search runs over a normalised view of the bytes, computed on the fly (no copy):
 *
 * - ASCII letters are compared case-folded, so the forms made of hex digits (hex,
 *   percent-encoding, JSON `\u` escapes, HTML hex entities) match in any letter case,
 *   per character (`4a6B...`). Every other form is then checked byte for byte, case
 *   included, so case-folding adds no false match to them.
 * - A single line ending (LF or CRLF, not a blank line) is skipped, so a form broken
 *   across lines (MIME base64 at 76 characters, PEM at 64, a wrapped hex dump: any
 *   width, any offset) matches as if unbroken. Two line endings in a row are kept, so
 *   a server-sent event ("\n\n") never waits on the hold-back.
 *
 * One pass per buffer finds every needle whatever their number: every few bytes an
 * 8-byte window (normalised) is hashed and checked against a 2^20-bit filter, and only on
 * a filter hit are the needles with that gram compared. The cost is per byte, not per
 * needle, so the many forms of several credentials cost about what one needle does.
 *
 * Streams are scanned chunk by chunk with a hold-back: the bytes at the end of a chunk
 * that could be the start of a needle are kept until the next chunk decides. Unlike a
 * fixed hold-back of (longest needle - 1) bytes (sandbox-runtime's body substitution),
 * only a suffix that really is a proper prefix of some needle is held (at most longest
 * needle - 1 bytes, plus the line endings inside it).
 */
import { Transform, type TransformCallback } from 'node:stream';

/**
 * One byte string to find, what replaces it when scrubbing, and a caller-defined tag.
 * A caseless needle's `bytes` are its lower-case spelling, and it matches in any letter
 * case; its replacement is `replacementUpper` when the matched text has more upper-case
 * than lower-case hex letters (A-F against a-f), else `replacement`.
 */
export interface Needle<T> {
  bytes: Buffer;
  replacement: Buffer;
  tag: T;
  caseless?: boolean;
  replacementUpper?: Buffer;
}

/**
 * One encoding of a value. `text` is the form as written. A `caseless` form is matched
 * in any letter case; one made of hex digits (hex, percent, `\u`, `&#x`) has `text` in
 * its lower-case-hex spelling and `upper` in its upper-case-hex spelling.
 */
export interface SecretForm {
  text: string;
  upper?: string;
  caseless?: boolean;
}

const hex2 = (b: number): string => b.toString(16).padStart(2, '0');
/** The form with its hex digits upper-case: `%6a` -> `%6A`, `\u006a` -> `\u006A`, `&#x6a;` -> `&#x6A;`. */
const upperHex = (parts: string[]): string => parts.map((e) => e.replace(/^(%|\\u|\\x|&#x)([0-9a-f]+)/, (_m, p: string, h: string) => p + h.toUpperCase())).join('');

/** Base64 forms of `bytes` starting inside a longer encoded string (see {@link secretForms}). */
function base64Forms(bytes: Buffer): SecretForm[] {
  const out: SecretForm[] = [];
  const url = (t: string) => t.replace(/\+/g, '-').replace(/\//g, '_');
  for (let align = 0; align < 3; align++) {
    const b64 = Buffer.concat([Buffer.alloc(align), bytes]).toString('base64');
    const start = Math.ceil((8 * align) / 6);
    const end = Math.floor((8 * (align + bytes.length)) / 6);
    const core = b64.slice(start, end);
    // The value ending the encoded data: the last group (and its padding) is then
    // determined by the value alone, so that form is matched and replaced exactly.
    const tail = b64.slice(start);
    // Percent-encoded (a query or a Location: `+` `/` `=` as %2B %2F %3D, either case)
    // and with `/` escaped as `\/` (PHP's json_encode): the same data, other spellings.
    const pct = (t: string, lower: boolean) => t.replace(/[+/=]/g, (c) => `%${lower ? hex2(c.charCodeAt(0)) : hex2(c.charCodeAt(0)).toUpperCase()}`);
    const slash = (t: string) => t.replace(/\//g, '\\/');
    for (const text of [tail, url(tail), url(tail).replace(/=+$/, ''), core, url(core), pct(tail, false), pct(tail, true), pct(core, false), pct(core, true), slash(tail), slash(core)]) out.push({ text });
  }
  return out;
}

/**
 * The forms a secret (or a stub) takes on the wire, in a fixed order, so that
 * `secretForms(real)[i]` and `secretForms(stub)[i]` are the same encoding of the two.
 * `value` is ASCII (config.ts refuses anything else for a real value; stubs are ASCII):
 *
 * - raw (in any letter case, as are the JSON and named-HTML forms: a lower-cased copy
 *   of a value, a host name say, is still the value);
 * - percent-encoding (RFC 3986 section 2.1): as encodeURIComponent does it and with
 *   space as `+`, of every character but the unreserved ones (RFC 3986 section 2.3),
 *   as the WHATWG form serializer does it (URLSearchParams), and of every byte
 *   (`%67%68...`); caseless;
 * - hex of the bytes (`676870...`); caseless;
 * - JSON string escaping (RFC 8259 section 7): the minimal escapes, with `/` as `\/`
 *   (PHP's json_encode), with `<`, `>`, `&` as `\u003c` ... (Go's encoding/json), and
 *   every character as `\u00XX`; the last caseless; and `\xHH` escapes of every byte
 *   (JavaScript, Python, C string literals), caseless;
 * - HTML character references (HTML Living Standard section 13.2.5.72): the named
 *   escapes of `& < > " '` (`'` as `&#39;`, `&#x27;` or `&apos;`), every character as
 *   `&#NNN;` and as `&#xHH;` (caseless);
 * - base64 (RFC 4648 section 4) and base64url (section 5) of the UTF-8 bytes, of the
 *   UTF-16LE bytes and of the UTF-16BE bytes, each at the three byte alignments the
 *   value can start at inside a longer encoded string (as in
 *   `Basic base64("x-access-token:" + value)`): the characters that depend on the
 *   value's bits alone (the "core"), so a hit does not depend on the neighbouring
 *   bytes. Where the value ends the encoded data (`user:<value>`), the form up to the
 *   end, padded, unpadded and url-safe, comes first and is replaced whole. Each also
 *   percent-encoded (`%2B %2F %3D`, either case) and with `/` as `\/`. Elsewhere at
 *   most 4 bits at each end of the value are not covered: a scrubbed base64 form leaks
 *   at most 8 bits of a secret, never the value.
 *
 * Line-wrapped forms are not listed: the matcher skips single line endings (module
 * comment). Forms shorter than 8 characters are dropped by {@link needlesFor}.
 */
export function secretForms(value: string): SecretForm[] {
  const bytes = Buffer.from(value, 'utf8');
  const chars = [...value];
  // Textual forms are matched in any case too: a copy of a value that something lower-
  // cased on the way (a host name, a coding name) is as good as the value.
  const out: SecretForm[] = [{ text: value, caseless: true }];
  const pct = encodeURIComponent(value);
  const pctLower = pct.replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase());
  out.push({ text: pctLower, upper: pct }, { text: pctLower.replace(/%20/g, '+'), upper: pct.replace(/%20/g, '+') });
  // RFC 3986 unreserved characters only (Python's quote(safe='')), and the WHATWG
  // application/x-www-form-urlencoded serializer (URLSearchParams: space as `+`).
  const pctSome = (keep: RegExp, space: string) => {
    const esc = [...bytes].map((b) => (b === 0x20 && space === '+' ? '+' : keep.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${hex2(b)}`));
    return { text: esc.join(''), upper: upperHex(esc) };
  };
  out.push(pctSome(/[A-Za-z0-9._~-]/, '%'), pctSome(/[A-Za-z0-9*._-]/, '+'));
  const pctAll = [...bytes].map((b) => `%${hex2(b)}`);
  out.push({ text: pctAll.join(''), upper: upperHex(pctAll) });
  out.push({ text: bytes.toString('hex'), upper: bytes.toString('hex').toUpperCase() });
  const json = JSON.stringify(value).slice(1, -1);
  out.push({ text: json, caseless: true }, { text: json.replace(/\//g, '\\/'), caseless: true }, { text: json.replace(/[<>&]/g, (c) => `\\u00${hex2(c.charCodeAt(0))}`), caseless: true });
  const uAll = chars.map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  out.push({ text: uAll.join(''), upper: upperHex(uAll) });
  // `\xHH` escapes of every byte (JavaScript, Python, C string literals).
  const xAll = [...bytes].map((b) => `\\x${hex2(b)}`);
  out.push({ text: xAll.join(''), upper: upperHex(xAll) });
  const named = (apos: string) => value.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c] ?? apos);
  out.push({ text: named('&#39;'), caseless: true }, { text: named('&#x27;'), caseless: true }, { text: named('&apos;'), caseless: true });
  out.push({ text: chars.map((c) => `&#${c.codePointAt(0)};`).join('') });
  const entHex = chars.map((c) => `&#x${(c.codePointAt(0) ?? 0).toString(16)};`);
  out.push({ text: entHex.join(''), upper: upperHex(entHex) });
  const utf16le = Buffer.from(value, 'utf16le');
  const utf16be = Buffer.from(utf16le).swap16();
  out.push(...base64Forms(bytes), ...base64Forms(utf16le), ...base64Forms(utf16be));
  return out;
}

/**
 * The forms of {@link secretForms} as strings (caseless ones in both spellings): what a
 * test checks a response or a log for.
 */
export function encodedForms(value: string): string[] {
  return secretForms(value).flatMap((f) => (f.upper !== undefined ? [f.text, f.upper] : [f.text]));
}

/** Needles for `secret` -> `replacement`, one per distinct form of `secret` of 8 or more characters. */
export function needlesFor<T>(secret: string, replacement: string, tag: T): Array<Needle<T>> {
  const from = secretForms(secret);
  const to = secretForms(replacement);
  const seen = new Set<string>();
  const out: Array<Needle<T>> = [];
  from.forEach((form, i) => {
    const caseless = form.caseless === true || form.upper !== undefined;
    const key = caseless ? form.text.toLowerCase() : form.text;
    if (key.length < 8 || seen.has(`${caseless}|${key}`)) return;
    seen.add(`${caseless}|${key}`);
    const rep = to[i] ?? { text: replacement };
    out.push({
      bytes: Buffer.from(key, 'utf8'),
      replacement: Buffer.from(rep.text, 'utf8'),
      tag,
      ...(caseless ? { caseless: true, replacementUpper: Buffer.from(rep.upper ?? rep.text, 'utf8') } : {}),
    });
  });
  return out;
}

export interface Hit<T> {
  /** Byte offset of the first byte of the match. */
  index: number;
  /** Byte offset after the last byte of the match (line endings inside it included). */
  end: number;
  needle: Needle<T>;
  /** What replaces buf[index, end) when scrubbing. */
  replacement: Buffer;
}

/** ASCII case folding, byte to byte. */
const FOLD = new Uint8Array(256).map((_, b) => (b >= 0x41 && b <= 0x5a ? b + 0x20 : b));
const LF = 0x0a;
const CR = 0x0d;

/**
 * Whether `buf[i]` belongs to a single line ending that the normalised view skips: LF or
 * CRLF with no line ending right before or after it. At the end of `buf` a line ending
 * counts as single (the next chunk may continue the form); at its start the byte before
 * is unknown and counts as not a line ending.
 */
function skipped(buf: Buffer, i: number): boolean {
  const b = buf[i];
  if (b === CR) return i + 1 === buf.length || (buf[i + 1] === LF && skipped(buf, i + 1));
  if (b !== LF) return false;
  const prev = buf[i - 1] === CR ? i - 2 : i - 1;
  const before = prev >= 0 ? buf[prev] : undefined;
  const after = buf[i + 1];
  return before !== LF && before !== CR && after !== LF && after !== CR;
}

/** A 32-bit hash of a gram given as two big-endian words (hi is 0 for a 4-byte gram); its top 16 bits are the filter slot. */
const gramKey = (hi: number, lo: number): number => (Math.imul(hi ^ Math.imul(lo, 0x85ebca6b), 0x9e3779b1) ^ lo) >>> 0;

/**
 * A set of needles searched together: earliest hit first; at one position the longest
 * needle wins (so a base64 tail beats the core it starts with). Needles shorter than 5
 * bytes are ignored (needlesFor makes none under 8).
 */
export class Matcher<T> {
  readonly needles: ReadonlyArray<Needle<T>>;
  /** Length of the longest needle (bytes); a hold-back never exceeds this minus one, plus skipped line endings. */
  readonly maxLength: number;
  /** A bit per 20-bit gram hash: set for every gram in #byGram (128 KiB, about 5% set at 50,000 grams). */
  readonly #filter: Uint32Array;
  /** Length of the shortest needle (bytes; Infinity without needles). */
  readonly #shortest: number;
  /** Bytes hashed per probe: 8, or 4 when a needle is shorter than 16 bytes. */
  readonly #gram: number;
  /** Probe distance (bytes): the shortest needle minus the gram, at most 32. */
  readonly #stride: number;
  /** (needle, offset) by the hash of its case-folded gram at that offset, for offsets 0..stride. */
  readonly #byGram: Map<number, Array<{ needle: Needle<T>; offset: number }>>;
  /** Needles by their first case-folded byte (the hold-back). */
  readonly #byFirstByte: Map<number, Array<Needle<T>>>;
  /** Needles this matcher ignores (a derived matcher: see the constructor). */
  readonly #excluded: ((n: Needle<T>) => boolean) | undefined;

  /**
   * @param needles the needles; or a matcher whose tables this one shares, ignoring the
   *   needles `exclude` says (the request guards of swap.ts: one table of every stub and
   *   real value, and per host only which stubs are allowed; no second copy in memory).
   */
  constructor(needles: ReadonlyArray<Needle<T>> | Matcher<T>, exclude?: (n: Needle<T>) => boolean) {
    if (needles instanceof Matcher) {
      const base = needles;
      this.needles = exclude ? base.needles.filter((n) => !exclude(n)) : base.needles;
      this.maxLength = base.maxLength;
      this.#filter = base.#filter;
      this.#shortest = base.#shortest;
      this.#gram = base.#gram;
      this.#stride = base.#stride;
      this.#byGram = base.#byGram;
      this.#byFirstByte = base.#byFirstByte;
      this.#excluded = exclude;
      return;
    }
    this.#excluded = undefined;
    this.#filter = new Uint32Array((1 << 20) / 32);
    this.#byGram = new Map();
    this.#byFirstByte = new Map();
    this.needles = needles.filter((n) => n.bytes.length >= 5);
    this.maxLength = Math.max(0, ...this.needles.map((n) => n.bytes.length));
    const shortest = Math.min(...this.needles.map((n) => n.bytes.length));
    this.#shortest = shortest;
    this.#gram = shortest >= 16 ? 8 : 4;
    this.#stride = Math.max(1, Math.min(32, shortest - this.#gram));
    for (const n of this.needles) {
      const f = (i: number) => FOLD[n.bytes[i] as number] as number;
      const word = (i: number) => (i < 0 ? 0 : ((f(i) << 24) | (f(i + 1) << 16) | (f(i + 2) << 8) | f(i + 3)) >>> 0);
      for (let offset = 0; offset <= this.#stride; offset++) {
        const end = offset + this.#gram - 1;
        const key = gramKey(this.#gram === 8 ? word(end - 7) : 0, word(end - 3));
        const bit = key >>> 12;
        this.#filter[bit >>> 5] = (this.#filter[bit >>> 5] as number) | (1 << (bit & 31));
        const list = this.#byGram.get(key) ?? [];
        list.push({ needle: n, offset });
        this.#byGram.set(key, list);
      }
      const first = this.#byFirstByte.get(f(0)) ?? [];
      first.push(n);
      this.#byFirstByte.set(f(0), first);
    }
  }

  get empty(): boolean {
    return this.needles.length === 0;
  }

  /**
   * How far `n` matches `buf` from `start` in the normalised view: the byte offset after
   * its last byte when it matches whole, -1 when `buf` ends first with every byte so far
   * matching (a proper prefix), undefined on a mismatch.
   */
  #compare(buf: Buffer, start: number, n: Needle<T>): number | undefined {
    const bytes = n.bytes;
    let j = start;
    for (let t = 0; t < bytes.length; t++) {
      while (j < buf.length && (buf[j] === LF || buf[j] === CR) && skipped(buf, j)) j++;
      if (j >= buf.length) return -1;
      const b = buf[j] as number;
      if ((n.caseless ? FOLD[b] : b) !== bytes[t]) return undefined;
      j++;
    }
    return j;
  }

  #hitAt(buf: Buffer, start: number, n: Needle<T>): Hit<T> | undefined {
    const end = this.#compare(buf, start, n);
    if (end === undefined || end === -1) return undefined;
    let replacement = n.replacement;
    if (n.caseless && n.replacementUpper) {
      let upper = 0;
      for (let j = start; j < end; j++) {
        const b = buf[j] as number;
        if (b >= 0x41 && b <= 0x46) upper++;
        else if (b >= 0x61 && b <= 0x66) upper--;
      }
      if (upper > 0) replacement = n.replacementUpper;
    }
    return { index: start, end, needle: n, replacement };
  }

  /** Every hit in `buf` at or after `from`, left to right, non-overlapping (scanning resumes after each hit). */
  *hits(buf: Buffer, from = 0): Generator<Hit<T>> {
    if (!this.needles.length) return;
    for (let hit = this.#next(buf, from); hit; hit = this.#next(buf, hit.end)) yield hit;
  }

  /**
   * The first hit at or after `from`. Probes every `#stride`-th byte: the `#gram`
   * normalised bytes ending there are hashed and looked up in the filter, which holds
   * every needle's grams at offsets 0..stride; any occurrence of a needle (at least
   * stride + gram normalised bytes) contains a probe whose gram is at one of those
   * offsets, and the first probe inside the earliest occurrence comes no later than any
   * probe that finds a later one.
   */
  #next(buf: Buffer, from: number): Hit<T> | undefined {
    const filter = this.#filter;
    const stride = this.#stride;
    const gram = this.#gram;
    const n = buf.length;
    const F = FOLD;
    for (let q = from + gram - 1; q < n; q += stride) {
      // Fast path (almost every probe): an 8-byte gram with no byte below 14, so no line
      // ending to skip; the slow path below gives the same key.
      if (gram === 8) {
        const b0 = buf[q - 7] as number;
        const b1 = buf[q - 6] as number;
        const b2 = buf[q - 5] as number;
        const b3 = buf[q - 4] as number;
        const b4 = buf[q - 3] as number;
        const b5 = buf[q - 2] as number;
        const b6 = buf[q - 1] as number;
        const b7 = buf[q] as number;
        if (b0 >= 14 && b1 >= 14 && b2 >= 14 && b3 >= 14 && b4 >= 14 && b5 >= 14 && b6 >= 14 && b7 >= 14) {
          const key = gramKey(
            ((F[b0] as number) << 24) | ((F[b1] as number) << 16) | ((F[b2] as number) << 8) | (F[b3] as number),
            ((F[b4] as number) << 24) | ((F[b5] as number) << 16) | ((F[b6] as number) << 8) | (F[b7] as number),
          );
          if (((filter[key >>> 17] as number) & (1 << ((key >>> 12) & 31))) === 0) continue;
          const hit = this.#hitEndingAt(buf, from, q, key);
          if (hit) return hit;
          continue;
        }
      }
      let e = q;
      while (e < n && (buf[e] === LF || buf[e] === CR) && skipped(buf, e)) e++;
      if (e >= n) return undefined;
      let lo = FOLD[buf[e] as number] as number;
      let hi = 0;
      let got = 1;
      for (let j = e - 1; got < gram && j >= from; j--) {
        const b = buf[j] as number;
        if ((b === LF || b === CR) && skipped(buf, j)) continue;
        if (got < 4) lo |= (FOLD[b] as number) << (8 * got);
        else hi |= (FOLD[b] as number) << (8 * (got - 4));
        got++;
      }
      if (got < gram) continue;
      const key = gramKey(hi, lo);
      if (((filter[key >>> 17] as number) & (1 << ((key >>> 12) & 31))) === 0) continue;
      const hit = this.#hitEndingAt(buf, from, e, key);
      if (hit) return hit;
    }
    return undefined;
  }

  /** The earliest, then longest, needle occurrence whose gram at some offset ends at `e`. */
  #hitEndingAt(buf: Buffer, from: number, e: number, key: number): Hit<T> | undefined {
    let best: Hit<T> | undefined;
    const excluded = this.#excluded;
    for (const { needle, offset } of this.#byGram.get(key) ?? []) {
      if (excluded?.(needle)) continue;
      // Compare backwards from e to the needle's first byte (skipping line endings): a
      // gram shared with ordinary text fails within a few bytes, and the walk finds
      // the occurrence's start whatever line endings lie in between.
      const bytes = needle.bytes;
      let j = e;
      let t = offset + this.#gram - 1;
      while (t >= 0 && j >= from) {
        const b = buf[j] as number;
        if ((b === LF || b === CR) && skipped(buf, j)) {
          j--;
          continue;
        }
        if ((needle.caseless ? FOLD[b] : b) !== bytes[t]) break;
        t--;
        j--;
      }
      if (t >= 0) continue;
      const start = j + 1;
      if (best && (start > best.index || (start === best.index && bytes.length <= best.needle.bytes.length))) continue;
      const hit = this.#hitAt(buf, start, needle);
      if (hit) best = hit;
    }
    return best;
  }

  /** The first hit in `text` (UTF-8), or undefined. */
  first(text: string | Buffer): Hit<T> | undefined {
    // Shorter than every needle (most header values): no copy, no scan.
    if (typeof text === 'string' && Buffer.byteLength(text) < this.#shortest) return undefined;
    const buf = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
    for (const hit of this.hits(buf)) return hit;
    return undefined;
  }

  /**
   * Length of the longest suffix of `buf` starting at or after `from` that is a proper
   * prefix of some needle (in the normalised view): the bytes a stream must hold back
   * until more data arrives.
   */
  partialSuffix(buf: Buffer, from = 0): number {
    if (!this.needles.length) return 0;
    // The last (maxLength - 1) bytes of the normalised view, earliest first.
    const starts: number[] = [];
    for (let i = buf.length - 1; i >= from && starts.length < this.maxLength - 1; i--) {
      const b = buf[i];
      if ((b === LF || b === CR) && skipped(buf, i)) continue;
      starts.push(i);
    }
    for (let s = starts.length - 1; s >= 0; s--) {
      const p = starts[s] as number;
      for (const n of this.#byFirstByte.get(FOLD[buf[p] as number] as number) ?? []) {
        if (this.#excluded?.(n)) continue;
        if (this.#compare(buf, p, n) === -1) return buf.length - p;
      }
    }
    return 0;
  }

  /**
   * Whether a needle longer than `hit`'s starts at `hit.index` and runs past the end of
   * `buf` so far matching: a stream must wait for more bytes before it replaces `hit`
   * (a base64 tail that would replace more than its core).
   */
  pending(buf: Buffer, hit: Hit<T>): boolean {
    for (const n of this.#byFirstByte.get(FOLD[buf[hit.index] as number] as number) ?? []) {
      if (this.#excluded?.(n)) continue;
      if (n.bytes.length > hit.needle.bytes.length && this.#compare(buf, hit.index, n) === -1) return true;
    }
    return false;
  }

  /** `text` with every hit replaced. @returns the new text and the tags of the hits. */
  replace(text: string): { text: string; tags: T[] } {
    if (Buffer.byteLength(text) < this.#shortest) return { text, tags: [] };
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
 * untouched rest begins. `onHit` is told each tag in order. `streaming`: stop before a
 * hit that a longer needle may still cover once more bytes arrive ({@link Matcher.pending}).
 */
function spliceHits<T>(matcher: Matcher<T>, buf: Buffer, onHit?: (tag: T) => void, streaming = false): { parts: Buffer[]; end: number } {
  const parts: Buffer[] = [];
  let end = 0;
  for (const hit of matcher.hits(buf)) {
    // Mid-stream, a hit that a longer needle may still cover waits for the next chunk
    // (the hold-back starts there), so chunking never changes what is replaced.
    if (streaming && matcher.pending(buf, hit)) break;
    parts.push(buf.subarray(end, hit.index), hit.replacement);
    onHit?.(hit.needle.tag);
    end = hit.end;
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
      const { parts, end } = spliceHits(matcher, work, onHit, true);
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
      // The hold-back can end in a whole short needle that a longer one might have
      // covered (see spliceHits): at the end of the stream it is replaced as it is.
      const out = carry.length ? scrubBuffer(matcher, carry, onHit) : carry;
      cb(null, out.length ? out : undefined);
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
