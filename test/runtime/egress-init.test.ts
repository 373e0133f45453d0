/**
 * `agent-smith egress-init` in real network namespaces: a pod namespace joined by a veth
 * pair to an "upstream" namespace (IPv4 and IPv6), an upstream TCP/UDP listener there, and
 * in the pod a stand-in egress proxy listening on the proxy port as UID 1337. The real
 * iptables/ip6tables rules are applied by the real CLI inside the pod namespace, then
 * clients under various UIDs show where their packets go.
 *
 * Needs root, iproute2 (`ip netns`), util-linux `setpriv` and iptables. A machine without
 * them FAILS this file with the reason: it is never skipped.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, makePod, testContract, type PodFiles } from '../support/pod.ts';

const PROXY_UID = 1337;
const AGENT_UID = 1000;
const PROXY_PORT = 15001;
const DNS_PORT = 15053;
const UPSTREAM_TCP = 8443;
const UPSTREAM_UDP = 5353;
const LOCAL_TCP = 9000;

const POD_V4 = '10.231.0.2';
const POD_V6 = 'fd42:231::2';
/** Upstream addresses the firewall must send through the proxy. */
const UP_V4 = '10.231.0.1';
const UP_V6 = 'fd42:231::1';
/** Upstream addresses inside allowCidrs: reached directly. */
const DIRECT_V4 = '10.231.0.10';
const DIRECT_V6 = 'fd42:231::101';
const ALLOW_CIDRS = ['10.231.0.8/29', 'fd42:231::100/120'];

const SBIN_PATH = `${process.env.PATH ?? ''}:/usr/local/sbin:/usr/sbin:/sbin`;

/** Listeners: `role tcpPorts udpPorts`; one JSON line per connection's first bytes or datagram. */
const SERVER_JS = `
import net from 'node:net';
import dgram from 'node:dgram';
const [role, tcp = '', udp = ''] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify({ role, ...o }) + '\\n');
const clean = (a) => (a ?? '').replace(/^::ffff:/, '');
let pending = 0;
const ready = () => { if (--pending === 0) out({ event: 'listening', uid: process.getuid() }); };
for (const p of tcp.split(',').filter(Boolean)) {
  pending++;
  const s = net.createServer((sock) => {
    sock.on('error', () => {});
    sock.once('data', (d) => {
      out({ event: 'tcp', port: Number(p), local: clean(sock.localAddress), peer: clean(sock.remoteAddress), first: d.toString() });
      sock.end(role + '\\n');
    });
  });
  s.listen({ host: '::', port: Number(p), ipv6Only: false }, ready);
}
for (const p of udp.split(',').filter(Boolean)) {
  pending++;
  const u = dgram.createSocket({ type: 'udp6', ipv6Only: false });
  u.on('message', (m, r) => out({ event: 'udp', port: Number(p), peer: clean(r.address), data: m.toString() }));
  u.bind(Number(p), '::', ready);
}
`;

/** Client: `tcp|udp host port payload` → one JSON line: the reply (tcp), or the error code. */
const CLIENT_JS = `
import net from 'node:net';
import dgram from 'node:dgram';
const [proto, host, port, payload] = process.argv.slice(2);
const done = (o) => { process.stdout.write(JSON.stringify({ uid: process.getuid(), ...o }) + '\\n'); process.exit(0); };
setTimeout(() => done({ ok: false, code: 'TIMEOUT' }), 3000);
if (proto === 'tcp') {
  const s = net.connect({ host, port: Number(port) }, () => s.write(payload));
  let reply = '';
  s.on('data', (d) => (reply += d));
  s.on('end', () => done({ ok: true, reply: reply.trim() }));
  s.on('error', (e) => done({ ok: false, code: e.code }));
} else {
  const u = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
  u.send(payload, Number(port), host, (e) => done(e ? { ok: false, code: e.code } : { ok: true }));
}
`;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function exec(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { env: opts.env ?? { ...process.env, PATH: SBIN_PATH }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    proc.once('error', reject);
    proc.once('close', (code) => resolve({ code, stdout, stderr }));
    proc.stdin.on('error', () => undefined); // EPIPE when the command exits without reading stdin
    proc.stdin.end(opts.input ?? '');
  });
}

