import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { PodContract } from '../../contract/contract.ts';
import { ghHosts, ghHostsFile, writeGhHosts } from './gh.ts';

const STUB_COM = 'stub-com-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';
const STUB_GHES = 'stub-ghes-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb';

const contract = (credentials: Array<{ name: string; hosts: string[]; stub: string }>, github?: { login: string; apiUrl?: string }) =>
  PodContract.parse({
    version: 1,
    agent: { name: 'devbot', namespace: 'default' },
    harness: { kind: 'claude', model: 'm', args: [] },
    repos: [],
    workdir: '/workspace',
    files: { claudeMd: 'CLAUDE.md', settingsJson: 'settings.json', subagents: {} },
    ...(github ? { github: { ...github, watchPullRequests: { enabled: false, intervalSeconds: 300 } } } : {}),
    egress: { allow: [], allowCidrs: [], enforcement: 'proxy-env', proxyPort: 15001, credentials: credentials.map((c) => ({ ...c, scheme: 'bearer', header: 'Authorization' })) },
  });

describe('ghHosts', () => {
  it('logs gh in on github.com with the stub of the credential covering api.github.com, with the login when the contract has one', () => {
    const creds = [{ name: 'github', hosts: ['*.github.com'], stub: STUB_COM }];
    expect(ghHosts(contract(creds)).hosts).toEqual([{ host: 'github.com', apiHost: 'api.github.com', credential: 'github', token: STUB_COM }]);
    expect(ghHosts(contract(creds, { login: 'devbot' })).hosts).toEqual([{ host: 'github.com', apiHost: 'api.github.com', credential: 'github', token: STUB_COM, user: 'devbot' }]);
  });

  it('adds the GitHub Enterprise host of github.apiUrl, with its own credential and the login; github.com only when a credential covers it', () => {
    const ghes = { name: 'ghes', hosts: ['ghe.corp.example'], stub: STUB_GHES };
    const github = { login: 'devbot', apiUrl: 'https://GHE.corp.example/api/v3' };
    expect(ghHosts(contract([ghes], github))).toEqual({
      hosts: [{ host: 'ghe.corp.example', apiHost: 'ghe.corp.example', credential: 'ghes', token: STUB_GHES, user: 'devbot' }],
      uncovered: [],
    });
    const both = ghHosts(contract([ghes, { name: 'github', hosts: ['api.github.com'], stub: STUB_COM }], github));
    expect(both.hosts.map((h) => [h.host, h.token, h.user])).toEqual([
      ['ghe.corp.example', STUB_GHES, 'devbot'],
      ['github.com', STUB_COM, undefined],
    ]);
  });

  it('names the API host no credential covers when the contract has GitHub, and stays quiet without GitHub', () => {
    expect(ghHosts(contract([], { login: 'devbot', apiUrl: 'https://ghe.corp.example/api/v3' }))).toEqual({ hosts: [], uncovered: ['ghe.corp.example'] });
    expect(ghHosts(contract([], { login: 'devbot' }))).toEqual({ hosts: [], uncovered: ['api.github.com'] });
    // A credential for github.com (git) alone does not cover the API host.
    expect(ghHosts(contract([{ name: 'git', hosts: ['github.com'], stub: STUB_COM }]))).toEqual({ hosts: [], uncovered: [] });
  });
});

describe('writeGhHosts', () => {
  it('moves a hosts.yml that is not a YAML mapping aside and writes a fresh one, rather than failing setup at every start', async () => {
    const home = await mkdtemp(path.join(tmpdir(), 'gh-hosts-'));
    try {
      const file = ghHostsFile({ homeDir: home });
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, '- not: a mapping\n- [unclosed\n');
      const plan = await writeGhHosts({ homeDir: home }, contract([{ name: 'github', hosts: ['api.github.com'], stub: STUB_COM }]));
      expect(plan.setAside).toBe(`${file}.invalid`);
      expect(await readFile(`${file}.invalid`, 'utf8')).toContain('[unclosed');
      expect(parse(await readFile(file, 'utf8'))).toEqual({ 'github.com': { oauth_token: STUB_COM, git_protocol: 'https' } });
      // A second run finds its own file and sets nothing aside.
      expect((await writeGhHosts({ homeDir: home }, contract([{ name: 'github', hosts: ['api.github.com'], stub: STUB_COM }]))).setAside).toBeUndefined();
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });
});
