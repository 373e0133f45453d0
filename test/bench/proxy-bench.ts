/**
 * Benchmark: what the egress proxy adds to a request, against its baseline in the same
 * run (the same client talking to the same upstream directly), and against mitmproxy
 * (`mitmdump`, when AGENT_SMITH_BENCH_MITMDUMP names it or it is on PATH).
 *
 *   node test/bench/proxy-bench.ts [--requests 300] [--mib 64]
 *
 * Upstream: test/fakes/https-upstream.ts on loopback. The proxy runs as a real
 * `agent-smith proxy` process (audit lines at info, as in a pod), once with Node's
 * defaults and once with the image's flags (agent-image/bin/agent-smith: no optimising
 * compiler, 1 MB young generation). Every proxied request swaps a Basic stub.
 *
 * - keep-alive: sequential requests on one connection (one CONNECT tunnel for proxies);
 * - new connection: a fresh TCP + TLS connection per request (CONNECT, the proxy's
 *   handshake with the client, and its own with the upstream);
 * - throughput: one download of --mib MiB on a warm connection, from a host with a
 *   credential (scrubbed: the body is scanned for every encoded form of the real value)
 *   and from a host without one (relayed as is).
 *
 * Prints a table of p50 / p95 / mean latency (ms) and MiB/s, each with its ratio to the
 * direct baseline. Not a test: nothing passes or fails on a number.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { parseArgs } from 'node:util';
import { startHttpsUpstream } from '../fakes/https-upstream.ts';
import { connect, dial, exchange, startProxy, startTls, type ProxyFixture } from '../runtime/proxy-harness.ts';

const { values } = parseArgs({ options: { requests: { type: 'string', default: '300' }, mib: { type: 'string', default: '64' } } });
const N = Number(values.requests);
const MIB = Number(values.mib);
const REAL = 'ghp_BenchRealToken0123456789abcdefABCDEF0';
const STUB = 'agent-smith-stub-BBBBeeeeNNNNccccHHHHbbbbEEEEnnnnCCCChhhh4242';
const basic = (pass: string) => `Basic ${Buffer.from(`x-access-token:${pass}`).toString('base64')}`;

const up = await startHttpsUpstream({ names: ['api.test', 'other.test'] });
const ports = { '443': up.httpsPort, '80': up.httpPort };
const proxyOpts = {
  allow: ['api.test', 'other.test'],
  allowCidrs: ['127.0.0.0/8'],
  credentials: [{ name: 'github', hosts: ['api.test'], scheme: 'basic' as const, header: 'Authorization', stub: STUB, require: false, real: REAL }],
  hosts: { 'api.test': { addresses: ['127.0.0.1'], ports }, 'other.test': { addresses: ['127.0.0.1'], ports } },
  upstreamCa: [up.caPem],
  logLevel: 'info',
};
const proxies: Array<{ label: string; fx: ProxyFixture }> = [
  { label: 'agent-smith proxy', fx: await startProxy(proxyOpts) },
  { label: 'agent-smith proxy, image flags', fx: await startProxy({ ...proxyOpts, nodeArgs: ['--max-semi-space-size=1', '--v8-pool-size=1', '--no-opt'] }) },
];

/** A way to get a TLS connection to `host` whose requests reach the upstream. */
interface Route {
  label: string;
  open(host: string): Promise<tls.TLSSocket>;
  /** The Authorization the client sends (the stub through our proxy, the real value otherwise). */
  auth: string;
}

const direct: Route = {
  label: 'direct (baseline)',
  auth: basic(REAL),
  open: async (host) => startTls(await dial(up.httpsPort), { servername: host, caPem: up.caPem }),
};
const routes: Route[] = [direct];
for (const { label, fx } of proxies) {
  routes.push({
    label,
    auth: basic(STUB),
    open: async (host) => {
      const { socket, res } = await connect(fx.port, `${host}:443`);
      if (res.status !== 200) throw new Error(`CONNECT ${host}: ${res.status}`);
      return startTls(socket, { servername: host, caPem: fx.caPem });
    },
  });
}

// mitmproxy, when available: CONNECT to the upstream's address, SNI api.test, the
// upstream verified against the fake's CA (as our proxy verifies it).
let mitm: ChildProcess | undefined;
let mitmDir: string | undefined;
const mitmdump = process.env.AGENT_SMITH_BENCH_MITMDUMP ?? (existsSync('/root/.cache/agent-smith/mitmproxy-venv/bin/mitmdump') ? '/root/.cache/agent-smith/mitmproxy-venv/bin/mitmdump' : undefined);
if (mitmdump) {
  mitmDir = mkdtempSync(join(tmpdir(), 'agent-smith-mitm-'));
  const upstreamCa = join(mitmDir, 'upstream-ca.pem');
  (await import('node:fs')).writeFileSync(upstreamCa, up.caPem);
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  mitm = spawn(mitmdump, ['--quiet', '--listen-host', '127.0.0.1', '--listen-port', String(port), '--set', `confdir=${mitmDir}`, '--set', `ssl_verify_upstream_trusted_ca=${upstreamCa}`, '--set', 'http2=false'], { stdio: 'ignore' });
  const caFile = join(mitmDir, 'mitmproxy-ca-cert.pem');
  for (let i = 0; i < 200 && !existsSync(caFile); i++) await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, 1000));
  const mitmCa = readFileSync(caFile, 'utf8');
  routes.push({
    label: 'mitmproxy (mitmdump)',
    auth: basic(REAL),
    open: async (host) => {
      const { socket, res } = await connect(port, `127.0.0.1:${up.httpsPort}`);
      if (res.status !== 200) throw new Error(`mitmproxy CONNECT: ${res.status}`);
      return startTls(socket, { servername: host, caPem: mitmCa });
    },
  });
}

