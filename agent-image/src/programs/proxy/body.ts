/**
 * A response body from a credential host, for the forwarder (forward.ts): which codings
 * it carries (the fields that announce them, or its first bytes), and, when compressed,
 * the whole body read (bounded, against the process's scan budget), decoded layer by
 * layer and scanned for real values (see {@link inspectBody}). What cannot be decoded, or
 * is larger than the cap, is refused ({@link BodyRefusal}, 502): failing closed.
 */
import type { Readable } from 'node:stream';
import zlib from 'node:zlib';
import type { ProxyLimits } from './config.ts';
import type { Matcher } from './match.ts';
import type { SecretTag } from './swap.ts';

/**
 * The codings applied to a response body, in the order they were applied (RFC 9110
 * section 8.4.1: Content-Encoding lists them in order; RFC 9112 section 6.1: transfer
 * codings come after): every Content-Encoding field and each member of its list, then
 * the Transfer-Encoding codings other than chunked (Node's parser removes chunked framing
 * only). `identity` and empty members are dropped. As sent (trimmed), not lower-cased: a
 * message quotes them, and a lower-cased value would no longer match its redaction.
 */
export function bodyCodings(raw: ReadonlyArray<readonly [string, string]>): string[] {
  const content: string[] = [];
  const transfer: string[] = [];
  for (const [n, v] of raw) {
    const name = n.toLowerCase();
    if (name !== 'content-encoding' && name !== 'transfer-encoding') continue;
    for (const member of v.split(',')) {
      const c = member.trim();
      const lower = c.toLowerCase();
      if (!c || lower === 'identity' || (name === 'transfer-encoding' && lower === 'chunked')) continue;
      (name === 'content-encoding' ? content : transfer).push(c);
    }
  }
  return [...content, ...transfer];
}

/**
 * The coding a body's first bytes announce, when no header does: gzip (1f 8b 08: RFC
 * 1952 section 2.3.1, ID1 ID2 and CM = deflate), zstd (28 b5 2f fd: RFC 8878 section
 * 3.1.1) and zlib-wrapped deflate (RFC 1950 section 2.2: CMF 78, FLG 01, 9c or da; not
 * 5e, which is the text "x^"). Raw deflate and brotli have no magic: without a header
 * they cannot be told from other bytes.
 */
export function sniffCoding(head: Buffer): 'gzip' | 'zstd' | 'deflate' | undefined {
  if (head.length >= 3 && head[0] === 0x1f && head[1] === 0x8b && head[2] === 0x08) return 'gzip';
  if (head.length >= 4 && head.readUInt32BE(0) === 0x28b52ffd) return 'zstd';
  if (head.length >= 2 && head[0] === 0x78 && (head[1] === 0x01 || head[1] === 0x9c || head[1] === 0xda)) return 'deflate';
  return undefined;
}

/** Bytes {@link sniffCoding} looks at. */
export const SNIFF_BYTES = 4;
/** Layers of compression looked into (declared plus sniffed): a bound on the work, not a format limit. */
const MAX_LAYERS = 4;

/** A body that cannot be inspected: the reason and message of the 502. */
export class BodyRefusal extends Error {
  override name = 'BodyRefusal';
  readonly reason: string;
  /** HTTP status of the proxy's answer: 502 (the upstream's body is refused) or 503 (the proxy is busy: try again). */
  readonly status: number;
  constructor(reason: string, message: string, status = 502) {
    super(message);
    this.reason = reason;
    this.status = status;
  }
}

/**
 * Bytes that whole-body reads of credential-host responses hold at once, over every
 * connection: the compressed body as it is read, and each decoded layer. One response may
 * hold up to `maxDecodedBytes` per layer; without a shared bound, 256 connections reading
 * compressed bodies at once could hold gigabytes in a container of 256 Mi.
 */
