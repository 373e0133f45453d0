import { describe, expect, it } from 'vitest';
import { setConditions } from './conditions.ts';

describe('setConditions', () => {
  it('cuts a message longer than the CRD accepts, so the status write still goes through', () => {
    const problems = Array.from({ length: 200 }, (_, i) => `spec.egress.allow[${i}]: "${'a'.repeat(200)}.example.org" is not allowed`).join('; ');
    const [c] = setConditions(undefined, [{ type: 'SpecValid', status: 'False', reason: 'InvalidSpec', message: problems }], 1, '2026-12-07T00:00:00Z');
    expect(problems.length).toBeGreaterThan(32768);
    expect(Buffer.byteLength(c!.message)).toBeLessThanOrEqual(32768);
    expect(c!.message.startsWith('spec.egress.allow[0]')).toBe(true);
    expect(c!.message.endsWith('…')).toBe(true);
  });
});
