/**
 * Forwarding one decided request (decide.ts) upstream and relaying the answer: HTTP
 * requests through node:http(s) on the connection's upstream pool, WebSocket upgrades
 * (after the same policy check and swap) as a byte pipe once the upstream answered 101.
 *
 * Request bodies pass the request guard (swap.ts: out-of-scope stubs and real values)
 * as a stream: the upstream receives no byte of a needle, and the request is cut and
 * answered 403. A body with a Content-Encoding is not scanned (it cannot be without
 * decoding it): the guard is a tripwire for stubs, and the agent holds no real value.
 *
 * Responses from a host in some credential's scope are scrubbed (real values -> stubs,
 * in every form of match.ts `secretForms`, in headers, `Location` included, and body).
 * Such a host is asked for `Accept-Encoding: identity`; a body it compresses anyway is
 * read whole (at most `maxDecodedBytes`), decoded and scanned (see {@link inspectBody}):
 * whatever field announces the coding (every Content-Encoding field and list member,
 * Transfer-Encoding codings other than chunked) and also when none does but the body
 * starts with a compression format's magic bytes. What cannot be decoded, or is larger
 * than the cap, is refused (502): failing closed. Responses from other hosts are relayed
 * as they are (headers scrubbed): no secret was ever sent to them. Redirects are
 * relayed, never followed.
 *
 * WebSocket frames are not scanned after the upgrade (frames from the agent are masked,
 * RFC 6455 section 5.3, and rewriting server frames would change their lengths), so an
 * upgrade to a credential's host is refused unless that credential has
 * `allowWebSocket` (spec.egress.credentials[].allowWebSocket), which is documented as
 * unscanned. The handshake is checked and swapped like any request.
 */
import http from 'node:http';
import https from 'node:https';
import type { Duplex, Readable } from 'node:stream';
import zlib from 'node:zlib';
import type { Trail } from './audit.ts';
import type { ProxyLimits } from './config.ts';
import { asRefusal, type Decided } from './decide.ts';
import { field, pairs, responseFields } from './headers.ts';
import { guardStream, scrubBuffer, scrubStream, GuardHit, type Matcher } from './match.ts';
import type { ProxyMetrics } from './metrics.ts';
import type { CanonicalHost } from './policy.ts';
import { shorten, MAX_MESSAGE, type CredentialSet, type SecretTag } from './swap.ts';
import { requestOptions, upstreamErrorKind, type UpstreamLeg, type UpstreamPool } from './upstream.ts';

/**
 * A scrubbed response body whose Content-Length is at most this (bytes) is read whole,
 * scrubbed once and answered with its (new) Content-Length in one write: most API
 * answers are this small, and a streamed scrub answers them chunked in two writes (two
 * TLS records and syscalls: ~10% of the proxy's CPU per request). Bounded, like the
 * stream's hold-back; larger or unframed bodies are streamed (unless compressed).
 */
const WHOLE_BODY_BYTES = 64 * 1024;

export interface ForwardContext {
  credentials: CredentialSet<CanonicalHost>;
  pool: UpstreamPool;
  limits: ProxyLimits;
  metrics: ProxyMetrics;
  /** The agent's connection is TLS, so the upstream is. */
  tls: boolean;
}

/**
 * The proxy's own answer on a response object: text body, `X-Agent-Smith-Deny: <reason>`.
 * `message` must already be redacted (CredentialSet `forAgent` or `scrubValue`); it is
 * cut here to {@link MAX_MESSAGE} characters, after that.
 */
export function writeDeny(res: http.ServerResponse, status: number, reason: string, message: string, close = false): void {
  const body = `agent-smith egress proxy: ${reason}: ${shorten(message, MAX_MESSAGE)}\n`;
  res.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'X-Agent-Smith-Deny': reason,
    ...(close ? { Connection: 'close' } : {}),
  });
  res.end(body);
}

/**
 * The proxy's own answer on a raw socket (CONNECT, upgrade): a complete HTTP/1.1
 * response, then close. `message`: as for {@link writeDeny}.
 */
