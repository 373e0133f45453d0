/**
 * `agent-smith egress-init`: the init container that makes the egress proxy impossible to
 * bypass (transparent mode). It installs the firewall of rules.ts into the pod's network
 * namespace with `iptables-restore` and `ip6tables-restore`, reads it back with
 * `iptables-save` and refuses to let the pod start unless the kernel holds exactly what
 * was applied. Runs as root with NET_ADMIN and NET_RAW only (operator/src/render/statefulset.ts).
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { PROXY_DNS_PORT, PROXY_PORT, PROXY_UID } from '../../contract/contract.ts';
import { ContractError, loadContract } from '../../contract/load.ts';
import { layoutFromEnv } from '../../contract/layout.ts';
import { POD_ENV } from '../../contract/pod.ts';
import { makeLogger, type Logger } from '../../lib/log.ts';
import type { Cidr } from '../../contract/net.ts';
import { diffRules, parseAllowCidrs, parseRulesDocument, renderRules } from './rules.ts';

/** The egress firewall could not be installed or verified; the pod must not start. */
export class EgressInitError extends Error {
  override name = 'EgressInitError';
}

/**
 * Which iptables binaries to use. `nft` and `legacy` are the `iptables-nft-*` and
 * `iptables-legacy-*` variants of iptables ≥ 1.8; `default` is plain `iptables-*`, used only
 * when neither variant is installed.
 */
export type Backend = 'nft' | 'legacy' | 'default';

const RUN_TIMEOUT_MS = 30_000;

/**
 * Reads the contract (AGENT_SMITH_CONTRACT, see layout.ts), the proxy's
 * UID, port and DNS port (AGENT_SMITH_PROXY_UID, AGENT_SMITH_PROXY_PORT,
 * AGENT_SMITH_PROXY_DNS_PORT; defaults PROXY_UID 1337, PROXY_PORT 15001 and PROXY_DNS_PORT
 * 15053) and, when `egress.enforcement` is `iptables`, installs and verifies the
 * IPv4 and IPv6 firewalls. With `proxy-env` it logs that nothing is enforced and returns.
 *
 * The iptables variant is AGENT_SMITH_IPTABLES_BACKEND (`nft` | `legacy`) when set, else
 * detected: the variant whose tables already hold rules in this namespace (so ours do not
 * sit beside someone else's in the other store), else nft when it works, else legacy.
 *
 * IPv6: when the kernel has no IPv6 (/proc/net/if_inet6 missing) there is no IPv6 path and
 * ip6tables is skipped with a warning; when ip6tables fails and every interface but `lo`
 * has IPv6 disabled, likewise; otherwise the failure is fatal.
 *
 * @throws ContractError (bad contract or allowCidrs entry; the CLI exits 2),
 *   EgressInitError (bad environment, iptables missing, failing or not holding the rules;
 *   the CLI exits 1). A pod must not start with a half-applied firewall.
 */
