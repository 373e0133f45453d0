import { describe, expect, it } from 'vitest';
import { PodContract } from '../../contract/contract.ts';
import { githubToken } from './client.ts';

const STUB_A = 'stub-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';
const STUB_B = 'stub-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb';

const contract = (credentials: Array<{ name: string; hosts: string[]; stub: string }>) =>
  PodContract.parse({
    version: 1,
    agent: { name: 'devbot', namespace: 'default' },
    harness: { kind: 'claude', model: 'm', args: [] },
    repos: [],
    workdir: '/workspace',
    files: { claudeMd: 'CLAUDE.md', settingsJson: 'settings.json', mcpJson: 'mcp.json', subagents: {} },
    egress: { allow: [], allowCidrs: [], enforcement: 'proxy-env', proxyPort: 15001, credentials: credentials.map((c) => ({ ...c, scheme: 'bearer', header: 'Authorization' })) },
  });

describe('githubToken', () => {
  it('is the stub of the credential the proxy would pick for the API host, by the proxy\'s own pattern rules', () => {
    const c = contract([
      { name: 'other', hosts: ['uploads.github.com'], stub: STUB_B },
      { name: 'github', hosts: ['*.github.com:443'], stub: STUB_A },
    ]);
    expect(githubToken(c, 'https://api.github.com', {})).toBe(STUB_A);
    expect(githubToken(c, 'https://API.GitHub.com/', {})).toBe(STUB_A);
    // A wildcard matches strict subdomains only, as in the proxy.
    expect(githubToken(contract([{ name: 'github', hosts: ['*.github.com'], stub: STUB_A }]), 'https://github.com/api/v3', { GH_TOKEN: 'env-token' })).toBe('env-token');
  });

  it('falls back to GH_TOKEN, then GITHUB_TOKEN, and is undefined without either', () => {
    const c = contract([]);
    expect(githubToken(c, 'https://api.github.com', { GH_TOKEN: 'a', GITHUB_TOKEN: 'b' })).toBe('a');
    expect(githubToken(c, 'https://api.github.com', { GITHUB_TOKEN: 'b' })).toBe('b');
    expect(githubToken(c, 'https://api.github.com', {})).toBeUndefined();
  });

  it('throws when two credentials match the API host (the proxy would refuse the request)', () => {
    const c = contract([
      { name: 'one', hosts: ['api.github.com'], stub: STUB_A },
      { name: 'two', hosts: ['*.github.com'], stub: STUB_B },
    ]);
    expect(() => githubToken(c, 'https://api.github.com', {})).toThrow(/both match api\.github\.com/);
  });
});
