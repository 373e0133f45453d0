/**
 * The upstream leg: which address to dial for a policy-checked host (resolved once per
 * client connection and host, vetted by policy.ts `resolveChecked`, and only that
 * address dialed), and the keep-alive agent that dials it.
 *
 * One agent per client connection and upstream (host, port, scheme), at most one socket:
 * requests from different client connections never share an upstream socket (a desync
 * on one cannot reach another), pipelined requests keep their order, and the upstream
 * connection lives no longer than the client's.
 *
 * Upstream TLS: SNI = the canonical host (RFC 6066 section 3), certificate checked
 * against that host (`tls.checkServerIdentity`, RFC 6125) with `rejectUnauthorized`, the
 * system roots plus the extra CAs of spec.egress.upstreamCaConfigMapRef (the file
 * AGENT_SMITH_UPSTREAM_CA names), ALPN http/1.1 only, TLS 1.2 or newer.
 */
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import tls from 'node:tls';
import { resolveChecked, PolicyError, type CanonicalHost } from './policy.ts';

/** Where and how to reach one upstream. */
export interface UpstreamLeg {
  address: string;
  family: 4 | 6;
  /** The port dialed (the policy's). */
  port: number;
  agent: http.Agent;
  tls: boolean;
}

export interface UpstreamOptions {
  allowCidrs: readonly string[];
  /**
   * The upstream TLS context: system roots (plus the CAs of
   * spec.egress.upstreamCaConfigMapRef, AGENT_SMITH_UPSTREAM_CA), TLS 1.2 or newer. Built once (see {@link upstreamSecureContext}): a context with the whole root
   * store costs milliseconds, too much for every new connection.
   */
  secureContext: tls.SecureContext;
  /** Ports of this proxy (listener and health): never dialed on a loopback address. */
  ownPorts: ReadonlySet<number>;
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  maxHeaderBytes: number;
}

function isLocalAddress(address: string): boolean {
  if (isIP(address) === 4) return address.startsWith('127.') || address.startsWith('0.');
  const a = address.toLowerCase();
  return a === '::1' || a === '::' || a.startsWith('::ffff:127.') || a.startsWith('::ffff:0.');
}

/** The upstream TLS context: the system roots plus `extraCa` (PEM), TLS 1.2 or newer. */
export function upstreamSecureContext(extraCa?: readonly string[]): tls.SecureContext {
  return tls.createSecureContext({ minVersion: 'TLSv1.2', ...(extraCa?.length ? { ca: [...tls.rootCertificates, ...extraCa] } : {}) });
}

/** The upstream legs of one client connection; `close()` when the connection closes. */
export class UpstreamPool {
  readonly #opts: UpstreamOptions;
  readonly #legs = new Map<string, Promise<UpstreamLeg>>();
  #closed = false;

  constructor(opts: UpstreamOptions) {
    this.#opts = opts;
  }

  /**
   * The leg for `host:port` over TLS or plain TCP, resolving and vetting on first use.
   * @throws PolicyError `dns_failure`, `forbidden_address` (including this proxy's own
   *   ports on a local address: a request loop)
   */
  leg(host: CanonicalHost, port: number, useTls: boolean): Promise<UpstreamLeg> {
    const key = `${useTls ? 'tls' : 'tcp'}|${host.host}|${port}`;
    let leg = this.#legs.get(key);
    if (!leg) {
      leg = this.#open(host, port, useTls);
      // A failed vetting is not cached: the next request resolves again.
      leg.catch(() => this.#legs.get(key) === leg && this.#legs.delete(key));
      this.#legs.set(key, leg);
    }
    return leg;
  }

  /** Forgets a leg after an upstream error, so the next request resolves and vets again. */
  forget(host: CanonicalHost, port: number, useTls: boolean): void {
    const key = `${useTls ? 'tls' : 'tcp'}|${host.host}|${port}`;
    const leg = this.#legs.get(key);
    this.#legs.delete(key);
    void leg?.then((l) => l.agent.destroy(), () => undefined);
  }

  async #open(host: CanonicalHost, port: number, useTls: boolean): Promise<UpstreamLeg> {
    const o = this.#opts;
    const { address, family } = await resolveChecked(host, o.allowCidrs);
    if (isLocalAddress(address) && o.ownPorts.has(port)) {
      throw new PolicyError('forbidden_address', `${host.host}:${port} resolves to this proxy (${address}:${port}); refusing a request loop`);
    }
    if (this.#closed) throw new PolicyError('policy_error', 'client connection closed');
    const common = { keepAlive: true, maxSockets: 1, maxFreeSockets: 1, timeout: o.idleTimeoutMs, noDelay: true };
    const agent = useTls
      ? new https.Agent({
          ...common,
          rejectUnauthorized: true,
          secureContext: o.secureContext,
          // Pin the identity to the policy's host, whatever Host header a request carries.
          checkServerIdentity: (_name: string, cert: tls.PeerCertificate) => tls.checkServerIdentity(host.host, cert),
          ALPNProtocols: ['http/1.1'],
          ...(host.kind === 'dns' ? { servername: host.host } : {}),
        })
      : new http.Agent(common);
    return { address, family, port, agent, tls: useTls };
  }

  /** Closes every upstream socket of this client connection. */
  close(): void {
    this.#closed = true;
    for (const leg of this.#legs.values()) void leg.then((l) => l.agent.destroy(), () => undefined);
    this.#legs.clear();
  }
}

/**
 * Options for `http(s).request` on a leg: the vetted address (never the name), SNI and
 * certificate identity from the policy's host, no automatic Host (the caller sets it).
 */
export function requestOptions(leg: UpstreamLeg, host: CanonicalHost, opts: { method: string; path: string; headers: string[]; idleTimeoutMs: number; maxHeaderBytes: number }): https.RequestOptions {
  return {
    host: leg.address,
    family: leg.family,
    port: leg.port,
    method: opts.method,
    path: opts.path,
    headers: opts.headers,
    setHost: false,
    agent: leg.agent,
    timeout: opts.idleTimeoutMs,
    maxHeaderSize: opts.maxHeaderBytes,
    insecureHTTPParser: false,
    ...(leg.tls && host.kind === 'dns' ? { servername: host.host } : {}),
  };
}

/** Classifies an upstream error for metrics and the 502/504 answer. */
export function upstreamErrorKind(err: NodeJS.ErrnoException): 'tls' | 'timeout' | 'connect' | 'reset' | 'protocol' {
  const code = err.code ?? '';
  if (code === 'ETIMEDOUT' || code === 'ESOCKETTIMEDOUT' || code === 'UPSTREAM_TIMEOUT') return 'timeout';
  if (code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL') || /CERT|SELF_SIGNED|UNABLE_TO|HOSTNAME|ALTNAME/.test(code)) return 'tls';
  if (code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'EADDRNOTAVAIL') return 'connect';
  if (code === 'ECONNRESET' || code === 'EPIPE' || code === 'ERR_STREAM_PREMATURE_CLOSE') return 'reset';
  return 'protocol';
}
