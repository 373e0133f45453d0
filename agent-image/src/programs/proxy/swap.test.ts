import { describe, expect, it } from 'vitest';
import { checkRequestHeaders, forwardable, HeaderError } from './headers.ts';
import { encodedForms, guardStream, GuardHit, Matcher, needlesFor, scrubBuffer, scrubStream } from './match.ts';
import { canonicalHost, credentialFor, type CanonicalHost } from './policy.ts';
import { CredentialSet, decodeBasic, type Credential, type SecretTag } from './swap.ts';
import { through } from '../../../../test/support/streams.ts';

const REAL = 'ghp_R3alT0kenValue0123456789abcdefABCDEF';
const STUB = 'agent-smith-stub-AAAAbbbbCCCCddddEEEEffffGGGGhhhhIIIIjjjj0123';
const ANTHROPIC_REAL = 'sk-ant-api03-realrealrealrealrealrealreal-xyz';
const ANTHROPIC_STUB = 'agent-smith-stub-ZZZZyyyyXXXXwwwwVVVVuuuuTTTTssssRRRRqqqq9876';

const github: Credential = { name: 'github', hosts: ['github.com', 'api.github.com'], scheme: 'basic', header: 'Authorization', stub: STUB, require: false, real: REAL };
const anthropic: Credential = { name: 'anthropic', hosts: ['api.anthropic.com'], scheme: 'raw', header: 'x-api-key', stub: ANTHROPIC_STUB, require: true, real: ANTHROPIC_REAL };

function set(creds: Credential[] = [github, anthropic]): CredentialSet<CanonicalHost> {
  return new CredentialSet<CanonicalHost>(creds, (all, host) => credentialFor(all, host));
}
const host = (h: string) => canonicalHost(h);
const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;

