/**
 * Benchmark: the egress proxy's memory under many distinct host names (issue 14 item 8:
 * RSS <= 128 MB after 10,000 distinct allowed names; the proxy container's limit is 256 Mi).
 *
 *   node test/bench/proxy-memory.ts [--names 10000] [--distinct N] [--concurrency 16] [--baseline CHECKOUT] [--results]
 *
 * The proxy runs as the image runs it: agent-image compiled to JavaScript
 * (agent-image/tsconfig.build.json; type stripping alone costs ~28 MB of RSS) and started
 * through agent-image/bin/agent-smith (the image's Node flags for the proxy); allow
 * `*.mem.test`, one credential (for a name the load does not use), every name resolved to a
 * local HTTPS upstream (a `*.mem.test` certificate, on port 443 of a loopback address of
 * its own) through the proxy pod's /etc/hosts (test/support/pod.ts). For each of N distinct
 * names `n<i>.mem.test`, a client does what a curious agent's tool would: CONNECT, TLS with
 * SNI = the name (the proxy mints a leaf and a SecureContext), one GET (the proxy opens an
 * upstream TLS connection to the name), then closes.
 *
 * Reported per proxy: RSS before (ready, after 50 warm-up names), after the N names (and
 * again after 5 s of rest), peak (VmHWM), and the V8 heap and "external" memory (Buffers,
 * and what native code reports to V8) from its /metrics, so what holds the memory is
 * visible: heap objects, or memory outside the V8 heap (OpenSSL's SSL_CTX and certificate
 * structures, malloc arenas). `--baseline CHECKOUT` (repeatable) measures another
 * checkout's proxy (e.g. a `git worktree` of an older commit, with a node_modules link) in
 * the same run, one proxy after the other. `--results` appends the table to
 * test/bench/results.md. Prints the load average before and after. Not a test: nothing
 * passes or fails on a number.
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import https from 'node:https';
import type net from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

interface UpstreamData {
  certPem: string;
  keyPem: string;
  /** The loopback address to listen on (port 443). */
  host: string;
}

/** The worker: an HTTPS upstream answering every `*.mem.test` name with a small body. */
function runUpstream(data: UpstreamData): void {
  const body = Buffer.from('{"ok":true}');
  const server = https.createServer({ cert: data.certPem, key: data.keyPem, keepAliveTimeout: 5_000 }, (req, res) => {
    req.resume();
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': String(body.length) });
    res.end(body);
  });
  server.listen(443, data.host, () => parentPort?.postMessage((server.address() as net.AddressInfo).port));
}

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * Compiles `checkout`'s agent-image as the Dockerfile's build stage does, into `out`, with
 * its entry point script, package.json and a link to this checkout's node_modules.
 * @returns the entry point (out/agent-image/bin/agent-smith)
 */
function build(checkout: string, out: string): string {
  try {
    execFileSync(join(ROOT, 'node_modules/.bin/tsc'), ['-p', join(checkout, 'agent-image/tsconfig.build.json'), '--outDir', out], { stdio: 'ignore' });
  } catch {
    // tsc exits non-zero on a type error but still writes the JavaScript: a work tree in
    // progress can be measured.
  }
  mkdirSync(join(out, 'agent-image/bin'), { recursive: true });
  const entrypoint = join(out, 'agent-image/bin/agent-smith');
  copyFileSync(join(checkout, 'agent-image/bin/agent-smith'), entrypoint);
  chmodSync(entrypoint, 0o755);
  copyFileSync(join(checkout, 'package.json'), join(out, 'package.json'));
  symlinkSync(join(ROOT, 'node_modules'), join(out, 'node_modules'));
  return entrypoint;
}

/** VmRSS and VmHWM (peak) of `pid`, MB, from /proc/PID/status. */
function rss(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'latin1');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

