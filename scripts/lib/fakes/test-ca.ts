/**
 * A throwaway certificate authority for the HTTPS fakes (git server, upstream): a
 * self-signed ECDSA P-256 CA and server leaves it issues, valid from 5 minutes ago for a
 * day, made with @peculiar/x509 over WebCrypto as the operator's egress CA is.
 */
// @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
/** A positive 128-bit serial (RFC 5280 4.1.2.2: at most 20 octets, non-negative). */
const serial = () => Buffer.from(webcrypto.getRandomValues(new Uint8Array(16))).toString('hex').replace(/^[89a-f]/, '1');

/** A subjectAltName entry of a leaf. */
export type SubjectAltName = { type: 'dns'; value: string } | { type: 'ip'; value: string };

export interface TestCa {
  /** PEM of the CA certificate (what a client must trust), newline-terminated. */
  caPem: string;
  /** A serverAuth leaf for `names` (the first is also the CN), with its PKCS#8 key; PEM strings. */
  issue(names: readonly SubjectAltName[]): Promise<{ certPem: string; keyPem: string }>;
}

/** Makes a CA named `commonName`. */
export async function makeTestCa(commonName: string): Promise<TestCa> {
  const notBefore = new Date(Date.now() - 5 * 60_000);
  const notAfter = new Date(Date.now() + 86_400_000);
  const caKeys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${commonName}`,
    notBefore,
    notAfter,
    signingAlgorithm: ALG,
    keys: caKeys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  return {
    caPem: ca.toString('pem') + '\n',
    issue: async (names) => {
      const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']);
      const cert = await x509.X509CertificateGenerator.create({
        serialNumber: serial(),
        subject: `CN=${names[0]?.value ?? 'localhost'}`,
        issuer: ca.subject,
        notBefore,
        notAfter,
        signingAlgorithm: ALG,
        publicKey: keys.publicKey,
        signingKey: caKeys.privateKey,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
          new x509.SubjectAlternativeNameExtension(names.map((n) => ({ type: n.type, value: n.value }))),
          await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey),
        ],
      });
      const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
      return { certPem: cert.toString('pem') + '\n', keyPem: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY') + '\n' };
    },
  };
}
