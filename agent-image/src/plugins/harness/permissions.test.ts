/**
 * spec.permissions as each harness gets it: the files prepareHome writes into a scratch home
 * for every mode (Claude Code's settings.json, Codex's config.toml, opencode's opencode.json),
 * with the persona's (shared) rules first and the spec's after.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { HarnessContext } from './adapter.ts';
import { ClaudeAdapter } from './claude.ts';
import { CodexAdapter, OpencodeAdapter, opencodeRule } from './others.ts';
import { PodContract, PERMISSION_MODES, type PodContractInput } from '../../contract/contract.ts';

let root: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'harness-permissions-'));
});
afterEach(async () => rm(root, { recursive: true, force: true }));

/** The persona's settings.json as the operator assembles it: the shared rules plus the persona's. */
const personaSettings = {
  permissions: {
    allow: ['Read', 'Bash(git commit *)'],
    ask: ['Bash(gh pr merge*)'],
    deny: ['Bash(git push * main)', 'Read(//etc/agent-smith/matrix/**)'],
    defaultMode: 'default',
  },
  env: { A: '1' },
};

async function context(permissions?: PodContractInput['permissions'], kind: 'claude' | 'codex' | 'opencode' = 'claude'): Promise<HarnessContext> {
  const configDir = join(root, 'etc');
  const homeDir = join(root, 'home');
  await mkdir(configDir, { recursive: true });
  await writeFile(join(configDir, 'CLAUDE.md'), '# Rules\n');
  await writeFile(join(configDir, 'settings.json'), JSON.stringify(personaSettings));
  const contract = PodContract.parse({
    version: 1,
    agent: { name: 'testbot', namespace: 'default' },
    harness: { kind, args: [] },
    repos: [],
    workdir: '/workspace',
    files: { claudeMd: 'CLAUDE.md', settingsJson: 'settings.json', subagents: {} },
    egress: { allow: [], allowCidrs: [], enforcement: 'proxy-env', proxyPort: 15001, credentials: [] },
    ...(permissions ? { permissions } : {}),
  });
  const layout = { configDir, contractFile: join(configDir, 'contract.json'), homeDir, workspaceDir: join(root, 'ws'), teamDir: join(root, 'team'), caCertFile: join(root, 'ca.crt'), stateDir: join(homeDir, '.agent-smith') };
  return { contract, layout, workdir: '/workspace', supervisorUrl: 'http://127.0.0.1:15090', selfCommand: ['agent-smith'] };
}

async function claudeSettings(permissions?: PodContractInput['permissions']): Promise<{ permissions: Record<string, unknown>; skipDangerousModePermissionPrompt?: boolean; env?: unknown; hooks?: unknown }> {
  const ctx = await context(permissions);
  await new ClaudeAdapter().prepareHome(ctx);
  return JSON.parse(await readFile(join(ctx.layout.homeDir, '.claude', 'settings.json'), 'utf8')) as never;
}

describe('Claude Code settings.json', () => {
  it('runs unattended by default (a contract without permissions, as an older operator writes it): bypassPermissions, no mode dialogs, the persona rules kept', async () => {
    const s = await claudeSettings();
    expect(s.permissions).toEqual({
      allow: ['Read', 'Bash(git commit *)', 'mcp__agent-smith'],
      ask: ['Bash(gh pr merge*)'],
      deny: ['Bash(git push * main)', 'Read(//etc/agent-smith/matrix/**)'],
      defaultMode: 'bypassPermissions',
      disableAutoMode: 'disable',
    });
    expect(s.skipDangerousModePermissionPrompt).toBe(true);
    // The rest of the persona's settings and our hooks are still there.
    expect(s.env).toEqual({ A: '1' });
    expect(Object.keys(s.hooks as object)).toEqual(expect.arrayContaining(['SessionStart', 'Stop']));
  });

  it.each([
    ['unattended', 'bypassPermissions'],
    ['acceptEdits', 'acceptEdits'],
    ['ask', 'default'],
  ] as const)('maps mode %s to defaultMode %s, over the persona\'s own defaultMode', async (mode, defaultMode) => {
    const s = await claudeSettings({ mode });
    expect(s.permissions.defaultMode).toBe(defaultMode);
    expect(s.permissions.disableAutoMode).toBe('disable');
    expect(s.skipDangerousModePermissionPrompt).toBe(true);
  });

  it('appends the spec\'s rules after the shared and persona rules, each once, in order', async () => {
    const s = await claudeSettings({
      mode: 'ask',
      allow: ['Bash(npm test*)', 'Read', 'Bash(npm test*)'],
      ask: ['Bash(kubectl delete*)', 'Bash(gh pr merge*)'],
      deny: ['Bash(git push *--force*)', 'Bash(git push * main)'],
    });
    expect(s.permissions.allow).toEqual(['Read', 'Bash(git commit *)', 'mcp__agent-smith', 'Bash(npm test*)']);
    expect(s.permissions.ask).toEqual(['Bash(gh pr merge*)', 'Bash(kubectl delete*)']);
    expect(s.permissions.deny).toEqual(['Bash(git push * main)', 'Read(//etc/agent-smith/matrix/**)', 'Bash(git push *--force*)']);
  });

  it('knows every mode of the contract', () => {
    for (const mode of PERMISSION_MODES) expect(PodContract.shape.permissions.parse({ mode }).mode).toBe(mode);
  });
});

