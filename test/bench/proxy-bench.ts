/**
 * Benchmark: what the egress proxy adds to a keep-alive HTTPS request and how many
 * requests a second it relays, against two baselines measured in the same run, rounds
 * interleaved (direct / proxy / mitmproxy, the order rotated every round):
 *
 * - direct: the same client talking TLS to the same upstream, no proxy;
 * - mitmproxy: `mitmdump` (PyPI), intercepting the same way (CONNECT, a leaf for the
 *   SNI, upstream certificate verified against the upstream's CA). It is found through
 *   AGENT_SMITH_BENCH_MITMDUMP, ~/.cache/agent-smith/mitmproxy-venv or PATH; install it
 *   (bench only, not part of the test bootstrap) with
 *   `python3 -m venv ~/.cache/agent-smith/mitmproxy-venv && ~/.cache/agent-smith/mitmproxy-venv/bin/pip install mitmproxy`.
 *
 *   node test/bench/proxy-bench.ts [--rounds 5] [--requests 400] [--seconds 2] [--concurrency 1,8,32] [--mib 32] [--profile DIR] [--baseline CHECKOUT]
 *
 * `--baseline CHECKOUT` (repeatable): also runs the proxy of another checkout (its
 * agent-image/bin/agent-smith; e.g. a `git worktree` of the last commit, with a
 * node_modules link) as one more route, `@<directory name>`, interleaved like the
 * others: a before/after of a change measured in the same run.
 *
 * `--profile DIR`: the proxy alone (no baselines), started as `node --cpu-prof
 * --cpu-prof-dir=DIR` (the image gives the proxy no other flags); its .cpuprofile is
 * written there when it stops.
 *
 * The proxy runs as the real `agent-smith proxy` process started through the image's
 * entry point (agent-image/bin/agent-smith, so with the image's Node flags for the
 * proxy), audit lines at info written to a file (as to a container's log; not parsed
 * by this process). Every request through it to api.test carries a Basic stub that is
 * swapped for the real value, and its response body is scrubbed; mitmproxy and the
 * direct client send the real value and mitmproxy rewrites nothing, so the comparison
 * favours mitmproxy.
 *
 * The upstream is a minimal HTTPS server (a 256-byte JSON body; /big?n= for downloads)
 * in a worker thread, so it does not share an event loop with the load generator.
 *
 * - latency: sequential requests on one warm keep-alive connection (one CONNECT tunnel
 *   for the proxies); p50 / p99 per route over all rounds, and the added latency (route
 *   minus direct, per percentile);
 * - throughput: C connections (each its own tunnel), each sending its next request when
 *   the last answer arrived, for --seconds per round; requests/s is the median of the
 *   rounds; CPU ms per 1000 requests of the proxy process (utime + stime from /proc),
 *   which load on the machine disturbs far less than the rate;
 * - new connection: TCP + CONNECT + both TLS handshakes + one request, p50;
 * - download: one --mib MiB body on a warm connection, from the credential host
 *   (scrubbed) and from a host without a credential.
 *
 * Prints a table, every figure with its ratio to direct and to mitmproxy, and the load
 * average before and after. Not a test: nothing passes or fails on a number.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import { homedir, loadavg, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import tls from 'node:tls';
import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { freePort } from '../../scripts/lib/net.ts';
import { writeFiller } from '../fakes/filler.ts';

const SMALL_BODY = Buffer.from(JSON.stringify({ ok: true, pad: 'x'.repeat(256 - 24) }));

interface UpstreamData {
  leaves: Record<string, { certPem: string; keyPem: string }>;
  /** The loopback address to listen on (port 443): the pod's /etc/hosts names it. */
  host: string;
}

/** The worker: a keep-alive HTTPS upstream serving every name in `leaves` by SNI. */
function runUpstream(data: UpstreamData): void {
  let served = 0;
  parentPort?.on('message', () => parentPort?.postMessage({ served }));
  const contexts = new Map(Object.entries(data.leaves).map(([name, l]) => [name, tls.createSecureContext({ cert: l.certPem, key: l.keyPem })]));
  const first = Object.values(data.leaves)[0];
  const server = https.createServer(
    { cert: first?.certPem, key: first?.keyPem, SNICallback: (name, cb) => cb(null, contexts.get(name)), keepAliveTimeout: 60_000, noDelay: true },
    (req, res) => {
      served++;
      req.resume();
      req.on('end', () => {
        const url = req.url ?? '/';
        if (url.startsWith('/big?n=')) {
          writeFiller(res, Number(url.slice('/big?n='.length)));
          return;
        }
        res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': String(SMALL_BODY.length) });
        res.end(SMALL_BODY);
      });
    },
  );
  server.listen(443, data.host, () => parentPort?.postMessage((server.address() as net.AddressInfo).port));
}

