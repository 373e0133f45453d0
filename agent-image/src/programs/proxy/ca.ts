/**
 * Leaf certificates for intercepted TLS, minted from the per-agent egress CA
 * (operator/src/pki/egress-ca.ts: ECDSA P-256, name-constrained to the allowlist).
 *
 * - One ECDSA P-256 key pair for every leaf, made at start-up and kept in memory: a new
 *   host costs one signature (sub-millisecond), not a key generation.
 * - A leaf is minted only for a DNS name the caller has checked against the allowlist;
 *   the minter asks the allowlist again (defence in depth) and never mints for an IP
 *   literal (RFC 6066 section 3: SNI carries host names only).
 * - SAN = the one host name; validity from 5 minutes ago (clock skew) for 24 hours,
 *   never beyond the CA's; `basicConstraints cA:false`, `digitalSignature`, `serverAuth`,
 *   and an Authority Key Identifier (RFC 5280 section 4.2.1.1; Python 3.13's strict mode
 *   requires it).
 * - SecureContexts are kept in an LRU (size from the limits) and re-minted an hour before
 *   they expire; concurrent handshakes for one host share one mint.
 * - An evicted (or re-minted) SecureContext is closed {@link RETIRE_MS} later: its OpenSSL
 *   SSL_CTX (~40 kB, outside the V8 heap and not reported to it) is otherwise freed only
 *   when V8 collects the small JS wrapper, which a mostly idle heap does rarely; measured,
 *   10,000 distinct names took an LRU of 1000 unclosed contexts from 50 to 330 MB of RSS,
 *   closed ones to 97 MB (test/bench/proxy-memory.ts measures the whole proxy). Closing
 *   frees the SSL_CTX once no connection holds it (OpenSSL reference counts it per SSL), so
 *   established connections are unaffected; the delay covers a context handed out but not
 *   yet given to a TLS socket (server.ts always asks {@link LeafCertificates.context} again
 *   in the SNI callback, so a closed context is never chosen for a handshake).
 */
// @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';
import { createPrivateKey, createPublicKey, webcrypto, X509Certificate as NodeX509 } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createSecureContext, type SecureContext } from 'node:tls';
import * as x509 from '@peculiar/x509';
import { ConfigError } from './config.ts';
import { EGRESS_CA_CERT_NAME, EGRESS_CA_KEY_NAME } from '../../contract/contract.ts';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const RENEW_BEFORE_MS = 3600_000;
const SKEW_MS = 5 * 60_000;
/** How long an evicted SecureContext stays open (ms): far longer than a microtask gap, far shorter than a storm of mints fills memory. */
export const RETIRE_MS = 1_000;

/**
 * Frees the SSL_CTX of `context` now, instead of when V8 collects its wrapper: Node's
 * native SecureContext has `close()` (src/crypto/crypto_context.cc SecureContext::Close,
 * which resets its SSL_CTX pointer). Not in Node's documented API, so a Node without it is
 * left to the garbage collector.
 */
function closeContext(context: SecureContext): void {
  const native = (context as { context?: { close?: () => void } }).context;
  if (typeof native?.close === 'function') native.close();
}

/** The egress CA as loaded from its Secret: certificate and signing key. */
export interface EgressCa {
  cert: x509.X509Certificate;
  certPem: string;
  signingKey: webcrypto.CryptoKey;
  notAfter: Date;
}

/**
 * Reads `dir/ca.crt` and `dir/ca.key` (PEM certificate, PEM PKCS#8 ECDSA P-256 key).
 * Refused: missing files, a certificate that is not a CA or not valid now, a key that is
 * not P-256 or does not belong to the certificate.
 * @throws ConfigError naming the file
 */
export async function loadEgressCa(dir: string, now = new Date()): Promise<EgressCa> {
  const certFile = path.join(dir, EGRESS_CA_CERT_NAME);
  const keyFile = path.join(dir, EGRESS_CA_KEY_NAME);
  const read = (file: string) => {
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(`${file}: cannot read the egress CA (${(err as NodeJS.ErrnoException).code ?? 'error'}); is the egress CA Secret mounted?`);
    }
  };
  const certPem = read(certFile);
  const keyPem = read(keyFile);
  let cert: x509.X509Certificate;
  let nodeCert: NodeX509;
  try {
    cert = new x509.X509Certificate(certPem);
    nodeCert = new NodeX509(certPem);
  } catch (err) {
    throw new ConfigError(`${certFile}: not a PEM certificate (${(err as Error).message})`);
  }
  if (!nodeCert.ca) throw new ConfigError(`${certFile}: not a CA certificate (basicConstraints cA is not true)`);
  if (cert.notBefore.getTime() > now.getTime() + SKEW_MS || cert.notAfter.getTime() <= now.getTime()) {
    throw new ConfigError(`${certFile}: the egress CA is not valid now (valid ${cert.notBefore.toISOString()} to ${cert.notAfter.toISOString()}); the operator rotates it`);
  }
  let signingKey: webcrypto.CryptoKey;
  try {
    const pkcs8 = createPrivateKey(keyPem).export({ type: 'pkcs8', format: 'der' });
    signingKey = await webcrypto.subtle.importKey('pkcs8', pkcs8, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
    const fromKey = createPublicKey(keyPem).export({ type: 'spki', format: 'der' });
    const fromCert = nodeCert.publicKey.export({ type: 'spki', format: 'der' });
    if (!fromKey.equals(fromCert)) throw new Error('the key does not belong to ca.crt');
  } catch (err) {
    // The message of a key parser never contains key material; keep it short anyway.
    throw new ConfigError(`${keyFile}: not the ECDSA P-256 PKCS#8 key of ${certFile} (${(err as Error).message.slice(0, 120)})`);
  }
  return { cert, certPem, signingKey, notAfter: cert.notAfter };
}

