import { describe, expect, it } from 'vitest';
import { encodedForms, guardStream, GuardHit, Matcher, needlesFor, scrubBuffer, scrubStream } from './match.ts';
import { through } from '../../../../test/support/streams.ts';

const REAL = 'ghp_R3alT0kenValue0123456789abcdefABCDEF';
const STUB = 'agent-smith-stub-AAAAbbbbCCCCddddEEEEffffGGGGhhhhIIIIjjjj0123';
const ODD = 'tok/with+odd chars"and\\slashes<&>\'x';
const ODD_STUB = 'agent-smith-stub-OOOOddddOOOOddddOOOOddddOOOOddddOOOOdddd4242';

// Encoders written out here, independently of match.ts, as a hostile upstream would.
const hex = (v: string) => Buffer.from(v).toString('hex');
const pctAll = (v: string) => [...Buffer.from(v)].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');
const uEsc = (v: string) => [...v].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('');
const entDec = (v: string) => [...v].map((c) => `&#${c.charCodeAt(0)};`).join('');
const entHex = (v: string) => [...v].map((c) => `&#x${c.charCodeAt(0).toString(16)};`).join('');
const upperHexDigits = (s: string) => s.replace(/(%|\\u|&#x|^|(?<=[0-9a-f]))([0-9a-f]+)/g, (_m, p: string, h: string) => p + h.toUpperCase());
/** Every other hex letter upper-case: `4a6B...`. */
const mixedCase = (s: string) => {
  let i = 0;
  return s.replace(/[a-f]/g, (c) => (i++ % 2 ? c.toUpperCase() : c));
};
const b64 = (b: Buffer | string) => Buffer.from(b).toString('base64');
const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');
const utf16be = (v: string) => Buffer.from(v, 'utf16le').swap16();
const wrap = (s: string, width: number, eol: string) => s.replace(new RegExp(`(.{${width}})(?=.)`, 'g'), `$1${eol}`);

/** The forms a hostile upstream was seen to use, by name, for a value. */
function hostileForms(v: string): Record<string, string> {
  return {
    raw: v,
    'hex lower': hex(v),
    'hex upper': hex(v).toUpperCase(),
    'hex mixed case': mixedCase(hex(v)),
    'percent every byte, lower': pctAll(v),
    'percent every byte, upper': pctAll(v).toUpperCase(),
    'percent every byte, mixed': mixedCase(pctAll(v)),
    'encodeURIComponent': encodeURIComponent(v),
    'JSON \\u lower': uEsc(v),
    'JSON \\u upper': upperHexDigits(uEsc(v)),
    '\\x escapes': [...Buffer.from(v)].map((b) => `\\x${b.toString(16).padStart(2, '0').toUpperCase()}`).join(''),
    'HTML decimal entities': entDec(v),
    'HTML hex entities lower': entHex(v),
    'HTML hex entities upper': entHex(v).toUpperCase(),
    'base64': b64(v),
    'base64url unpadded': b64url(v),
    'base64 percent-encoded (a Location)': encodeURIComponent(b64(`~~${v}`)),
    'base64 percent-encoded, lower case': encodeURIComponent(b64(`~${v}`)).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase()),
    'base64 with \\/ (PHP JSON)': b64(`~~~${v}`).replace(/\//g, '\\/'),
    'base64 UTF-16LE': b64(Buffer.from(v, 'utf16le')),
    'base64 UTF-16BE': b64(utf16be(v)),
    'base64 MIME 76 CRLF': wrap(b64(`${'x'.repeat(50)}${v}`), 76, '\r\n'),
    'base64 PEM 64 LF': wrap(b64(`${'y'.repeat(40)}${v}`), 64, '\n'),
    'hex wrapped 60 LF (xxd -p)': wrap(hex(`z${v}`), 60, '\n'),
  };
}

/** Whether `out` still shows `v` in any hostile form (case-insensitive for hex, line breaks ignored). */
function leaks(out: string, v: string): string | undefined {
  const joined = out.replace(/\r?\n/g, '');
  for (const [name, form] of Object.entries(hostileForms(v))) {
    const f = form.replace(/\r?\n/g, '');
    // The wrapped forms embed a prefix; their value part is what must not survive.
    const probe = name.includes('wrapped') || name.includes('MIME') || name.includes('PEM') ? undefined : f;
    if (probe && (joined.includes(probe) || joined.toLowerCase().includes(probe.toLowerCase()) && /hex|percent|\\u|HTML hex/.test(name))) return name;
  }
  const unescaped = joined.replace(/%([0-9a-f]{2})/gi, (_m, h: string) => String.fromCharCode(Number.parseInt(h, 16))).replace(/\\\//g, '/');
  for (const decoded of [joined, tryBase64(joined), tryBase64(unescaped)]) if (decoded.includes(v.slice(1, -1))) return 'decoded base64';
  return undefined;
}

function tryBase64(s: string): string {
  const m = s.match(/[A-Za-z0-9+/=_-]{16,}/g) ?? [];
  return m.map((x) => Buffer.from(x, 'base64').toString('latin1')).join('|');
}

describe('one set of secret forms', () => {
  const m = new Matcher(needlesFor<string>(REAL, STUB, 'github'));

  it.each(Object.entries(hostileForms(REAL)))('finds and scrubs the %s form at several offsets', (_name, form) => {
    for (const before of ['', 'a', 'ab', 'abc', '{"token":"', 'x\n', 'héllo ']) {
      const input = `${before}${form} and after`;
      const hit = m.first(input);
      expect(hit, `after ${JSON.stringify(before)}`).toBeDefined();
      const out = m.replace(input).text;
      expect(leaks(out, REAL), `after ${JSON.stringify(before)}: ${out}`).toBeUndefined();
      expect(out.startsWith(before)).toBe(true);
      expect(out.endsWith(' and after')).toBe(true);
    }
  });

  it('finds a copy of the value in another letter case (a lower-cased host name), but base64 only as written', () => {
    expect(m.replace(`host ${REAL.toLowerCase()}.example`).text).toBe(`host ${STUB}.example`);
    expect(m.first(REAL.toUpperCase())).toBeDefined();
    const b = Buffer.from(REAL).toString('base64');
    expect(m.first(b)).toBeDefined();
    expect(m.first(b.toLowerCase())).toBeUndefined();
  });

  it('replaces an exact form with the stub in the same form (and case)', () => {
    expect(m.replace(`x ${hex(REAL)} y`).text).toBe(`x ${hex(STUB)} y`);
    expect(m.replace(`x ${hex(REAL).toUpperCase()} y`).text).toBe(`x ${hex(STUB).toUpperCase()} y`);
    expect(m.replace(`x ${pctAll(REAL)} y`).text).toBe(`x ${pctAll(STUB)} y`);
    expect(m.replace(`x ${uEsc(REAL)} y`).text).toBe(`x ${uEsc(STUB)} y`);
    expect(m.replace(`x ${entDec(REAL)} y`).text).toBe(`x ${entDec(STUB)} y`);
    expect(m.replace(`x ${b64(Buffer.from(REAL, 'utf16le'))} y`).text).toBe(`x ${b64(Buffer.from(STUB, 'utf16le'))} y`);
  });

  it('covers a value with characters that the encodings escape differently', () => {
    const odd = new Matcher(needlesFor<string>(ODD, ODD_STUB, 'odd'));
    const forms = {
      ...hostileForms(ODD),
      'JSON minimal': JSON.stringify(ODD).slice(1, -1),
      'JSON with \\/': JSON.stringify(ODD).slice(1, -1).replace(/\//g, '\\/'),
      'HTML escaped (named)': ODD.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;'),
      'form-urlencoded (WHATWG)': new URLSearchParams({ v: ODD }).toString().slice(2),
      'RFC 3986 unreserved only': ODD.replace(/[^A-Za-z0-9._~-]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`),
    };
    for (const [name, form] of Object.entries(forms)) {
      expect(odd.first(`<p>${form}</p>`), name).toBeDefined();
    }
    expect(encodedForms(ODD)).toContain(encodeURIComponent(ODD));
  });

  it('finds line-wrapped base64 wherever the line break falls in the value (MIME 76 CRLF, PEM 64 LF)', () => {
    for (const [width, eol] of [
      [76, '\r\n'],
      [64, '\n'],
    ] as const) {
      for (let pad = 0; pad < width + 3; pad++) {
        const body = wrap(b64(`${'p'.repeat(pad)}${REAL}!`), width, eol);
        expect(m.first(body), `width ${width} pad ${pad}`).toBeDefined();
        const out = m.replace(body).text;
        expect(Buffer.from(out.replace(/\r?\n/g, ''), 'base64').toString('latin1')).not.toContain(REAL.slice(1, -1));
      }
    }
  });

  it('does not join across a blank line, and never holds back an event that ends in one', () => {
    const half = Math.floor(REAL.length / 2);
    expect(m.first(`${REAL.slice(0, half)}\n\n${REAL.slice(half)}`)).toBeUndefined();
    expect(m.first(`${REAL.slice(0, half)}\r\n\r\n${REAL.slice(half)}`)).toBeUndefined();
    expect(m.first(`${REAL.slice(0, half)}\r\n${REAL.slice(half)}`)).toBeDefined();
    expect(m.partialSuffix(Buffer.from('data: {"x":1}\n\n'))).toBe(0);
    expect(m.partialSuffix(Buffer.from(`data: ${REAL.slice(0, 10)}`))).toBe(10);
    expect(m.partialSuffix(Buffer.from(`data: ${REAL.slice(0, 10)}\n`))).toBe(11);
  });

  it('finds nothing in ordinary text and leaves it as it is', () => {
    const body = Buffer.from(`${'{"id":1234,"name":"something","url":"https://api.example.com/x"},\n'.repeat(200)}`);
    expect(m.first(body)).toBeUndefined();
    expect(scrubBuffer(m, body)).toBe(body);
  });
});

describe('streams: every form, every chunk split', () => {
  const m = new Matcher(needlesFor<string>(REAL, STUB, 'github'));

  it('scrubStream gives the same output whatever the chunk boundaries, and no form survives', async () => {
    for (const [name, form] of Object.entries(hostileForms(REAL))) {
      const body = Buffer.from(`head ${form} middle ${form} tail`);
      const whole = scrubBuffer(m, body).toString();
      expect(leaks(whole, REAL), name).toBeUndefined();
      for (let cut = 1; cut < body.length; cut += 7) {
        expect(await through(scrubStream(m), body, [cut, Math.min(body.length, cut + 3)]), `${name} cut ${cut}`).toBe(whole);
      }
    }
  });

  it('guardStream stops before any byte of any form leaves', async () => {
    const guard = new Matcher(needlesFor<string>(STUB, STUB, 'github'));
    for (const [name, form] of Object.entries(hostileForms(STUB))) {
      const input = Buffer.from(`{"note":"hello","x":"${form}"}`);
      // No byte of the first needle may leave (a wrapped form starts with its prefix's encoding).
      const at = guard.first(input)?.index ?? -1;
      expect(at, name).toBeGreaterThan(0);
      for (const cut of [at + 1, at + 9, input.length - 3]) {
        const passed: Buffer[] = [];
        const g = guardStream(guard);
        g.on('data', (c: Buffer) => passed.push(c));
        const err = await new Promise<unknown>((resolve) => {
          g.on('error', resolve);
          g.on('end', () => resolve(undefined));
          g.write(input.subarray(0, cut));
          g.end(input.subarray(cut));
        });
        expect(err, `${name} cut ${cut}`).toBeInstanceOf(GuardHit);
        expect(Buffer.concat(passed).length, `${name} cut ${cut}`).toBeLessThanOrEqual(at);
      }
    }
  });
});

describe('Matcher against a naive search (random text, forms, line breaks)', () => {
  /** Whether byte i is a single line ending the matcher skips (written out again here). */
  function lineBreak(b: Buffer, i: number): boolean {
    const at = (k: number) => (k >= 0 && k < b.length ? b[k] : undefined);
    if (b[i] === 0x0d) return i + 1 === b.length || (b[i + 1] === 0x0a && lineBreak(b, i + 1));
    if (b[i] !== 0x0a) return false;
    const before = at(b[i - 1] === 0x0d ? i - 2 : i - 1);
    const after = at(i + 1);
    return before !== 0x0a && before !== 0x0d && after !== 0x0a && after !== 0x0d;
  }

  /** Earliest, then longest, non-overlapping hits, by trying every needle at every position. */
  function naive<T>(m: Matcher<T>, b: Buffer): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    const lower = (x: number) => (x >= 0x41 && x <= 0x5a ? x + 32 : x);
    let p = 0;
    while (p < b.length) {
      let best: [number, number] | undefined;
      if (!lineBreak(b, p)) {
        for (const n of m.needles) {
          let j = p;
          let t = 0;
          for (; t < n.bytes.length && j < b.length; j++) {
            if (lineBreak(b, j)) continue;
            const x = b[j] as number;
            if ((n.caseless ? lower(x) : x) !== n.bytes[t]) break;
            t++;
          }
          if (t === n.bytes.length && (!best || j > best[1])) best = [p, j];
        }
      }
      if (best) {
        out.push(best);
        p = best[1];
      } else p++;
    }
    return out;
  }

  it('finds exactly what a naive search finds', () => {
    let seed = 42;
    const rand = (k: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % k;
    };
    // With a short needle (4-byte grams, stride 4) and without (8-byte grams, stride 32).
    for (const m of [new Matcher([...needlesFor<string>(REAL, STUB, 'r'), ...needlesFor<string>('short8ch', 'xxxxxxxx', 's')]), new Matcher(needlesFor<string>(REAL, STUB, 'r'))]) {
      const forms = m.needles.map((n) => n.bytes.toString('latin1'));
      const alphabet = 'abcdefABCDEF0123456789_-%\\&#;xu\n\n\r ghpR3alT';
      for (let round = 0; round < 400; round++) {
        let text = '';
        const pieces = rand(4);
        for (let k = 0; k <= pieces; k++) {
          for (let i = rand(40); i > 0; i--) text += alphabet[rand(alphabet.length)];
          if (k < pieces) {
            let f = forms[rand(forms.length)] ?? '';
            if (rand(2)) f = f.toUpperCase();
            // A single line ending somewhere inside it, sometimes.
            if (rand(2)) {
              const at = 1 + rand(Math.max(1, f.length - 1));
              f = `${f.slice(0, at)}${rand(2) ? '\r\n' : '\n'}${f.slice(at)}`;
            }
            text += f;
          }
        }
        const b = Buffer.from(text, 'latin1');
        const got = [...m.hits(b)].map((h) => [h.index, h.end]);
        expect(got, JSON.stringify(text)).toEqual(naive(m, b));
      }
    }
  });
});

describe('a matcher derived from another', () => {
  it('shares its tables and ignores the excluded needles, in hits and in the hold-back', () => {
    const base = new Matcher([...needlesFor<string>(REAL, STUB, 'real'), ...needlesFor<string>(STUB, STUB, 'stub')]);
    const noStub = new Matcher(base, (n) => n.tag === 'stub');
    expect(base.first(`x ${STUB}`)?.needle.tag).toBe('stub');
    expect(noStub.first(`x ${STUB}`)).toBeUndefined();
    expect(noStub.first(`x ${Buffer.from(REAL).toString('hex')}`)?.needle.tag).toBe('real');
    expect(noStub.partialSuffix(Buffer.from(`x ${STUB.slice(0, 20)}`))).toBeLessThan(2);
    expect(base.partialSuffix(Buffer.from(`x ${STUB.slice(0, 20)}`))).toBe(20);
  });
});
