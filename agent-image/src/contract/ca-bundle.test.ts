import { describe, expect, it } from 'vitest';
import { MAX_CA_BUNDLE_BYTES, parseCaBundle } from './ca-bundle.ts';

describe('parseCaBundle', () => {
  it('refuses a bundle over its size limit before scanning it', () => {
    expect(() => parseCaBundle('x'.repeat(MAX_CA_BUNDLE_BYTES + 1))).toThrow(/larger than 512 KiB/);
  });

  it('finds no certificate in BEGIN lines that never end (and scans them all: a ConfigMap-sized input of them)', () => {
    const hostile = '-----BEGIN CERTIFICATE-----\nAAAA\n'.repeat(Math.floor(MAX_CA_BUNDLE_BYTES / 40));
    expect(() => parseCaBundle(hostile)).toThrow(/no PEM certificate/);
  });

  it('names the block that does not parse, without quoting it', () => {
    const text = '# a comment\n-----BEGIN CERTIFICATE-----\nc2VjcmV0LXRleHQ=\n-----END CERTIFICATE-----\n';
    expect(() => parseCaBundle(text)).toThrow(/^certificate 1 of 1 is not a valid certificate/);
    try {
      parseCaBundle(text);
    } catch (err) {
      expect((err as Error).message).not.toContain('c2VjcmV0LXRleHQ=');
    }
  });
});
