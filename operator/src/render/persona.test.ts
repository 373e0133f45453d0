import { describe, expect, it } from 'vitest';
import { mergeJson } from '../../../agent-image/src/contract/settings.ts';
import { assemblePersona, personaJsonProblem } from './persona.ts';

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

  it('names the key and the field of a persona settings.json or mcp.json that cannot be used', () => {
    expect(personaJsonProblem({})).toBeUndefined();
    expect(personaJsonProblem({ settingsJson: '{"env":{"A":"1"},"hooks":{}}', mcpJson: '{"mcpServers":{"gh":{"type":"http"}}}' })).toBeUndefined();
    expect(personaJsonProblem({ settingsJson: '{oops' })).toBe('key "settings.json" is not valid JSON: a syntax error at position 1 (line 1 column 2)');
    // The parser quotes the text around the error; a token there must not reach a condition or an Event.
    expect(personaJsonProblem({ mcpJson: '{"mcpServers":{"gh":{"env":{"TOKEN":ghp_s3cr3tvalue}}}}' })).toBe('key "mcp.json" is not valid JSON: a syntax error');
    expect(personaJsonProblem({ settingsJson: '[1]' })).toBe('key "settings.json" must be a JSON object');
    expect(personaJsonProblem({ settingsJson: '{"hooks":[]}' })).toBe('key "settings.json": field hooks must be an object');
    expect(personaJsonProblem({ settingsJson: '{"env":{"N":1}}' })).toBe('key "settings.json": field env.N must be a string');
    expect(personaJsonProblem({ mcpJson: '{"mcpServers":[]}' })).toBe('key "mcp.json": field mcpServers must be an object');
    expect(personaJsonProblem({ mcpJson: '{"mcpServers":{"gh":"x"}}' })).toBe('key "mcp.json": field mcpServers.gh must be an object');
  });
});