export class ScanBudget {
  #held = 0;
  /** Bytes held at once across all leases. */
  readonly capacity: number;
  constructor(capacity: number) {
    this.capacity = capacity;
  }
  /** Bytes held now. */
  get held(): number {
    return this.#held;
  }
  /** A lease for one response: what it takes is given back by `release()` (idempotent). */
  lease(): ScanLease {
    let taken = 0;
    return {
      take: (n: number) => {
        if (this.#held + n > this.capacity) return false;
        this.#held += n;
        taken += n;
        return true;
      },
      giveBack: (n: number) => {
        const m = Math.min(n, taken);
        this.#held -= m;
        taken -= m;
      },
      release: () => {
        this.#held -= taken;
        taken = 0;
      },
    };
  }
}

/**
 * One response's share of a {@link ScanBudget}, in bytes. `take(n)` is false (nothing
 * taken) when the budget cannot hold `n` more; `giveBack(n)` returns part of what was
 * taken; `release()` returns all of it.
 */
export interface ScanLease {
  take(n: number): boolean;
  giveBack(n: number): void;
  release(): void;
}

/** No budget: every take succeeds (unit tests, callers that bound memory otherwise). */
export const UNBOUNDED: ScanLease = { take: () => true, giveBack: () => undefined, release: () => undefined };

const budgets = new WeakMap<ProxyLimits, ScanBudget>();
/** The process's scan budget for these limits (`maxScanBytesInFlight`), made on first use. */
export function budgetFor(limits: ProxyLimits): ScanBudget {
  let b = budgets.get(limits);
  if (!b) budgets.set(limits, (b = new ScanBudget(limits.maxScanBytesInFlight)));
  return b;
}

function busy(): BodyRefusal {
  return new BodyRefusal('scan_busy', 'the proxy is reading and scanning too many compressed bodies from credential hosts at once; try again in a moment', 503);
}

type Decoder = (buf: Buffer, opts: zlib.ZlibOptions | zlib.BrotliOptions, cb: (err: Error | null, out: Buffer) => void) => void;

/** node:zlib's decoder for a coding name (RFC 9110 section 8.4.1, `x-gzip` as gzip); zstd where this Node has it. */
function decoderFor(coding: string): Decoder[] | undefined {
  const z = zlib as unknown as Record<string, Decoder | undefined>;
  switch (coding.toLowerCase()) {
    case 'gzip':
    case 'x-gzip':
      return [zlib.gunzip];
    case 'deflate':
      // "deflate" is zlib-wrapped (RFC 9110 section 8.4.1.2); some servers send it raw.
      return [zlib.inflate, zlib.inflateRaw];
    case 'br':
      return [zlib.brotliDecompress];
    case 'zstd':
      return z.zstdDecompress ? [z.zstdDecompress] : undefined;
    default:
      return undefined;
  }
}

/**
 * `buf` decoded from `coding` on the thread pool, at most `max` bytes out (a
 * decompression bomb stops there: zlib's maxOutputLength).
 * @throws BodyRefusal for an unknown coding, a body that does not decode, or one over `max`
 */
async function decode(buf: Buffer, coding: string, max: number): Promise<Buffer> {
  const decoders = decoderFor(coding);
  // The coding is quoted whole: fail() redacts the message, then writeDeny cuts it.
  if (!decoders) throw new BodyRefusal('compressed_response', `the body is encoded as ${JSON.stringify(coding)}, which the proxy cannot decode to scan it`);
  let last: NodeJS.ErrnoException | undefined;
  for (const d of decoders) {
    try {
      return await new Promise<Buffer>((resolve, reject) => d(buf, { maxOutputLength: max }, (err, out) => (err ? reject(err) : resolve(out))));
    } catch (err) {
      last = err as NodeJS.ErrnoException;
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) {
        throw new BodyRefusal('compressed_response', `the ${coding} body decodes to more than ${max} bytes, more than the proxy scans (a decompression bomb?)`);
      }
    }
  }
  throw new BodyRefusal('compressed_response', `the body does not decode as ${coding} (${last?.code ?? 'error'})`);
}

