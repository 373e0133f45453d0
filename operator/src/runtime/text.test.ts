import { describe, expect, it } from 'vitest';
import { cutToBytes } from './text.ts';

describe('cutToBytes', () => {
  it('leaves text within the limit alone', () => {
    expect(cutToBytes('ready', 1024)).toBe('ready');
  });

  it('cuts by UTF-8 bytes, never inside a character, and marks the cut', () => {
    const cut = cutToBytes('ä'.repeat(600), 1024);
    expect(Buffer.byteLength(cut)).toBeLessThanOrEqual(1024);
    expect(cut).toBe(`${'ä'.repeat(510)}…`);
    const emoji = cutToBytes('👀'.repeat(10), 13);
    expect(emoji).toBe('👀👀…');
  });
});