async function main(): Promise<void> {
  const { makeTestCa } = await import('../../scripts/lib/fakes/test-ca.ts');
  const { connect, dial, loopbackAlias, startProxy, startTls } = await import('../runtime/proxy-harness.ts');
  const { ENTRYPOINT } = await import('../support/pod.ts');

  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '5' },
      requests: { type: 'string', default: '400' },
      seconds: { type: 'string', default: '2' },
      concurrency: { type: 'string', default: '1,8,32' },
      mib: { type: 'string', default: '32' },
      profile: { type: 'string' },
      baseline: { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(
      'node test/bench/proxy-bench.ts [--rounds 5] [--requests 400] [--seconds 2] [--concurrency 1,8,32] [--mib 32] [--profile DIR] [--baseline CHECKOUT]...\n' +
        '(the module comment of test/bench/proxy-bench.ts says what each measures; test/bench/proxy-scrub.ts measures the response scrubber alone)\n',
    );
    return;
  }
  const ROUNDS = Number(values.rounds);
  const N = Number(values.requests);
  const SECONDS = Number(values.seconds);
  const CONCURRENCY = values.concurrency.split(',').map(Number);
  const MIB = Number(values.mib);
  const REAL = 'ghp_BenchRealToken0123456789abcdefABCDEF0';
  const STUB = 'agent-smith-stub-BBBBeeeeNNNNccccHHHHbbbbEEEEnnnnCCCChhhh4242';
  const basic = (pass: string) => `Basic ${Buffer.from(`x-access-token:${pass}`).toString('base64')}`;
  const loadBefore = loadavg();

  const ca = await makeTestCa('bench upstream CA');
  const leaves: UpstreamData['leaves'] = {};
  for (const name of ['api.test', 'other.test']) leaves[name] = await ca.issue([{ type: 'dns', value: name }]);
  const upHost = loopbackAlias();
  const worker = new Worker(new URL(import.meta.url), { workerData: { leaves, host: upHost } satisfies UpstreamData });
  const upPort = await new Promise<number>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });

  const dir = mkdtempSync(join(tmpdir(), 'agent-smith-proxy-bench-'));
  const proxyOptions = (entrypoint: string, log: string) => ({
    allow: ['api.test', 'other.test'],
    allowCidrs: ['127.0.0.0/8'],
    credentials: [{ name: 'github', hosts: ['api.test'], scheme: 'basic' as const, header: 'Authorization', stub: STUB, require: false, real: REAL }],
    hosts: { 'api.test': { addresses: [upHost] }, 'other.test': { addresses: [upHost] } },
    upstreamCa: [ca.caPem],
    logLevel: 'info',
    ...(values.profile ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${values.profile}`] } : { entrypoint }),
    logFile: join(dir, log),
  });
  const fx = await startProxy(proxyOptions(ENTRYPOINT, 'proxy.log'));
  const baselines: Array<{ label: string; fx: typeof fx }> = [];
  for (const [i, checkout] of (values.baseline ?? []).entries()) {
    baselines.push({ label: `agent-smith proxy @${basename(checkout)}`, fx: await startProxy(proxyOptions(join(checkout, 'agent-image/bin/agent-smith'), `baseline-${i}.log`)) });
  }

  /** A way to a TLS connection to `host` whose requests reach the upstream. */
  interface Route {
    label: string;
    /** The Authorization the client sends (the stub through our proxy, the real value otherwise). */
    auth: string;
    pid?: number;
    open(host: string): Promise<tls.TLSSocket>;
  }
  const direct: Route = {
    label: 'direct',
    auth: basic(REAL),
    open: async (host) => startTls(await dial(upPort, upHost), { servername: host, caPem: ca.caPem }),
  };
  const proxyRoute = (label: string, p: typeof fx): Route => ({
    label,
    auth: basic(STUB),
    ...(p.proc.pid !== undefined ? { pid: p.proc.pid } : {}),
    open: async (host) => {
      const { socket, res } = await connect(p.port, `${host}:443`);
      if (res.status !== 200) throw new Error(`CONNECT ${host}: ${res.status}`);
      socket.setNoDelay(true);
      return startTls(socket, { servername: host, caPem: p.caPem });
    },
  });
  const ours = proxyRoute('agent-smith proxy', fx);
  const routes: Route[] = values.profile ? [ours] : [direct, ours];
  for (const b of baselines) routes.push(proxyRoute(b.label, b.fx));

  // mitmproxy: CONNECT to the upstream's address, SNI the host, the upstream verified
  // against the bench CA (as our proxy verifies it); bodies over 1 MiB streamed.
  let mitm: ChildProcess | undefined;
  let mitmRoute: Route | undefined;
  const venv = join(homedir(), '.cache/agent-smith/mitmproxy-venv/bin/mitmdump');
  const onPath = (process.env.PATH ?? '').split(':').map((d) => join(d, 'mitmdump')).find((p) => existsSync(p));
  const mitmdump = values.profile ? undefined : (process.env.AGENT_SMITH_BENCH_MITMDUMP ?? (existsSync(venv) ? venv : onPath));
  if (mitmdump) {
    const upstreamCa = join(dir, 'upstream-ca.pem');
    writeFileSync(upstreamCa, ca.caPem);
    const port = await freePort();
    const args = ['--quiet', '--listen-host', '127.0.0.1', '--listen-port', String(port), '--set', `confdir=${dir}`, '--set', `ssl_verify_upstream_trusted_ca=${upstreamCa}`, '--set', 'http2=false', '--set', 'stream_large_bodies=1m'];
    mitm = spawn(mitmdump, args, { stdio: 'ignore' });
    const caFile = join(dir, 'mitmproxy-ca-cert.pem');
    for (let i = 0; i < 300 && !existsSync(caFile); i++) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 1000));
    const mitmCa = readFileSync(caFile, 'utf8');
    mitmRoute = {
      label: 'mitmproxy',
      auth: basic(REAL),
      ...(mitm.pid !== undefined ? { pid: mitm.pid } : {}),
      open: async (host) => {
        const { socket, res } = await connect(port, `${upHost}:${upPort}`);
        if (res.status !== 200) throw new Error(`mitmproxy CONNECT: ${res.status}`);
        socket.setNoDelay(true);
        return startTls(socket, { servername: host, caPem: mitmCa });
      },
    };
    routes.push(mitmRoute);
  } else {
    process.stderr.write('mitmdump not found: the mitmproxy rows are left out (see the install line in this file)\n');
  }

  const requestFor = (route: Route, host: string, path = '/ok') =>
    Buffer.from(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: bench\r\nAccept: */*\r\n${host === 'api.test' ? `Authorization: ${route.auth}\r\n` : ''}\r\n`, 'latin1');

  try {
    // --- latency -----------------------------------------------------------------------
    const latency = new Map<Route, number[]>(routes.map((r) => [r, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const route of rotate(routes, round)) {
        const c = new Client(await route.open('api.test'));
        const req = requestFor(route, 'api.test');
        const out = latency.get(route) as number[];
        for (let i = 0; i < N + 20; i++) {
          const start = performance.now();
          await c.send(req);
          if (i >= 20) out.push(performance.now() - start);
        }
        c.close();
      }
    }

    // --- throughput --------------------------------------------------------------------
    const throughput = new Map<string, number[]>();
    const cpuPerK = new Map<string, number[]>();
    for (const conns of CONCURRENCY) {
      for (let round = 0; round < ROUNDS; round++) {
        for (const route of rotate(routes, round)) {
          const clients = await Promise.all(Array.from({ length: conns }, async () => new Client(await route.open('api.test'))));
          const req = requestFor(route, 'api.test');
          for (const c of clients) for (let i = 0; i < 5; i++) await c.send(req);
          const cpu0 = route.pid ? cpuMs(route.pid) : 0;
          const start = performance.now();
          const end = start + SECONDS * 1000;
          let done = 0;
          await Promise.all(
            clients.map(async (c) => {
              while (performance.now() < end) {
                await c.send(req);
                done++;
              }
            }),
          );
          const s = (performance.now() - start) / 1000;
          const key = `${route.label}|${conns}`;
          push(throughput, key, done / s);
          if (route.pid) push(cpuPerK, key, ((cpuMs(route.pid) - cpu0) / done) * 1000);
          for (const c of clients) c.close();
        }
      }
    }

    // --- new connections and downloads ---------------------------------------------------
    const fresh = new Map<Route, number[]>(routes.map((r) => [r, []]));
    // (Not when profiling: the profile is of the keep-alive path.)
    for (let round = 0; round < (values.profile ? 0 : ROUNDS); round++) {
      for (const route of rotate(routes, round)) {
        const req = requestFor(route, 'api.test');
        for (let i = 0; i < 22; i++) {
          const start = performance.now();
          const c = new Client(await route.open('api.test'));
          await c.send(req);
          c.close();
          if (i >= 2) fresh.get(route)?.push(performance.now() - start);
        }
      }
    }
    const downloads = new Map<string, number[]>();
    for (let round = 0; round < (values.profile ? 0 : ROUNDS); round++) {
      for (const route of rotate(routes, round)) {
        for (const host of ['api.test', 'other.test']) {
          const c = new Client(await route.open(host));
          await c.send(requestFor(route, host));
          const start = performance.now();
          await c.send(requestFor(route, host, `/big?n=${MIB * 1024 * 1024}`));
          push(downloads, `${route.label}|${host}`, MIB / ((performance.now() - start) / 1000));
          c.close();
        }
      }
    }
    const served = await new Promise<number>((resolve) => {
      worker.once('message', (m: { served: number }) => resolve(m.served));
      worker.postMessage('served?');
    });

    // --- table -------------------------------------------------------------------------
    const rows: string[][] = [];
    const f = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '-' : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
    const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || !b ? '-' : `${(a / b).toFixed(2)}x`);
    const add = (scenario: string, route: Route, value: number | undefined, unit: string, vsDirect: number | undefined, vsMitm: number | undefined, notes = '') =>
      rows.push([scenario, route.label, `${f(value)} ${unit}`, route === direct ? '' : ratio(value, vsDirect), route === mitmRoute || !mitmRoute ? '' : ratio(value, vsMitm), notes]);

    const lat = new Map([...latency].map(([r, ms]) => [r, { p50: pct(ms, 0.5), p99: pct(ms, 0.99) }]));
    const d = lat.get(direct);
    for (const route of routes) {
      const l = lat.get(route);
      if (!l || !d) continue;
      const added = route === direct ? '' : `added p50 ${signed(l.p50 - d.p50)} ms, p99 ${signed(l.p99 - d.p99)} ms`;
      add('keep-alive latency p50', route, l.p50, 'ms', d.p50, mitmRoute ? lat.get(mitmRoute)?.p50 : undefined, `p99 ${f(l.p99)} ms; ${added}`.replace(/; $/, ''));
    }
    for (const conns of CONCURRENCY) {
      const med = (r: Route) => median(throughput.get(`${r.label}|${conns}`) ?? []);
      for (const route of routes) {
        const cpu = cpuPerK.get(`${route.label}|${conns}`);
        const rounds = (throughput.get(`${route.label}|${conns}`) ?? []).map((x) => x.toFixed(0)).join(' ');
        add(`requests/s, ${conns} conn`, route, med(route), 'req/s', med(direct), mitmRoute ? med(mitmRoute) : undefined, `${cpu ? `${f(median(cpu))} CPU ms/1000 req; ` : ''}rounds ${rounds}`);
      }
    }
    for (const route of routes) {
      const p = (r: Route) => pct(fresh.get(r) ?? [], 0.5);
      add('new connection p50', route, p(route), 'ms', p(direct), mitmRoute ? p(mitmRoute) : undefined);
    }
    for (const host of ['api.test', 'other.test']) {
      for (const route of routes) {
        const v = (r: Route) => median(downloads.get(`${r.label}|${host}`) ?? []);
        add(`download ${MIB} MiB, ${host === 'api.test' ? 'credential host' : 'other host'}`, route, v(route), 'MiB/s', v(direct), mitmRoute ? v(mitmRoute) : undefined, route.label.startsWith('agent-smith') && host === 'api.test' ? 'scrubbed' : '');
      }
    }

    const header = ['scenario', 'route', 'value', 'vs direct', 'vs mitmproxy', 'notes'];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
    const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
    const la = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ');
    process.stdout.write(
      `\nEgress proxy benchmark, ${new Date().toISOString()}, node ${process.version}, loopback, keep-alive HTTPS; ` +
        `${ROUNDS} interleaved rounds; latency ${N} sequential requests per round; throughput ${SECONDS} s per round; load average before ${la(loadBefore)}, after ${la(loadavg())}; ` +
        `the upstream served ${served} requests, the clients completed ${Client.completed}\n\n` +
        [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n') +
        '\n\n',
    );
  } finally {
    mitm?.kill();
    await fx.stop();
    for (const b of baselines) await b.fx.stop();
    await worker.terminate();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `list` rotated left by `n`: every route goes first in turn, so drift in the machine's load is shared. */
function rotate<T>(list: readonly T[], n: number): T[] {
  const k = n % list.length;
  return [...list.slice(k), ...list.slice(0, k)];
}

function push<K>(m: Map<K, number[]>, k: K, v: number): void {
  const a = m.get(k);
  if (a) a.push(v);
  else m.set(k, [v]);
}

/** The `q` quantile (nearest rank) of `xs`. */
function pct(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(s.length * q) - 1)] ?? NaN;
}

function median(xs: readonly number[]): number {
  return pct(xs, 0.5);
}

function signed(x: number): string {
  return `${x >= 0 ? '+' : ''}${x.toFixed(2)}`;
}

/** CPU time (user + system, ms) of process `pid` so far, from /proc/PID/stat (clock ticks of 10 ms). */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/**
 * One keep-alive HTTP/1.1 client connection: `send` writes a request and resolves when
 * its whole response (Content-Length or chunked) has arrived; bodies are counted, not
 * kept. Minimal on purpose: the load generator shares the machine with what it measures.
 */
class Client {
  /** Responses completed by every client (checked against the upstream's count). */
  static completed = 0;
  readonly #socket: tls.TLSSocket;
  /** Bytes not consumed yet (a head, or a chunk-size line, split across reads). */
  #buf: Buffer = Buffer.alloc(0);
  #waiting: { resolve: () => void; reject: (e: Error) => void } | undefined;
  #status = 0;
  /** After the head: body bytes left (Content-Length), or the chunked state. */
  #state: 'head' | 'length' | 'size' | 'data' | 'data-crlf' | 'trailer' = 'head';
  #left = 0;

  constructor(socket: tls.TLSSocket) {
    this.#socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => {
      this.#buf = this.#buf.length ? Buffer.concat([this.#buf, d]) : d;
      try {
        this.#parse();
      } catch (e) {
        this.#fail(e as Error);
      }
    });
    socket.on('error', (e: Error) => this.#fail(e));
    socket.on('close', () => this.#fail(new Error('connection closed before the response')));
  }

  send(request: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#waiting = { resolve, reject };
      this.#socket.write(request);
    });
  }

  close(): void {
    this.#socket.destroy();
  }

  #fail(e: Error): void {
    const w = this.#waiting;
    this.#waiting = undefined;
    w?.reject(e);
  }

  #done(): void {
    this.#state = 'head';
    const w = this.#waiting;
    this.#waiting = undefined;
    if (this.#status !== 200) {
      w?.reject(new Error(`status ${this.#status}`));
      return;
    }
    Client.completed++;
    w?.resolve();
  }

  #parse(): void {
    for (;;) {
      const buf = this.#buf;
      switch (this.#state) {
        case 'head': {
          const end = buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          const head = buf.toString('latin1', 0, end);
          this.#status = Number(head.slice(9, 12));
          this.#buf = buf.subarray(end + 4);
          const cl = /\r\ncontent-length:[ ]*(\d+)/i.exec(head);
          if (cl) {
            this.#state = 'length';
            this.#left = Number(cl[1]);
          } else if (/\r\ntransfer-encoding:[ ]*chunked/i.test(head)) {
            this.#state = 'size';
          } else {
            throw new Error(`unframed response: ${head.slice(0, 200)}`);
          }
          break;
        }
        case 'length':
        case 'data': {
          const n = Math.min(this.#left, buf.length);
          this.#left -= n;
          this.#buf = buf.subarray(n);
          if (this.#left > 0) return;
          if (this.#state === 'length') this.#done();
          else this.#state = 'data-crlf';
          break;
        }
        case 'size':
        case 'data-crlf':
        case 'trailer': {
          const eol = buf.indexOf('\r\n');
          if (eol < 0) return;
          const text = buf.toString('latin1', 0, eol);
          this.#buf = buf.subarray(eol + 2);
          if (this.#state === 'data-crlf') {
            this.#state = 'size';
          } else if (this.#state === 'trailer') {
            if (text === '') this.#done();
          } else {
            this.#left = Number.parseInt(text, 16);
            this.#state = this.#left === 0 ? 'trailer' : 'data';
          }
          break;
        }
      }
    }
  }
}

// Last: `main` uses the class above (not initialised before its declaration runs).
if (!isMainThread) runUpstream(workerData as UpstreamData);
else await main();
