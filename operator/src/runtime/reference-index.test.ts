import { describe, expect, it } from 'vitest';
import { objectKey, ReferenceIndex } from './reference-index.ts';

const secret = (name: string) => objectKey('Secret', 'ns', name);

describe('ReferenceIndex', () => {
  it('finds every owner of an object, and none for an object nobody names', () => {
    const index = new ReferenceIndex();
    index.set('ns/a', [secret('tokens'), objectKey('ConfigMap', 'ns', 'persona')]);
    index.set('ns/b', [secret('tokens')]);
    expect(index.owners(secret('tokens')).sort()).toEqual(['ns/a', 'ns/b']);
    expect(index.owners(objectKey('ConfigMap', 'ns', 'persona'))).toEqual(['ns/a']);
    expect(index.owners(secret('other'))).toEqual([]);
    // Same name, other kind or namespace: another object.
    expect(index.owners(objectKey('ConfigMap', 'ns', 'tokens'))).toEqual([]);
    expect(index.owners(objectKey('Secret', 'other', 'tokens'))).toEqual([]);
  });

  it('follows a changed spec: an object no longer named no longer finds the owner', () => {
    const index = new ReferenceIndex();
    index.set('ns/a', [secret('old'), secret('kept')]);
    index.set('ns/a', [secret('kept'), secret('new')]);
    expect(index.owners(secret('old'))).toEqual([]);
    expect(index.owners(secret('kept'))).toEqual(['ns/a']);
    expect(index.owners(secret('new'))).toEqual(['ns/a']);
    expect(index.size).toBe(2);
  });

  it('forgets a deleted owner entirely (no entry left behind)', () => {
    const index = new ReferenceIndex();
    index.set('ns/a', [secret('tokens')]);
    index.set('ns/b', [secret('tokens')]);
    index.delete('ns/a');
    expect(index.owners(secret('tokens'))).toEqual(['ns/b']);
    index.delete('ns/b');
    expect(index.size).toBe(0);
  });
});
