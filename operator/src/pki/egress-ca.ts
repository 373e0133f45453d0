/**
 * The per-agent egress CA: the certificate authority the egress proxy mints leaf
 * certificates from when it intercepts TLS (DESIGN.md flow 5). ECDSA P-256, self-signed,
 * `pathLen 0`, and name-constrained (RFC 5280 section 4.2.1.10) to the Agent's egress
 * allowlist, so that even a stolen key cannot vouch for any other host to a client that
 * enforces name constraints.
 *
 * Built with @peculiar/x509 (certificate) and @peculiar/asn1-x509 (the NameConstraints
 * extension, which @peculiar/x509 has no class for).
 */
// @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { GeneralName, GeneralSubtree, GeneralSubtrees, NameConstraints, id_ce_nameConstraints } from '@peculiar/asn1-x509';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** A name used when the allowlist is empty: the CA may then vouch for nothing real (RFC 6761 `.invalid`). */
export const NOTHING_ALLOWED = 'invalid';

export interface EgressCa {
  /** PEM certificate. */
  certPem: string;
  /** PEM PKCS#8 private key. Never logged; mounted only into the egress-proxy container. */
  keyPem: string;
  notAfter: Date;
}

/**
 * The DNS name constraints for an allowlist: `*.example.com` and `example.com:443` both
 * become `example.com` (a dNSName constraint covers the name and its subdomains).
 * Sorted and de-duplicated, so the same allowlist always gives the same list.
 */
export function permittedNames(allow: readonly string[]): string[] {
  const names = new Set(allow.map((a) => a.replace(/^\*\./, '').replace(/:\d+$/, '')).filter(Boolean));
  return names.size ? [...names].sort() : [NOTHING_ALLOWED];
}

/**
 * Generates a new egress CA.
 * @param opts.agent `namespace/name`, used in the subject
 * @param opts.allow egress allowlist entries (spec.egress.allow)
 * @param opts.now start of validity
 * @param opts.validityDays lifetime in days
 */
export async function generateEgressCa(opts: { agent: string; allow: readonly string[]; now: Date; validityDays: number }): Promise<EgressCa> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']));
  const constraints = new NameConstraints({
    permittedSubtrees: new GeneralSubtrees(permittedNames(opts.allow).map((n) => new GeneralSubtree({ base: new GeneralName({ dNSName: n }) }))),
  });
  const notBefore = new Date(opts.now.getTime() - 5 * 60_000); // tolerate small clock skew
  const notAfter = new Date(opts.now.getTime() + opts.validityDays * 86_400_000);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(16))).toString('hex').replace(/^[89a-f]/, '1'),
    name: `CN=agent-smith egress CA ${opts.agent}, O=agent-smith`,
    notBefore,
    notAfter,
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      new x509.Extension(id_ce_nameConstraints, true, AsnConvert.serialize(constraints)),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return {
    certPem: cert.toString('pem') + '\n',
    keyPem: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY') + '\n',
    notAfter,
  };
}

/** Validity end of a PEM certificate. @throws Error when the PEM is not a certificate. */
export function certificateNotAfter(certPem: string): Date {
  return new x509.X509Certificate(certPem).notAfter;
}
