import { describe, expect, it } from 'vitest';
import { credentialStub, STUB_PREFIX } from './stubs.ts';

describe('credentialStub', () => {
  it('is stable for one CA, agent and credential, and differs when any of them changes', () => {
    const a = credentialStub('KEY-1', 'default/devbot', 'github');
    expect(a).toBe(credentialStub('KEY-1', 'default/devbot', 'github'));
    expect(a.startsWith(STUB_PREFIX)).toBe(true);
    expect(a.length).toBe(STUB_PREFIX.length + 43); // 256 bits, base64url
    const others = [credentialStub('KEY-2', 'default/devbot', 'github'), credentialStub('KEY-1', 'default/infrabot', 'github'), credentialStub('KEY-1', 'default/devbot', 'anthropic')];
    for (const o of others) expect(o).not.toBe(a);
    // "a/b" + "c" must not collide with "a" + "b/c".
    expect(credentialStub('K', 'ns/ab', 'c')).not.toBe(credentialStub('K', 'ns/a', 'bc'));
  });
});
