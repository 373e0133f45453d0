/**
 * The repository step of setup against a real git over real HTTPS: the local git server
 * (git http-backend) with its own CA, so trusting the CA through GIT_SSL_CAINFO is what
 * makes a clone work, as with the egress CA in a pod.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { RepoSyncError, syncRepos, type RepoSpec } from '../../agent-image/src/programs/setup/repos.ts';
import { startGitServer, type GitServer } from '../../scripts/lib/fakes/git-server.ts';

const execFileAsync = promisify(execFile);

let server: GitServer;
let scratch: string;
let root: string;
let home: string;
let logs: { level: string; obj: object; msg: string }[];

const log = {
  info: (obj: object, msg: string) => logs.push({ level: 'info', obj, msg }),
  warn: (obj: object, msg: string) => logs.push({ level: 'warn', obj, msg }),
};

/** A hermetic git environment: none of the machine's config, proxies or CA settings. */
function gitEnv(trustServer = true): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: home,
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_AUTHOR_NAME: 'Agent',
    GIT_AUTHOR_EMAIL: 'agent@example.invalid',
    GIT_COMMITTER_NAME: 'Agent',
    GIT_COMMITTER_EMAIL: 'agent@example.invalid',
    ...(trustServer ? { GIT_SSL_CAINFO: server.caFile } : {}),
  };
}

function sync(repos: RepoSpec[], opts: { trust?: boolean; timeoutMs?: number } = {}) {
  return syncRepos(repos, { env: gitEnv(opts.trust ?? true), log, timeoutMs: opts.timeoutMs });
}

async function git(dir: string, ...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync('git', args, { cwd: dir, env: gitEnv(), encoding: 'utf8' });
  return stdout.trim();
}

/** Where an in-pod path lands under this test's scratch root (the repositories' dirs are given there). */
const real = (podPath: string) => path.join(root, podPath);
const app = (): RepoSpec => ({ name: 'app', url: server.repoUrl('app'), dir: real('/workspace/app') });

async function workspaceEntries(): Promise<string[]> {
  return readdir(real('/workspace')).catch(() => []);
}

beforeAll(async () => {
  server = await startGitServer({
    repos: {
      app: { 'README.md': '# app\n', 'src/main.ts': 'export {};\n' },
      lib: { 'README.md': '# lib\n' },
    },
  });
  await server.commit('lib', { 'FEATURE.md': 'feature work\n' }, 'feature work', 'feature');
  scratch = await mkdtemp(path.join(os.tmpdir(), 'agent-smith-repos-'));
});

