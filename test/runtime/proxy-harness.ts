/**
 * Runs `agent-smith proxy` as a real process of a scratch pod (support/pod.ts: its own
 * mount namespace with the pod's /etc/agent-smith and /etc/hosts), and speaks to it the
 * ways an agent's tools do (CONNECT + TLS, absolute-form HTTP, transparent TLS and HTTP as
 * iptables would redirect them) or the ways an attacker would (raw bytes). Upstream names
 * resolve as in a pod, through the system resolver, here from the pod's /etc/hosts.
 */
import { randomInt } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import tls from 'node:tls';
import { generateEgressCa } from '../../operator/src/pki/egress-ca.ts';
import type { PodContractInput } from '../../agent-image/src/contract/contract.ts';
import type { Credential } from '../../agent-image/src/programs/proxy/swap.ts';
import { makePod, testContract, CLI, type PodFiles } from '../support/pod.ts';

/** A credential as the proxy loads it (swap.ts Credential): the contract's fields plus the real value the test mounts. */
export type CredentialFixture = Credential;

export interface ProxyFixture {
  pod: PodFiles;
  proc: ChildProcess;
  port: number;
  healthPort: number;
  /** Port of the DNS listener (UDP and TCP, 127.0.0.1 and ::1). */
  dnsPort: number;
  /** PEM of the per-agent egress CA (what the agent trusts). */
  caPem: string;
  caFile: string;
  /** Everything the process wrote (stderr and stdout). */
  output(): string;
  /** Parsed JSON log lines. */
  logs(): Array<Record<string, unknown>>;
  audits(): Array<Record<string, unknown>>;
  waitForLog(pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  health(path: string): Promise<{ status: number; body: string }>;
  stop(): Promise<void>;
}

export interface ProxyOptions {
  allow: string[];
  allowCidrs: string[];
  credentials: CredentialFixture[];
  /**
   * The pod's /etc/hosts: name -> addresses. With `ports` (a port the client names -> the
   * port of a test server on 127.0.0.1, e.g. `{"443": 40123}`), `127.0.0.1` among the
   * addresses stands for a fresh loopback address of this fixture (127.x.y.z) where TCP
   * forwarders listen on the named ports and relay to the test servers: the proxy dials
   * `name:443` as it would in a pod and reaches a server on an ephemeral port.
   */
  hosts: Record<string, { addresses: string[]; ports?: Record<string, number> }>;
  /**
   * PEM blocks of the extra upstream CAs (spec.egress.upstreamCaConfigMapRef), written to a
   * file named by AGENT_SMITH_UPSTREAM_CA as the operator mounts it; empty: the variable is
   * not set (the system roots only). `upstreamCaText` writes that text instead (a bad bundle).
   */
  upstreamCa: string[];
  upstreamCaText?: string;
  /** Credentials whose file is not written (the proxy must not become ready). */
  withoutFiles?: string[];
  /** Wait for "egress proxy ready" (default true). */
  waitReady?: boolean;
  /** Extra `node` flags (the benchmark runs the proxy with the image's too). */
  nodeArgs?: string[];
  /** LOG_LEVEL of the proxy (default debug). */
  logLevel?: string;
  /**
   * Start the proxy through an entry point script, e.g. the image's (support/pod.ts
   * ENTRYPOINT, agent-image/bin/agent-smith), so it runs with the image's Node flags;
   * `nodeArgs` is then ignored.
   */
  entrypoint?: string;
  /**
   * Write the proxy's stdout and stderr to this file instead of a pipe to this process
   * (the benchmark: parsing every audit line here would take CPU from the load
   * generator). Log lines are read back from the file only when asked for.
   */
  logFile?: string;
  /**
   * The DNS listener's world: `upstream` (AGENT_SMITH_PROXY_DNS_UPSTREAM, e.g. a fake DNS
   * server's `127.0.0.1:port`), `search` (the search line of the resolv.conf the listener
   * reads, AGENT_SMITH_PROXY_RESOLV_CONF; the proxy's own /etc/resolv.conf stays the
   * host's), `inClusterHosts` (the contract's egress.inClusterHosts).
   */
  dns?: { upstream: string; search: string[]; inClusterHosts?: string[] };
}

/** Proxies still running: killed if this process exits without stopping them (a failed run). */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

/** Starts the proxy; resolves once it listens (and, by default, is ready). */
export async function startProxy(opts: ProxyOptions): Promise<ProxyFixture> {
  const egress: PodContractInput['egress'] = {
    allow: opts.allow,
    allowCidrs: opts.allowCidrs,
    enforcement: 'iptables',
    proxyPort: 15001,
    ...(opts.dns?.inClusterHosts ? { inClusterHosts: opts.dns.inClusterHosts } : {}),
    credentials: opts.credentials.map(({ real: _real, ...c }) => ({ ...c, hosts: [...c.hosts], env: [] })),
  };
  const forwarders: net.Server[] = [];
  const aliases = new Map<string, string>();
  const hosts: Record<string, string[]> = {};
  try {
    for (const [name, { addresses, ports }] of Object.entries(opts.hosts)) {
      if (!ports) {
        hosts[name] = addresses;
        continue;
      }
      const key = JSON.stringify(ports);
      let alias = aliases.get(key);
      if (alias === undefined) {
        alias = await forwardPorts(Object.entries(ports).map(([from, to]) => [Number(from), to]), forwarders);
        aliases.set(key, alias);
      }
      hosts[name] = addresses.map((a) => (a === '127.0.0.1' ? alias : a));
    }
  } catch (err) {
    for (const f of forwarders) f.close();
    throw err;
  }
  const pod = await makePod({ contract: testContract({ egress }), hosts });
  const ca = await generateEgressCa({ agent: 'default/testbot', allow: opts.allow, now: new Date(), validityDays: 30 });
  await mkdir(pod.path('/etc/agent-smith/egress-ca'), { recursive: true });
  await writeFile(pod.path('/etc/agent-smith/egress-ca/ca.crt'), ca.certPem);
  await writeFile(pod.path('/etc/agent-smith/egress-ca/ca.key'), ca.keyPem);
  await mkdir(pod.path('/etc/agent-smith/credentials'), { recursive: true });
  for (const c of opts.credentials) {
    if (!opts.withoutFiles?.includes(c.name)) await writeFile(pod.path(`/etc/agent-smith/credentials/${c.name}`), `${c.real}\n`);
  }
  const caFile = pod.path('/tmp/egress-ca.pem');
  await writeFile(caFile, ca.certPem);
  const upstreamCaFile = pod.path('/tmp/upstream-ca.pem');
  const upstreamCaText = opts.upstreamCaText ?? opts.upstreamCa.join('\n');
  await writeFile(upstreamCaFile, upstreamCaText);
  const resolvConfFile = pod.path('/tmp/dns-resolv.conf');
  if (opts.dns) await writeFile(resolvConfFile, `search ${opts.dns.search.join(' ')}\noptions ndots:5\n`);

  const env = {
    ...pod.env,
    AGENT_SMITH_PROXY_PORT: '0',
    AGENT_SMITH_PROXY_HEALTH_PORT: '0',
    // Never the default 15053: several proxies run at once here.
    AGENT_SMITH_PROXY_DNS_PORT: '0',
    ...(opts.dns ? { AGENT_SMITH_PROXY_RESOLV_CONF: resolvConfFile, AGENT_SMITH_PROXY_DNS_UPSTREAM: opts.dns.upstream } : {}),
    ...(upstreamCaText ? { AGENT_SMITH_UPSTREAM_CA: upstreamCaFile } : {}),
    LOG_LEVEL: opts.logLevel ?? 'debug',
  };
  const logFd = opts.logFile !== undefined ? openSync(opts.logFile, 'a') : undefined;
  const [command, args] = pod.command(opts.entrypoint !== undefined ? [opts.entrypoint, 'proxy'] : [process.execPath, ...(opts.nodeArgs ?? []), CLI, 'proxy']);
  const proc = spawn(command, args, { env, stdio: ['ignore', logFd ?? 'pipe', logFd ?? 'pipe'] });
  if (logFd !== undefined) closeSync(logFd);
  running.add(proc);
  proc.once('exit', () => running.delete(proc));
  let out = '';
  let pending = '';
  const lines: Array<Record<string, unknown>> = [];
  const onData = (d: Buffer) => {
    out += d.toString();
    pending += d.toString();
    let i: number;
    while ((i = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, i);
      pending = pending.slice(i + 1);
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        lines.push({ msg: line, raw: true });
      }
    }
  };
  proc.stdout?.on('data', onData);
  proc.stderr?.on('data', onData);
  // File mode: read what the proxy appended since the last look.
  let fileOffset = 0;
  const refresh = () => {
    if (opts.logFile === undefined) return;
    const fd = openSync(opts.logFile, 'r');
    try {
      const buf = Buffer.alloc(1 << 16);
      let n: number;
      while ((n = readSync(fd, buf, 0, buf.length, fileOffset)) > 0) {
        fileOffset += n;
        onData(buf.subarray(0, n));
      }
    } finally {
      closeSync(fd);
    }
  };
  const waitForLog = async (pred: (l: Record<string, unknown>) => boolean, timeoutMs = 20_000) => {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      refresh();
      const hit = lines.find(pred);
      if (hit) return hit;
      if (proc.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`no matching proxy log line within ${timeoutMs} ms; output:\n${out}`);
  };
  const listening = await waitForLog((l) => l.msg === 'egress proxy listening');
  if (opts.waitReady !== false) await waitForLog((l) => l.msg === 'egress proxy ready');
  const healthPort = listening.healthPort as number;
  return {
    pod,
    proc,
    port: listening.port as number,
    healthPort,
    dnsPort: listening.dnsPort as number,
    caPem: ca.certPem,
    caFile,
    output: () => (refresh(), out),
    logs: () => (refresh(), lines),
    audits: () => (refresh(), lines.filter((l) => l.audit === true)),
    waitForLog,
    health: async (path) => {
      const res = await fetch(`http://127.0.0.1:${healthPort}${path}`);
      return { status: res.status, body: await res.text() };
    },
    stop: async () => {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        await exited;
      }
      await Promise.all(forwarders.map((f) => new Promise((r) => f.close(r))));
      await pod.cleanup();
    },
  };
}