export async function runEgressInit(env: NodeJS.ProcessEnv = process.env, log: Logger = makeLogger('egress-init')): Promise<void> {
  const layout = layoutFromEnv(env);
  const contract = loadContract(layout.contractFile);
  const { egress } = contract;
  if (egress.enforcement === 'proxy-env') {
    log.warn(
      { enforcement: egress.enforcement },
      'egress enforcement is proxy-env: no firewall installed; only clients that honour HTTPS_PROXY pass the egress proxy, others reach the network directly',
    );
    return;
  }
  const proxyUid = intFromEnv(env, POD_ENV.proxyUid, PROXY_UID, 1, 4294967294);
  const proxyPort = intFromEnv(env, POD_ENV.proxyPort, PROXY_PORT, 1, 65535);
  const dnsPort = intFromEnv(env, POD_ENV.proxyDnsPort, PROXY_DNS_PORT, 1, 65535);
  if (dnsPort === proxyPort) throw new EgressInitError(`${POD_ENV.proxyDnsPort}=${dnsPort} is the proxy port: the DNS listener needs a port of its own`);
  if (proxyPort !== egress.proxyPort) {
    throw new EgressInitError(
      `AGENT_SMITH_PROXY_PORT is ${proxyPort} but the contract's egress.proxyPort is ${egress.proxyPort}; the redirect must point where the proxy listens (operator and image out of step?)`,
    );
  }
  let cidrs: { 4: Cidr[]; 6: Cidr[] };
  let docs: { 4: string; 6: string };
  try {
    cidrs = parseAllowCidrs(egress.allowCidrs);
    docs = {
      4: renderRules({ proxyUid, proxyPort, dnsPort, allowCidrs: egress.allowCidrs, family: 4 }),
      6: renderRules({ proxyUid, proxyPort, dnsPort, allowCidrs: egress.allowCidrs, family: 6 }),
    };
  } catch (err) {
    if (err instanceof ContractError) throw new ContractError(`${layout.contractFile}: ${err.message}`);
    throw err;
  }

  const backend = await chooseBackend(env, log);
  const ipv4 = await applyAndVerify(backend, 4, docs[4]);

  let ipv6: Record<string, unknown>;
  const v6 = ipv6State();
  if (v6.state === 'absent') {
    ipv6 = { skipped: 'the kernel has no IPv6 (/proc/net/if_inet6 missing): no IPv6 path to close' };
    log.warn({ ipv6: 'skipped' }, 'the kernel has no IPv6: ip6tables skipped, there is no IPv6 path around the proxy');
  } else {
    try {
      ipv6 = await applyAndVerify(backend, 6, docs[6]);
    } catch (err) {
      const message = (err as Error).message;
      if (v6.state !== 'disabled') {
        throw new EgressInitError(
          `${message}; IPv6 is enabled on ${v6.interfaces.join(', ')} in this network namespace, so without ip6tables rules IPv6 would be a way around the egress proxy`,
        );
      }
      ipv6 = { skipped: `ip6tables failed and IPv6 is disabled on every interface but lo: ${message}` };
      log.warn({ ipv6: 'skipped', err: message }, 'ip6tables failed but IPv6 is disabled in this network namespace: no IPv6 path to close');
    }
  }

  log.info(
    { backend, proxyUid, proxyPort, dnsPort, allowCidrs: { ipv4: cidrs[4].map((c) => c.text), ipv6: cidrs[6].map((c) => c.text) }, ipv4, ipv6 },
    `egress firewall installed: DNS (port 53) of every UID but ${proxyUid} redirected to the proxy's DNS port ${dnsPort}, outbound TCP to port ${proxyPort}, allowCidrs direct, everything else dropped`,
  );
}

/** The name of an iptables binary, e.g. `ip6tables-nft-restore`. */
export function iptablesTool(backend: Backend, family: 4 | 6, verb: 'restore' | 'save'): string {
  return `${family === 4 ? 'iptables' : 'ip6tables'}${backend === 'default' ? '' : `-${backend}`}-${verb}`;
}

function intFromEnv(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || n < min || n > max) throw new EgressInitError(`${name}=${JSON.stringify(raw)} is not an integer in ${min}..${max}`);
  return n;
}

async function chooseBackend(env: NodeJS.ProcessEnv, log: Logger): Promise<Backend> {
  const forced = env.AGENT_SMITH_IPTABLES_BACKEND;
  if (forced) {
    if (forced !== 'nft' && forced !== 'legacy') throw new EgressInitError(`AGENT_SMITH_IPTABLES_BACKEND=${JSON.stringify(forced)}: expected nft or legacy`);
    log.info({ backend: forced }, 'iptables backend set by AGENT_SMITH_IPTABLES_BACKEND');
    return forced;
  }
  const probes: Array<{ backend: Backend; rules: number; error?: string }> = [];
  for (const backend of ['nft', 'legacy'] as const) {
    const r = await run(iptablesTool(backend, 4, 'save'), []);
    if (r.missing) continue;
    if (r.code === 0) probes.push({ backend, rules: r.stdout.split('\n').filter((l) => l.startsWith('-A ')).length });
    else probes.push({ backend, rules: 0, error: `exit ${r.code}: ${r.stderr.trim() || r.stdout.trim()}` });
  }
  if (!probes.length) {
    const r = await run(iptablesTool('default', 4, 'save'), []);
    if (r.missing) throw new EgressInitError('iptables-restore is not installed: the agent image must ship iptables (Debian package iptables)');
    if (r.code !== 0) throw new EgressInitError(`iptables-save failed (exit ${r.code}): ${r.stderr.trim()}`);
    return 'default';
  }
  const working = probes.filter((p) => p.error === undefined);
  if (!working.length) {
    throw new EgressInitError(`no iptables variant works in this network namespace (needs NET_ADMIN and the kernel's nf_tables or ip_tables): ${probes.map((p) => `${iptablesTool(p.backend, 4, 'save')}: ${p.error}`).join('; ')}`);
  }
  const withRules = working.filter((p) => p.rules > 0).sort((a, b) => b.rules - a.rules)[0];
  const chosen = withRules ?? working[0];
  if (!chosen) throw new EgressInitError('no iptables variant found');
  log.info({ backend: chosen.backend, probes }, withRules ? 'iptables backend: the one already holding rules in this namespace' : 'iptables backend: detected');
  return chosen.backend;
}

