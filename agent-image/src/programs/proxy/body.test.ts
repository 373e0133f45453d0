import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { bodyCodings, inspectBody, ScanBudget, sniffCoding } from './body.ts';
import { Matcher, needlesFor } from './match.ts';
import type { SecretTag } from './swap.ts';

const REAL = 'ghp_R3alT0kenValue0123456789abcdefABCDEF';
const STUB = 'agent-smith-stub-AAAAbbbbCCCCddddEEEEffffGGGGhhhhIIIIjjjj0123';
const reals = new Matcher(needlesFor<SecretTag>(REAL, STUB, { credential: 'github', kind: 'real' }));
const MAX = 1024 * 1024;
const body = Buffer.from(`{"token":"${Buffer.from(REAL).toString('hex')}"}`);

describe('bodyCodings', () => {
  it('reads every Content-Encoding field and list member, then Transfer-Encoding codings other than chunked', () => {
    expect(bodyCodings([['Content-Encoding', 'identity']])).toEqual([]);
    expect(bodyCodings([['Content-Encoding', 'identity'], ['content-encoding', 'gzip']])).toEqual(['gzip']);
    expect(bodyCodings([['Content-Encoding', 'IDENTITY, GZIP ,br']])).toEqual(['GZIP', 'br']);
    expect(bodyCodings([['Transfer-Encoding', 'gzip, chunked']])).toEqual(['gzip']);
    expect(bodyCodings([['Transfer-Encoding', 'chunked'], ['Content-Encoding', 'deflate']])).toEqual(['deflate']);
  });
});

describe('sniffCoding', () => {
  it('knows gzip, zstd and zlib by their first bytes, and text as none of them', () => {
    expect(sniffCoding(zlib.gzipSync('x'))).toBe('gzip');
    expect(sniffCoding(zlib.deflateSync('x'))).toBe('deflate');
    expect(sniffCoding(zlib.zstdCompressSync('x'))).toBe('zstd');
    expect(sniffCoding(Buffer.from('x^2 + y'))).toBeUndefined();
    expect(sniffCoding(Buffer.from('{"a":1}'))).toBeUndefined();
    expect(sniffCoding(zlib.brotliCompressSync('x'))).toBeUndefined();
  });
});

describe('inspectBody', () => {
  it('decodes declared codings, stacked in order, for the agent to get scrubbed', async () => {
    const stacked = zlib.brotliCompressSync(zlib.gzipSync(body));
    const out = await inspectBody(reals, stacked, ['gzip', 'br'], MAX);
    expect(out).toEqual({ body, decoded: true });
    for (const [coding, enc] of [
      ['gzip', zlib.gzipSync(body)],
      ['x-gzip', zlib.gzipSync(body)],
      ['deflate', zlib.deflateSync(body)],
      ['deflate', zlib.deflateRawSync(body)],
      ['br', zlib.brotliCompressSync(body)],
      ['zstd', zlib.zstdCompressSync(body)],
    ] as const) {
      expect((await inspectBody(reals, enc, [coding], MAX)).body.toString(), coding).toBe(body.toString());
    }
  });

  it('refuses an unknown coding, a body that does not decode, and one that decodes past the cap', async () => {
    await expect(inspectBody(reals, body, ['compress'], MAX)).rejects.toMatchObject({ reason: 'compressed_response' });
    await expect(inspectBody(reals, Buffer.from('not gzip at all'), ['gzip'], MAX)).rejects.toMatchObject({ reason: 'compressed_response' });
    const bomb = zlib.gzipSync(Buffer.alloc(8 * MAX));
    expect(bomb.length).toBeLessThan(MAX);
    await expect(inspectBody(reals, bomb, ['gzip'], MAX)).rejects.toMatchObject({ reason: 'compressed_response', message: expect.stringMatching(/more than 1048576 bytes/) as unknown });
  });

  it('looks inside a body that is compressed without saying so: refused when a real value is in it, passed on as it is when not', async () => {
    for (const enc of [zlib.gzipSync(body), zlib.zstdCompressSync(body), zlib.deflateSync(body), zlib.gzipSync(zlib.gzipSync(body))]) {
      await expect(inspectBody(reals, enc, [], MAX)).rejects.toMatchObject({ reason: 'credential_in_compressed_body' });
    }
    const clean = zlib.gzipSync('an ordinary tarball');
    expect(await inspectBody(reals, clean, [], MAX)).toEqual({ body: clean, decoded: false });
    // Declared gzip around an undeclared gzip holding the value.
    await expect(inspectBody(reals, zlib.gzipSync(zlib.gzipSync(body)), ['gzip'], MAX)).rejects.toMatchObject({ reason: 'credential_in_compressed_body' });
  });
});

describe('ScanBudget', () => {
  const LAYER = 64 * 1024;
  const small = zlib.gzipSync(Buffer.alloc(40 * 1024, 'b'));

  it('takes a layer\'s whole cap before decoding it, so a body that could decode to more than is free is refused unread', async () => {
    const budget = new ScanBudget(LAYER - 1);
    await expect(inspectBody(reals, small, ['gzip'], LAYER, budget.lease())).rejects.toMatchObject({ reason: 'scan_busy', status: 503 });
    expect(budget.held).toBe(0);
  });

  it('bounds what decoding holds at once over every response, and gives it back on release', async () => {
    const budget = new ScanBudget(100 * 1024);
    const a = budget.lease();
    expect((await inspectBody(reals, small, ['gzip'], LAYER, a)).body.length).toBe(40 * 1024);
    // What the layer did not use was given back: the decoded 40 KiB is held.
    expect(budget.held).toBe(40 * 1024);
    // A second response while the first still holds its decoded body: its cap does not fit.
    const b = budget.lease();
    await expect(inspectBody(reals, small, ['gzip'], LAYER, b)).rejects.toMatchObject({ reason: 'scan_busy' });
    a.release();
    b.release();
    a.release();
    expect(budget.held).toBe(0);
    expect((await inspectBody(reals, small, ['gzip'], LAYER, budget.lease())).decoded).toBe(true);
  });
});
