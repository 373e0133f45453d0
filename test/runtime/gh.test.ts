/**
 * `gh` logged in with stubs (issue 17 item 3): `agent-smith setup` writes gh's hosts.yml
 * and git's credential helpers for github.com and for the GitHub Enterprise Server host of
 * `github.apiUrl`; the real gh (Debian's 2.23, as in the image) then calls the GitHub API
 * fake through the real `agent-smith proxy` for both hosts, and the fake sees the real
 * tokens only. A repository on the GHES host is cloned by setup, pushed to by the agent's
 * git and gets a pull request from `gh pr create`, all through the proxy with only the
 * stub on the agent's side.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { PodContractInput } from '../../agent-image/src/contract/contract.ts';
import { startGitHubFake, type GitHubFake } from '../../scripts/lib/fakes/github-api.ts';
import { startGitServer, type GitServer } from '../../scripts/lib/fakes/git-server.ts';
import { makeTestCa } from '../../scripts/lib/fakes/test-ca.ts';
import { makePod, runCli, testContract, type PodFiles } from '../support/pod.ts';
import { startProxy, type ProxyFixture } from './proxy-harness.ts';

const GHES = 'ghe.test';
const REAL_COM = 'ghp_RealGitHubComToken0123456789abcdefghij';
const REAL_GHES = 'ghp_RealEnterpriseToken0123456789abcdefgh';
const STUB_COM = 'agent-smith-stub-gh-com-0123456789abcdefghijklmnopqrstuvwxyzAB';
const STUB_GHES = 'agent-smith-stub-gh-ghes-0123456789abcdefghijklmnopqrstuvwxyzA';

/** The two credentials as the contract carries them: github.com's stub also in GH_TOKEN/GITHUB_TOKEN, the GHES one in hosts.yml only. */
const CREDENTIALS: PodContractInput['egress']['credentials'] = [
  { name: 'github', hosts: ['github.com', 'api.github.com'], scheme: 'bearer', header: 'Authorization', stub: STUB_COM, env: ['GH_TOKEN', 'GITHUB_TOKEN'] },
  { name: 'ghes', hosts: [GHES], scheme: 'bearer', header: 'Authorization', stub: STUB_GHES, env: [] },
];

function contract(credentials = CREDENTIALS): PodContractInput {
  return testContract({
    github: { login: 'devbot', apiUrl: `https://${GHES}/api/v3`, watchPullRequests: { enabled: false, intervalSeconds: 300 } },
    egress: { allow: ['github.com', 'api.github.com', GHES], allowCidrs: [], enforcement: 'proxy-env', proxyPort: 15001, credentials },
  });
}

let pod: PodFiles | undefined;
let fx: ProxyFixture | undefined;
const fakes: GitHubFake[] = [];
let gitServer: GitServer | undefined;
const routers: PathRouter[] = [];

afterEach(async () => {
  await pod?.cleanup();
  await fx?.stop();
  await Promise.all(fakes.splice(0).map((f) => f.close()));
  await Promise.all(routers.splice(0).map((r) => r.close()));
  await gitServer?.close();
  pod = fx = gitServer = undefined;
});

beforeAll(async () => {
  // gh is a host test dependency (scripts/lib/tools.sh installs Debian's, as the image has).
  await new Promise<void>((resolve, reject) => execFile('gh', ['--version'], (err) => (err ? reject(new Error(`gh is not on PATH (apt-get install gh): ${err.message}`)) : resolve())));
});

/** A pod with the contract above, the egress CA `caPem` mounted (none when empty), after `agent-smith setup`. */
async function setUp(caPem: string, credentials = CREDENTIALS, over: Partial<PodContractInput> = {}, setupEnv: NodeJS.ProcessEnv = {}): Promise<PodFiles> {
  pod = await makePod({ contract: { ...contract(credentials), ...over }, extraEnv: { GIT_CONFIG_NOSYSTEM: '1' } });
  if (caPem) {
    await mkdir(pod.path('/etc/agent-smith/egress-ca-cert'), { recursive: true });
    await writeFile(pod.path('/etc/agent-smith/egress-ca-cert/ca.crt'), caPem);
  }
  const setup = await runCli(pod, ['setup'], { ...pod.env, ...setupEnv });
  expect(setup.code, setup.stderr).toBe(0);
  return pod;
}

