/**
 * `agent-smith setup` (the init container) as a real process: the harness home from the
 * mounted config, the egress CA trusted, repositories cloned over HTTPS from a local git
 * server whose certificate only that CA vouches for, and a second run that changes nothing.
 */
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startGitServer, type GitServer } from '../../scripts/lib/fakes/git-server.ts';
import { makePod, runCli, testContract, type PodFiles } from '../support/pod.ts';

const git = promisify(execFile);
const STUB = 'agent-smith-stub-0123456789abcdefghijklmnopqrstuvwxyzABCDEFG';
const ANTHROPIC_STUB = 'agent-smith-stub-anthropic-9876543210zyxwvutsrqponmlkjihgfedcba';

/** path → sha256 of every file under dir (the state a second run must not change). */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  async function walk(d: string): Promise<void> {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const full = join(d, e.name);
      if (e.isDirectory()) await walk(full);
      else if (e.isFile()) out[relative(dir, full)] = createHash('sha256').update(await readFile(full)).digest('hex');
    }
  }
  await walk(dir);
  return out;
}

describe('agent-smith setup', () => {
  let server: GitServer;
  let pod: PodFiles;

  beforeEach(async () => {
    server = await startGitServer({ repos: { app: { 'README.md': '# app\n' }, infra: { 'main.tf': '# infra\n' } } });
    const contract = testContract({
      git: { name: 'Test Bot', email: 'testbot@users.noreply.github.com' },
      repos: [
        { name: 'acme/app', url: server.repoUrl('app'), dir: '/workspace/app' },
        { name: 'acme/infra', url: server.repoUrl('infra'), dir: '/workspace/infra' },
      ],
      workdir: '/workspace/app',
      egress: {
        allow: ['github.com', 'api.github.com', 'api.anthropic.com'],
        allowCidrs: [],
        enforcement: 'proxy-env',
        proxyPort: 15001,
        credentials: [
          { name: 'github', hosts: ['github.com', 'api.github.com'], scheme: 'basic', header: 'Authorization', stub: STUB, require: false, env: ['GITHUB_TOKEN'] },
          { name: 'anthropic', hosts: ['api.anthropic.com'], scheme: 'raw', header: 'x-api-key', stub: ANTHROPIC_STUB, require: false, env: ['ANTHROPIC_API_KEY'] },
        ],
      },
    });
    pod = await makePod({ contract, extraEnv: { GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' } });
    // The per-agent egress CA, mounted as the operator mounts it. Here it is the git
    // server's CA: the same trust path as a TLS-intercepting egress proxy.
    await mkdir(pod.path('/etc/agent-smith/egress-ca-cert'), { recursive: true });
    await writeFile(pod.path('/etc/agent-smith/egress-ca-cert/ca.crt'), server.caPem);
  });

  afterEach(async () => {
    await server.close();
    await pod.cleanup();
  });

  it('assembles the Claude Code home, trusts the CA, clones over HTTPS; a second run changes nothing', async () => {
    const first = await runCli(pod, ['setup']);
    expect(first.code, first.stderr).toBe(0);
    const home = pod.path('/home/agent');
    const claude = (f: string) => readFile(join(home, '.claude', f), 'utf8');
    expect(await claude('CLAUDE.md')).toContain('You are testbot');
    const settings = JSON.parse(await claude('settings.json')) as { permissions: { allow: string[] }; hooks: Record<string, Array<{ hooks: Array<{ command: string; asyncRewake?: boolean }> }>> };
    expect(settings.permissions.allow).toEqual(expect.arrayContaining(['Read', 'mcp__agent-smith']));
    expect(settings.hooks.Stop?.[0]?.hooks[0]).toMatchObject({ asyncRewake: true });
    expect(settings.hooks.Stop?.[0]?.hooks[0]?.command).toMatch(/ hook stop$/);
    expect(await claude('agents/reviewer.md')).toContain('Review code.');
    const mcp = JSON.parse(await readFile(join(home, '.mcp.json'), 'utf8')) as { mcpServers: Record<string, { type: string; url: string }> };
    expect(mcp.mcpServers['agent-smith']).toMatchObject({ type: 'http', url: `${pod.localUrl}/mcp` });
    const state = JSON.parse(await readFile(join(home, '.claude.json'), 'utf8')) as {
      hasCompletedOnboarding: boolean;
      projects: Record<string, { hasTrustDialogAccepted: boolean }>;
      customApiKeyResponses?: { approved: string[] };
    };
    expect(state.hasCompletedOnboarding).toBe(true);
    expect(state.projects['/workspace/app']?.hasTrustDialogAccepted).toBe(true);
    // The stub in ANTHROPIC_API_KEY is pre-approved: no "use this API key?" dialog.
    expect(state.customApiKeyResponses?.approved).toEqual([ANTHROPIC_STUB.slice(-20)]);
    expect(await readFile(join(home, '.agent-smith/ca-bundle.pem'), 'utf8')).toContain(server.caPem.trim());
    expect(await readFile(pod.path('/workspace/app/README.md'), 'utf8')).toBe('# app\n');
    expect(await readFile(pod.path('/workspace/infra/main.tf'), 'utf8')).toBe('# infra\n');
    // git presents the stub (never a real token) for the credential's hosts, nothing elsewhere.
    const fill = (host: string) =>
      new Promise<string>((resolve, reject) => {
        const p = execFile('git', ['credential', 'fill'], { env: { ...pod.env, HOME: home, GIT_TERMINAL_PROMPT: '0', GIT_CONFIG_GLOBAL: join(home, '.gitconfig') } }, (err, stdout) => (err ? reject(new Error(`git credential fill: ${err.message}`)) : resolve(stdout)));
        p.stdin?.end(`protocol=https\nhost=${host}\n\n`);
      });
    expect(await fill('github.com')).toContain(`username=x-access-token\npassword=${STUB}\n`);
    await expect(fill('example.com')).rejects.toThrow();
    // The agent's commits carry the contract's identity (no GIT_AUTHOR_* needed).
    const ident = await git('git', ['var', 'GIT_AUTHOR_IDENT'], { cwd: pod.path('/workspace/app'), env: { ...pod.env, HOME: home, GIT_CONFIG_GLOBAL: join(home, '.gitconfig') } });
    expect(ident.stdout).toMatch(/^Test Bot <testbot@users\.noreply\.github\.com> \d+/);

    // The agent works: an uncommitted edit and a local commit. Upstream moves on.
    const app = pod.path('/workspace/app');
    const gitEnv = { ...pod.env, HOME: home, GIT_AUTHOR_NAME: 'a', GIT_AUTHOR_EMAIL: 'a@x', GIT_COMMITTER_NAME: 'a', GIT_COMMITTER_EMAIL: 'a@x' };
    await writeFile(join(app, 'work.txt'), 'committed work\n');
    await git('git', ['add', 'work.txt'], { cwd: app, env: gitEnv });
    await git('git', ['commit', '-qm', 'local work'], { cwd: app, env: gitEnv });
    await writeFile(join(app, 'README.md'), '# app, edited by the agent\n');
    const head = (await git('git', ['rev-parse', 'HEAD'], { cwd: app, env: gitEnv })).stdout.trim();
    const upstream = await server.commit('app', { 'NEW.md': 'new upstream\n' }, 'upstream change');
    const homeBefore = await snapshot(home);
    const workBefore = await snapshot(app);

    const second = await runCli(pod, ['setup']);
    expect(second.code, second.stderr).toBe(0);
    expect(await snapshot(home)).toEqual(homeBefore);
    // The working tree, index and HEAD are the agent's: untouched. Only origin/main moved.
    const workAfter = await snapshot(app);
    const changed = Object.keys(workAfter).filter((f) => !f.startsWith('.git/') && workAfter[f] !== workBefore[f]);
    expect(changed).toEqual([]);
    expect(await readFile(join(app, 'README.md'), 'utf8')).toBe('# app, edited by the agent\n');
    expect((await git('git', ['rev-parse', 'HEAD'], { cwd: app, env: gitEnv })).stdout.trim()).toBe(head);
    expect((await git('git', ['rev-parse', 'origin/main'], { cwd: app, env: gitEnv })).stdout.trim()).toBe(upstream);
  });

  it('cannot clone when the CA is not mounted: the trust path is real', async () => {
    await rm(pod.path('/etc/agent-smith/egress-ca-cert'), { recursive: true });
    // An image whose system store trusts nothing: only the egress CA could vouch for the server.
    await mkdir(pod.path('/etc/ssl/certs'), { recursive: true });
    await writeFile(pod.path('/etc/ssl/certs/ca-certificates.crt'), '');
    const r = await runCli(pod, ['setup']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/acme\/app/);
    expect(r.stderr).toMatch(/certificate/i);
    await expect(stat(pod.path('/workspace/app'))).rejects.toThrow();
  });

  it('refuses a corrupt egress CA naming the file, instead of a bundle no TLS client can use', async () => {
    await writeFile(pod.path('/etc/agent-smith/egress-ca-cert/ca.crt'), '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n');
    const r = await runCli(pod, ['setup']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/egress-ca-cert\/ca\.crt: certificate 1 of 1 is not a valid certificate/);
    await expect(stat(pod.path('/home/agent/.agent-smith/ca-bundle.pem'))).rejects.toThrow();
  });

  it('refuses a bad contract with the field named, exit 2, and leaves the home untouched', async () => {
    await writeFile(pod.path('/etc/agent-smith/contract.json'), JSON.stringify({ ...testContract(), harness: { kind: 'vim', args: [] } }));
    const r = await runCli(pod, ['setup']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/harness\.kind/);
    expect(r.stderr).not.toMatch(/at .*\.ts:\d+/); // a message, not a stack trace
    expect(await readdir(pod.path('/home/agent'))).toEqual([]);
  });

  it('refuses a persona settings.json that is not JSON, naming it, before writing anything', async () => {
    await writeFile(pod.path('/etc/agent-smith/settings.json'), '{ not json');
    const r = await runCli(pod, ['setup']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/settings\.json.*not valid JSON/);
    await expect(stat(pod.path('/home/agent/.claude/CLAUDE.md'))).rejects.toThrow();
  });
});
