/**
 * `agent-smith proxy`: the egress credential-swap proxy, the `egress-proxy` native
 * sidecar (UID PROXY_UID). Wiring only.
 *
 * Starts listening at once (127.0.0.1 and ::1 on the proxy port, every interface on the
 * health port) and answers 503 until the contract, the egress CA (EGRESS_CA_DIR), every
 * credential file (CREDENTIALS_DIR/<name>) and the extra upstream CAs (when set) are loaded
 * and valid; while they are not, it retries every 2 s and /readyz says why (the file,
 * never a value).
 *
 * Environment: AGENT_SMITH_CONTRACT (layout.ts), AGENT_SMITH_PROXY_PORT
 * (overrides `egress.proxyPort`; 0 = a free port), AGENT_SMITH_PROXY_HEALTH_PORT (default
 * 15021; 0 = a free port), AGENT_SMITH_UPSTREAM_CA (the PEM file of extra upstream CAs the
 * operator mounts for spec.egress.upstreamCaConfigMapRef; config.ts upstreamCaFromEnv),
 * AGENT_SMITH_PROXY_LIMITS (config.ts limitsFromEnv), LOG_LEVEL. Upstream names resolve
 * through the system resolver (policy.ts systemLookup).
 *
 * The DNS listener (dns.ts; the pod's DNS under iptables enforcement) listens on UDP and
 * TCP AGENT_SMITH_PROXY_DNS_PORT (default 15053; 0 = a free port) on 127.0.0.1 and ::1,
 * answers SERVFAIL until the contract is loaded, and asks the nameservers of
 * AGENT_SMITH_PROXY_RESOLV_CONF (default /etc/resolv.conf; its `search` line is the
 * search list dns-policy.ts recognises), or AGENT_SMITH_PROXY_DNS_UPSTREAM when set
 * (comma-separated `ip`, `ip:port` or `[ip6]:port`, for tests). The bound ports are
 * logged: `{"msg":"egress proxy listening","port":...,"healthPort":...,"dnsPort":...}`.
 */
import { readFileSync } from 'node:fs';
import { pino } from 'pino';
import { CREDENTIALS_DIR, EGRESS_CA_DIR, type PodContract } from '../../contract/contract.ts';
import { ContractError, loadContract } from '../../contract/load.ts';
import { layoutFromEnv, type Layout } from '../../contract/layout.ts';
import { POD_ENV } from '../../contract/pod.ts';
import type { Logger } from '../../lib/log.ts';
import { Auditor } from './audit.ts';
import { LeafCertificates, loadEgressCa } from './ca.ts';
import { DEFAULT_DNS_LIMITS, DnsServer, resolverUpstream, usableNameservers } from './dns.ts';
import { compileDnsPolicy, parseResolvConf } from './dns-policy.ts';
import { ConfigError, limitsFromEnv, listenPorts, readCredentials, upstreamCaFromEnv, type ProxyLimits } from './config.ts';
import { serveHealth } from './health.ts';
import { ProxyMetrics } from './metrics.ts';
import { canonicalHost, compileAllowlist, credentialFor, PolicyError, validateAllowCidrs, type CanonicalHost } from './policy.ts';
import { EgressProxy, type ProxyRuntime } from './server.ts';
import { CredentialSet, type Credential } from './swap.ts';
import { upstreamSecureContext } from './upstream.ts';

const RETRY_MS = 2_000;

/**
 * The proxy's logger: JSON lines on stderr like log.ts `makeLogger`, plus a last line of
 * defence: every serialised line passes `redact` (stubs and real values, any encoding,
 * become markers) before it is written. `pathRedaction: false` leaves out pino's
 * redaction of fields named like secrets (nested `authorization`, `token`, ...): for
 * the audit logger, whose records (audit.ts AuditRecord) are flat with fixed scalar
 * fields, none of them so named, so those paths never match; looking for them cost ~5%
 * of a proxied request's CPU (test/bench/proxy-bench.ts --profile). The line redactor
 * runs on every line of both.
 */
function proxyLogger(redact: () => (line: string) => string, destination: ReturnType<typeof pino.destination>, pathRedaction = true): Logger {
  return pino(
    {
      name: 'egress-proxy',
      level: process.env.LOG_LEVEL ?? 'info',
      ...(pathRedaction ? { redact: { paths: ['*.authorization', '*.token', '*.password', '*.secret', 'headers.authorization'], censor: '[redacted]' } } : {}),
      hooks: { streamWrite: (line: string) => redact()(line) },
    },
    destination,
  );
}

async function loadRuntime(opts: { layout: Layout; env: NodeJS.ProcessEnv; log: Logger; metrics: ProxyMetrics; limits: ProxyLimits }): Promise<{ runtime: ProxyRuntime; contract: PodContract }> {
  const { layout, env, log, metrics, limits } = opts;
  const contract = loadContract(layout.contractFile);
  const { egress } = contract;
  let allowlist;
  try {
    allowlist = compileAllowlist(egress.allow);
    validateAllowCidrs(egress.allowCidrs);
  } catch (err) {
    throw new ConfigError(`${layout.contractFile}: egress: ${(err as Error).message}`);
  }
  const creds = readCredentials(egress.credentials, CREDENTIALS_DIR, limits.maxSecretBytes);
  const pick = (all: readonly Credential[], host: CanonicalHost) => credentialFor(all, host);
  for (const c of creds) {
    for (const h of c.hosts) {
      // Overlapping scopes would make every request to the host fail: refuse the config instead.
      try {
        const host = canonicalHost(h.replace(/^\*\./, 'x.').replace(/:\d+$/, ''));
        pick(creds, host);
      } catch (err) {
        if (err instanceof PolicyError) throw new ConfigError(`${layout.contractFile}: egress.credentials[${c.name}].hosts: ${err.message}`);
        throw err;
      }
    }
  }
  const ca = await loadEgressCa(EGRESS_CA_DIR);
  const extraCa = upstreamCaFromEnv(env, log);
  const leaves = await LeafCertificates.create({
    ca,
    isAllowed: (host, port) => allowlist.match(host, port) !== undefined,
    cacheSize: limits.certCacheSize,
    validityMs: limits.leafValidityMs,
    onLookup: (hit) => metrics.certCache.inc({ result: hit ? 'hit' : 'miss' }),
    onSize: (n) => metrics.certCacheSize.set(n),
  });
  return {
    contract,
    runtime: {
      allowlist,
      allowCidrs: egress.allowCidrs,
      credentials: new CredentialSet<CanonicalHost>(creds, pick),
      leaves,
      upstreamContext: upstreamSecureContext(extraCa),
    },
  };
}

