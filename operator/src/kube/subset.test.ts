import { describe, expect, it } from 'vitest';
import { isSubset } from './subset.ts';

describe('isSubset', () => {
  it('ignores fields the server added and compares the ones we set', () => {
    const desired = { metadata: { name: 'a', labels: { x: '1' } }, spec: { containers: [{ name: 'c', image: 'i' }] } };
    const live = { metadata: { name: 'a', labels: { x: '1', other: '2' }, uid: 'u' }, spec: { containers: [{ name: 'c', image: 'i', imagePullPolicy: 'Always' }] }, status: {} };
    expect(isSubset(desired, live)).toBe(true);
  });

  it('sees drift in a value, a missing key, or a list of another length', () => {
    const base = { spec: { replicas: 1, list: [1, 2] } };
    expect(isSubset(base, { spec: { replicas: 0, list: [1, 2] } })).toBe(false);
    expect(isSubset(base, { spec: { list: [1, 2] } })).toBe(false);
    expect(isSubset(base, { spec: { replicas: 1, list: [1] } })).toBe(false);
    expect(isSubset(base, { spec: { replicas: 1, list: [1, 2, 3] } })).toBe(false);
  });
});
