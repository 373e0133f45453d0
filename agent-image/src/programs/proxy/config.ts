/**
 * The egress proxy's configuration: the pod contract's `egress` section, the real
 * credential values (one file per credential under CREDENTIALS_DIR), limits, the extra
 * upstream CAs of the Agent's spec.egress.upstreamCaConfigMapRef (AGENT_SMITH_UPSTREAM_CA).
 *
 * Every error is a {@link ConfigError} whose message names the file or field and never a
 * value: the proxy logs it as the reason it is not ready.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseCaBundle, UPSTREAM_CA_ENV } from '../../contract/ca-bundle.ts';
import { PROXY_DNS_PORT, PROXY_HEALTH_PORT, PROXY_PORT, type PodContract } from '../../contract/contract.ts';
import { POD_ENV } from '../../contract/pod.ts';
import type { Logger } from '../../lib/log.ts';
import type { Credential } from './swap.ts';

/** The proxy cannot serve: a file is missing or invalid. The message names it, never a value. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Resource limits. Times in ms, sizes in bytes. */
export interface ProxyLimits {
  /**
   * Client connections open at once (explicit, tunnels and transparent). At the limit a
   * new connection closes the one that has waited longest with no request in flight
   * (server.ts); it is refused only when every connection has one.
   */
  maxConnections: number;
  /**
   * From accept (or the CONNECT 200) to the first byte and a finished TLS handshake: a
   * deadline, not an idle timer (timeouts.ts enforces every time limit here).
   */
  handshakeTimeoutMs: number;
  /** Request line plus header section (Node's maxHeaderSize); upstream response heads too. */
  maxHeaderBytes: number;
  /**
   * Time for a client to send a complete request head, from the hand-off to the HTTP
   * parser or from the first byte after a keep-alive pause: a deadline (slowloris).
   */
  headersTimeoutMs: number;
  /** A client or upstream socket with no traffic this long while a request is in flight is closed. */
  idleTimeoutMs: number;
  /** Keep-alive client connections with nothing read for this long between requests are closed. */
  keepAliveTimeoutMs: number;
  /** TCP connect plus TLS handshake to an upstream. */
  upstreamConnectTimeoutMs: number;
  /**
   * Leaf certificates and their TLS contexts kept (LRU; ca.ts closes an evicted one).
   * Each costs ~40 kB outside the V8 heap; a miss costs one ECDSA signature.
   */
  certCacheSize: number;
  /** Lifetime of a minted leaf certificate. */
  leafValidityMs: number;
  /** Longest real credential value accepted (bytes): bounds the scanners' hold-back. */
  maxSecretBytes: number;
  /**
   * A compressed response body from a credential host is read whole and decoded to be
   * scanned: larger than this (bytes, compressed or decoded, each layer) it is refused.
   * Bounds a decompression bomb and the memory one response can hold.
   */
  maxDecodedBytes: number;
  /**
   * Bytes all such whole-body reads hold at once, over every connection (compressed bodies
   * and their decoded layers): past it a response is answered 503 `scan_busy` rather than
   * read. Keeps the proxy inside its container's memory limit whatever the agent fetches.
   */
  maxScanBytesInFlight: number;
}

export const DEFAULT_LIMITS: ProxyLimits = {
  maxConnections: 256,
  handshakeTimeoutMs: 10_000,
  maxHeaderBytes: 16 * 1024,
  headersTimeoutMs: 10_000,
  idleTimeoutMs: 5 * 60_000,
  keepAliveTimeoutMs: 30_000,
  upstreamConnectTimeoutMs: 10_000,
  certCacheSize: 100,
  leafValidityMs: 24 * 3600_000,
  maxSecretBytes: 8 * 1024,
  maxDecodedBytes: 8 * 1024 * 1024,
  maxScanBytesInFlight: 48 * 1024 * 1024,
};