// --- upstream addresses ----------------------------------------------------------------

/** A random loopback address outside 127.0.0.0/16 (Linux answers on all of 127.0.0.0/8). */
export function loopbackAlias(): string {
  return `127.${randomInt(1, 255)}.${randomInt(0, 256)}.${randomInt(1, 255)}`;
}

/**
 * Listens on a fresh loopback address at each `from` port and relays every connection,
 * byte for byte and half-close for half-close, to 127.0.0.1:`to`; the servers are pushed
 * onto `servers`. Tries another address when one is taken.
 * @returns the address
 */
export async function forwardPorts(map: Array<[from: number, to: number]>, servers: net.Server[]): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    const alias = loopbackAlias();
    const mine: net.Server[] = [];
    try {
      for (const [from, to] of map) {
        const server = net.createServer({ allowHalfOpen: true }, (c) => {
          const u = net.connect({ host: '127.0.0.1', port: to, allowHalfOpen: true });
          c.on('error', () => u.destroy());
          u.on('error', () => c.destroy());
          c.on('close', (hadError) => hadError && u.destroy());
          u.on('close', (hadError) => hadError && c.destroy());
          c.pipe(u).pipe(c);
        });
        mine.push(server);
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen({ host: alias, port: from }, resolve);
        });
      }
      servers.push(...mine);
      return alias;
    } catch (err) {
      for (const s of mine) s.close();
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 5) throw err;
    }
  }
}