describe('Codex config.toml', () => {
  it.each([
    ['unattended', 'never', 'danger-full-access'],
    ['acceptEdits', 'untrusted', 'workspace-write'],
    ['ask', 'untrusted', 'read-only'],
  ] as const)('maps mode %s to approval_policy %s and sandbox_mode %s, before any table', async (mode, approval, sandbox) => {
    const ctx = await context({ mode }, 'codex');
    await new CodexAdapter().prepareHome(ctx);
    const toml = await readFile(join(ctx.layout.homeDir, '.codex', 'config.toml'), 'utf8');
    const top = toml.slice(0, toml.indexOf('\n['));
    expect(top).toContain(`approval_policy = "${approval}"`);
    expect(top).toContain(`sandbox_mode = "${sandbox}"`);
    // workspace-write has no network by default; git push and the model API go through the proxy.
    expect(toml.includes('[sandbox_workspace_write]\nnetwork_access = true')).toBe(mode === 'acceptEdits');
    expect(toml).not.toContain('rule(s)');
  });

  it('says in the file that the spec\'s rules are not applied', async () => {
    const ctx = await context({ mode: 'unattended', deny: ['Bash(git push * main)'] }, 'codex');
    await new CodexAdapter().prepareHome(ctx);
    expect(await readFile(join(ctx.layout.homeDir, '.codex', 'config.toml'), 'utf8')).toMatch(/^# spec.permissions: 1 allow\/ask\/deny rule\(s\) .* not applied/m);
  });
});

describe('opencode permission', () => {
  async function permission(permissions: PodContractInput['permissions']): Promise<Record<string, unknown>> {
    const ctx = await context(permissions, 'opencode');
    const file = join(ctx.layout.homeDir, '.config', 'opencode', 'opencode.json');
    // A stale rule from an earlier start does not survive.
    await mkdir(join(ctx.layout.homeDir, '.config', 'opencode'), { recursive: true });
    await writeFile(file, JSON.stringify({ theme: 'x', permission: { bash: { 'stale *': 'deny' } } }));
    await new OpencodeAdapter().prepareHome(ctx);
    const config = JSON.parse(await readFile(file, 'utf8')) as { theme: string; permission: Record<string, unknown> };
    expect(config.theme).toBe('x');
    return config.permission;
  }

  it('unattended: everything allowed but the rules; deny written last (the last match wins in opencode)', async () => {
    const p = await permission({ mode: 'unattended', allow: ['Bash(npm test:*)'], deny: ['Bash(git push *--force*)', 'WebFetch(domain:x.org)'] });
    expect(Object.keys(p)).toEqual(['*', 'read', 'bash']);
    expect(p['*']).toBe('allow');
    expect(Object.entries(p.bash as object)).toEqual([
      ['*', 'allow'],
      ['git commit *', 'allow'],
      ['npm test *', 'allow'],
      ['gh pr merge*', 'ask'],
      ['git push * main', 'deny'],
      ['git push *--force*', 'deny'],
    ]);
    expect(p.read).toEqual({ '*': 'allow', '/etc/agent-smith/matrix/**': 'deny' });
  });

  it.each([
    ['acceptEdits', { '*': 'ask', edit: 'allow' }],
    ['ask', { '*': 'ask' }],
  ] as const)('%s: asks by default', async (mode, base) => {
    const p = await permission({ mode });
    expect(p).toMatchObject(base);
    expect((p.bash as Record<string, string>)['*']).toBe('ask');
  });

  it('translates Claude Code rules it can, and leaves out the rest', () => {
    expect(opencodeRule('Bash')).toEqual(['bash', '*']);
    expect(opencodeRule('Bash(npm run test:*)')).toEqual(['bash', 'npm run test *']);
    expect(opencodeRule('Read(//etc/x/**)')).toEqual(['read', '/etc/x/**']);
    expect(opencodeRule('Edit(~/notes/*.md)')).toEqual(['edit', '~/notes/*.md']);
    expect(opencodeRule('WebFetch(domain:example.org)')).toBeUndefined();
    expect(opencodeRule('mcp__github')).toBeUndefined();
  });
});
