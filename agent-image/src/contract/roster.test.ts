import { describe, expect, it } from 'vitest';
import { parseRoster } from './roster.ts';

describe('parseRoster', () => {
  it('keeps the good entries of a roster with bad ones among them', () => {
    const text = JSON.stringify({ team: 't', agents: [null, 7, { name: 'a', matrix: '@a:x', github: 'a-gh' }, { matrix: '@nameless:x' }, { name: 'b', matrix: 42 }] });
    expect(parseRoster(text)).toEqual([{ name: 'a', matrix: '@a:x', github: 'a-gh' }, { name: 'b' }]);
  });

  it('reads a roster without agents as an empty team, and throws on text that is not JSON', () => {
    expect(parseRoster('{"team":"t"}')).toEqual([]);
    expect(parseRoster('null')).toEqual([]);
    expect(() => parseRoster('{')).toThrow(SyntaxError);
  });
});