// --- clients -------------------------------------------------------------------------

export interface RawResponse {
  status: number;
  headers: Record<string, string[]>;
  body: Buffer;
  /** The response head as received. */
  head: string;
}

/**
 * Reads one HTTP/1.1 response from `socket` (Content-Length, chunked, 101 or
 * close-delimited), or rejects when the socket closes before a head arrives.
 */
export function readResponse(socket: net.Socket | tls.TLSSocket, timeoutMs = 10_000, connectAnswer = false): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    let settled = false;
    const timer = setTimeout(() => finish(new Error(`no complete response within ${timeoutMs} ms; got ${JSON.stringify(buf.toString('latin1').slice(0, 300))}`)), timeoutMs);
    const finish = (err: Error | undefined, res?: RawResponse) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('error', onError);
      if (err) reject(err);
      else resolve(res as RawResponse);
    };
    const parse = (closed: boolean): RawResponse | undefined => {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return undefined;
      const head = buf.subarray(0, end).toString('latin1');
      const [statusLine = '', ...fieldLines] = head.split('\r\n');
      const status = Number(statusLine.split(' ')[1]);
      const headers: Record<string, string[]> = {};
      for (const l of fieldLines) {
        const c = l.indexOf(':');
        const k = l.slice(0, c).trim().toLowerCase();
        (headers[k] ??= []).push(l.slice(c + 1).trim());
      }
      const rest = buf.subarray(end + 4);
      // RFC 9110 section 9.3.6: a 2xx answer to CONNECT has no content.
      if ((connectAnswer && status >= 200 && status < 300) || status === 101 || status === 204 || status === 304 || (status >= 100 && status < 200)) return { status, headers, body: Buffer.alloc(0), head };
      const cl = headers['content-length']?.[0];
      if (cl !== undefined) return rest.length >= Number(cl) ? { status, headers, body: rest.subarray(0, Number(cl)), head } : undefined;
      if (headers['transfer-encoding']?.[0]?.toLowerCase() === 'chunked') {
        const parts: Buffer[] = [];
        let p = 0;
        for (;;) {
          const lineEnd = rest.indexOf('\r\n', p);
          if (lineEnd < 0) return undefined;
          const size = Number.parseInt(rest.subarray(p, lineEnd).toString('latin1'), 16);
          if (size === 0) return rest.indexOf('\r\n', lineEnd + 2) >= 0 ? { status, headers, body: Buffer.concat(parts), head } : undefined;
          if (rest.length < lineEnd + 2 + size + 2) return undefined;
          parts.push(rest.subarray(lineEnd + 2, lineEnd + 2 + size));
          p = lineEnd + 2 + size + 2;
        }
      }
      return closed ? { status, headers, body: rest, head } : undefined;
    };
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const res = parse(false);
      if (res) finish(undefined, res);
    };
    const onClose = () => {
      const res = parse(true);
      finish(res ? undefined : new Error(`connection closed before a response; got ${JSON.stringify(buf.toString('latin1').slice(0, 300))}`), res);
    };
    const onError = (e: Error) => finish(e);
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.once('error', onError);
  });
}