afterAll(async () => {
  await server?.close();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

beforeEach(async () => {
  root = await mkdtemp(path.join(scratch, 'root-'));
  home = path.join(root, 'home/agent');
  await mkdir(home, { recursive: true });
  logs = [];
});

describe('syncRepos', () => {
  it('clones over HTTPS trusting the server CA, each repository on its branch', async () => {
    const results = await sync([app(), { name: 'lib', url: server.repoUrl('lib'), branch: 'feature', dir: real('/workspace/lib') }]);

    expect(results).toEqual([
      { name: 'app', dir: real('/workspace/app'), action: 'cloned' },
      { name: 'lib', dir: real('/workspace/lib'), action: 'cloned' },
    ]);
    expect(await readFile(real('/workspace/app/src/main.ts'), 'utf8')).toBe('export {};\n');
    expect(await git(real('/workspace/app'), 'symbolic-ref', '--short', 'HEAD')).toBe('main');
    expect(await git(real('/workspace/lib'), 'symbolic-ref', '--short', 'HEAD')).toBe('feature');
    expect(await readFile(real('/workspace/lib/FEATURE.md'), 'utf8')).toBe('feature work\n');
    expect(await git(real('/workspace/app'), 'status', '--porcelain')).toBe('');
    expect((await workspaceEntries()).sort()).toEqual(['app', 'lib']);

    const again = await sync([app(), { name: 'lib', url: server.repoUrl('lib'), branch: 'feature', dir: real('/workspace/lib') }]);
    expect(again.map((r) => r.action)).toEqual(['unchanged', 'unchanged']);
    expect(await git(real('/workspace/lib'), 'rev-parse', 'origin/feature')).toBe(await git(real('/workspace/lib'), 'rev-parse', 'HEAD'));
  });

  it('fails naming the repository and the certificate problem when the CA is not trusted, leaving nothing behind', async () => {
    const err = await sync([app()], { trust: false }).catch((e: unknown) => e);

    expect(err).toBeInstanceOf(RepoSyncError);
    const message = (err as Error).message;
    expect(message).toContain('repository app');
    expect(message).toContain(server.repoUrl('app'));
    expect(message).toMatch(/certificate/i);
    expect(await workspaceEntries()).toEqual([]);
  });

  it('on a second run only fetches: local edits, local commits and HEAD survive; upstream shows as origin/main', async () => {
    const dir = real('/workspace/app');
    await sync([app()]);
    await writeFile(path.join(dir, 'NOTES.md'), 'agent notes\n');
    await git(dir, 'add', 'NOTES.md');
    await git(dir, 'commit', '-q', '-m', 'local work');
    await writeFile(path.join(dir, 'README.md'), '# app, edited by the agent\n');
    await writeFile(path.join(dir, 'scratch.txt'), 'untracked\n');
    const head = await git(dir, 'rev-parse', 'HEAD');
    const status = await git(dir, 'status', '--porcelain');
    expect(status).toBe('M README.md\n?? scratch.txt');

    const upstream = await server.commit('app', { 'UPSTREAM.md': 'from a teammate\n' }, 'teammate work');
    const second = await sync([app()]);

    expect(second.map((r) => r.action)).toEqual(['fetched']);
    expect(await git(dir, 'rev-parse', 'origin/main')).toBe(upstream);
    expect(await git(dir, 'rev-parse', 'HEAD')).toBe(head);
    expect(await git(dir, 'symbolic-ref', '--short', 'HEAD')).toBe('main');
    expect(await git(dir, 'status', '--porcelain')).toBe(status);
    expect(await readFile(path.join(dir, 'README.md'), 'utf8')).toBe('# app, edited by the agent\n');
    await expect(readFile(path.join(dir, 'UPSTREAM.md'))).rejects.toThrow(/ENOENT/);

    const third = await sync([app()]);
    expect(third.map((r) => r.action)).toEqual(['unchanged']);
    expect(await git(dir, 'rev-parse', 'HEAD')).toBe(head);
    expect(await git(dir, 'status', '--porcelain')).toBe(status);
  });

  it('refuses a directory that is not a git repository and not empty, naming it and the fix', async () => {
    const dir = real('/workspace/app');
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'precious.txt'), 'keep me\n');

    const err = await sync([app()]).catch((e: unknown) => e);

    expect(err).toBeInstanceOf(RepoSyncError);
    expect((err as Error).message).toContain(dir);
    expect((err as Error).message).toMatch(/not a git repository.*precious\.txt.*move its contents away or delete it/);
    expect(await readdir(dir)).toEqual(['precious.txt']);
  });

  it('clones into an existing empty directory (a mount point)', async () => {
    const dir = real('/workspace/app');
    await mkdir(dir, { recursive: true });

    const results = await sync([app()]);

    expect(results.map((r) => r.action)).toEqual(['cloned']);
    const entries = await readdir(dir);
    expect(entries).toEqual(expect.arrayContaining(['.git', 'README.md', 'src']));
    expect(entries.filter((e) => e.startsWith('.partial-'))).toEqual([]);
    expect(await git(dir, 'status', '--porcelain')).toBe('');
  });

  it('removes a stale .partial- sibling left by a crashed clone', async () => {
    await mkdir(real('/workspace/app.partial-x/.git'), { recursive: true });
    await writeFile(real('/workspace/app.partial-x/half-a-file'), 'x');

    const results = await sync([app()]);

    expect(results.map((r) => r.action)).toEqual(['cloned']);
    expect(await workspaceEntries()).toEqual(['app']);
    expect(logs.some((l) => l.msg === 'removing an interrupted clone')).toBe(true);
  });

  it('never logs or throws the password of a URL with userinfo', async () => {
    const password = 's3cr3t-t0ken';
    const withUserinfo = server.repoUrl('app').replace('https://', `https://agent:${password}@`);
    const repo: RepoSpec = { name: 'app', url: withUserinfo, dir: real('/workspace/app') };

    const err = await sync([repo], { trust: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RepoSyncError);
    expect((err as Error).message).toContain(server.repoUrl('app'));
    expect((err as Error).message).not.toContain(password);
    expect((err as Error).message).not.toContain('agent:');

    await sync([app()]);
    await sync([repo]); // origin's URL changes to the one with userinfo
    expect(await git(real('/workspace/app'), 'remote', 'get-url', 'origin')).toBe(withUserinfo);
    expect(logs.some((l) => l.msg === 'origin URL updated to the contract')).toBe(true);

    const logged = JSON.stringify(logs);
    expect(logged).toContain(server.repoUrl('app'));
    expect(logged).not.toContain(password);
  });

  it('never waits for a credential prompt: a server asking for a password fails at once', async () => {
    const authServer = http.createServer((_req, res) => {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="git"' });
      res.end();
    });
    await new Promise<void>((resolve) => authServer.listen(0, '127.0.0.1', resolve));
    const { port } = authServer.address() as net.AddressInfo;
    try {
      const err = await sync([{ name: 'private', url: `http://127.0.0.1:${port}/private.git`, dir: real('/workspace/private') }]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RepoSyncError);
      expect((err as Error).message).toMatch(/repository private .*terminal prompts disabled/s);
    } finally {
      await new Promise((resolve) => authServer.close(resolve));
    }
  });

  it('gives up after the timeout on a server that never answers, leaving nothing behind', async () => {
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((s) => sockets.add(s));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as net.AddressInfo;
    try {
      const started = Date.now();
      const err = await sync([{ name: 'slow', url: `https://127.0.0.1:${port}/slow.git`, dir: real('/workspace/slow') }], { timeoutMs: 1500 }).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(RepoSyncError);
      expect((err as Error).message).toMatch(/repository slow .*git clone timed out after 1500 ms/);
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(await workspaceEntries()).toEqual([]);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('tries every repository and reports all failures together', async () => {
    const err = await sync([
      { name: 'missing', url: server.repoUrl('missing'), dir: real('/workspace/missing') },
      app(),
      { name: 'gone', url: server.repoUrl('gone'), dir: real('/workspace/gone') },
    ]).catch((e: unknown) => e);

    expect(err).toBeInstanceOf(AggregateError);
    expect((err as AggregateError).errors).toHaveLength(2);
    expect((err as Error).message).toMatch(/repository missing .*not found/s);
    expect((err as Error).message).toMatch(/repository gone .*not found/s);
    expect(await workspaceEntries()).toEqual(['app']);
  });
});
