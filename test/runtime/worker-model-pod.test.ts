/**
 * The demo's worker model inside an agent pod's programs (no Kubernetes): `agent-smith
 * setup` clones homelab-apps from the git server (as github.com) through the real egress
 * proxy with only the stub, the supervisor runs the real Claude Code with the shipped rules
 * (agents/_shared/settings.json, mode unattended), an inbox message asks for the fix, and
 * the worker's steps run as the pod runs them: git push and `gh pr create` through the
 * proxy (which puts the real token in), publish_event on the supervisor's MCP server. Then
 * a reviewer's comment on the pull request wakes the agent through the supervisor's own
 * PR watcher and Stop hook, and it pushes a second commit and answers in the thread.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeAnthropic, type FakeAnthropic, type Turn } from '../../scripts/lib/fakes/anthropic-api.ts';
import { startGitHubFake, type GitHubFake } from '../../scripts/lib/fakes/github-api.ts';
import { startGitServer, type GitServer } from '../../scripts/lib/fakes/git-server.ts';
import { BUG, HOMELAB_APPS, HOMELAB_APPS_FILES, REVIEW_CHANGE, SOURCE_FILE, workerResponder } from '../../scripts/lib/demo/worker-model.ts';
import { ROOT } from '../../scripts/lib/paths.ts';
import { waitFor } from '../support/wait.ts';
import { makePod, runCli, startSupervisor, testContract, type PodFiles, type SupervisorProcess } from '../support/pod.ts';
import { startProxy, type ProxyFixture } from './proxy-harness.ts';

const LOGIN = 'devbot-agent';
const REAL = 'ghp_RealDevbotToken0123456789abcdefABCDEF0';
const STUB = 'agent-smith-stub-worker-0123456789abcdefghijklmnopqrstuvwxyzAB';
const BRANCH = 'fix/slugify-dashes';
const DIR = '/workspace/homelab-apps';

describe('the worker model in an agent pod\'s programs, through the egress proxy', () => {
  let git: GitServer;
  let github: GitHubFake;
  let fx: ProxyFixture;
  let model: FakeAnthropic;
  let pod: PodFiles;
  let sup: SupervisorProcess;
  const ends: string[] = [];

  beforeAll(async () => {
    git = await startGitServer({ repos: { [HOMELAB_APPS]: HOMELAB_APPS_FILES }, hostnames: ['github.com'], basicPassword: REAL });
    github = await startGitHubFake({ hostnames: ['api.github.com'], git });
    github.addUser(LOGIN, REAL);
    github.addUser('alice', 'ghp_alice');
    github.addRepository(HOMELAB_APPS);
    const hosts = ['github.com', 'api.github.com'];
    fx = await startProxy({
      allow: hosts,
      allowCidrs: ['127.0.0.0/8'],
      credentials: [{ name: 'github', hosts, scheme: 'basic', header: 'Authorization', stub: STUB, require: false, real: REAL }],
      hosts: {
        'github.com': { addresses: ['127.0.0.1'], ports: { '443': Number(new URL(git.url).port) } },
        'api.github.com': { addresses: ['127.0.0.1'], ports: { '443': github.port } },
      },
      upstreamCa: [git.caPem, github.caPem],
      logLevel: 'info',
    });
    model = await startFakeAnthropic();
    const worker = workerResponder({ dir: DIR });
    model.respond((req, h): Turn => {
      const turn = worker(req, h);
      if (turn.content.every((b) => b.type === 'text')) ends.push(turn.content.map((b) => (b.type === 'text' ? b.text : '')).join(''));
      return turn;
    });
    const proxyUrl = `http://127.0.0.1:${fx.port}`;
    pod = await makePod({
      contract: testContract({
        repos: [{ name: HOMELAB_APPS, url: `https://github.com/${HOMELAB_APPS}.git`, dir: DIR }],
        github: { login: LOGIN, apiUrl: 'https://api.github.com', watchPullRequests: { enabled: true, intervalSeconds: 2 } },
        git: { name: 'devbot', email: `${LOGIN}@users.noreply.github.com` },
        egress: { allow: hosts, allowCidrs: ['127.0.0.0/8'], enforcement: 'proxy-env', proxyPort: fx.port, credentials: [{ name: 'github', hosts, scheme: 'basic', header: 'Authorization', stub: STUB, env: ['GH_TOKEN', 'GITHUB_TOKEN'] }] },
      }),
      modelUrl: model.url,
      files: { 'settings.json': await readFile(join(ROOT, 'agents/_shared/settings.json'), 'utf8') },
      extraEnv: { HTTPS_PROXY: proxyUrl, https_proxy: proxyUrl, NO_PROXY: '127.0.0.1,localhost', no_proxy: '127.0.0.1,localhost', GIT_CONFIG_NOSYSTEM: '1', GH_NO_UPDATE_NOTIFIER: '1', GH_PROMPT_DISABLED: '1' },
    });
    // The per-agent egress CA as the operator mounts it; setup makes the bundle the tools trust.
    await mkdir(pod.path('/etc/agent-smith/egress-ca-cert'), { recursive: true });
    await writeFile(pod.path('/etc/agent-smith/egress-ca-cert/ca.crt'), fx.caPem);
    pod.env.NODE_EXTRA_CA_CERTS = '/etc/agent-smith/egress-ca-cert/ca.crt';
    const setup = await runCli(pod, ['setup']);
    expect(setup.code, setup.stderr).toBe(0);
    sup = startSupervisor(pod);
    await sup.waitForLog((l) => l.msg === 'CLI started');
  }, 120_000);

  afterAll(async () => {
    await sup?.stop();
    await pod?.cleanup();
    await model?.close();
    await fx?.stop();
    await github?.close();
    await git?.close();
  }, 60_000);

  const put = (text: string) => fetch(`${pod.localUrl}/inbox`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ source: 'api', text }) });
  const resultsOf = (tool: string) => {
    const messages = model.requests.filter((r) => !r.side).at(-1)?.body.messages ?? [];
    const blocks = messages.flatMap((m) => (typeof m.content === 'string' ? [] : m.content));
    const ids = new Set(blocks.filter((b) => b.type === 'tool_use' && b.name === tool).map((b) => b.id));
    return blocks.filter((b) => b.type === 'tool_result' && ids.has(b.tool_use_id)).map((b) => ({ text: JSON.stringify(b.content), isError: b.is_error === true }));
  };

  it('an inbox message: the fix is pushed and gh opens the pull request through the proxy with the stub; pr_opened and task_done are published', async () => {
    await put('the test in homelab-apps fails, fix it and open a PR');
    await waitFor('the fix task to end', () => ends.length >= 1 || undefined, 180_000).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\nsupervisor: ${JSON.stringify(sup.logs().slice(-20))}`);
    });
    expect(ends[0]).toContain(`https://github.com/${HOMELAB_APPS}/pull/1`);
    expect(await git.readFile(HOMELAB_APPS, BRANCH, SOURCE_FILE)).toContain(BUG.fixed);
    expect(github.pullRequests(HOMELAB_APPS)[0]).toMatchObject({ user: { login: LOGIN }, head: { ref: BRANCH }, base: { ref: 'main' } });
    // Only the real token reached GitHub and the git server's API twin; the stub never did.
    expect(github.requests.filter((r) => r.path === '/graphql').every((r) => r.authorization === `token ${REAL}`)).toBe(true);
    expect(JSON.stringify(github.requests)).not.toContain(STUB);
    // The supervisor's publish_event took both events (pr_opened, task_done): an event id each (its structured answer).
    const published = resultsOf('mcp__agent-smith__publish_event');
    expect(published).toHaveLength(2);
    for (const r of published) expect(r).toMatchObject({ isError: false, text: expect.stringMatching(/\\"id\\":\\"[0-9a-f-]{36}\\"/) as string });
  }, 200_000);

  it('a reviewer\'s comment wakes it through the supervisor\'s PR watcher: a second commit, an answer in the thread', async () => {
    const before = (await git.branch(HOMELAB_APPS, BRANCH))!.sha;
    const comment = github.addReviewComment({ repo: HOMELAB_APPS, number: 1, author: 'alice', body: 'Please drop punctuation too.', path: SOURCE_FILE, line: 3 });
    const reply = await waitFor('the agent\'s reply in the thread', () => github.reviewComments(HOMELAB_APPS, 1).find((c) => c.user?.login === LOGIN), 120_000).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\nsupervisor: ${JSON.stringify(sup.logs().slice(-20))}`);
    });
    expect(reply.in_reply_to_id).toBe(comment.id);
    const after = (await git.branch(HOMELAB_APPS, BRANCH))!.sha;
    expect(after).not.toBe(before);
    expect(await git.readFile(HOMELAB_APPS, BRANCH, SOURCE_FILE)).toContain(REVIEW_CHANGE.fixed);
  }, 200_000);
});