/** A TCP connection to the proxy. */
export function dial(port: number, host = '127.0.0.1'): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Sends `CONNECT authority` (with `Host` unless told otherwise) and reads the answer; the socket is the tunnel on 200. */
export async function connect(port: number, authority: string, hostHeader: string | null = authority): Promise<{ socket: net.Socket; res: RawResponse }> {
  const socket = await dial(port);
  socket.write(`CONNECT ${authority} HTTP/1.1\r\n${hostHeader !== null ? `Host: ${hostHeader}\r\n` : ''}\r\n`);
  const res = await readResponse(socket, 10_000, true);
  return { socket, res };
}

/** TLS over `socket` (a tunnel, or a raw connection as iptables redirects it) trusting `caPem`. */
export function startTls(socket: net.Socket, opts: { servername?: string; caPem: string; alpn?: string[] }): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const t = tls.connect({
      socket,
      ca: opts.caPem,
      ALPNProtocols: opts.alpn ?? ['http/1.1'],
      ...(opts.servername !== undefined ? { servername: opts.servername } : { checkServerIdentity: () => undefined }),
    });
    t.once('secureConnect', () => resolve(t));
    t.once('error', reject);
  });
}

/** Writes `request` (CRLF line ends added where `\n` stands alone) and reads the response. */
export async function exchange(socket: net.Socket | tls.TLSSocket, request: string | Buffer | Array<string | Buffer>, gapMs = 0): Promise<RawResponse> {
  const pending = readResponse(socket);
  const parts = Array.isArray(request) ? request : [request];
  for (const p of parts) {
    socket.write(typeof p === 'string' ? p.replace(/\r?\n/g, '\r\n') : p);
    if (gapMs) await new Promise((r) => setTimeout(r, gapMs));
  }
  return pending;
}

/** CONNECT + TLS (SNI = the host) + one request through the proxy. */
export async function viaConnect(fx: ProxyFixture, authority: string, request: string | Buffer | Array<string | Buffer>, opts: { servername?: string; gapMs?: number } = {}): Promise<RawResponse> {
  const { socket, res } = await connect(fx.port, authority);
  if (res.status !== 200) {
    socket.destroy();
    return res;
  }
  const t = await startTls(socket, { servername: opts.servername ?? authority.replace(/:\d+$/, ''), caPem: fx.caPem });
  try {
    return await exchange(t, request, opts.gapMs);
  } finally {
    t.destroy();
  }
}

/** A connection as iptables REDIRECT delivers it: raw TLS to the proxy port, SNI = servername. */
export async function viaTransparentTls(fx: ProxyFixture, servername: string, request: string | Buffer): Promise<RawResponse> {
  const t = await startTls(await dial(fx.port), { servername, caPem: fx.caPem });
  try {
    return await exchange(t, request);
  } finally {
    t.destroy();
  }
}

/** A request written straight to the proxy port (explicit absolute-form, or transparent plain HTTP). */
export async function viaPlain(fx: ProxyFixture, request: string | Buffer | Array<string | Buffer>, gapMs = 0): Promise<RawResponse> {
  const s = await dial(fx.port);
  try {
    return await exchange(s, request, gapMs);
  } finally {
    s.destroy();
  }
}

/** Prometheus text of the proxy's /metrics: the value of the series `name{labels}` (0 when absent). */
export async function metric(fx: ProxyFixture, series: string): Promise<number> {
  const { body } = await fx.health('/metrics');
  const line = body.split('\n').find((l) => l.startsWith(series + ' '));
  return line ? Number(line.split(' ')[1]) : 0;
}
