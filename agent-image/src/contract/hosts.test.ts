import { describe, expect, it } from 'vitest';
import { allowlistMatch, canonicalHost, HostError, parseHostPattern, patternCovers, patternsOverlap } from './hosts.ts';

const p = parseHostPattern;

describe('host patterns as the operator and the proxy both read them', () => {
  it.each([
    ['*.github.com', 'api.github.com', true],
    ['*.github.com', '*.api.github.com', true],
    ['*.github.com', 'github.com', false],
    ['*.api.github.com', '*.github.com', false],
    ['api.github.com', 'api.github.com:8443', true],
    ['*.amazonaws.com', 'sts.amazonaws.com', true],
    ['*.amazonaws.com', 'bucket.s3.amazonaws.com', false],
  ])('%s covers %s: %s', (outer, inner, covers) => {
    expect(patternCovers(p(outer), p(inner))).toBe(covers);
  });

  it.each([
    ['api.github.com', '*.github.com', true],
    ['*.github.com', '*.api.github.com', true],
    ['api.github.com', 'uploads.github.com', false],
    ['github.com', '*.github.com', false],
    ['*.amazonaws.com', 'bucket.s3.amazonaws.com', false],
  ])('%s and %s overlap: %s', (a, b, overlap) => {
    expect(patternsOverlap(p(a), p(b))).toBe(overlap);
    expect(patternsOverlap(p(b), p(a))).toBe(overlap);
  });

  it('admits ports 80 and 443 for an entry without a port, only its port otherwise', () => {
    const list = [p('matrix.example.org'), p('nats.example.org:4222')];
    expect(allowlistMatch(list, canonicalHost('matrix.example.org'), 443)?.entry).toBe('matrix.example.org');
    expect(allowlistMatch(list, canonicalHost('matrix.example.org'), 8448)).toBeUndefined();
    expect(allowlistMatch(list, canonicalHost('nats.example.org'), 4222)?.entry).toBe('nats.example.org:4222');
    expect(allowlistMatch(list, canonicalHost('nats.example.org'), 443)).toBeUndefined();
  });

  it('refuses what the proxy refuses, as a HostError naming the pattern', () => {
    for (const bad of ['*.com', 'a.example.com:0443', '10.0.0.1', '*.github.io', 'example.com.']) {
      expect(() => p(bad)).toThrow(HostError);
      expect(() => p(bad)).toThrow(`host pattern ${JSON.stringify(bad)} `);
    }
  });
});
