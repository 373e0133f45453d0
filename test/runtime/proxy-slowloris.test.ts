/**
 * Slow clients against the real `agent-smith proxy` process (default limits: 256
 * connections, 10 s for a TLS handshake and for a request head): 300 connections on
 * loopback that each send one byte a second, on every path a socket can take — a plain
 * request head (explicit and transparent), a CONNECT head, a TLS handshake inside a
 * CONNECT tunnel and a transparent one, a request head inside an intercepted tunnel, the
 * next request on a keep-alive connection, and connections that send nothing at all.
 *
 * What a user notices: while they are open, a new client is served within seconds (the
 * connection limit does not lock it out), and every trickling connection is closed once
 * its deadline passes, whatever bytes keep arriving; the closes are counted in
 * `agentsmith_proxy_connections_closed_total` and logged without a flood.
 */
import type net from 'node:net';
import type tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttpsUpstream, type HttpsUpstream } from '../fakes/https-upstream.ts';
import { connect, dial, exchange, metric, startProxy, startTls, viaConnect, viaPlain, type ProxyFixture } from './proxy-harness.ts';

/** The proxy's defaults (config.ts DEFAULT_LIMITS). */
const HEADERS_TIMEOUT_MS = 10_000;
const HANDSHAKE_TIMEOUT_MS = 10_000;
/** Deadlines are checked once a second; a trickler's last phase may start up to 1 s late. */
const SLACK_MS = 3_000;

type Kind = 'plain-explicit' | 'plain-transparent' | 'connect-head' | 'tunnel-tls-handshake' | 'transparent-tls-handshake' | 'tunnel-inner-head' | 'keep-alive-next-head' | 'silent';

interface Trickler {
  kind: Kind;
  /** When its last phase began (the deadline counts from here), ms. */
  startedAt: number;
  closedAt?: number;
  /** Set up as intended (false: the proxy closed it during set-up). */
  ready: boolean;
  stop(): void;
}

