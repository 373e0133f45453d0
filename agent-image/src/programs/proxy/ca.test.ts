import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { SecureContext } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateEgressCa } from '../../../../operator/src/pki/egress-ca.ts';
import { LeafCertificates, loadEgressCa, RETIRE_MS, type EgressCa } from './ca.ts';

describe('LeafCertificates: a bounded LRU of TLS contexts', () => {
  let dir: string;
  let ca: EgressCa;

  beforeAll(async () => {
    const made = await generateEgressCa({ agent: 'default/testbot', allow: ['*.lru.test'], now: new Date(), validityDays: 30 });
    dir = mkdtempSync(path.join(tmpdir(), 'agent-smith-ca-test-'));
    writeFileSync(path.join(dir, 'ca.crt'), made.certPem);
    writeFileSync(path.join(dir, 'ca.key'), made.keyPem);
    ca = await loadEgressCa(dir);
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const host = (i: number) => ({ host: `n${i}.lru.test`, kind: 'dns' as const });

  it('keeps at most cacheSize contexts and retires (closes) every one it evicts, least recently used first', async () => {
    const retired: SecureContext[] = [];
    const leaves = await LeafCertificates.create({ ca, isAllowed: () => true, cacheSize: 3, validityMs: 3600_000 * 24, retire: (c) => retired.push(c) });
    const first = await leaves.context(host(0), 443);
    const second = await leaves.context(host(1), 443);
    await leaves.context(host(2), 443);
    expect(await leaves.context(host(0), 443)).toBe(first); // a hit makes n0 the most recent
    await leaves.context(host(3), 443);
    expect(leaves.size).toBe(3);
    expect(retired).toEqual([second]);
    for (let i = 4; i < 50; i++) await leaves.context(host(i), 443);
    expect(leaves.size).toBe(3);
    expect(leaves.minted).toBe(50);
    expect(retired).toHaveLength(47);
    expect(new Set(retired).size).toBe(47);
    // An evicted name is minted again, as a new context.
    const again = await leaves.context(host(1), 443);
    expect(again).not.toBe(second);
    expect(leaves.minted).toBe(51);
  });

  it('by default closes an evicted context RETIRE_MS later, freeing its certificate and key; kept ones stay usable', async () => {
    const leaves = await LeafCertificates.create({ ca, isAllowed: () => true, cacheSize: 1, validityMs: 3600_000 * 24 });
    const native = (c: SecureContext): { getCertificate(): Buffer | null } => c.context as { getCertificate(): Buffer | null };
    const evicted = await leaves.context(host(0), 443);
    const kept = await leaves.context(host(1), 443);
    expect(native(evicted).getCertificate()).not.toBeNull();
    await new Promise((r) => setTimeout(r, RETIRE_MS + 200));
    expect(native(evicted).getCertificate()).toBeNull();
    expect(native(kept).getCertificate()).not.toBeNull();
    expect(await leaves.context(host(1), 443)).toBe(kept);
  });
});
