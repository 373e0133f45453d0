/**
 * The demo's GitHub stand-ins with the real clients an agent uses: git (clone, push of a new
 * branch, a second commit, deleting the branch) against the git server as github.com, and
 * gh 2.23 (Debian bookworm's, as in the agent image: `gh pr create`, `gh api`) against the
 * GitHub fake as api.github.com. Both names reach the local servers through a CONNECT
 * tunnel (HTTPS_PROXY, as the pod's egress proxy is reached); gh trusts the fake's CA
 * through SSL_CERT_FILE (Go's crypto/x509 reads it on Linux), git through GIT_SSL_CAINFO.
 * gh authenticates with GH_TOKEN, git with an Authorization header (http.extraHeader).
 *
 * What the PR watcher then sees (REST and its GraphQL query) is what gh created.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Agent, fetch as undiciFetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { THREADS_QUERY } from '../../agent-image/src/plugins/github/watcher.ts';
import { startGitHubFake, type GitHubFake, type PullRequestSimple } from '../../scripts/lib/fakes/github-api.ts';
import { startGitServer, type GitServer } from '../../scripts/lib/fakes/git-server.ts';
import { HOMELAB_APPS, HOMELAB_APPS_FILES } from '../../scripts/lib/demo/worker-model.ts';
import { startStandInProxy, writeCaBundle, type StandInProxy } from '../support/stand-ins.ts';

const run = promisify(execFile);
const LOGIN = 'devbot-agent';
const TOKEN = 'ghp_DevbotToken00000000000000000000000001';
const PASSWORD = 'git-password-0001';

describe('gh and git against the GitHub fake and the git server as github.com', () => {
  let git: GitServer;
  let github: GitHubFake;
  let tunnel: StandInProxy;
  let dir: string;
  let clone: string;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gh-fake-'));
    git = await startGitServer({ repos: { [HOMELAB_APPS]: HOMELAB_APPS_FILES }, hostnames: ['github.com'], basicPassword: PASSWORD });
    github = await startGitHubFake({ hostnames: ['api.github.com'], git });
    github.addUser(LOGIN, TOKEN, 'User');
    github.addUser('alice', 'ghp_alice');
    github.addRepository(HOMELAB_APPS);
    tunnel = await startStandInProxy({
      'github.com:443': { host: '127.0.0.1', port: Number(new URL(git.url).port) },
      'api.github.com:443': { host: '127.0.0.1', port: github.port },
    });
    const ca = await writeCaBundle(join(dir, 'ca.pem'), [git.caPem, github.caPem]);
    env = {
      PATH: process.env.PATH,
      HOME: dir,
      HTTPS_PROXY: tunnel.url,
      SSL_CERT_FILE: ca,
      GIT_SSL_CAINFO: ca,
      GH_TOKEN: TOKEN,
      GH_NO_UPDATE_NOTIFIER: '1',
      GH_PROMPT_DISABLED: '1',
      NO_COLOR: '1',
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_COUNT: '3',
      GIT_CONFIG_KEY_0: 'http.https://github.com/.extraHeader',
      GIT_CONFIG_VALUE_0: `Authorization: Basic ${Buffer.from(`x-access-token:${PASSWORD}`).toString('base64')}`,
      GIT_CONFIG_KEY_1: 'user.name',
      GIT_CONFIG_VALUE_1: 'devbot',
      GIT_CONFIG_KEY_2: 'user.email',
      GIT_CONFIG_VALUE_2: `${LOGIN}@users.noreply.github.com`,
    };
    clone = join(dir, 'homelab-apps');
    await run('git', ['clone', '-q', `https://github.com/${HOMELAB_APPS}.git`, clone], { env });
  }, 60_000);

  afterAll(async () => {
    await tunnel?.close();
    await github?.close();
    await git?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const sh = (cmd: string) => run('sh', ['-c', cmd], { cwd: clone, env, encoding: 'utf8' });
  const gh = (...args: string[]) => run('gh', args, { cwd: clone, env, encoding: 'utf8' });
  const ghFails = (...args: string[]) => gh(...args).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
  const rest = async <T>(path: string, token = TOKEN): Promise<T> => {
    const res = await undiciFetch(`${github.url}${path}`, { headers: { authorization: `Bearer ${token}` }, dispatcher: new Agent({ connect: { ca: github.caPem } }) });
    expect(res.status).toBe(200);
    return (await res.json()) as T;
  };

  it('the cloned project\'s test fails; a new branch pushed through the tunnel is on the git server', async () => {
    const failing = await sh('node --test').then(() => 'passed', (e: { stdout: string }) => e.stdout);
    expect(failing).toMatch(/fail 1/);
    await sh(`sed -i "s/join('_')/join('-')/" src/slug.mjs && node --test && git checkout -q -b fix/slugify-dashes && git commit -qam 'slugify: dashes' && git push -q -u origin fix/slugify-dashes`);
    const head = (await sh('git rev-parse HEAD')).stdout.trim();
    expect(await git.branch(HOMELAB_APPS, 'fix/slugify-dashes')).toMatchObject({ sha: head });
    expect(await git.readFile(HOMELAB_APPS, 'fix/slugify-dashes', 'src/slug.mjs')).toContain(".join('-')");
    expect(await git.readFile(HOMELAB_APPS, 'main', 'src/slug.mjs')).toContain(".join('_')");
  });

  let pr: PullRequestSimple;
  it('gh pr create opens the pull request as the token\'s user; the watcher\'s REST list shows it with head, base and html_url', async () => {
    const created = await gh('pr', 'create', '--title', 'Fix slugify', '--body', 'Joins with dashes.', '--head', 'fix/slugify-dashes', '--base', 'main');
    expect(created.stdout.trim()).toBe(`https://github.com/${HOMELAB_APPS}/pull/1`);
    // gh's requests: GraphQL only (repository info, existing pull requests for the branch, the mutation), with its `token` scheme.
    const fromGh = github.requests.filter((r) => r.path === '/graphql');
    expect(fromGh.map((r) => /(?:query|mutation) (\w+)/.exec((JSON.parse(r.body) as { query: string }).query)?.[1])).toEqual(['RepositoryInfo', 'PullRequestForBranch', 'PullRequestCreate']);
    expect(fromGh.every((r) => r.authorization === `token ${TOKEN}` && r.status === 200)).toBe(true);

    const list = await rest<PullRequestSimple[]>(`/repos/${HOMELAB_APPS}/pulls?state=open`);
    expect(list).toHaveLength(1);
    pr = list[0]!;
    expect(pr).toMatchObject({ number: 1, title: 'Fix slugify', body: 'Joins with dashes.', state: 'open', html_url: `https://github.com/${HOMELAB_APPS}/pull/1`, user: { login: LOGIN } });
    expect(pr.head).toMatchObject({ ref: 'fix/slugify-dashes', label: 'agent-smith:fix/slugify-dashes', sha: (await git.branch(HOMELAB_APPS, 'fix/slugify-dashes'))!.sha });
    expect(pr.base).toMatchObject({ ref: 'main' });
    expect(github.pullRequests(HOMELAB_APPS)).toHaveLength(1);
  });

  it('a second gh pr create for the branch is refused, naming the open one; a branch the git server lacks is refused with GitHub\'s words', async () => {
    const again = await ghFails('pr', 'create', '--title', 'Again', '--body', 'x', '--head', 'fix/slugify-dashes', '--base', 'main');
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`https://github.com/${HOMELAB_APPS}/pull/1`);
    const missing = await ghFails('pr', 'create', '--title', 'Nothing', '--body', 'x', '--head', 'no-such-branch', '--base', 'main');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('Head sha can\'t be blank');
    expect(github.pullRequests(HOMELAB_APPS)).toHaveLength(1);
  });

  it('a reviewer\'s comment is answered with gh api (a reply in its thread, by the token\'s user); a second push is the head the watcher\'s GraphQL query sees', async () => {
    const comment = github.addReviewComment({ repo: HOMELAB_APPS, number: pr.number, author: 'alice', body: 'Please drop punctuation too.', path: 'src/slug.mjs', line: 3 });
    const replied = await gh('api', `repos/${HOMELAB_APPS}/pulls/${pr.number}/comments/${comment.id}/replies`, '-f', 'body=Done in the next commit.', '--jq', '.html_url');
    expect(replied.stdout).toContain(`https://github.com/${HOMELAB_APPS}/pull/1#discussion_r`);
    expect(github.reviewComments(HOMELAB_APPS, pr.number).at(-1)).toMatchObject({ in_reply_to_id: comment.id, body: 'Done in the next commit.', user: { login: LOGIN } });

    await sh(`echo '// punctuation' >> src/slug.mjs && git commit -qam 'drop punctuation' && git push -q`);
    const second = (await sh('git rev-parse HEAD')).stdout.trim();
    const q = await gh('api', 'graphql', '-f', `query=${THREADS_QUERY}`, '-f', 'owner=agent-smith', '-f', 'name=homelab-apps', '-F', `number=${pr.number}`);
    const data = JSON.parse(q.stdout) as { data: { repository: { pullRequest: { commits: { nodes: Array<{ commit: { oid: string } }> }; reviewThreads: { nodes: Array<{ isResolved: boolean; comments: { nodes: Array<{ databaseId: number }> } }> } } } } };
    expect(data.data.repository.pullRequest.commits.nodes[0]?.commit.oid).toBe(second);
    expect(data.data.repository.pullRequest.reviewThreads.nodes).toEqual([{ isResolved: false, comments: { nodes: [{ databaseId: comment.id }] } }]);
    expect((await rest<PullRequestSimple>(`/repos/${HOMELAB_APPS}/pulls/${pr.number}`)).head.sha).toBe(second);
  });

  it('git push origin --delete removes the branch on the git server', async () => {
    await sh('git checkout -q main && git push -q origin --delete fix/slugify-dashes');
    expect(await git.branches(HOMELAB_APPS)).toEqual(['main']);
    expect(await git.branch(HOMELAB_APPS, 'fix/slugify-dashes')).toBeUndefined();
  });

  it('gh against GitHub Enterprise paths (GH_HOST): the same fake answers /api/v3 and /api/graphql', async () => {
    const fake = await startGitHubFake({ hostnames: ['ghe.test'] });
    try {
      fake.addUser(LOGIN, TOKEN);
      const t = await startStandInProxy({ 'ghe.test:443': { host: '127.0.0.1', port: fake.port } });
      try {
        const ca = await writeCaBundle(join(dir, 'ghe-ca.pem'), [fake.caPem]);
        const r = await run('gh', ['api', 'user', '--jq', '.login'], { env: { ...env, HTTPS_PROXY: t.url, SSL_CERT_FILE: ca, GH_HOST: 'ghe.test', GH_TOKEN: '', GH_ENTERPRISE_TOKEN: TOKEN }, encoding: 'utf8' });
        expect(r.stdout.trim()).toBe(LOGIN);
        expect(fake.requests.map((x) => x.path)).toContain('/user');
      } finally {
        await t.close();
      }
    } finally {
      await fake.close();
    }
  });
});