describe('agent-smith proxy: slow clients', () => {
  let up: HttpsUpstream;
  let fx: ProxyFixture;

  beforeAll(async () => {
    up = await startHttpsUpstream({ names: ['api.test'] });
    fx = await startProxy({
      allow: ['api.test'],
      allowCidrs: ['127.0.0.0/8'],
      credentials: [],
      hosts: { 'api.test': { addresses: ['127.0.0.1'], ports: { '443': up.httpsPort, '80': up.httpPort } } },
      upstreamCa: [up.caPem],
      logLevel: 'info',
    });
  });

  afterAll(async () => {
    await fx?.stop();
    await up?.close();
  });

  /** Opens one connection of `kind`, brings it to the slow phase, then writes one byte a second. */
  async function trickle(kind: Kind): Promise<Trickler> {
    const t: Trickler = { kind, startedAt: Date.now(), ready: false, stop: () => undefined };
    const tunnelled = kind === 'tunnel-tls-handshake' || kind === 'tunnel-inner-head' || kind === 'keep-alive-next-head';
    let raw: net.Socket | undefined;
    let writer: net.Socket | tls.TLSSocket | undefined;
    const head = (target: string) => `GET ${target} HTTP/1.1\r\nHost: api.test\r\nX-Slow: `;
    // A TLS handshake record header announcing 512 bytes, which then come one a second.
    const tlsRecord = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]);
    try {
      if (tunnelled) {
        const c = await connect(fx.port, 'api.test:443');
        raw = c.socket;
        if (c.res.status !== 200) throw new Error(`CONNECT: ${c.res.status}`);
      } else {
        raw = await dial(fx.port);
      }
      const r = raw;
      r.on('error', () => undefined);
      r.once('close', () => (t.closedAt ??= Date.now()));
      writer = r;
      t.startedAt = Date.now();
      switch (kind) {
        case 'plain-explicit':
          r.write(head('http://api.test/echo'));
          break;
        case 'plain-transparent':
          r.write(head('/echo'));
          break;
        case 'connect-head':
          r.write('CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\nX-Slow: ');
          break;
        case 'transparent-tls-handshake':
        case 'tunnel-tls-handshake':
          r.write(tlsRecord);
          break;
        case 'silent':
          break;
        case 'tunnel-inner-head':
        case 'keep-alive-next-head': {
          const inner = await startTls(r, { servername: 'api.test', caPem: fx.caPem });
          inner.on('error', () => undefined);
          writer = inner;
          if (kind === 'keep-alive-next-head') {
            const res = await exchange(inner, 'GET /echo HTTP/1.1\r\nHost: api.test\r\n\r\n');
            if (res.status !== 200) throw new Error(`first request: ${res.status}`);
          }
          t.startedAt = Date.now();
          inner.write(head('/echo'));
        }
      }
      t.ready = !r.destroyed;
    } catch {
      // Closed by the proxy during set-up (an old proxy's connection limit): already closed.
      t.closedAt ??= Date.now();
      raw?.destroy();
      return t;
    }
    const w = writer;
    const timer = setInterval(() => {
      if (!w.destroyed && kind !== 'silent') w.write(kind.endsWith('tls-handshake') ? Buffer.from([0x01]) : 'a');
    }, 1000);
    t.stop = () => {
      clearInterval(timer);
      raw?.destroy();
    };
    return t;
  }

  it('serves a new client within seconds while 300 connections trickle, and closes every trickler at its deadline', async () => {
    const kinds: Kind[] = ['tunnel-inner-head', 'keep-alive-next-head', 'tunnel-tls-handshake', 'connect-head', 'plain-explicit', 'plain-transparent', 'transparent-tls-handshake', 'silent'];
    const tricklers: Trickler[] = [];
    try {
      // Bounded: 300 connections, a few at a time, on loopback, each stopped at the end.
      for (let i = 0; i < 300; i += 10) {
        tricklers.push(...(await Promise.all(Array.from({ length: 10 }, (_, j) => trickle(kinds[(i + j) % kinds.length] as Kind)))));
      }
      const opened = Date.now();
      await new Promise((r) => setTimeout(r, 1500));
      const stillOpen = tricklers.filter((t) => t.closedAt === undefined).length;
      expect(stillOpen, 'tricklers open while the new clients come').toBeGreaterThan(200);

      // New clients, as an agent's tools connect: each answered within a few seconds.
      for (let i = 0; i < 3; i++) {
        const start = Date.now();
        const tunnelled = await Promise.race([viaConnect(fx, 'api.test:443', 'GET /echo HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n'), timeout(5_000)]);
        expect(tunnelled.status).toBe(200);
        const plain = await Promise.race([viaPlain(fx, 'GET http://api.test/echo HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n'), timeout(5_000)]);
        expect(plain.status).toBe(200);
        expect(Date.now() - start).toBeLessThan(8_000);
      }
      expect(Date.now() - opened, 'the new clients came while the tricklers were within their deadlines').toBeLessThan(HEADERS_TIMEOUT_MS);

      // Every trickler is closed at its deadline, although a byte keeps arriving every second.
      const limit = Math.max(HEADERS_TIMEOUT_MS, HANDSHAKE_TIMEOUT_MS) + SLACK_MS;
      const deadline = Date.now() + limit + 2_000;
      while (tricklers.some((t) => t.closedAt === undefined) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
      const late = tricklers.filter((t) => t.closedAt === undefined || t.closedAt - t.startedAt > limit);
      expect(
        late.map((t) => `${t.kind}: ${t.closedAt === undefined ? 'still open' : `closed after ${t.closedAt - t.startedAt} ms`}`),
        'tricklers not closed within their deadline',
      ).toEqual([]);
      for (const kind of kinds) expect(tricklers.some((t) => t.kind === kind && t.ready), `a ${kind} trickler was set up`).toBe(true);

      // Counted by reason; logged once per reason, not once per connection.
      expect(await metric(fx, 'agentsmith_proxy_connections_closed_total{reason="headers_timeout"}')).toBeGreaterThan(0);
      expect(await metric(fx, 'agentsmith_proxy_connections_closed_total{reason="handshake_timeout"}')).toBeGreaterThan(0);
      expect(await metric(fx, 'agentsmith_proxy_connections_closed_total{reason="evicted"}')).toBeGreaterThan(0);
      const lines = fx.logs().filter((l) => typeof l.msg === 'string' && l.msg.startsWith('egress proxy: closed client connections'));
      const perReason = new Map<string, number>();
      for (const l of lines) perReason.set(String(l.reason), (perReason.get(String(l.reason)) ?? 0) + 1);
      expect([...perReason.values()].every((n) => n === 1), JSON.stringify([...perReason])).toBe(true);
      expect(perReason.get('headers_timeout')).toBe(1);

      // And the proxy is whole afterwards.
      const after = await viaConnect(fx, 'api.test:443', 'GET /echo HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n');
      expect(after.status).toBe(200);
    } finally {
      for (const t of tricklers) t.stop();
    }
  });

  it('serves a new client while 260 connections trickle request bodies, making room at the expense of the slowest upload', async () => {
    const uploads: net.Socket[] = [];
    const timers: NodeJS.Timeout[] = [];
    try {
      // Bounded: 260 connections (past the 256 limit), a few at a time, loopback only.
      for (let i = 0; i < 260; i += 10) {
        const batch = await Promise.all(
          Array.from({ length: 10 }, async () => {
            const s = await dial(fx.port);
            s.on('error', () => undefined);
            s.write('POST http://api.test/echo HTTP/1.1\r\nHost: api.test\r\nContent-Length: 1000000\r\n\r\n');
            return s;
          }),
        );
        uploads.push(...batch);
      }
      for (const s of uploads) timers.push(setInterval(() => s.destroyed || s.write('a'), 1000));
      // The heads are complete, so these are busy; past headersTimeoutMs a slow upload may be made room from.
      await new Promise((r) => setTimeout(r, HEADERS_TIMEOUT_MS + 1_500));
      const before = await metric(fx, 'agentsmith_proxy_connections_closed_total{reason="evicted"}');
      for (let i = 0; i < 3; i++) {
        const res = await Promise.race([viaPlain(fx, 'GET http://api.test/echo HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n'), timeout(5_000)]);
        expect(res.status).toBe(200);
      }
      expect(await metric(fx, 'agentsmith_proxy_connections_closed_total{reason="evicted"}')).toBeGreaterThan(before);
      expect(uploads.filter((s) => !s.destroyed).length, 'the other uploads go on').toBeGreaterThan(200);
    } finally {
      for (const t of timers) clearInterval(t);
      for (const s of uploads) s.destroy();
    }
  });
});

function timeout(ms: number): Promise<never> {
  return new Promise((_, reject) => setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms).unref());
}
