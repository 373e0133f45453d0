import { createHash } from 'node:crypto';
import type { V1Secret } from '@kubernetes/client-node';
import type { Agent } from '../api/agent.ts';
import { permittedNames } from '../pki/egress-ca.ts';
import { ANNOTATION_CA_ALLOWLIST, ANNOTATION_CA_NOT_AFTER } from '../render/egress-ca-secret.ts';

/** CA lifetime in days. */
export const CA_VALIDITY_DAYS = 365;
/** Rotate a CA this many days before it expires. */
export const CA_ROTATE_BEFORE_DAYS = 30;

/** Hash of the name constraints an allowlist needs (order and ports do not matter). */
export function allowlistHash(agent: Agent): string {
  return createHash('sha256').update(permittedNames(agent.spec.egress.allow).join('\n')).digest('hex').slice(0, 16);
}

export type CaPlan = { action: 'keep'; certPem: string; keyPem: string } | { action: 'generate'; why: string };

/**
 * Whether the existing CA Secret can stay. Pure. A CA is made once and kept across
 * ordinary reconciles; it is replaced only when missing or malformed, within
 * CA_ROTATE_BEFORE_DAYS of expiry, or when the allowlist (hence its name constraints) changed.
 */
export function planEgressCa(existing: V1Secret | undefined, wantAllowHash: string, now: Date): CaPlan {
  const cert = existing?.data?.['ca.crt'];
  if (!existing || !cert || !existing.data?.['ca.key']) return { action: 'generate', why: 'no CA yet' };
  const notAfter = Date.parse(existing.metadata?.annotations?.[ANNOTATION_CA_NOT_AFTER] ?? '');
  if (!Number.isFinite(notAfter)) return { action: 'generate', why: 'the CA Secret has no valid expiry annotation' };
  if (notAfter - now.getTime() < CA_ROTATE_BEFORE_DAYS * 86_400_000) return { action: 'generate', why: `the CA expires ${new Date(notAfter).toISOString()}` };
  if (existing.metadata?.annotations?.[ANNOTATION_CA_ALLOWLIST] !== wantAllowHash) return { action: 'generate', why: 'the egress allowlist changed' };
  return { action: 'keep', certPem: Buffer.from(cert, 'base64').toString(), keyPem: Buffer.from(existing.data['ca.key'], 'base64').toString() };
}
