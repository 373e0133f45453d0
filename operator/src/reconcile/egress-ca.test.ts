import type { V1Secret } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { ANNOTATION_CA_ALLOWLIST, ANNOTATION_CA_NOT_AFTER } from '../render/egress-ca-secret.ts';
import { planEgressCa } from './egress-ca.ts';

const now = new Date('2026-06-01T00:00:00Z');
const secret = (notAfter: string, hash = 'h1'): V1Secret => ({
  metadata: { annotations: { [ANNOTATION_CA_NOT_AFTER]: notAfter, [ANNOTATION_CA_ALLOWLIST]: hash } },
  data: { 'ca.crt': Buffer.from('CERT').toString('base64'), 'ca.key': Buffer.from('KEY').toString('base64') },
});

describe('planEgressCa', () => {
  it('keeps a valid CA made for the same allowlist (never regenerated on an ordinary reconcile)', () => {
    expect(planEgressCa(secret('2027-01-01T00:00:00Z'), 'h1', now)).toEqual({ action: 'keep', certPem: 'CERT', keyPem: 'KEY' });
  });

  it('generates one when there is none, or it is malformed', () => {
    expect(planEgressCa(undefined, 'h1', now)).toMatchObject({ action: 'generate', why: 'no CA yet' });
    expect(planEgressCa({ ...secret('x'), data: {} }, 'h1', now)).toMatchObject({ action: 'generate' });
    expect(planEgressCa(secret('not a date'), 'h1', now)).toMatchObject({ action: 'generate' });
  });

  it('rotates within 30 days of expiry', () => {
    expect(planEgressCa(secret('2026-07-15T00:00:00Z'), 'h1', now)).toMatchObject({ action: 'keep' });
    expect(planEgressCa(secret('2026-06-20T00:00:00Z'), 'h1', now)).toMatchObject({ action: 'generate' });
    expect((planEgressCa(secret('2026-06-20T00:00:00Z'), 'h1', now) as { why: string }).why).toContain('expires');
  });

  it('replaces the CA when the allowlist, hence its name constraints, changed', () => {
    expect(planEgressCa(secret('2027-01-01T00:00:00Z', 'old'), 'h1', now)).toMatchObject({ action: 'generate', why: 'the egress allowlist changed' });
  });
});