/** A request; the credential goes to api.test only (our proxy refuses a stub anywhere else). */
const request = (host: string, auth: string, path = '/echo', close = false) =>
  `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n${host === 'api.test' ? `Authorization: ${auth}\r\n` : ''}${close ? 'Connection: close\r\n' : ''}\r\n`;

function stats(ms: number[]): { p50: number; p95: number; mean: number } {
  const s = [...ms].sort((a, b) => a - b);
  return { p50: s[Math.floor(s.length * 0.5)] ?? NaN, p95: s[Math.floor(s.length * 0.95)] ?? NaN, mean: s.reduce((a, b) => a + b, 0) / s.length };
}

async function keepAlive(route: Route): Promise<number[]> {
  const t = await route.open('api.test');
  const out: number[] = [];
  for (let i = 0; i < N + 20; i++) {
    const start = performance.now();
    const res = await exchange(t, request('api.test', route.auth));
    if (res.status !== 200) throw new Error(`${route.label}: status ${res.status}`);
    if (i >= 20) out.push(performance.now() - start);
  }
  t.destroy();
  return out;
}

async function newConnection(route: Route): Promise<number[]> {
  const out: number[] = [];
  const n = Math.min(N, 200);
  for (let i = 0; i < n + 10; i++) {
    const start = performance.now();
    const t = await route.open('api.test');
    const res = await exchange(t, request('api.test', route.auth, '/echo', true));
    t.destroy();
    if (res.status !== 200) throw new Error(`${route.label}: status ${res.status}`);
    if (i >= 10) out.push(performance.now() - start);
  }
  return out;
}

async function download(route: Route, host: string): Promise<number> {
  const t = await route.open(host);
  const warm = await exchange(t, request(host, route.auth));
  if (warm.status !== 200) throw new Error(`${route.label}: ${host}: status ${warm.status}`);
  const bytes = MIB * 1024 * 1024;
  const start = performance.now();
  let got = 0;
  await new Promise<void>((resolve, reject) => {
    t.on('data', (d: Buffer) => (got += d.length));
    t.once('end', () => resolve());
    t.once('close', () => resolve());
    t.once('error', reject);
    t.write(request(host, route.auth, `/big?n=${bytes}`, true));
  });
  const s = (performance.now() - start) / 1000;
  t.destroy();
  if (got < bytes) throw new Error(`${route.label}: got ${got} of ${bytes} bytes`);
  return MIB / s;
}

const rows: string[][] = [];
const f = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(2));
const base: Record<string, number> = {};
const row = (route: string, scenario: string, value: number, unit: string, extra = '') => {
  const key = `${scenario}|${unit}`;
  if (route === direct.label) base[key] = value;
  const ratio = base[key] ? value / base[key] : NaN;
  rows.push([route, scenario, `${f(value)} ${unit}`, Number.isFinite(ratio) ? `${ratio.toFixed(2)}x` : '-', extra]);
};

try {
  for (const route of routes) {
    const ka = stats(await keepAlive(route));
    row(route.label, 'keep-alive p50', ka.p50, 'ms', `p95 ${f(ka.p95)} ms, mean ${f(ka.mean)} ms`);
    const nc = stats(await newConnection(route));
    row(route.label, 'new connection p50', nc.p50, 'ms', `p95 ${f(nc.p95)} ms, mean ${f(nc.mean)} ms`);
    row(route.label, 'download, credential host', await download(route, 'api.test'), 'MiB/s', route.label.startsWith('agent-smith') ? 'scrubbed' : '');
    row(route.label, 'download, other host', await download(route, 'other.test'), 'MiB/s');
  }
} finally {
  mitm?.kill();
  for (const { fx } of proxies) await fx.stop();
  await up.close();
  if (mitmDir) rmSync(mitmDir, { recursive: true, force: true });
}

const header = ['route', 'scenario', 'value', 'vs direct', 'notes'];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
process.stdout.write(
  `\nEgress proxy benchmark, ${new Date().toISOString()}, node ${process.version}, ${N} requests, ${MIB} MiB downloads, loopback\n\n` +
    [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n') +
    '\n\n',
);