/** The shared leaf key pair: public key for certificates, PEM private key for SecureContexts. */
interface LeafKey {
  publicKey: webcrypto.CryptoKey;
  keyPem: string;
}

async function makeLeafKey(): Promise<LeafKey> {
  const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']);
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { publicKey: keys.publicKey, keyPem: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY') };
}

/** A host the minter was asked for, as the policy module canonicalises it. */
export interface LeafHost {
  host: string;
  kind: 'dns' | 'ipv4' | 'ipv6';
}

/** Refused to mint (not allowed, or not a DNS name). */
export class MintRefused extends Error {
  override name = 'MintRefused';
}

export interface LeafCertificatesOptions {
  ca: EgressCa;
  /** The allowlist, asked again before every mint. */
  isAllowed: (host: LeafHost, port: number) => boolean;
  cacheSize: number;
  validityMs: number;
  /** Cache observations for metrics. */
  onLookup?: (hit: boolean) => void;
  onSize?: (size: number) => void;
  now?: () => Date;
  /** Closes an evicted context (default: after {@link RETIRE_MS}); a test hook. */
  retire?: (context: SecureContext) => void;
}

interface Entry {
  context: SecureContext;
  notAfter: number;
}

/** Mints and caches leaf certificates; see the module comment. */
export class LeafCertificates {
  readonly #opts: LeafCertificatesOptions;
  readonly #key: LeafKey;
  readonly #aki: x509.AuthorityKeyIdentifierExtension;
  readonly #cache = new Map<string, Entry>();
  readonly #inFlight = new Map<string, Promise<SecureContext>>();
  /** Leaves minted since start (for tests and metrics). */
  minted = 0;

  private constructor(opts: LeafCertificatesOptions, key: LeafKey, aki: x509.AuthorityKeyIdentifierExtension) {
    this.#opts = opts;
    this.#key = key;
    this.#aki = aki;
  }

  static async create(opts: LeafCertificatesOptions): Promise<LeafCertificates> {
    const ski = opts.ca.cert.getExtension(x509.SubjectKeyIdentifierExtension);
    const aki = ski ? new x509.AuthorityKeyIdentifierExtension(ski.keyId) : await x509.AuthorityKeyIdentifierExtension.create(opts.ca.cert.publicKey);
    return new LeafCertificates(opts, await makeLeafKey(), aki);
  }

  get size(): number {
    return this.#cache.size;
  }

  /**
   * The SecureContext presenting a leaf for `host`, minted on first use.
   * @throws MintRefused when `host` is not a DNS name or the allowlist does not allow it at `port`
   */
  async context(host: LeafHost, port: number): Promise<SecureContext> {
    if (host.kind !== 'dns') throw new MintRefused(`no certificate for an IP literal (${host.host})`);
    // Canonical names only: nothing that could change the subject DN or the SAN.
    if (!/^[a-z0-9_]([-a-z0-9_]*[a-z0-9_])?(\.[a-z0-9_]([-a-z0-9_]*[a-z0-9_])?)*$/.test(host.host)) throw new MintRefused('no certificate for a name that is not canonical');
    if (!this.#opts.isAllowed(host, port)) throw new MintRefused(`no certificate for ${host.host}:${port}: not in the egress allowlist`);
    const now = (this.#opts.now ?? (() => new Date()))().getTime();
    const hit = this.#cache.get(host.host);
    if (hit && hit.notAfter - now > RENEW_BEFORE_MS) {
      this.#cache.delete(host.host);
      this.#cache.set(host.host, hit);
      this.#opts.onLookup?.(true);
      return hit.context;
    }
    this.#opts.onLookup?.(false);
    let pending = this.#inFlight.get(host.host);
    if (!pending) {
      pending = this.#mint(host.host, now).finally(() => this.#inFlight.delete(host.host));
      this.#inFlight.set(host.host, pending);
    }
    return pending;
  }

  #retire(context: SecureContext): void {
    if (this.#opts.retire) this.#opts.retire(context);
    else setTimeout(() => closeContext(context), RETIRE_MS).unref();
  }

  async #mint(name: string, now: number): Promise<SecureContext> {
    const notBefore = new Date(now - SKEW_MS);
    const notAfter = new Date(Math.min(now + this.#opts.validityMs, this.#opts.ca.notAfter.getTime()));
    const leaf = await x509.X509CertificateGenerator.create({
      serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(16))).toString('hex').replace(/^[89a-f]/, '1'),
      subject: `CN=${name}`,
      issuer: this.#opts.ca.cert.subject,
      notBefore,
      notAfter,
      signingAlgorithm: ALG,
      publicKey: this.#key.publicKey,
      signingKey: this.#opts.ca.signingKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: name }]),
        this.#aki,
      ],
    });
    const context = createSecureContext({ cert: leaf.toString('pem'), key: this.#key.keyPem, minVersion: 'TLSv1.2' });
    this.minted++;
    const replaced = this.#cache.get(name);
    this.#cache.delete(name);
    if (replaced) this.#retire(replaced.context);
    this.#cache.set(name, { context, notAfter: notAfter.getTime() });
    while (this.#cache.size > this.#opts.cacheSize) {
      const [oldest, entry] = this.#cache.entries().next().value as [string, Entry];
      this.#cache.delete(oldest);
      this.#retire(entry.context);
    }
    this.#opts.onSize?.(this.#cache.size);
    return context;
  }
}