/**
 * The proxy's limits: {@link DEFAULT_LIMITS} with the fields of AGENT_SMITH_PROXY_LIMITS,
 * a JSON object of {@link ProxyLimits} fields (positive integers, in the units named
 * there), e.g. `{"headersTimeoutMs": 5000, "maxConnections": 512}`, for tuning a pod's
 * proxy and for tests. Unset or empty: the defaults.
 * @throws ConfigError for JSON that is not an object, an unknown field, or a value that is
 *   not a positive integer
 */
export function limitsFromEnv(env: NodeJS.ProcessEnv): ProxyLimits {
  const text = env.AGENT_SMITH_PROXY_LIMITS;
  if (!text) return DEFAULT_LIMITS;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`AGENT_SMITH_PROXY_LIMITS: not JSON (${(err as Error).message})`);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError('AGENT_SMITH_PROXY_LIMITS: must be a JSON object of limit name -> positive integer');
  const limits: ProxyLimits = { ...DEFAULT_LIMITS };
  for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
    if (!Object.hasOwn(DEFAULT_LIMITS, name)) throw new ConfigError(`AGENT_SMITH_PROXY_LIMITS: unknown limit ${JSON.stringify(name).slice(0, 60)} (known: ${Object.keys(DEFAULT_LIMITS).join(', ')})`);
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) throw new ConfigError(`AGENT_SMITH_PROXY_LIMITS: ${name} must be a positive integer`);
    limits[name as keyof ProxyLimits] = value;
  }
  return limits;
}

/** Names that must never carry a credential: framing, routing and hop-by-hop fields. */
const FORBIDDEN_CREDENTIAL_HEADERS = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'upgrade',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'expect',
]);

/**
 * Reads the real value of each contract credential from `dir/<name>`: the file's
 * content minus one trailing newline (`kubectl create secret --from-file` keeps it).
 *
 * Refused (ConfigError naming the file or credential): a missing or unreadable file; an
 * empty value; fewer than 8 or more than `maxBytes` bytes; characters a header value
 * cannot carry (RFC 9110 section 5.5: visible ASCII, space, tab; no CR, LF, NUL); a value
 * equal to, containing or contained in any stub or other value (the swap and the scrubber
 * could not tell them apart); two credentials with one name or one stub; a credential
 * header that is a framing or hop-by-hop field.
 */
export function readCredentials(specs: PodContract['egress']['credentials'], dir: string, maxBytes = DEFAULT_LIMITS.maxSecretBytes): Credential[] {
  const out: Credential[] = [];
  for (const spec of specs) {
    const where = `egress.credentials[${spec.name}]`;
    if (!/^[A-Za-z0-9][-._A-Za-z0-9]*$/.test(spec.name) || spec.name.includes('..')) throw new ConfigError(`${where}: the name is not a file name`);
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(spec.header)) throw new ConfigError(`${where}.header: "${spec.header}" is not an HTTP field name (RFC 9110 section 5.1)`);
    if (FORBIDDEN_CREDENTIAL_HEADERS.has(spec.header.toLowerCase()) || spec.header.toLowerCase().startsWith('proxy-')) {
      throw new ConfigError(`${where}.header: ${spec.header} is a framing or hop-by-hop field and cannot carry a credential`);
    }
    const file = path.join(dir, spec.name);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(`${file}: cannot read the value of credential ${spec.name} (${(err as NodeJS.ErrnoException).code ?? 'error'}); is its Secret key mounted?`);
    }
    const real = text.endsWith('\r\n') ? text.slice(0, -2) : text.endsWith('\n') ? text.slice(0, -1) : text;
    if (!real) throw new ConfigError(`${file}: the value of credential ${spec.name} is empty`);
    if (Buffer.byteLength(real) < 8) throw new ConfigError(`${file}: the value of credential ${spec.name} is shorter than 8 bytes; that is not a credential and would make response scrubbing mangle ordinary text`);
    if (Buffer.byteLength(real) > maxBytes) throw new ConfigError(`${file}: the value of credential ${spec.name} is longer than ${maxBytes} bytes`);
    if (!/^[\x21-\x7e]([\x20-\x7e\t]*[\x21-\x7e])?$/.test(real)) {
      throw new ConfigError(`${file}: the value of credential ${spec.name} has characters a header cannot carry (line breaks inside, control characters, non-ASCII, or surrounding spaces)`);
    }
    out.push({ name: spec.name, hosts: spec.hosts, scheme: spec.scheme, header: spec.header, stub: spec.stub, require: spec.require, real, allowWebSocket: spec.allowWebSocket });
  }
  const names = new Set<string>();
  for (const c of out) {
    if (names.has(c.name)) throw new ConfigError(`egress.credentials: the name ${c.name} appears twice`);
    names.add(c.name);
  }
  const values = out.flatMap((c) => [
    { what: `the stub of ${c.name}`, v: c.stub },
    { what: `the value of ${c.name} (${path.join(dir, c.name)})`, v: c.real },
  ]);
  for (const [i, a] of values.entries()) {
    for (const [j, b] of values.entries()) {
      if (i !== j && a.v.includes(b.v)) throw new ConfigError(`${b.what} is ${a.v === b.v ? 'equal to' : 'contained in'} ${a.what}; the proxy could not tell them apart`);
    }
  }
  return out;
}