export function rawDeny(socket: Duplex, status: number, reason: string, message: string): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = `agent-smith egress proxy: ${reason}: ${shorten(message, MAX_MESSAGE)}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Error'}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      `X-Agent-Smith-Deny: ${reason}\r\nConnection: close\r\n\r\n${body}`,
  );
  // A client that does not read its answer must not hold the socket.
  setTimeout(() => socket.destroy(), 5_000).unref();
}

function refusedBody(tag: SecretTag, host: string): { reason: string; message: string } {
  return tag.kind === 'stub'
    ? { reason: 'stub_out_of_scope', message: `the request body carries the stub of credential ${tag.credential}, which may not be sent to ${host}` }
    : { reason: 'real_credential', message: `the request body carries the real value of credential ${tag.credential}` };
}

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
const SNIFF_BYTES = 4;
/** Layers of compression looked into (declared plus sniffed): a bound on the work, not a format limit. */
const MAX_LAYERS = 4;

/** A body that cannot be inspected: the reason and message of the 502. */
class BodyRefusal extends Error {
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
const UNBOUNDED: ScanLease = { take: () => true, giveBack: () => undefined, release: () => undefined };

const budgets = new WeakMap<ProxyLimits, ScanBudget>();
/** The process's scan budget for these limits (`maxScanBytesInFlight`), made on first use. */
function budgetFor(limits: ProxyLimits): ScanBudget {
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
function readAll(stream: Readable, max: number, first?: Buffer, lease: ScanLease = UNBOUNDED): Promise<Buffer> {
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
function readHead(stream: Readable, n: number): Promise<{ head: Buffer; ended: boolean }> {
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

/** Scrubbed response fields as a flat list; counts scrubs. */
function relayFields(ctx: ForwardContext, raw: ReadonlyArray<readonly [string, string]>, drop: readonly string[]): string[] {
  const out: string[] = [];
  for (const [n, v] of responseFields(raw, drop)) {
    if (ctx.credentials.responseScrubber.first(n)) continue;
    const { text, tags } = ctx.credentials.responseScrubber.replace(v);
    for (const t of tags) ctx.metrics.scrubbed.inc({ credential: t.credential });
    out.push(n, text);
  }
  return out;
}

/** Starts the upstream request on `leg` with a connect (TCP + TLS) deadline. */
function startUpstream(ctx: ForwardContext, leg: UpstreamLeg, d: Decided, method: string): http.ClientRequest {
  const opts = requestOptions(leg, d.target.host, { method, path: d.path, headers: d.headers, idleTimeoutMs: ctx.limits.idleTimeoutMs, maxHeaderBytes: ctx.limits.maxHeaderBytes });
  const upReq = ctx.tls ? https.request(opts) : http.request(opts);
  const timer = setTimeout(() => upReq.destroy(Object.assign(new Error(`no connection to the upstream within ${ctx.limits.upstreamConnectTimeoutMs} ms`), { code: 'UPSTREAM_TIMEOUT' })), ctx.limits.upstreamConnectTimeoutMs);
  timer.unref();
  upReq.on('socket', (s) => {
    if (!s.connecting) clearTimeout(timer);
    else s.once(ctx.tls ? 'secureConnect' : 'connect', () => clearTimeout(timer));
  });
  upReq.on('close', () => clearTimeout(timer));
  // Idle upstream (request `timeout`): destroy, reported as a timeout.
  upReq.on('timeout', () => upReq.destroy(Object.assign(new Error('upstream idle timeout'), { code: 'UPSTREAM_TIMEOUT' })));
  return upReq;
}

/** Forwards an allowed HTTP request and relays the response; writes the audit line via `trail`. */
export function forwardRequest(ctx: ForwardContext, req: http.IncomingMessage, res: http.ServerResponse, d: Decided, trail: Trail): void {
  let bytesIn = 0;
  let bytesOut = 0;
  let cut = false;
  const host = d.target.host.host;
  const fail = (status: number, reason: string, message: string, decision: 'deny' | 'error') => {
    trail.done({ decision, reason, status, message, bytesIn, bytesOut });
    if (!res.headersSent && !res.destroyed) writeDeny(res, status, reason, ctx.credentials.forAgent(message), true);
    else res.destroy();
  };

  ctx.pool.leg(d.target.host, d.target.port, ctx.tls).then(
    (leg) => {
      if (res.destroyed || req.socket.destroyed) {
        trail.done({ decision: 'allow', reason: 'client_closed', bytesIn, bytesOut });
        return;
      }
      const upReq = startUpstream(ctx, leg, d, req.method ?? 'GET');
      res.on('close', () => {
        if (!res.writableFinished) {
          upReq.destroy();
          trail.done({ decision: 'allow', reason: 'client_closed', bytesIn, bytesOut });
        }
      });

      upReq.on('error', (err: NodeJS.ErrnoException) => {
        if (cut || trail.finished) return;
        ctx.pool.forget(d.target.host, d.target.port, ctx.tls);
        const kind = upstreamErrorKind(err);
        ctx.metrics.upstreamErrors.inc({ kind });
        if (kind === 'tls') fail(502, 'upstream_tls', `the TLS certificate of ${host} did not verify (${err.code ?? 'error'}); the request was not sent`, 'deny');
        else fail(kind === 'timeout' ? 504 : 502, `upstream_${kind}`, `upstream ${host}:${d.target.port}: ${err.code ?? err.message}`, 'error');
      });

      upReq.on('response', (upRes) => {
        const status = upRes.statusCode ?? 502;
        const raw = pairs(upRes.rawHeaders);
        const hasBody = req.method !== 'HEAD' && status !== 204 && status !== 304 && status >= 200;
        upRes.on('error', () => res.destroy());
        const count = (tag: SecretTag) => ctx.metrics.scrubbed.inc({ credential: tag.credential });
        const done = () => trail.done({ decision: 'allow', reason: 'ok', status, bytesIn, bytesOut });
        const refuse = (err: unknown) => {
          cut = true;
          upRes.destroy();
          ctx.pool.forget(d.target.host, d.target.port, ctx.tls);
          if (err instanceof BodyRefusal) fail(err.status, err.reason, `${host}: ${err.message}`, err.status === 503 ? 'error' : 'deny');
          else fail(502, 'upstream_reset', `${host}: the response body could not be read whole`, 'error');
        };
        const badHead = () => {
          cut = true;
          upRes.destroy();
          fail(502, 'upstream_protocol', `${host} sent a response head that cannot be relayed`, 'error');
        };
        /** Answers `body` scrubbed, in one write with its own Content-Length, without the fields in `drop`. */
        const answerWhole = (body: Buffer, drop: readonly string[]) => {
          const out = scrubBuffer(ctx.credentials.responseScrubber, body, count);
          try {
            res.writeHead(status, [...relayFields(ctx, raw, ['content-length', ...drop]), 'Content-Length', String(out.length)]);
          } catch {
            badHead();
            return;
          }
          bytesOut = out.length;
          res.on('finish', done);
          res.end(out);
        };
        // A compressed body's read and decoded layers count against the process's scan
        // budget until the answer is gone (res 'close' comes after 'finish' or a reset).
        const lease = budgetFor(ctx.limits).lease();
        res.once('close', () => lease.release());
        const inspectThenAnswer = (body: Buffer, declared: readonly string[]) =>
          inspectBody(ctx.credentials.responseScrubber, body, declared, ctx.limits.maxDecodedBytes, declared.length || sniffCoding(body.subarray(0, SNIFF_BYTES)) ? lease : UNBOUNDED).then(({ body: relay, decoded }) => answerWhole(relay, decoded ? ['content-encoding'] : []), refuse);
        /** Streams the rest of the body (after `head`), scrubbed when `scrub`. */
        const answerStream = (scrub: boolean, head?: Buffer) => {
          try {
            res.writeHead(status, relayFields(ctx, raw, scrub ? ['content-length'] : []));
          } catch {
            badHead();
            return;
          }
          let body: Readable = upRes;
          if (scrub) {
            const t = scrubStream(ctx.credentials.responseScrubber, count);
            upRes.on('error', (e) => t.destroy(e));
            if (head?.length) t.write(head);
            body = upRes.pipe(t);
          }
          body.on('data', (c: Buffer) => (bytesOut += c.length));
          body.on('error', () => res.destroy());
          res.on('finish', done);
          body.pipe(res);
        };

        if (!d.scoped || !hasBody) {
          answerStream(false);
          return;
        }
        // A credential host: whatever announces a compression (any field, or the body's
        // first bytes) makes the body read whole, decoded and scanned (inspectBody).
        const declared = bodyCodings(raw);
        const length = field(raw, 'content-length');
        // Most API answers are small: read whole, scrubbed once, answered in one write
        // (a streamed scrub answers chunked in two writes: two TLS records and syscalls).
        const small = length !== undefined && /^[0-9]{1,9}$/.test(length) && Number(length) <= WHOLE_BODY_BYTES;
        if (declared.length || small) {
          void readAll(upRes, declared.length ? ctx.limits.maxDecodedBytes : WHOLE_BODY_BYTES, undefined, declared.length ? lease : UNBOUNDED).then((body) => inspectThenAnswer(body, declared), refuse);
          return;
        }
        void readHead(upRes, SNIFF_BYTES).then(({ head, ended }) => {
          if (ended) void inspectThenAnswer(head, []);
          else if (sniffCoding(head)) void readAll(upRes, ctx.limits.maxDecodedBytes, head, lease).then((body) => inspectThenAnswer(body, []), refuse);
          else answerStream(true, head);
        }, refuse);
      });

      if (!d.hasBody) {
        upReq.end();
        return;
      }
      req.on('error', () => upReq.destroy());
      const guard = ctx.credentials.requestGuard(d.target.host);
      if (d.encodedBody || guard.empty) {
        req.on('data', (c: Buffer) => (bytesIn += c.length));
        req.pipe(upReq);
        return;
      }
      const g = guardStream(guard, (n) => (bytesIn += n));
      g.on('error', (err) => {
        req.unpipe(g);
        cut = true;
        upReq.destroy();
        ctx.pool.forget(d.target.host, d.target.port, ctx.tls);
        if (err instanceof GuardHit) {
          const tag = (err as GuardHit<SecretTag>).tag;
          const { reason, message } = refusedBody(tag, host);
          trail.rec.credential = tag.credential;
          trail.rec.location = 'body';
          fail(403, reason, message, 'deny');
        } else {
          fail(502, 'upstream_reset', 'the request body could not be forwarded', 'error');
        }
      });
      req.pipe(g).pipe(upReq);
    },
    (err) => {
      const r = asRefusal(err);
      fail(r.status, r.reason, r.message, 'deny');
    },
  );
}

/**
 * Forwards an allowed WebSocket upgrade; on 101 the two sockets are piped. (An upgrade
 * to a credential's host without `allowWebSocket` never gets here: decide.ts refuses it,
 * 403 `websocket_unscanned`, as frames are not scanned.)
 */
export function forwardUpgrade(ctx: ForwardContext, socket: Duplex, head: Buffer, d: Decided, trail: Trail): void {
  let bytesIn = 0;
  let bytesOut = 0;
  const host = d.target.host.host;
  const fail = (status: number, reason: string, message: string, decision: 'deny' | 'error') => {
    trail.done({ decision, reason, status, message, upgrade: true });
    rawDeny(socket, status, reason, ctx.credentials.forAgent(message));
  };
  ctx.pool.leg(d.target.host, d.target.port, ctx.tls).then(
    (leg) => {
      const upReq = startUpstream(ctx, leg, d, 'GET');
      socket.once('close', () => upReq.destroy());
      upReq.on('error', (err: NodeJS.ErrnoException) => {
        if (trail.finished) return;
        ctx.pool.forget(d.target.host, d.target.port, ctx.tls);
        const kind = upstreamErrorKind(err);
        ctx.metrics.upstreamErrors.inc({ kind });
        if (kind === 'tls') fail(502, 'upstream_tls', `the TLS certificate of ${host} did not verify (${err.code ?? 'error'})`, 'deny');
        else fail(kind === 'timeout' ? 504 : 502, `upstream_${kind}`, `upstream ${host}:${d.target.port}: ${err.code ?? err.message}`, 'error');
      });
      upReq.on('upgrade', (upRes, upSocket, upHead) => {
        // The upgraded socket leaves the agent's pool for good.
        ctx.pool.forget(d.target.host, d.target.port, ctx.tls);
        const fields = relayFields(ctx, pairs(upRes.rawHeaders), []);
        const lines = ['HTTP/1.1 101 Switching Protocols'];
        for (let i = 0; i + 1 < fields.length; i += 2) lines.push(`${fields[i]}: ${fields[i + 1]}`);
        lines.push('Connection: Upgrade', 'Upgrade: websocket');
        socket.write(`${lines.join('\r\n')}\r\n\r\n`);
        if (upHead.length) socket.write(upHead);
        if (head.length) upSocket.write(head);
        socket.on('data', (c: Buffer) => (bytesIn += c.length));
        upSocket.on('data', (c: Buffer) => (bytesOut += c.length));
        const close = () => {
          socket.destroy();
          upSocket.destroy();
          trail.done({ decision: 'allow', reason: 'ok', status: 101, bytesIn, bytesOut, upgrade: true });
        };
        for (const s of [socket, upSocket]) {
          s.on('close', close);
          s.on('error', close);
        }
        upSocket.setTimeout(ctx.limits.idleTimeoutMs, close);
        socket.pipe(upSocket);
        upSocket.pipe(socket);
      });
      upReq.on('response', (upRes) => {
        // The upstream declined the upgrade: relay its answer, then close.
        const status = upRes.statusCode ?? 502;
        const raw = pairs(upRes.rawHeaders);
        const headLines = (drop: readonly string[], extra: string[] = []) => {
          const fields = relayFields(ctx, raw, ['content-length', ...drop]);
          const lines = [`HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}`];
          for (let i = 0; i + 1 < fields.length; i += 2) lines.push(`${fields[i]}: ${fields[i + 1]}`);
          lines.push(...extra, 'Connection: close');
          return `${lines.join('\r\n')}\r\n\r\n`;
        };
        if (d.scoped) {
          // An opted-in credential host: its refusal is an HTTP body like any other,
          // read whole (bounded), decoded if compressed, and scrubbed.
          const declared = bodyCodings(raw);
          const lease = declared.length ? budgetFor(ctx.limits).lease() : UNBOUNDED;
          socket.once('close', () => lease.release());
          void readAll(upRes, declared.length ? ctx.limits.maxDecodedBytes : WHOLE_BODY_BYTES, undefined, lease)
            .then((body) => inspectBody(ctx.credentials.responseScrubber, body, declared, ctx.limits.maxDecodedBytes, lease))
            .then(
              ({ body, decoded }) => {
                const out = scrubBuffer(ctx.credentials.responseScrubber, body);
                bytesOut = out.length;
                socket.end(Buffer.concat([Buffer.from(headLines(decoded ? ['content-encoding'] : [], [`Content-Length: ${out.length}`]), 'latin1'), out]));
                trail.done({ decision: 'allow', reason: 'upgrade_declined', status, bytesOut, upgrade: true });
              },
              (err: unknown) => {
                upRes.destroy();
                if (err instanceof BodyRefusal) fail(err.status, err.reason, `${host}: ${err.message}`, err.status === 503 ? 'error' : 'deny');
                else fail(502, 'upstream_reset', `${host}: the answer to the upgrade could not be read whole`, 'error');
              },
            );
          return;
        }
        socket.write(headLines([]));
        upRes.on('data', (c: Buffer) => (bytesOut += c.length));
        upRes.on('end', () => {
          trail.done({ decision: 'allow', reason: 'upgrade_declined', status, bytesOut, upgrade: true });
          socket.end();
        });
        upRes.on('error', () => socket.destroy());
        upRes.pipe(socket, { end: false });
      });
      upReq.end();
    },
    (err) => {
      const r = asRefusal(err);
      fail(r.status, r.reason, r.message, 'deny');
    },
  );
}