describe('encoded forms', () => {
  it('finds the secret base64-encoded at every alignment inside a longer value', () => {
    const m = new Matcher(needlesFor<string>(REAL, STUB, 'x'));
    for (const prefix of ['', 'a', 'ab', 'x-access-token:', 'user1:', 'abcd:']) {
      for (const suffix of ['', '!', 'zz']) {
        const enc = Buffer.from(prefix + REAL + suffix).toString('base64');
        expect(m.first(enc), `${prefix}|${suffix}`).toBeDefined();
        expect(m.first(enc.replace(/\+/g, '-').replace(/\//g, '_')), `url ${prefix}|${suffix}`).toBeDefined();
      }
    }
  });

  it('covers percent-encoding and JSON escaping where they differ from the raw value', () => {
    const odd = 'tok/with+odd chars"and\\slashes';
    const forms = encodedForms(odd);
    expect(forms).toContain(encodeURIComponent(odd));
    expect(forms).toContain(encodeURIComponent(odd).replace(/%[0-9A-F]{2}/g, (x) => x.toLowerCase()));
    expect(forms).toContain(JSON.stringify(odd).slice(1, -1));
  });
});

describe('scrubStream', () => {
  const scrubber = set().responseScrubber;
  const body = Buffer.from(`{"echo":"Bearer ${REAL}","b64":"${Buffer.from(`x-access-token:${REAL}`).toString('base64')}","other":"${ANTHROPIC_REAL}"}`);

  it('replaces every form, whatever the chunk boundaries', async () => {
    const expected = await through(scrubStream(scrubber), body, []);
    expect(expected).not.toContain(REAL);
    expect(expected).not.toContain(ANTHROPIC_REAL);
    expect(expected).toContain(`Bearer ${STUB}`);
    for (let cut = 1; cut < body.length; cut += 3) {
      const out = await through(scrubStream(scrubber), body, [cut, Math.min(body.length, cut + 7)]);
      expect(out, `cut at ${cut}`).toBe(expected);
    }
  });

  it('holds back only a possible needle prefix: an event that ends in a line break is not delayed', () => {
    const m = new Matcher(needlesFor<string>(REAL, STUB, 'x'));
    expect(m.partialSuffix(Buffer.from('data: {"x":1}\n\n'))).toBe(0);
    expect(m.partialSuffix(Buffer.from(`data: ${REAL.slice(0, 10)}`))).toBe(10);
    expect(m.maxLength).toBeGreaterThanOrEqual(REAL.length);
  });
});

describe('Matcher on strings and whole bodies', () => {
  const m = new Matcher(needlesFor(REAL, STUB, 'github'));

  it('finds a needle after non-ASCII text and lone surrogates, at its UTF-8 byte index', () => {
    for (const before of ['héllo ', '\ud800 ', '日本 \udfff']) {
      const hit = m.first(`${before}${REAL} tail`);
      expect(hit?.index).toBe(Buffer.byteLength(before, 'utf8'));
      expect(m.replace(`${before}${REAL} tail`).text).toBe(`${Buffer.from(before, 'utf8').toString('utf8')}${STUB} tail`);
    }
    expect(m.first('héllo \ud800 nothing here')).toBeUndefined();
    expect(m.replace('nothing here').tags).toEqual([]);
  });

  it('scrubBuffer replaces every form in a body, and returns a body without one as it is', () => {
    const body = Buffer.from(`a ${REAL} b ${Buffer.from(`x-access-token:${REAL}`).toString('base64')} c`);
    const tags: string[] = [];
    const out = scrubBuffer(m, body, (t) => tags.push(t)).toString();
    expect(out).not.toContain(REAL);
    expect(out).toContain(STUB);
    expect(tags).toEqual(['github', 'github']);
    const clean = Buffer.from('nothing to see');
    expect(scrubBuffer(m, clean)).toBe(clean);
  });
});

describe('guardStream', () => {
  it('fails before any byte of a stub split across chunks leaves', async () => {
    const guard = set().requestGuard(host('evil.example'));
    const input = Buffer.from(`{"note":"hello","token":"${STUB}","tail":"${'x'.repeat(100)}"}`);
    const at = input.indexOf(STUB);
    for (const cut of [at + 1, at + 5, at + STUB.length - 1]) {
      const passed: Buffer[] = [];
      const g = guardStream(guard);
      g.on('data', (c: Buffer) => passed.push(c));
      const err = await new Promise<unknown>((resolve) => {
        g.on('error', resolve);
        g.on('end', () => resolve(undefined));
        g.write(input.subarray(0, cut));
        g.end(input.subarray(cut));
      });
      expect(err).toBeInstanceOf(GuardHit);
      expect((err as GuardHit<SecretTag>).tag).toEqual({ credential: 'github', kind: 'stub' });
      const out = Buffer.concat(passed).toString();
      expect(out.length).toBeLessThanOrEqual(at);
      expect(out).not.toContain(STUB.slice(0, 8));
    }
  });

  it('passes a body with the in-scope stub unchanged', async () => {
    const guard = set().requestGuard(host('api.github.com'));
    const input = Buffer.from(`{"token":"${STUB}"}`);
    expect(await through(guardStream(guard), input, [12])).toBe(input.toString());
  });
});

describe('CredentialSet.planRequest', () => {
  const creds = set();
  const plan = (h: string, headers: Array<[string, string]>, target = '/') => creds.planRequest(host(h), headers, target);

  it('swaps git Basic x-access-token:<stub> for the real value, re-encoded', () => {
    const p = plan('github.com', [['Authorization', basic('x-access-token', STUB)]]);
    expect(p).toMatchObject({ ok: true, swapped: { credential: 'github', location: 'header:authorization' } });
    expect(p.ok && p.headers[0]?.[1]).toBe(basic('x-access-token', REAL));
  });

  it('swaps a raw header value and a Bearer token', () => {
    expect(plan('api.anthropic.com', [['X-Api-Key', ANTHROPIC_STUB]])).toMatchObject({ ok: true, headers: [['X-Api-Key', ANTHROPIC_REAL]] });
    const bearer = set([{ ...github, scheme: 'bearer' }]);
    expect(bearer.planRequest(host('api.github.com'), [['authorization', `bearer ${STUB}`]], '/')).toMatchObject({ ok: true, headers: [['authorization', `Bearer ${REAL}`]] });
  });

  it("swaps GitHub's `token <stub>` like Bearer, in any case, on the credential's hosts only", () => {
    const bearer = set([{ ...github, scheme: 'bearer' }, anthropic]);
    for (const scheme of ['token', 'Token', 'TOKEN']) {
      expect(bearer.planRequest(host('api.github.com'), [['Authorization', `${scheme} ${STUB}`]], '/'), scheme).toMatchObject({
        ok: true,
        headers: [['Authorization', `token ${REAL}`]],
        swapped: { credential: 'github', location: 'header:authorization' },
      });
      expect(bearer.planRequest(host('evil.example'), [['Authorization', `${scheme} ${STUB}`]], '/'), scheme).toMatchObject({ ok: false, status: 403, reason: 'stub_out_of_scope' });
    }
    // A basic (git) credential swaps them too: gh sends `token`, git sends Basic.
    const viaBasic = set([github, anthropic]).planRequest(host('api.github.com'), [['Authorization', `token ${STUB}`]], '/');
    expect(viaBasic).toMatchObject({ ok: true, headers: [['Authorization', `token ${REAL}`]] });
    expect(bearer.planRequest(host('api.github.com'), [['Authorization', basic('x-access-token', STUB)]], '/')).toMatchObject({ ok: true, headers: [['Authorization', basic('x-access-token', REAL)]] });
    // Another scheme word is not a swap.
    expect(bearer.planRequest(host('api.github.com'), [['Authorization', `tokens ${STUB}`]], '/')).toMatchObject({ ok: true, headers: [['Authorization', `tokens ${STUB}`]] });
    expect(bearer.planRequest(host('api.github.com'), [['Authorization', `tokens ${STUB}`]], '/')).not.toHaveProperty('swapped');
  });

  it('refuses a stub spelled into the host name (under an allowed wildcard), in any case', () => {
    expect(plan(`${STUB.toLowerCase()}.wild.example`, [])).toMatchObject({ ok: false, reason: 'stub_out_of_scope', location: 'host' });
    expect(plan(`x${STUB}.wild.example`, [])).toMatchObject({ ok: false, reason: 'stub_out_of_scope', location: 'host' });
  });

  it('refuses the stub or a real value in every encoded form to a foreign host (target and headers)', () => {
    const hex = Buffer.from(STUB).toString('hex');
    const pct = [...Buffer.from(STUB)].map((b) => `%${b.toString(16).toUpperCase()}`).join('');
    for (const t of [`/c?h=${hex}`, `/c?h=${hex.toUpperCase()}`, `/c?p=${pct}`, `/c?p=${pct.toLowerCase()}`]) {
      expect(plan('evil.example', [], t), t).toMatchObject({ ok: false, reason: 'stub_out_of_scope', location: 'target' });
    }
    expect(plan('evil.example', [['X-Note', Buffer.from(REAL).toString('hex')]])).toMatchObject({ ok: false, reason: 'real_credential', location: 'header:x-note' });
    // Partly percent-encoded, in a header as in the target.
    const partly = STUB.replace(/[a-d]/g, (c) => `%${c.charCodeAt(0).toString(16)}`);
    expect(plan('evil.example', [['X-Note', partly]])).toMatchObject({ ok: false, reason: 'stub_out_of_scope', location: 'header:x-note' });
    expect(plan('evil.example', [], `/c?x=${partly}`)).toMatchObject({ ok: false, reason: 'stub_out_of_scope', location: 'target' });
    expect(plan('github.com', [['X-Note', Buffer.from(REAL, 'utf16le').toString('base64')]])).toMatchObject({ ok: false, reason: 'real_credential' });
  });

  it('shares one request guard among hosts with the same credentials in scope (memory stays bounded by credentials, not names)', () => {
    const c = set();
    const a = c.requestGuard(host('a.example'));
    for (let i = 0; i < 2000; i++) expect(c.requestGuard(host(`h${i}.example`))).toBe(a);
    expect(c.requestGuard(host('github.com'))).not.toBe(a);
    expect(c.requestGuard(host('api.github.com'))).toBe(c.requestGuard(host('github.com')));
  });

  it('refuses a malformed Basic value (400)', () => {
    for (const v of ['Basic !!!', 'Basic eC1hY2Nlc3MtdG9rZW4', `Basic ${Buffer.from('no-colon').toString('base64')}`]) {
      expect(plan('github.com', [['Authorization', v]]), v).toMatchObject({ ok: false, status: 400, reason: 'bad_basic' });
    }
  });

  it('require: refuses a request without the stub, and one with the real value', () => {
    expect(plan('api.anthropic.com', [])).toMatchObject({ ok: false, status: 403, reason: 'missing_stub' });
    expect(plan('api.anthropic.com', [['x-api-key', 'something-else-entirely']])).toMatchObject({ ok: false, reason: 'missing_stub' });
    expect(plan('api.anthropic.com', [['x-api-key', ANTHROPIC_REAL]])).toMatchObject({ ok: false, status: 403, reason: 'real_credential' });
  });

  it('refuses a stub outside its scope in a header, the query, or base64 inside Basic', () => {
    expect(plan('evil.example', [['Authorization', `Bearer ${STUB}`]])).toMatchObject({ ok: false, status: 403, reason: 'stub_out_of_scope', location: 'header:authorization' });
    expect(plan('evil.example', [['X-Note', `see ${STUB}`]])).toMatchObject({ reason: 'stub_out_of_scope', location: 'header:x-note' });
    expect(plan('evil.example', [], `/collect?t=${STUB}`)).toMatchObject({ reason: 'stub_out_of_scope', location: 'target' });
    expect(plan('evil.example', [], `/collect?t=${encodeURIComponent(STUB).replace(/-/g, '%2D')}`)).toMatchObject({ reason: 'stub_out_of_scope' });
    expect(plan('evil.example', [['Authorization', basic('x-access-token', STUB)]])).toMatchObject({ reason: 'stub_out_of_scope' });
    // Another credential's stub to a host of the first.
    expect(plan('github.com', [['x-api-key', ANTHROPIC_STUB]])).toMatchObject({ reason: 'stub_out_of_scope', credential: 'anthropic' });
  });

  it('passes an in-scope stub in the query unchanged (only the configured header is swapped)', () => {
    const p = plan('api.github.com', [['X-Other', STUB]], `/search?q=${STUB}`);
    expect(p).toMatchObject({ ok: true, headers: [['X-Other', STUB]] });
    expect(p.ok && p.swapped).toBeUndefined();
  });

  it('refuses two credential headers', () => {
    expect(plan('github.com', [['Authorization', basic('x', STUB)], ['authorization', basic('x', STUB)]])).toMatchObject({ ok: false, status: 400, reason: 'duplicate_header' });
  });

  it('redacts before it cuts: no prefix of a value survives in an error body or a log field', () => {
    for (const pad of [0, 10, 30, 60, 1000, 1020]) {
      const message = `host ${JSON.stringify(`${'z'.repeat(pad)}${REAL}tail`)} is not allowed`;
      const body = creds.forAgent(message);
      expect(body.length).toBeLessThanOrEqual(1024 + 3);
      expect(body).not.toContain(REAL.slice(0, 6));
      const hexed = creds.forAgent(`x ${'y'.repeat(pad)}${Buffer.from(REAL).toString('hex').toUpperCase()}`);
      expect(hexed).not.toMatch(/6768705f5233/i);
      expect(creds.redact(message)).toContain('[redacted:github]');
    }
  });

  it('redacts stubs and real values in any form from log text', () => {
    const line = `{"path":"/x?t=${STUB}","h":"${Buffer.from(`u:${REAL}`).toString('base64')}","k":"${ANTHROPIC_REAL}"}`;
    const out = creds.redact(line);
    expect(out).not.toContain(STUB);
    expect(out).not.toContain(ANTHROPIC_REAL);
    expect(new Matcher(needlesFor<string>(REAL, STUB, 'x')).first(out)).toBeUndefined();
  });
});

describe('decodeBasic', () => {
  it('accepts canonical base64 of user:password only', () => {
    expect(decodeBasic(basic('a', 'b'))).toBe('a:b');
    expect(decodeBasic('basic   ' + Buffer.from('a:b').toString('base64'))).toBe('a:b');
    expect(decodeBasic('Basic YTpi')).toBe('a:b');
    expect(decodeBasic('Basic YTpj')).toBe('a:c');
    expect(decodeBasic('Basic YTpi=')).toBeUndefined();
    expect(decodeBasic('Basic YTpiZ')).toBeUndefined();
    expect(decodeBasic('Bearer YTpi')).toBeUndefined();
  });
});

describe('header hygiene', () => {
  const refuse = (headers: Array<[string, string]>, extra: string[] = []) => {
    try {
      checkRequestHeaders(headers, extra);
      return undefined;
    } catch (e) {
      return (e as HeaderError).reason;
    }
  };

  it('refuses duplicated and case-variant Authorization, Host and credential headers', () => {
    expect(refuse([['Authorization', 'a'], ['authorization', 'b']])).toBe('duplicate_header');
    expect(refuse([['Host', 'a'], ['Host', 'a']])).toBe('duplicate_header');
    expect(refuse([['X-Api-Key', 'a'], ['x-api-key', 'b']], ['x-api-key'])).toBe('duplicate_header');
    expect(refuse([['X_Api_Key', 'a']], ['X-Api-Key'])).toBe('header_name_variant');
    expect(refuse([['Authori.zation', 'a']])).toBeUndefined();
    expect(refuse([['Proxy_Authorization', 'a']])).toBe('header_name_variant');
    expect(refuse([['authorization', 'a']])).toBeUndefined();
  });

  it('refuses Transfer-Encoding with Content-Length, and codings other than chunked', () => {
    expect(refuse([['Transfer-Encoding', 'chunked'], ['Content-Length', '3']])).toBe('smuggling');
    expect(refuse([['Transfer-Encoding', 'gzip, chunked']])).toBe('bad_transfer_encoding');
    expect(refuse([['Transfer-Encoding', 'chunked']])).toBeUndefined();
  });

  it('drops hop-by-hop fields, those Connection names, and Proxy-*', () => {
    const out = forwardable(
      [
        ['Connection', 'keep-alive, X-Secret-Hop'],
        ['X-Secret-Hop', '1'],
        ['Keep-Alive', 'timeout=5'],
        ['Proxy-Authorization', 'Basic eA=='],
        ['Proxy-Foo', '1'],
        ['TE', 'trailers'],
        ['Upgrade', 'h2c'],
        ['Accept', '*/*'],
        ['Content-Length', '3'],
      ],
      ['host'],
    );
    expect(out).toEqual([['Accept', '*/*']]);
  });
});