/** Runs a command as a program of the agent container: the pod's mounts, HOME, trust bundle and proxy, plus `env` (a pane's stub variables). */
function inPod(pod: PodFiles, argv: string[], env: NodeJS.ProcessEnv, stdin = '', cwd = '/workspace'): Promise<{ code: number | null; stdout: string; stderr: string }> {
  // The working directory is entered inside the pod's mounts.
  const [command, args] = pod.command(['sh', '-c', 'cd "$0" && exec "$@"', cwd, ...argv]);
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: { ...pod.env, GIT_TERMINAL_PROMPT: '0', ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(stdin);
  });
}

describe('setup logs gh in with the stubs', () => {
  it('writes hosts.yml for github.com and the GHES host, git helpers for both, and keeps what gh wrote', async () => {
    const pod = await setUp('');
    const file = pod.path('/home/agent/.config/gh/hosts.yml');
    expect(parse(await readFile(file, 'utf8'))).toEqual({
      [GHES]: { user: 'devbot', oauth_token: STUB_GHES, git_protocol: 'https' },
      'github.com': { oauth_token: STUB_COM, git_protocol: 'https' },
    });
    expect((await stat(file)).mode & 0o777).toBe(0o600);

    // git hands out the stub for clones and pushes to either host, nothing elsewhere.
    const fill = (host: string) => inPod(pod, ['git', 'credential', 'fill'], {}, `protocol=https\nhost=${host}\npath=acme/app.git\n\n`);
    expect((await fill(GHES)).stdout).toContain(`username=x-access-token\npassword=${STUB_GHES}\n`);
    expect((await fill('github.com')).stdout).toContain(`password=${STUB_COM}\n`);
    expect((await fill('example.com')).code).not.toBe(0);

    // A second run replaces its own keys and keeps the rest.
    const doc = parse(await readFile(file, 'utf8')) as Record<string, Record<string, string>>;
    doc[GHES]!.oauth_token = 'stale';
    doc[GHES]!.editor = 'vim';
    doc['other.example'] = { oauth_token: 'theirs' };
    await writeFile(file, JSON.stringify(doc));
    expect((await runCli(pod, ['setup'])).code).toBe(0);
    expect(parse(await readFile(file, 'utf8'))).toMatchObject({
      [GHES]: { oauth_token: STUB_GHES, editor: 'vim', git_protocol: 'https' },
      'other.example': { oauth_token: 'theirs' },
    });
  }, 60_000);

  it('gh api user through the proxy: github.com with GH_TOKEN, the GHES host from hosts.yml; the fakes see only the real tokens', async () => {
    const com = await startGitHubFake({ hostnames: ['api.github.com'] });
    const ghes = await startGitHubFake({ hostnames: [GHES] });
    fakes.push(com, ghes);
    com.addUser('devbot', REAL_COM);
    ghes.addUser('devbot-enterprise', REAL_GHES);
    fx = await startProxy({
      allow: ['github.com', 'api.github.com', GHES],
      allowCidrs: ['127.0.0.0/8'],
      credentials: [
        { name: 'github', hosts: ['github.com', 'api.github.com'], scheme: 'bearer', header: 'Authorization', stub: STUB_COM, require: false, real: REAL_COM },
        { name: 'ghes', hosts: [GHES], scheme: 'bearer', header: 'Authorization', stub: STUB_GHES, require: false, real: REAL_GHES },
      ],
      hosts: {
        'api.github.com': { addresses: ['127.0.0.1'], ports: { '443': com.port } },
        [GHES]: { addresses: ['127.0.0.1'], ports: { '443': ghes.port } },
      },
      upstreamCa: [com.caPem, ghes.caPem],
    });
    const pod = await setUp(fx.caPem);
    const agentEnv = {
      HTTPS_PROXY: `http://127.0.0.1:${fx.port}`,
      NO_PROXY: '127.0.0.1,localhost',
      SSL_CERT_FILE: '/home/agent/.agent-smith/ca-bundle.pem',
      // What the supervisor puts in the panes: the stub in the credential's env names.
      GH_TOKEN: STUB_COM,
      GITHUB_TOKEN: STUB_COM,
    };

    const onCom = await inPod(pod, ['gh', 'api', 'user', '--jq', '.login'], agentEnv);
    expect(onCom, onCom.stderr).toMatchObject({ code: 0, stdout: 'devbot\n' });
    const onGhes = await inPod(pod, ['gh', 'api', 'user', '--hostname', GHES, '--jq', '.login'], agentEnv);
    expect(onGhes, onGhes.stderr).toMatchObject({ code: 0, stdout: 'devbot-enterprise\n' });

    expect(com.requests.map((r) => [r.path, r.authorization, r.status])).toEqual([['/user', `token ${REAL_COM}`, 200]]);
    // (The fake serves GHES's /api/v3 prefix as the same calls and records the path without it.)
    expect(ghes.requests.map((r) => [r.path, r.authorization, r.status])).toEqual([['/user', `token ${REAL_GHES}`, 200]]);
    const swaps = fx.audits().filter((l) => l.location === 'header:authorization');
    expect(swaps.map((l) => [l.host, l.path, l.credential])).toEqual([
      ['api.github.com', '/user', 'github'],
      [GHES, '/api/v3/user', 'ghes'],
    ]);
    expect(fx.output()).not.toContain(REAL_COM);
    expect(fx.output()).not.toContain(REAL_GHES);
  }, 90_000);

  it('a GitHub Enterprise agent: gh defaults to the GHES host and finds the repository of a GHES remote', async () => {
    const ghes = await startGitHubFake({ hostnames: [GHES] });
    fakes.push(ghes);
    ghes.addUser('devbot', REAL_GHES);
    ghes.addRepository('acme/app');
    fx = await startProxy({
      allow: [GHES],
      allowCidrs: ['127.0.0.0/8'],
      credentials: [{ name: 'ghes', hosts: [GHES], scheme: 'bearer', header: 'Authorization', stub: STUB_GHES, require: false, real: REAL_GHES }],
      hosts: { [GHES]: { addresses: ['127.0.0.1'], ports: { '443': ghes.port } } },
      upstreamCa: [ghes.caPem],
    });
    const pod = await setUp(fx.caPem, [CREDENTIALS[1]!]);
    expect(Object.keys(parse(await readFile(pod.path('/home/agent/.config/gh/hosts.yml'), 'utf8')) as object)).toEqual([GHES]);
    const agentEnv = { HTTPS_PROXY: `http://127.0.0.1:${fx.port}`, NO_PROXY: '127.0.0.1,localhost', SSL_CERT_FILE: '/home/agent/.agent-smith/ca-bundle.pem' };
    await mkdir(pod.path('/workspace/app'), { recursive: true });
    for (const args of [['init', '-q'], ['remote', 'add', 'origin', `https://${GHES}/acme/app.git`]]) {
      expect((await inPod(pod, ['git', ...args], {}, '', '/workspace/app')).code).toBe(0);
    }

    const user = await inPod(pod, ['gh', 'api', 'user', '--jq', '.login'], agentEnv);
    expect(user, user.stderr).toMatchObject({ code: 0, stdout: 'devbot\n' });
    // {owner}/{repo} come from the remote on the GHES host, which gh knows from hosts.yml.
    const repo = await inPod(pod, ['gh', 'api', 'repos/{owner}/{repo}', '--jq', '.full_name'], agentEnv, '', '/workspace/app');
    expect(repo, repo.stderr).toMatchObject({ code: 0, stdout: 'acme/app\n' });
    expect(ghes.requests.map((r) => [r.path, r.authorization])).toEqual([
      ['/user', `token ${REAL_GHES}`],
      ['/repos/acme/app', `token ${REAL_GHES}`],
    ]);
  }, 90_000);

  it('a repository on the GHES host: setup clones it, the agent pushes a branch and gh pr create opens the pull request there, with only stubs', async () => {
    // GHES serves git and the API on one host: a router on ghe.test:443 sends /api/ to the GitHub fake and the rest to the git server.
    gitServer = await startGitServer({ repos: { 'acme/app': { 'README.md': '# app on GHES\n' } }, hostnames: [GHES], basicPassword: REAL_GHES });
    const api = await startGitHubFake({ hostnames: [GHES], webUrl: `https://${GHES}`, git: gitServer });
    fakes.push(api);
    api.addUser('devbot', REAL_GHES);
    api.addRepository('acme/app');
    const router = await startPathRouter(GHES, (path) => (path.startsWith('/api/') ? { port: api.port, ca: api.caPem } : { port: Number(new URL(gitServer!.url).port), ca: gitServer!.caPem }));
    routers.push(router);
    fx = await startProxy({
      allow: [GHES],
      allowCidrs: ['127.0.0.0/8'],
      credentials: [{ name: 'ghes', hosts: [GHES], scheme: 'bearer', header: 'Authorization', stub: STUB_GHES, require: false, real: REAL_GHES }],
      hosts: { [GHES]: { addresses: ['127.0.0.1'], ports: { '443': router.port } } },
      upstreamCa: [router.caPem],
    });
    const proxyEnv = { HTTPS_PROXY: `http://127.0.0.1:${fx.port}`, NO_PROXY: '127.0.0.1,localhost' };
    const repos = [{ name: 'acme/app', url: `https://${GHES}/acme/app.git`, dir: '/workspace/app' }];
    const pod = await setUp(fx.caPem, [CREDENTIALS[1]!], { repos, workdir: '/workspace/app', git: { name: 'Dev Bot', email: 'devbot@ghe.test' } }, proxyEnv);
    expect(await readFile(pod.path('/workspace/app/README.md'), 'utf8')).toBe('# app on GHES\n');

    // The agent's environment: no GH_* variable at all, gh finds the host and stub in hosts.yml.
    const agentEnv = { ...proxyEnv, GIT_SSL_CAINFO: '/home/agent/.agent-smith/ca-bundle.pem', SSL_CERT_FILE: '/home/agent/.agent-smith/ca-bundle.pem', GH_PROMPT_DISABLED: '1' };
    const inApp = (...argv: string[]) => inPod(pod, argv, agentEnv, '', '/workspace/app');
    await writeFile(pod.path('/workspace/app/fix.txt'), 'fixed\n');
    for (const args of [['switch', '-q', '-c', 'fix'], ['add', 'fix.txt'], ['commit', '-q', '-m', 'fix']]) expect((await inApp('git', ...args)).code).toBe(0);
    const push = await inApp('git', 'push', '-q', '-u', 'origin', 'fix');
    expect(push, push.stderr).toMatchObject({ code: 0 });
    expect(await gitServer.readFile('acme/app', 'fix', 'fix.txt')).toBe('fixed\n');

    const created = await inApp('gh', 'pr', 'create', '--title', 'Fix', '--body', 'Adds fix.txt.', '--head', 'fix', '--base', 'main');
    expect(created, created.stderr).toMatchObject({ code: 0, stdout: `https://${GHES}/acme/app/pull/1\n` });
    expect(api.pullRequests('acme/app')).toMatchObject([{ number: 1, title: 'Fix', user: { login: 'devbot' }, head: { ref: 'fix' } }]);
    expect(api.requests.length).toBeGreaterThan(0);
    expect(api.requests.every((r) => r.authorization === `token ${REAL_GHES}`)).toBe(true);

    // Every credentialed request went out with the real token, swapped in by the proxy: git's pushes and gh's GraphQL alike.
    const swapped = fx.audits().filter((l) => l.host === GHES && l.credential === 'ghes');
    expect(swapped.some((l) => String(l.path).includes('git-receive-pack'))).toBe(true);
    expect(swapped.some((l) => l.path === '/api/graphql')).toBe(true);
    expect(await readFile(pod.path('/home/agent/.gitconfig'), 'utf8')).not.toContain(REAL_GHES);
    expect(fx.output()).not.toContain(REAL_GHES);
  }, 120_000);
});

interface PathRouter {
  port: number;
  caPem: string;
  close(): Promise<void>;
}

/**
 * An HTTPS server for `name` (a certificate of its own test CA) that relays each request to
 * the local HTTPS server `route(path)` names, trusting that server's CA: one host serving
 * git and the API, as GitHub Enterprise Server does.
 */
async function startPathRouter(name: string, route: (path: string) => { port: number; ca: string }): Promise<PathRouter> {
  const ca = await makeTestCa('agent-smith test GHES router CA');
  const leaf = await ca.issue([{ type: 'dns', value: name }]);
  const server = https.createServer({ key: leaf.keyPem, cert: leaf.certPem }, (req, res) => {
    const to = route(req.url ?? '/');
    const upstream = https.request({ host: '127.0.0.1', port: to.port, ca: to.ca, method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    upstream.on('error', (err) => res.destroy(err));
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    caPem: ca.caPem,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