/** The nameservers and search list of resolv.conf at `file`; none (with a warning) when it cannot be read. */
function readResolvConf(file: string, log: Logger): { nameservers: string[]; search: string[] } {
  try {
    return parseResolvConf(readFileSync(file, 'utf8'));
  } catch (err) {
    log.warn({ file, code: (err as NodeJS.ErrnoException).code }, 'dns: cannot read resolv.conf: no upstream nameserver, no search list');
    return { nameservers: [], search: [] };
  }
}

/** Runs the proxy until SIGTERM or SIGINT. Resolves once listening. */
export async function runProxy(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const layout = layoutFromEnv(env);
  let redactor: (line: string) => string = (line) => line;
  // One synchronous stream for both loggers: lines stay whole and in order.
  const destination = pino.destination({ fd: 2, sync: true });
  const log = proxyLogger(() => redactor, destination);
  const metrics = new ProxyMetrics();
  // A malformed AGENT_SMITH_PROXY_LIMITS stops the start-up here, with the reason.
  const limits = limitsFromEnv(env);
  const auditor = new Auditor(proxyLogger(() => redactor, destination, false));

  let early: PodContract | undefined;
  try {
    early = loadContract(layout.contractFile);
  } catch {
    // Reported by the load loop below; the proxy listens anyway and answers 503.
  }
  const ports = listenPorts(env, early);
  const ownPorts = new Set<number>();
  const proxy = new EgressProxy({ log, metrics, auditor, limits, ownPorts });
  const port = await proxy.listen(ports.port);
  const health = await serveHealth({ port: ports.healthPort, status: () => proxy.notReadyReason, metrics, log });
  ownPorts.add(health.port);
  const resolv = readResolvConf(env.AGENT_SMITH_PROXY_RESOLV_CONF || '/etc/resolv.conf', log);
  const { servers: upstreamServers, refused } = usableNameservers(env.AGENT_SMITH_PROXY_DNS_UPSTREAM ? env.AGENT_SMITH_PROXY_DNS_UPSTREAM.split(',').map((s) => s.trim()).filter(Boolean) : resolv.nameservers);
  if (refused.length) log.warn({ refused: refused.map((r) => r.slice(0, 100)) }, 'dns: nameserver entries that are not IP addresses are ignored');
  if (!upstreamServers.length) log.warn({}, 'dns: no nameserver in resolv.conf: allowed names will get SERVFAIL');
  const dns = new DnsServer({ log, metrics, auditor, upstream: resolverUpstream(upstreamServers, DEFAULT_DNS_LIMITS.upstreamTimeoutMs) });
  const dnsPort = await dns.listen(ports.dnsPort);
  ownPorts.add(dnsPort);
  log.info({ port, healthPort: health.port, dnsPort, dnsUpstream: upstreamServers, addresses: ['127.0.0.1', '::1'] }, 'egress proxy listening');

  let lastReason = '';
  let timer: NodeJS.Timeout | undefined;
  const attempt = async (): Promise<void> => {
    try {
      const { runtime, contract } = await loadRuntime({ layout, env, log, metrics, limits });
      redactor = (line) => runtime.credentials.redact(line);
      auditor.setRedactor((s) => runtime.credentials.redact(s));
      proxy.setRuntime(runtime);
      dns.setPolicy(compileDnsPolicy(contract.egress.allow, contract.egress.inClusterHosts ?? [], resolv.search));
      metrics.ready.set(1);
      if (contract.egress.proxyPort !== port && env[POD_ENV.proxyPort] === undefined) {
        log.warn({ port, proxyPort: contract.egress.proxyPort }, 'egress.proxyPort differs from the bound port (read before the contract was readable); restart the container to move');
      }
      log.info(
        { allow: runtime.allowlist.entries, allowCidrs: runtime.allowCidrs, credentials: runtime.credentials.credentials.map((c) => ({ name: c.name, hosts: c.hosts, scheme: c.scheme, header: c.header, require: c.require })) },
        'egress proxy ready',
      );
    } catch (err) {
      const reason = err instanceof ConfigError || err instanceof ContractError ? err.message : `unexpected error while loading the configuration: ${(err as Error).name}`;
      proxy.setNotReady(reason);
      metrics.ready.set(0);
      if (reason !== lastReason) {
        log.error({ reason, retryMs: RETRY_MS }, 'egress proxy not ready');
        lastReason = reason;
      }
      timer = setTimeout(() => void attempt(), RETRY_MS);
    }
  };
  await attempt();

  const stop = (signal: NodeJS.Signals) => {
    log.info({ signal }, 'egress proxy stopping');
    clearTimeout(timer);
    void proxy
      .close(5_000)
      .then(() => dns.close())
      .then(() => health.close())
      .finally(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