async function main(): Promise<void> {
  const { makeTestCa } = await import('../../scripts/lib/fakes/test-ca.ts');
  const { connect, loopbackAlias, metric, readResponse, startProxy, startTls } = await import('../runtime/proxy-harness.ts');
  const { values } = parseArgs({
    options: {
      names: { type: 'string', default: '10000' },
      concurrency: { type: 'string', default: '16' },
      distinct: { type: 'string' },
      baseline: { type: 'string', multiple: true },
      results: { type: 'boolean', default: false },
    },
  });
  const N = Number(values.names);
  /** Names cycle modulo this (default N: all distinct); a smaller value tells per-name memory from per-connection memory. */
  const DISTINCT = Number(values.distinct ?? values.names);
  const C = Number(values.concurrency);
  const WARMUP = 50;
  const loadBefore = loadavg();

  const ca = await makeTestCa('memory bench upstream CA');
  const leaf = await ca.issue([{ type: 'dns', value: '*.mem.test' }]);
  const upHost = loopbackAlias();
  const worker = new Worker(new URL(import.meta.url), { workerData: { ...leaf, host: upHost } satisfies UpstreamData });
  await new Promise<number>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  const name = (i: number) => `n${i}.mem.test`;
  const hosts: Record<string, { addresses: string[] }> = {};
  for (let i = 0; i < N + WARMUP; i++) hosts[name(i)] = { addresses: [upHost] };
  const dir = mkdtempSync(join(tmpdir(), 'agent-smith-proxy-memory-'));

  const compile = (checkout: string, i: number) => build(checkout, join(dir, `build-${i}`));
  const routes: Array<{ label: string; entrypoint: string }> = [
    ...(values.baseline ?? []).map((checkout, i) => ({ label: `agent-smith proxy @${basename(checkout)}`, entrypoint: compile(checkout, i + 1) })),
    { label: 'agent-smith proxy (this checkout)', entrypoint: compile(ROOT, 0) },
  ];
  const rows: string[][] = [];
  try {
    for (const [k, route] of routes.entries()) {
      const fx = await startProxy({
        allow: ['*.mem.test'],
        allowCidrs: ['127.0.0.0/8'],
        // One credential, as a pod has, so its matchers are in memory too (on a name the load does not use).
        credentials: [{ name: 'github', hosts: ['api.mem.test'], scheme: 'bearer' as const, header: 'Authorization', stub: 'agent-smith-stub-MMMMeeeeMMMMooooRRRRyyyyBBBBeeeeNNNNcccc4242', require: false, real: 'ghp_MemoryBenchReal0123456789abcdefABCDEF' }],
        hosts,
        upstreamCa: [ca.caPem],
        logLevel: 'info',
        entrypoint: route.entrypoint,
        logFile: join(dir, `proxy-${k}.log`),
      });
      const pid = fx.proc.pid as number;
      let failed = 0;
      const one = async (i: number) => {
        const host = name(i < N ? i % DISTINCT : i);
        const { socket, res } = await connect(fx.port, `${host}:443`);
        try {
          if (res.status !== 200) throw new Error(`CONNECT ${host}: ${res.status}`);
          const t = await startTls(socket, { servername: host, caPem: fx.caPem });
          t.write(`GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
          const answer = await readResponse(t);
          if (answer.status !== 200) throw new Error(`GET ${host}: ${answer.status}`);
          t.destroy();
        } catch {
          failed++;
        } finally {
          socket.destroy();
        }
      };
      const drive = async (from: number, to: number) => {
        let next = from;
        await Promise.all(
          Array.from({ length: C }, async () => {
            while (next < to) await one(next++);
          }),
        );
      };
      const memory = async () => ({
        ...rss(pid),
        heap: (await metric(fx, 'agentsmith_proxy_nodejs_heap_size_used_bytes')) / 2 ** 20,
        external: (await metric(fx, 'agentsmith_proxy_nodejs_external_memory_bytes')) / 2 ** 20,
      });
      await drive(N, N + WARMUP);
      await new Promise((r) => setTimeout(r, 2_000));
      const before = await memory();
      const start = performance.now();
      await drive(0, N);
      const seconds = (performance.now() - start) / 1000;
      const after = await memory();
      await new Promise((r) => setTimeout(r, 5_000));
      const rested = await memory();
      const cached = await metric(fx, 'agentsmith_proxy_cert_cache_size');
      await fx.stop();
      const f = (x: number) => x.toFixed(1);
      rows.push([
        route.label,
        `${N - failed} / ${N}`,
        f(seconds),
        f(before.rss),
        f(after.rss),
        f(rested.rss),
        f(after.peak),
        `${f(before.heap)} / ${f(after.heap)}`,
        `${f(before.external)} / ${f(after.external)}`,
        String(cached),
      ]);
      process.stderr.write(`${route.label}: done (${N - failed} / ${N} names)\n`);
    }
  } finally {
    await worker.terminate();
    rmSync(dir, { recursive: true, force: true });
  }
  const header = ['proxy', 'names served', 's', 'RSS before MB', 'RSS after MB', 'RSS +5 s MB', 'RSS peak MB', 'heap used MB before / after', 'external MB before / after', 'leaves cached'];
  const line = (r: string[]) => `| ${r.join(' | ')} |`;
  const la = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ');
  const text =
    `\n## Egress proxy memory, ${new Date().toISOString()} (test/bench/proxy-memory.ts; ${N} connections to ${DISTINCT} distinct names under *.mem.test, ${C} clients at once; node ${process.version}; load average before ${la(loadBefore)}, after ${la(loadavg())})\n\n` +
    [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n') +
    '\n\nTarget: RSS after <= 128 MB (issue 14 item 8).\n';
  process.stdout.write(text);
  if (values.results) appendFileSync(new URL('./results.md', import.meta.url), text);
}

if (!isMainThread) runUpstream(workerData as UpstreamData);
else await main();