/** Runs a command and throws with its output unless it exits 0. */
async function must(cmd: string, ...args: string[]): Promise<string> {
  const r = await exec(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

/** The command prefix that runs `argv` in netns `ns` as `uid` (root when undefined). */
function inNs(ns: string, uid: number | undefined, argv: string[]): string[] {
  const as = uid === undefined ? [] : ['setpriv', '--reuid', String(uid), '--regid', String(uid), '--clear-groups'];
  return ['netns', 'exec', ns, ...as, ...argv];
}

interface Event {
  role: string;
  event: string;
  port?: number;
  local?: string;
  peer?: string;
  first?: string;
  data?: string;
  uid?: number;
}

/** A listener process (upstream, stand-in proxy or loopback service) and what it recorded. */
interface Listener {
  proc: ChildProcess;
  events: Event[];
}

let scratch = '';
let serverJs = '';
let clientJs = '';
const suffix = String(process.pid % 100000);

/** Fails (never skips) with the reason when this machine cannot run network namespace tests. */
async function preflight(): Promise<void> {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push(`must run as root (uid ${process.getuid?.()}) to create network namespaces and apply iptables rules`);
  for (const tool of ['ip', 'setpriv', 'iptables-save', 'ip6tables-save']) {
    const r = await exec('sh', ['-c', `command -v ${tool}`]);
    if (r.code !== 0) missing.push(`${tool} not found (Debian packages: iproute2, util-linux, iptables; scripts/lib/tools.sh ensure_system_tools installs them)`);
  }
  if (missing.length) throw new Error(`cannot run the egress-init netns test on this machine: ${missing.join('; ')}`);
  scratch = await mkdtemp(join(tmpdir(), 'agent-smith-egress-'));
  // Scripts run as UIDs 1000 and 1337: the folder must be readable by them.
  await chmod(scratch, 0o755);
  serverJs = join(scratch, 'server.mjs');
  clientJs = join(scratch, 'client.mjs');
  await writeFile(serverJs, SERVER_JS, { mode: 0o644 });
  await writeFile(clientJs, CLIENT_JS, { mode: 0o644 });
  const probe = await exec('setpriv', ['--reuid', String(AGENT_UID), '--regid', String(AGENT_UID), '--clear-groups', process.execPath, '-e', 'process.stdout.write(String(process.getuid()))']);
  if (probe.stdout !== String(AGENT_UID)) throw new Error(`cannot run node as UID ${AGENT_UID} with setpriv (${process.execPath} must be readable by it): ${probe.stderr.trim()}`);
}

/** One pod namespace, one upstream namespace, the listeners, and the pod root with the contract. */
class World {
  readonly pod: string;
  readonly upNs: string;
  readonly namespaces: string[] = [];
  readonly listeners: Listener[] = [];
  podFiles: PodFiles | undefined;
  upstream!: Listener;
  proxy!: Listener;
  local!: Listener;
  readonly backend: 'auto' | 'legacy';

  constructor(backend: 'auto' | 'legacy') {
    this.backend = backend;
    const tag = backend === 'auto' ? 'a' : 'l';
    this.pod = `as-pod-${tag}${suffix}`;
    this.upNs = `as-up-${tag}${suffix}`;
  }

  async netns(name: string): Promise<void> {
    await must('ip', 'netns', 'add', name);
    this.namespaces.push(name);
    await must('ip', '-n', name, 'link', 'set', 'lo', 'up');
  }

  async start(): Promise<void> {
    await this.netns(this.pod);
    await this.netns(this.upNs);
    await must('ip', '-n', this.pod, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', this.upNs);
    await must('ip', '-n', this.pod, 'addr', 'add', `${POD_V4}/24`, 'dev', 'eth0');
    await must('ip', '-n', this.pod, 'addr', 'add', `${POD_V6}/64`, 'dev', 'eth0', 'nodad');
    for (const a of [UP_V4, DIRECT_V4]) await must('ip', '-n', this.upNs, 'addr', 'add', `${a}/24`, 'dev', 'eth0');
    for (const a of [UP_V6, DIRECT_V6]) await must('ip', '-n', this.upNs, 'addr', 'add', `${a}/64`, 'dev', 'eth0', 'nodad');
    await must('ip', '-n', this.pod, 'link', 'set', 'eth0', 'up');
    await must('ip', '-n', this.upNs, 'link', 'set', 'eth0', 'up');
    this.upstream = await this.listen(this.upNs, undefined, 'upstream', [UPSTREAM_TCP, 53], [UPSTREAM_UDP, 53]);
    this.proxy = await this.listen(this.pod, PROXY_UID, 'proxy', [PROXY_PORT, DNS_PORT], [DNS_PORT]);
    this.local = await this.listen(this.pod, undefined, 'local', [LOCAL_TCP], []);
  }

  async listen(ns: string, uid: number | undefined, role: string, tcp: number[], udp: number[]): Promise<Listener> {
    const proc = spawn('ip', inNs(ns, uid, [process.execPath, serverJs, role, tcp.join(','), udp.join(',')]), {
      env: { ...process.env, PATH: SBIN_PATH },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const l: Listener = { proc, events: [] };
    this.listeners.push(l);
    let buf = '';
    let err = '';
    proc.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        l.events.push(JSON.parse(buf.slice(0, i)) as Event);
        buf = buf.slice(i + 1);
      }
    });
    proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    const deadline = Date.now() + 10_000;
    while (!l.events.some((e) => e.event === 'listening')) {
      if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`${role} listener in ${ns} did not start: ${err}`);
      await sleep(20);
    }
    expect(l.events[0]?.uid).toBe(uid ?? 0);
    return l;
  }

  /** A client in the pod namespace as `uid`: TCP (payload, then the reply) or one UDP datagram. */
  async client(uid: number | undefined, proto: 'tcp' | 'udp', host: string, port: number, payload: string, ns = this.pod): Promise<{ ok: boolean; reply?: string; code?: string; uid: number }> {
    const r = await exec('ip', inNs(ns, uid, [process.execPath, clientJs, proto, host, String(port), payload]));
    if (r.code !== 0) throw new Error(`client exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as { ok: boolean; reply?: string; code?: string; uid: number };
  }

  /** `agent-smith egress-init` inside netns `ns`, as a program of `pod` (its contract and /etc/resolv.conf mounted). */
  egressInit(ns: string, pod: PodFiles, extraEnv: NodeJS.ProcessEnv = {}): Promise<Run> {
    const env: NodeJS.ProcessEnv = {
      ...pod.env,
      PATH: `${pod.env.PATH ?? ''}:/usr/sbin:/sbin`,
      AGENT_SMITH_PROXY_UID: String(PROXY_UID),
      AGENT_SMITH_PROXY_PORT: String(PROXY_PORT),
      AGENT_SMITH_PROXY_DNS_PORT: String(DNS_PORT),
      ...(this.backend === 'legacy' ? { AGENT_SMITH_IPTABLES_BACKEND: 'legacy' } : {}),
      ...extraEnv,
    };
    return exec('ip', ['netns', 'exec', ns, ...pod.command([process.execPath, CLI, 'egress-init']).flat()], { env });
  }

  /** Kills what this world started and deletes its namespaces (and so the veth pair). */
  async down(): Promise<void> {
    for (const l of this.listeners) l.proc.kill('SIGKILL');
    for (const ns of this.namespaces) {
      const r = await exec('ip', ['netns', 'del', ns]);
      if (r.code !== 0) process.stderr.write(`could not delete netns ${ns}: ${r.stderr}\n`);
    }
    await this.podFiles?.cleanup();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Waits until `events` has one matching `pred` (or fails after `ms`). */
async function waitForEvent(l: Listener, pred: (e: Event) => boolean, ms = 3000): Promise<Event> {
  const deadline = Date.now() + ms;
  for (;;) {
    const hit = l.events.find(pred);
    if (hit) return hit;
    if (Date.now() > deadline) throw new Error(`no matching ${l.events[0]?.role ?? ''} event; got ${JSON.stringify(l.events)}`);
    await sleep(20);
  }
}

/** Lets stray packets arrive, then returns whether any event of `l` carries `payload`. */
async function sawPayload(l: Listener, payload: string): Promise<boolean> {
  await sleep(300);
  return l.events.some((e) => e.first === payload || e.data === payload);
}

const saveRules = (ns: string, backend: 'auto' | 'legacy', family: 4 | 6) =>
  must('ip', 'netns', 'exec', ns, `${family === 4 ? 'iptables' : 'ip6tables'}${backend === 'legacy' ? '-legacy' : ''}-save`).then((s) =>
    s
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => l.replace(/\s*\[\d+:\d+\]/, ''))
      .join('\n'),
  );

let preflightError: Error | undefined;
beforeAll(async () => {
  try {
    await preflight();
  } catch (err) {
    preflightError = err as Error;
  }
});
afterAll(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

describe.each(['auto', 'legacy'] as const)('agent-smith egress-init in a real pod network namespace (iptables backend: %s)', (backend) => {
  const w = new World(backend);
  let init: Run;
  let logs: Array<Record<string, unknown>>;

  beforeAll(async () => {
    if (preflightError) throw preflightError;
    await w.start();
    // Control: before the firewall, UID 1000 reaches the upstream directly on both
    // families (IPv6 may need a moment for the link and neighbour discovery).
    for (const host of [UP_V4, UP_V6]) {
      let r = await w.client(AGENT_UID, 'tcp', host, UPSTREAM_TCP, `control-${host}`);
      for (let i = 0; !r.ok && i < 20; i++) {
        await sleep(250);
        r = await w.client(AGENT_UID, 'tcp', host, UPSTREAM_TCP, `control-${host}`);
      }
      if (r.reply !== 'upstream') throw new Error(`no path to the upstream at ${host} before egress-init: ${JSON.stringify(r)}`);
    }
    w.podFiles = await makePod({
      contract: testContract({ egress: { allow: ['github.com'], allowCidrs: ALLOW_CIDRS, enforcement: 'iptables', proxyPort: PROXY_PORT, credentials: [] } }),
    });
    // The pod's resolver, outside allowCidrs: its DNS goes to the proxy all the same.
    await writeFile(w.podFiles.path('/etc/resolv.conf'), 'search default.svc.cluster.local\nnameserver 10.96.0.10\n');
    init = await w.egressInit(w.pod, w.podFiles);
    logs = init.stderr
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        try {
          return JSON.parse(l) as Record<string, unknown>;
        } catch {
          return { msg: l };
        }
      });
  });
  afterAll(async () => {
    await w.down();
  });

  it('installs the firewall, verifies it and logs a summary', async () => {
    expect(init.code, init.stderr).toBe(0);
    const summary = logs.find((l) => String(l.msg).startsWith('egress firewall installed'));
    expect(summary).toMatchObject({
      proxyUid: PROXY_UID,
      proxyPort: PROXY_PORT,
      dnsPort: DNS_PORT,
      allowCidrs: { ipv4: ['10.231.0.8/29'], ipv6: ['fd42:231::100/120'] },
      ipv4: { rules: expect.any(Number) as number },
      ipv6: { rules: expect.any(Number) as number },
    });
    if (backend === 'legacy') expect(summary?.backend).toBe('legacy');
    const v4 = await saveRules(w.pod, backend, 4);
    expect(v4).toContain(`-A AGENT_SMITH_REDIRECT -p tcp -m owner ! --uid-owner ${PROXY_UID} -j REDIRECT --to-ports ${PROXY_PORT}`);
    expect(v4).toContain(':OUTPUT DROP');
    expect(await saveRules(w.pod, backend, 6)).toContain(`-A AGENT_SMITH_REDIRECT -p tcp -m owner ! --uid-owner ${PROXY_UID} -j REDIRECT --to-ports ${PROXY_PORT}`);
  });

  it.each([
    ['IPv4', UP_V4, '127.0.0.1'],
    ['IPv6', UP_V6, '::1'],
  ])('sends TCP of UID 1000 to an %s upstream to the proxy instead; the upstream sees nothing', async (_family, host, loopback) => {
    const payload = `agent-tcp-${host}`;
    const r = await w.client(AGENT_UID, 'tcp', host, UPSTREAM_TCP, payload);
    expect(r).toMatchObject({ ok: true, reply: 'proxy' });
    const seen = await waitForEvent(w.proxy, (e) => e.first === payload);
    expect(seen).toMatchObject({ event: 'tcp', port: PROXY_PORT, local: loopback });
    expect(await sawPayload(w.upstream, payload)).toBe(false);
  });

  it('redirects root (UID 0) as well: only the proxy UID is exempt', async () => {
    const payload = 'root-tcp';
    expect(await w.client(0, 'tcp', UP_V4, UPSTREAM_TCP, payload)).toMatchObject({ ok: true, reply: 'proxy' });
    expect(await sawPayload(w.upstream, payload)).toBe(false);
  });

  it.each([
    [AGENT_UID, UP_V4, UPSTREAM_UDP],
    [AGENT_UID, UP_V6, UPSTREAM_UDP],
    [PROXY_UID, UP_V4, UPSTREAM_UDP],
  ])('drops UDP of UID %i to %s port %i (the sender gets EPERM, the upstream nothing)', async (uid, host, port) => {
    const payload = `udp-${uid}-${host}-${port}`;
    expect(await w.client(uid, 'udp', host, port, payload)).toMatchObject({ ok: false, code: 'EPERM' });
    expect(await sawPayload(w.upstream, payload)).toBe(false);
  });

  it.each([
    [AGENT_UID, UP_V4, '127.0.0.1'],
    [AGENT_UID, UP_V6, '::1'],
    [0, UP_V4, '127.0.0.1'],
    // A resolver inside allowCidrs does not open a way around it.
    [AGENT_UID, DIRECT_V4, '127.0.0.1'],
    [AGENT_UID, DIRECT_V6, '::1'],
  ])("sends DNS of UID %i to %s (UDP and TCP port 53) to the proxy's DNS port instead; the upstream sees nothing", async (uid, host, loopback) => {
    const payload = `dns-${uid}-${host}`;
    expect(await w.client(uid, 'udp', host, 53, payload)).toMatchObject({ ok: true });
    expect(await waitForEvent(w.proxy, (e) => e.data === payload)).toMatchObject({ event: 'udp', port: DNS_PORT });
    expect(await w.client(uid, 'tcp', host, 53, `${payload}-tcp`)).toMatchObject({ ok: true, reply: 'proxy' });
    expect(await waitForEvent(w.proxy, (e) => e.first === `${payload}-tcp`)).toMatchObject({ event: 'tcp', port: DNS_PORT, local: loopback });
    expect(await sawPayload(w.upstream, payload)).toBe(false);
    expect(await sawPayload(w.upstream, `${payload}-tcp`)).toBe(false);
  });

  it.each([UP_V4, UP_V6])('lets the proxy UID 1337 reach the upstream %s directly over TCP', async (host) => {
    const payload = `proxy-direct-${host}`;
    expect(await w.client(PROXY_UID, 'tcp', host, UPSTREAM_TCP, payload)).toMatchObject({ ok: true, reply: 'upstream' });
    const seen = await waitForEvent(w.upstream, (e) => e.first === payload);
    expect(seen.peer).toBe(host === UP_V4 ? POD_V4 : POD_V6);
    expect(w.proxy.events.some((e) => e.first === payload)).toBe(false);
  });

  it.each([UP_V4, UP_V6])('lets the proxy UID 1337 resolve names: DNS over UDP 53 to %s', async (host) => {
    const payload = `proxy-dns-${host}`;
    expect(await w.client(PROXY_UID, 'udp', host, 53, payload)).toMatchObject({ ok: true });
    await waitForEvent(w.upstream, (e) => e.data === payload);
  });

  it.each(['127.0.0.1', '::1', POD_V4, POD_V6])('leaves loopback alone for UID 1000: %s reaches the pod-local service', async (host) => {
    const payload = `loopback-${host}`;
    expect(await w.client(AGENT_UID, 'tcp', host, LOCAL_TCP, payload)).toMatchObject({ ok: true, reply: 'local' });
    await waitForEvent(w.local, (e) => e.first === payload);
  });

  it.each([DIRECT_V4, DIRECT_V6])('lets UID 1000 reach %s in egress.allowCidrs directly (TCP and UDP)', async (host) => {
    const payload = `direct-${host}`;
    expect(await w.client(AGENT_UID, 'tcp', host, UPSTREAM_TCP, payload)).toMatchObject({ ok: true, reply: 'upstream' });
    expect((await waitForEvent(w.upstream, (e) => e.first === payload)).peer).toBe(host === DIRECT_V4 ? POD_V4 : POD_V6);
    expect(w.proxy.events.some((e) => e.first === payload)).toBe(false);
    expect(await w.client(AGENT_UID, 'udp', host, UPSTREAM_UDP, `${payload}-udp`)).toMatchObject({ ok: true });
    await waitForEvent(w.upstream, (e) => e.data === `${payload}-udp`);
  });

  it.each([POD_V4, POD_V6])('still answers inbound connections (probes) to %s from outside the pod', async (host) => {
    const payload = `inbound-${host}`;
    expect(await w.client(undefined, 'tcp', host, LOCAL_TCP, payload, w.upNs)).toMatchObject({ ok: true, reply: 'local' });
  });

  it('gives the same firewall when run again (init containers re-run)', async () => {
    const before = [await saveRules(w.pod, backend, 4), await saveRules(w.pod, backend, 6)];
    const again = await w.egressInit(w.pod, w.podFiles!);
    expect(again.code, again.stderr).toBe(0);
    expect([await saveRules(w.pod, backend, 4), await saveRules(w.pod, backend, 6)]).toEqual(before);
    expect(await w.client(AGENT_UID, 'tcp', UP_V4, UPSTREAM_TCP, 'after-rerun')).toMatchObject({ ok: true, reply: 'proxy' });
  });

  it('refuses a bad CIDR with the contract field named and applies nothing', async () => {
    const ns = `as-bad-${backend === 'auto' ? 'a' : 'l'}${suffix}`;
    await w.netns(ns);
    const pod = await makePod({
      contract: testContract({ egress: { allow: [], allowCidrs: ['10.231.0.8/29', '10.0.0.300/8'], enforcement: 'iptables', proxyPort: PROXY_PORT, credentials: [] } }),
    });
    try {
      const r = await w.egressInit(ns, pod);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/contract\.json: egress\.allowCidrs\[1\]: "10\.0\.0\.300\/8" is not a valid CIDR/);
      expect(await saveRules(ns, backend, 4)).not.toContain('AGENT_SMITH');
      expect(await saveRules(ns, backend, 6)).not.toContain('AGENT_SMITH');
    } finally {
      await pod.cleanup();
    }
  });

  it('with enforcement proxy-env logs that nothing is enforced, exits 0 and applies nothing', async () => {
    const ns = `as-env-${backend === 'auto' ? 'a' : 'l'}${suffix}`;
    await w.netns(ns);
    const pod = await makePod({ contract: testContract() });
    try {
      const r = await w.egressInit(ns, pod);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toContain('egress enforcement is proxy-env: no firewall installed');
      expect(await saveRules(ns, backend, 4)).not.toContain('AGENT_SMITH');
    } finally {
      await pod.cleanup();
    }
  });
});