/**
 * What a credential host's response body becomes for the agent, or why it is refused.
 * `reals`: the response scrubber (real values, every form). `declared`: the codings the
 * headers name ({@link bodyCodings}). The body is decoded through them (the agent then gets the decoded body, without Content-Encoding) and,
 * layer after layer, through any coding its first bytes announce ({@link sniffCoding};
 * at most {@link MAX_LAYERS} in all). A real value found inside a sniffed layer refuses
 * the response (the layer is passed on as it is, so it cannot be scrubbed); what is
 * passed on is scrubbed like any body. `max`: bytes one decoded layer may hold (larger:
 * refused as a bomb). `lease`: the process's scan budget; each layer takes `max` bytes
 * before it is decoded and gives back what it did not use.
 * @returns the body to relay, and whether it was decoded (Content-Encoding is then dropped)
 * @throws BodyRefusal: 502 for a body refused, 503 `scan_busy` when the budget cannot hold a layer
 */
export async function inspectBody(reals: Matcher<SecretTag>, body: Buffer, declared: readonly string[], max: number, lease: ScanLease = UNBOUNDED): Promise<{ body: Buffer; decoded: boolean }> {
  if (declared.length > MAX_LAYERS) throw new BodyRefusal('compressed_response', `the body is encoded ${declared.length} times; the proxy decodes at most ${MAX_LAYERS} layers`);
  // A layer may decode to `max` bytes: that much is taken before zlib allocates it, and
  // what the layer did not use is given back.
  const held = async (buf: Buffer, coding: string) => {
    if (!lease.take(max)) throw busy();
    let out: Buffer;
    try {
      out = await decode(buf, coding, max);
    } catch (err) {
      lease.giveBack(max);
      throw err;
    }
    lease.giveBack(max - out.length);
    return out;
  };
  let relay = body;
  for (const coding of [...declared].reverse()) relay = await held(relay, coding);
  let layer = relay;
  for (let depth = declared.length; depth < MAX_LAYERS; depth++) {
    const coding = sniffCoding(layer.subarray(0, SNIFF_BYTES));
    if (!coding) break;
    layer = await held(layer, coding);
    const hit = reals.first(layer);
    if (hit) {
      throw new BodyRefusal(
        'credential_in_compressed_body',
        `the body holds ${coding}-compressed data that contains the real value of credential ${hit.needle.tag.credential}; it cannot be scrubbed without changing the data, so it is not passed on`,
      );
    }
  }
  return { body: relay, decoded: declared.length > 0 };
}

/**
 * The whole body of `stream`, at most `max` bytes.
 * @throws BodyRefusal when it is longer (the stream is destroyed)
 */
export function readAll(stream: Readable, max: number, first?: Buffer, lease: ScanLease = UNBOUNDED): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = first?.length ? [first] : [];
    let size = first?.length ?? 0;
    if (first?.length && !lease.take(first.length)) {
      stream.destroy();
      reject(busy());
      return;
    }
    // A paused stream whose buffer is empty still emits 'end' (read(0)): after readHead
    // it may have ended already, with every byte in `first`.
    if (stream.readableEnded) {
      resolve(first ?? Buffer.alloc(0));
      return;
    }
    stream.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) {
        stream.destroy();
        reject(new BodyRefusal('compressed_response', `the compressed body is larger than ${max} bytes, more than the proxy reads to scan`));
        return;
      }
      if (!lease.take(c.length)) {
        stream.destroy();
        reject(busy());
        return;
      }
      chunks.push(c);
    });
    let ended = false;
    stream.once('end', () => {
      ended = true;
      resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks));
    });
    stream.once('error', reject);
    // Closed before its end (an upstream that stops short): nothing whole to scan.
    stream.once('close', () => ended || reject(new Error('the body ended early')));
    // After readHead's pause(), a 'data' listener alone does not restart the flow.
    stream.resume();
  });
}

/** The first `n` bytes of `stream` (fewer if it ends first); the stream is left paused, nothing else consumed. */
export function readHead(stream: Readable, n: number): Promise<{ head: Buffer; ended: boolean }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (ended: boolean) => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      stream.pause();
      resolve({ head: Buffer.concat(chunks), ended });
    };
    const onData = (c: Buffer) => {
      chunks.push(c);
      size += c.length;
      if (size >= n) done(false);
    };
    const onEnd = () => done(true);
    const onError = (e: Error) => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      reject(e);
    };
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('error', onError);
    stream.once('close', () => settledOrReject());
    function settledOrReject(): void {
      if (!stream.readableEnded && size < n) reject(new Error('the body ended early'));
    }
  });
}
