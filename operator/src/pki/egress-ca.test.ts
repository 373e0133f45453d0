import { execFileSync } from 'node:child_process';
import { X509Certificate, createPrivateKey, createPublicKey, sign, verify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { generateEgressCa, permittedNames } from './egress-ca.ts';

describe('egress CA', () => {
  it('maps an allowlist to DNS name constraints', () => {
    expect(permittedNames(['*.anthropic.com', 'github.com:443', 'github.com', 'api.github.com'])).toEqual(['anthropic.com', 'api.github.com', 'github.com']);
    expect(permittedNames([])).toEqual(['invalid']);
  });

  it('is an ECDSA P-256 CA, path length 0, name-constrained to the allowlist, valid for the asked days', async () => {
    const now = new Date('2026-06-01T00:00:00Z');
    const ca = await generateEgressCa({ agent: 'team-a/devbot', allow: ['github.com', '*.anthropic.com'], now, validityDays: 365 });
    // Parsed by Node's own X.509 code (OpenSSL), not the library that wrote it.
    const cert = new X509Certificate(ca.certPem);
    expect(cert.ca).toBe(true);
    expect(cert.subject).toContain('agent-smith egress CA team-a/devbot');
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(new Date(cert.validTo).getTime()).toBe(now.getTime() + 365 * 86_400_000);
    expect(cert.verify(cert.publicKey)).toBe(true);
    // The private key matches the certificate.
    const key = createPrivateKey(ca.keyPem);
    const sig = sign('sha256', Buffer.from('x'), key);
    expect(verify('sha256', Buffer.from('x'), createPublicKey(ca.certPem), sig)).toBe(true);
    // Extensions, as OpenSSL reads them.
    const text = execFileSync('openssl', ['x509', '-noout', '-text'], { input: ca.certPem }).toString();
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign/);
    expect(text).toMatch(/X509v3 Name Constraints: critical\s+Permitted:\s+DNS:anthropic.com\s+DNS:github.com/);
  });
});