async function applyAndVerify(backend: Backend, family: 4 | 6, doc: string): Promise<{ rules: number; tool: string }> {
  const restore = iptablesTool(backend, family, 'restore');
  const save = iptablesTool(backend, family, 'save');
  // --wait: the legacy variant serialises on the xtables lock; the nft variant accepts and ignores it.
  const applied = await run(restore, ['--wait', '10'], doc);
  if (applied.missing) throw new EgressInitError(`${restore} is not installed: the agent image must ship iptables (Debian package iptables)`);
  if (applied.code !== 0) throw new EgressInitError(`${restore} failed (exit ${applied.code}): ${applied.stderr.trim() || applied.stdout.trim()}`);
  const listed = await run(save, []);
  if (listed.code !== 0) throw new EgressInitError(`${save} failed after applying the rules (exit ${listed.code}): ${listed.stderr.trim()}`);
  const diff = diffRules(doc, listed.stdout);
  if (diff.length) throw new EgressInitError(`${save} lists other rules than ${restore} applied: ${diff.join('; ')}`);
  const tables = parseRulesDocument(doc);
  return { rules: [...tables.values()].reduce((n, t) => n + t.rules.length, 0), tool: restore };
}

/**
 * IPv6 in this network namespace: `absent` when the kernel has none, `disabled` when every
 * interface but `lo` has net.ipv6.conf.<if>.disable_ipv6 = 1 (loopback traffic never
 * leaves the pod), else `enabled` with the interfaces that have it.
 */
function ipv6State(): { state: 'absent' | 'disabled' | 'enabled'; interfaces: string[] } {
  if (!existsSync('/proc/net/if_inet6')) return { state: 'absent', interfaces: [] };
  const dir = '/proc/sys/net/ipv6/conf';
  const interfaces = readdirSync(dir).filter((i) => {
    if (i === 'all' || i === 'default' || i === 'lo') return false;
    try {
      return readFileSync(`${dir}/${i}/disable_ipv6`, 'utf8').trim() !== '1';
    } catch {
      return true;
    }
  });
  return { state: interfaces.length ? 'enabled' : 'disabled', interfaces };
}

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** The binary does not exist (ENOENT). */
  missing: boolean;
}

/** PATH with the sbin directories appended: iptables lives there, and a container's PATH may lack them. */
function sbinPath(path = ''): string {
  const have = path.split(':');
  return [...have, ...['/usr/local/sbin', '/usr/sbin', '/sbin'].filter((d) => !have.includes(d))].filter(Boolean).join(':');
}

/** Runs `cmd args` with `input` on stdin; never rejects (spawn errors become a result). */
function run(cmd: string, args: string[], input?: string): Promise<RunResult> {
  return new Promise((resolve) => {
    const proc = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], timeout: RUN_TIMEOUT_MS, env: { ...process.env, PATH: sbinPath(process.env.PATH) } });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    proc.once('error', (err: NodeJS.ErrnoException) => resolve({ code: null, stdout, stderr: stderr || err.message, missing: err.code === 'ENOENT' }));
    proc.once('close', (code, signal) => resolve({ code, stdout, stderr: signal ? `${stderr}(killed by ${signal}${signal === 'SIGTERM' ? `, timeout ${RUN_TIMEOUT_MS} ms` : ''})` : stderr, missing: false }));
    proc.stdin.on('error', () => undefined); // EPIPE when the binary exits early; its exit code says why
    proc.stdin.end(input ?? '');
  });
}
