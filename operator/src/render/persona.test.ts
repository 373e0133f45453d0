import { describe, expect, it } from 'vitest';
import { assemblePersona, mergeJson } from './persona.ts';

describe('persona assembly', () => {
  it('merges settings: the persona wins on scalars, lists add up without duplicates', () => {
    expect(mergeJson({ a: 1, p: { allow: ['Read'] } }, { a: 2, p: { allow: ['Read', 'Edit'] } })).toEqual({ a: 2, p: { allow: ['Read', 'Edit'] } });
  });

  it('says so when no persona was given', () => {
    const p = assemblePersona('x', { claudeMd: '# Rules', settingsJson: '{}' }, { subagents: {} });
    expect(p.claudeMd).toContain('# You are x');
    expect(p.claudeMd).toContain('No persona was given');
    expect(JSON.parse(p.mcpJson)).toEqual({ mcpServers: {} });
  });

  it('refuses a settings.json that is not an object', () => {
    expect(() => assemblePersona('x', { claudeMd: '', settingsJson: '[]' }, { subagents: {} })).toThrow(/agents\/_shared\/settings.json must be a JSON object/);
  });
});
