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
import type { Trail } from './audit.ts';
import { bodyCodings, BodyRefusal, budgetFor, inspectBody, readAll, readHead, sniffCoding, SNIFF_BYTES, UNBOUNDED } from './body.ts';
import type { ProxyLimits } from './config.ts';
import { asRefusal, type Decided } from './decide.ts';
import { field, pairs, responseFields } from './headers.ts';
import { guardStream, scrubBuffer, scrubStream, GuardHit } from './match.ts';
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

/** One forwarded HTTP exchange's running state, shared by its request and response halves. */
interface Exchange {
  bytesIn: number;
  bytesOut: number;
  /** The proxy cut the exchange (a refused body): an upstream error after that is not reported again. */
  cut: boolean;
  readonly d: Decided;
  readonly trail: Trail;
  /** The upstream host's name, for messages. */
  readonly host: string;
  /** Ends the exchange with the proxy's own answer (or a reset once the head is sent) and the audit line. */
  fail(status: number, reason: string, message: string, decision: 'deny' | 'error'): void;
}

/** Forwards an allowed HTTP request and relays the response; writes the audit line via `trail`. */
export function forwardRequest(ctx: ForwardContext, req: http.IncomingMessage, res: http.ServerResponse, d: Decided, trail: Trail): void {
  const x: Exchange = {
    bytesIn: 0,
    bytesOut: 0,
    cut: false,
    d,
    trail,
    host: d.target.host.host,
    fail: (status, reason, message, decision) => {
      trail.done({ decision, reason, status, message, bytesIn: x.bytesIn, bytesOut: x.bytesOut });
      if (!res.headersSent && !res.destroyed) writeDeny(res, status, reason, ctx.credentials.forAgent(message), true);
      else res.destroy();
    },
  };
  const host = x.host;

  ctx.pool.leg(d.target.host, d.target.port, ctx.tls).then(
    (leg) => {
      if (res.destroyed || req.socket.destroyed) {
        trail.done({ decision: 'allow', reason: 'client_closed', bytesIn: x.bytesIn, bytesOut: x.bytesOut });
        return;
      }
      const upReq = startUpstream(ctx, leg, d, req.method ?? 'GET');
      res.on('close', () => {
        if (!res.writableFinished) {
          upReq.destroy();
          trail.done({ decision: 'allow', reason: 'client_closed', bytesIn: x.bytesIn, bytesOut: x.bytesOut });
        }
      });

      upReq.on('error', (err: NodeJS.ErrnoException) => {
        if (x.cut || trail.finished) return;
        ctx.pool.forget(d.target.host, d.target.port, ctx.tls);
        const kind = upstreamErrorKind(err);
        ctx.metrics.upstreamErrors.inc({ kind });
        if (kind === 'tls') x.fail(502, 'upstream_tls', `the TLS certificate of ${host} did not verify (${err.code ?? 'error'}); the request was not sent`, 'deny');
        else x.fail(kind === 'timeout' ? 504 : 502, `upstream_${kind}`, `upstream ${host}:${d.target.port}: ${err.code ?? err.message}`, 'error');
      });

      upReq.on('response', (upRes) => relayResponse(ctx, req, res, upRes, x));
      sendRequestBody(ctx, req, upReq, x);
    },
    (err) => {
      const r = asRefusal(err);
      x.fail(r.status, r.reason, r.message, 'deny');
    },
  );
}

/**
 * Sends the agent's request body upstream: as it is when there is nothing to guard (or it
 * is encoded), else through the request guard, which cuts the request and answers 403 on
 * a stub out of scope or a real value.
 */
function sendRequestBody(ctx: ForwardContext, req: http.IncomingMessage, upReq: http.ClientRequest, x: Exchange): void {
  const { d, trail } = x;
  if (!d.hasBody) {
    upReq.end();
    return;
  }
  req.on('error', () => upReq.destroy());
  const guard = ctx.credentials.requestGuard(d.target.host);
  if (d.encodedBody || guard.empty) {
    req.on('data', (c: Buffer) => (x.bytesIn += c.length));
    req.pipe(upReq);
    return;
  }
  const g = guardStream(guard, (n) => (x.bytesIn += n));
  g.on('error', (err) => {
    req.unpipe(g);
    x.cut = true;
    upReq.destroy();
    ctx.pool.forget(d.target.host, d.target.port, ctx.tls);
    if (err instanceof GuardHit) {
      const tag = (err as GuardHit<SecretTag>).tag;
      const { reason, message } = refusedBody(tag, x.host);
      trail.rec.credential = tag.credential;
      trail.rec.location = 'body';
      x.fail(403, reason, message, 'deny');
    } else {
      x.fail(502, 'upstream_reset', 'the request body could not be forwarded', 'error');
    }
  });
  req.pipe(g).pipe(upReq);
}

/**
 * Relays the upstream's response: headers scrubbed always; the body as it is from a host
 * in no credential's scope, else scrubbed (streamed, or read whole when small) and, when
 * anything announces a compression, read whole, decoded and scanned (inspectBody).
 */
function relayResponse(ctx: ForwardContext, req: http.IncomingMessage, res: http.ServerResponse, upRes: http.IncomingMessage, x: Exchange): void {
  const { d, trail, host } = x;
  const status = upRes.statusCode ?? 502;
  const raw = pairs(upRes.rawHeaders);
  const hasBody = req.method !== 'HEAD' && status !== 204 && status !== 304 && status >= 200;
  upRes.on('error', () => res.destroy());
  const count = (tag: SecretTag) => ctx.metrics.scrubbed.inc({ credential: tag.credential });
  const done = () => trail.done({ decision: 'allow', reason: 'ok', status, bytesIn: x.bytesIn, bytesOut: x.bytesOut });
  const refuse = (err: unknown) => {
    x.cut = true;
    upRes.destroy();
    ctx.pool.forget(d.target.host, d.target.port, ctx.tls);
    if (err instanceof BodyRefusal) x.fail(err.status, err.reason, `${host}: ${err.message}`, err.status === 503 ? 'error' : 'deny');
    else x.fail(502, 'upstream_reset', `${host}: the response body could not be read whole`, 'error');
  };
  const badHead = () => {
    x.cut = true;
    upRes.destroy();
    x.fail(502, 'upstream_protocol', `${host} sent a response head that cannot be relayed`, 'error');
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
    x.bytesOut = out.length;
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
    body.on('data', (c: Buffer) => (x.bytesOut += c.length));
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
