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
 * in headers and body); such a host is asked for `Accept-Encoding: identity`, and a
 * compressed body it sends anyway is refused (502 `compressed_response`): failing closed,
 * since a compressed body cannot be scrubbed. Responses from other hosts are relayed as
 * they are (headers scrubbed): no secret was ever sent to them. Redirects are relayed,
 * never followed. WebSocket frames are not scanned after the upgrade (frames from the
 * agent are masked, RFC 6455 section 5.3, and rewriting server frames would change their
 * lengths); the handshake is.
 */
import http from 'node:http';
import https from 'node:https';
import type { Duplex, Readable } from 'node:stream';
import type { Trail } from './audit.ts';
import type { ProxyLimits } from './config.ts';
import { asRefusal, type Decided } from './decide.ts';
import { field, pairs, responseFields } from './headers.ts';
import { guardStream, scrubBuffer, scrubStream, GuardHit } from './match.ts';
import type { ProxyMetrics } from './metrics.ts';
import type { CanonicalHost } from './policy.ts';
import type { CredentialSet, SecretTag } from './swap.ts';
import { requestOptions, upstreamErrorKind, type UpstreamLeg, type UpstreamPool } from './upstream.ts';

/**
 * A scrubbed response body whose Content-Length is at most this (bytes) is read whole,
 * scrubbed once and answered with its (new) Content-Length in one write: most API
 * answers are this small, and a streamed scrub answers them chunked in two writes (two
 * TLS records and syscalls: ~10% of the proxy's CPU per request). Bounded, like the
 * stream's hold-back; larger or unframed bodies are streamed.
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

/** The proxy's own answer on a response object: text body, `X-Agent-Smith-Deny: <reason>`. */
export function writeDeny(res: http.ServerResponse, status: number, reason: string, message: string, close = false): void {
  const body = `agent-smith egress proxy: ${reason}: ${message}\n`;
  res.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'X-Agent-Smith-Deny': reason,
    ...(close ? { Connection: 'close' } : {}),
  });
  res.end(body);
}

/** The proxy's own answer on a raw socket (CONNECT, upgrade): a complete HTTP/1.1 response, then close. */
export function rawDeny(socket: Duplex, status: number, reason: string, message: string): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = `agent-smith egress proxy: ${reason}: ${message}\n`;
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

/** Forwards an allowed HTTP request and relays the response; writes the audit line via `trail`. */
export function forwardRequest(ctx: ForwardContext, req: http.IncomingMessage, res: http.ServerResponse, d: Decided, trail: Trail): void {
  let bytesIn = 0;
  let bytesOut = 0;
  let cut = false;
  const host = d.target.host.host;
  const fail = (status: number, reason: string, message: string, decision: 'deny' | 'error') => {
    trail.done({ decision, reason, status, message, bytesIn, bytesOut });
    if (!res.headersSent && !res.destroyed) writeDeny(res, status, reason, ctx.credentials.scrubValue(message), true);
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
        const encoding = field(raw, 'content-encoding');
        upRes.on('error', () => res.destroy());
        if (d.scoped && hasBody && encoding !== undefined && encoding.trim().toLowerCase() !== 'identity') {
          cut = true;
          upRes.destroy();
          ctx.pool.forget(d.target.host, d.target.port, ctx.tls);
          fail(
            502,
            'compressed_response',
            `${host} sent a body with Content-Encoding "${encoding.slice(0, 40)}" although the proxy asked for identity; a compressed body cannot be scrubbed of credentials, so it is not passed on`,
            'deny',
          );
          return;
        }
        const scrub = d.scoped && hasBody;
        const length = scrub ? field(raw, 'content-length') : undefined;
        if (length !== undefined && /^[0-9]{1,9}$/.test(length) && Number(length) <= WHOLE_BODY_BYTES) {
          const chunks: Buffer[] = [];
          upRes.on('data', (c: Buffer) => chunks.push(c));
          upRes.on('end', () => {
            // 'end' only after the whole Content-Length arrived (a short body is an
            // 'aborted' and 'error': the answer is then cut, as a streamed one would be).
            const body = scrubBuffer(ctx.credentials.responseScrubber, chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks), (tag) => ctx.metrics.scrubbed.inc({ credential: tag.credential }));
            try {
              res.writeHead(status, [...relayFields(ctx, raw, ['content-length']), 'Content-Length', String(body.length)]);
            } catch {
              cut = true;
              fail(502, 'upstream_protocol', `${host} sent a response head that cannot be relayed`, 'error');
              return;
            }
            bytesOut = body.length;
            res.on('finish', () => trail.done({ decision: 'allow', reason: 'ok', status, bytesIn, bytesOut }));
            res.end(body);
          });
          return;
        }
        try {
          res.writeHead(status, relayFields(ctx, raw, scrub ? ['content-length'] : []));
        } catch {
          cut = true;
          upRes.destroy();
          fail(502, 'upstream_protocol', `${host} sent a response head that cannot be relayed`, 'error');
          return;
        }
        let body: Readable = upRes;
        if (scrub) {
          const t = scrubStream(ctx.credentials.responseScrubber, (tag) => ctx.metrics.scrubbed.inc({ credential: tag.credential }));
          upRes.on('error', (e) => t.destroy(e));
          body = upRes.pipe(t);
        }
        body.on('data', (c: Buffer) => (bytesOut += c.length));
        body.on('error', () => res.destroy());
        res.on('finish', () => trail.done({ decision: 'allow', reason: 'ok', status, bytesIn, bytesOut }));
        body.pipe(res);
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

/** Forwards an allowed WebSocket upgrade; on 101 the two sockets are piped. */
export function forwardUpgrade(ctx: ForwardContext, socket: Duplex, head: Buffer, d: Decided, trail: Trail): void {
  let bytesIn = 0;
  let bytesOut = 0;
  const host = d.target.host.host;
  const fail = (status: number, reason: string, message: string, decision: 'deny' | 'error') => {
    trail.done({ decision, reason, status, message, upgrade: true });
    rawDeny(socket, status, reason, ctx.credentials.scrubValue(message));
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
        const encoding = field(pairs(upRes.rawHeaders), 'content-encoding');
        if (d.scoped && encoding !== undefined && encoding.trim().toLowerCase() !== 'identity') {
          upRes.destroy();
          fail(502, 'compressed_response', `${host} declined the upgrade with a compressed body, which cannot be scrubbed`, 'deny');
          return;
        }
        const fields = relayFields(ctx, pairs(upRes.rawHeaders), ['content-length']);
        const lines = [`HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}`];
        for (let i = 0; i + 1 < fields.length; i += 2) lines.push(`${fields[i]}: ${fields[i + 1]}`);
        lines.push('Connection: close');
        socket.write(`${lines.join('\r\n')}\r\n\r\n`);
        const body: Readable = d.scoped ? upRes.pipe(scrubStream(ctx.credentials.responseScrubber)) : upRes;
        body.on('data', (c: Buffer) => (bytesOut += c.length));
        body.on('end', () => {
          trail.done({ decision: 'allow', reason: 'upgrade_declined', status, bytesOut, upgrade: true });
          socket.end();
        });
        body.on('error', () => socket.destroy());
        body.pipe(socket, { end: false });
      });
      upReq.end();
    },
    (err) => {
      const r = asRefusal(err);
      fail(r.status, r.reason, r.message, 'deny');
    },
  );
}