/**
 * The extra CA certificates the proxy trusts for upstream TLS besides the system roots
 * (a TLS-inspecting corporate proxy, GitHub Enterprise Server on a private CA): the PEM
 * file AGENT_SMITH_UPSTREAM_CA names ({@link UPSTREAM_CA_ENV}), checked by
 * parseCaBundle (contract/ca-bundle.ts, the operator's check too). Logged with each subject, so a pod that trusts more than the
 * public roots says so. Unset or empty: the system roots only.
 * @throws ConfigError when the file is unreadable, holds no certificate or a block that
 *   is not a certificate; the message names the file and spec.egress.upstreamCaConfigMapRef
 *   (the proxy's /readyz shows it, and the pod does not become ready)
 */
export function upstreamCaFromEnv(env: NodeJS.ProcessEnv, log: Logger): string[] | undefined {
  const file = env[UPSTREAM_CA_ENV];
  if (!file) return undefined;
  const where = `${file} (spec.egress.upstreamCaConfigMapRef, ${UPSTREAM_CA_ENV})`;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${where}: cannot read it (${(err as NodeJS.ErrnoException).code ?? 'error'}); is the ConfigMap key mounted?`);
  }
  let bundle;
  try {
    bundle = parseCaBundle(text);
  } catch (err) {
    throw new ConfigError(`${where}: ${(err as Error).message}`);
  }
  log.warn({ file, subjects: bundle.subjects }, 'upstream TLS also trusts the CAs of spec.egress.upstreamCaConfigMapRef');
  return bundle.pems;
}

function portFromEnv(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const v = env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new ConfigError(`${name}=${v}: not a TCP port (0 picks a free one)`);
  return n;
}

/**
 * The proxy's listening port: AGENT_SMITH_PROXY_PORT (0: a free port), else the
 * contract's `egress.proxyPort`, else PROXY_PORT (15001). The health port:
 * AGENT_SMITH_PROXY_HEALTH_PORT, else PROXY_HEALTH_PORT (15021). The DNS port (UDP and
 * TCP): AGENT_SMITH_PROXY_DNS_PORT (0: a free port), else PROXY_DNS_PORT (15053).
 * @throws ConfigError for a malformed variable
 */
export function listenPorts(env: NodeJS.ProcessEnv, contract: PodContract | undefined): { port: number; healthPort: number; dnsPort: number } {
  return {
    dnsPort: portFromEnv(env, POD_ENV.proxyDnsPort) ?? PROXY_DNS_PORT,
    port: portFromEnv(env, POD_ENV.proxyPort) ?? contract?.egress.proxyPort ?? PROXY_PORT,
    healthPort: portFromEnv(env, 'AGENT_SMITH_PROXY_HEALTH_PORT') ?? PROXY_HEALTH_PORT,
  };
}

