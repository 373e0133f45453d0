/**
 * Micro-benchmark: the egress proxy's response scrubber (agent-image/src/programs/proxy/match.ts
 * `scrubStream`) on a credential host's download, in process, without TLS or sockets: what
 * the forms of issue 14 (hex, percent, `\u`, HTML, UTF-16 base64, line-wrapped forms)
 * cost per byte, against the matcher of another checkout measured in the same run.
 *
 *   node test/bench/proxy-scrub.ts [--baseline CHECKOUT] [--mib 64] [--rounds 5]
 *
 * `--baseline CHECKOUT`: a checkout (e.g. `git worktree add /tmp/base 3447654`) whose
 * match.ts is loaded beside this one; both scrub the same bodies, rounds interleaved.
 *
 * Bodies (64 KiB chunks, as a TLS socket delivers them): the proxy bench's filler text
 * (`abc...789\n` lines; its real value shares `0123456789abcdef` with the filler, the
 * worst case for a hashed window), random base64 text (76-character lines), and JSON
 * lines. Credentials: the proxy bench's one, and three. Prints MiB/s (median of the
 * rounds) per matcher and the ratio new / baseline. Not a test: nothing passes or fails.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';

interface MatchModule {
  Matcher: new (needles: unknown[]) => unknown;
  needlesFor: (secret: string, replacement: string, tag: string) => unknown[];
  scrubStream: (matcher: unknown) => NodeJS.ReadWriteStream;
}

const { values } = parseArgs({
  options: {
    baseline: { type: 'string' },
    mib: { type: 'string', default: '64' },
    rounds: { type: 'string', default: '5' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  process.stdout.write('node test/bench/proxy-scrub.ts [--baseline CHECKOUT] [--mib 64] [--rounds 5]\n');
  process.exit(0);
}
const MIB = Number(values.mib);
const ROUNDS = Number(values.rounds);

const REALS = ['ghp_BenchRealToken0123456789abcdefABCDEF0', 'sk-ant-api03-Zq8V4lu3xK7pT2mW9nB5vY1cH6gJ0fLsRe', 'ci_7Hc2pLq9ZxW4mN8vB3kT6yR1dF5gJ0sA'];
const stub = (i: number) => `agent-smith-stub-${String.fromCharCode(65 + i).repeat(40)}4242`;

const CHUNK = 64 * 1024;
const bodies: Record<string, Buffer> = {
  'filler text': Buffer.alloc(CHUNK, 'abcdefghijklmnopqrstuvwxyz0123456789\n'),
  'base64, 76-char lines': Buffer.from(randomBytes((CHUNK * 3) / 4).toString('base64').replace(/(.{76})/g, '$1\n').slice(0, CHUNK)),
  'JSON lines': Buffer.alloc(CHUNK, '{"id":1234,"name":"something","url":"https://api.example.com/repos/x/y"}\n'),
};

/** match.ts of the checkout at `root`: today's place, or the one before the floors of 2026-12-07 (agent-image/src/proxy/). */
async function load(root: string): Promise<MatchModule> {
  const file = ['agent-image/src/programs/proxy/match.ts', 'agent-image/src/proxy/match.ts'].map((p) => join(resolve(root), p)).find((f) => existsSync(f));
  if (!file) throw new Error(`${root} has no agent-image/src/programs/proxy/match.ts (nor agent-image/src/proxy/match.ts)`);
  return (await import(file)) as MatchModule;
}

/** MiB/s of `mod`'s scrubStream over `mib` MiB of `chunk`, with `n` credentials. */
async function rate(mod: MatchModule, chunk: Buffer, n: number): Promise<number> {
  const m = new mod.Matcher(REALS.slice(0, n).flatMap((r, i) => mod.needlesFor(r, stub(i), `c${i}`)));
  const count = Math.ceil((MIB * 1024 * 1024) / chunk.length);
  const start = performance.now();
  await pipeline(
    Readable.from((function* () {
      for (let i = 0; i < count; i++) yield chunk;
    })()),
    mod.scrubStream(m),
    new Writable({ write: (_c, _e, cb) => cb() }),
  );
  return (count * chunk.length) / (1024 * 1024) / ((performance.now() - start) / 1000);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

async function main(): Promise<void> {
  const here = await load(join(import.meta.dirname, '..', '..'));
  const base = values.baseline ? await load(values.baseline) : undefined;
  const rows: string[][] = [];
  for (const [name, chunk] of Object.entries(bodies)) {
    for (const n of [1, 3]) {
      const now: number[] = [];
      const before: number[] = [];
      await rate(here, chunk, n); // warm-up
      if (base) await rate(base, chunk, n);
      for (let r = 0; r < ROUNDS; r++) {
        now.push(await rate(here, chunk, n));
        if (base) before.push(await rate(base, chunk, n));
      }
      const a = median(now);
      const b = base ? median(before) : undefined;
      rows.push([name, String(n), `${a.toFixed(0)} MiB/s`, b === undefined ? '-' : `${b.toFixed(0)} MiB/s`, b === undefined ? '-' : `${(a / b).toFixed(2)}x`]);
    }
  }
  const header = ['body', 'credentials', 'this checkout', `baseline${values.baseline ? ` (${values.baseline})` : ''}`, 'ratio'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  process.stdout.write(
    `\nResponse scrubber (scrubStream), ${new Date().toISOString()}, node ${process.version}, ${MIB} MiB per round in 64 KiB chunks, median of ${ROUNDS} rounds\n\n` +
      [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n') +
      '\n',
  );
}

await main();
