/**
 * The PR watcher (agent-image/src/plugins/github) against the GitHub fake over real HTTPS: what
 * it reports as unanswered, that an unchanged pull request costs no rate limit (304s, no
 * GraphQL), and that rate limits and bad tokens are logged, not thrown.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeGitHubClient } from '../../agent-image/src/plugins/github/client.ts';
import { PrWatcher } from '../../agent-image/src/plugins/github/watcher.ts';
import { startGitHubFake, type GitHubFake } from '../../scripts/lib/fakes/github-api.ts';
import { capturingLogger } from '../support/log.ts';

const AGENT = 'devbot';
const AGENT_TOKEN = 'ghp_AgentToken000000000000000000000000001';
const REPO = 'acme/app';

describe('PR watcher against the GitHub fake', () => {
  let fake: GitHubFake;
  let stateDir: string;
  let lines: Array<Record<string, unknown>>;

  beforeEach(async () => {
    fake = await startGitHubFake();
    fake.addUser(AGENT, AGENT_TOKEN);
    fake.addUser('alice', 'ghp_alice');
    stateDir = await mkdtemp(join(tmpdir(), 'gh-watcher-'));
    lines = [];
  });
  afterEach(async () => {
    await fake.close();
    await rm(stateDir, { recursive: true, force: true });
  });

  const watcher = (token = AGENT_TOKEN) => {
    const log = capturingLogger(lines, 'debug');
    const octokit = makeGitHubClient({ apiUrl: fake.url, token, log, env: {}, ca: [fake.caPem], retryAfterBaseValue: 10, maxRetryWaitSeconds: 5 });
    return { octokit, watcher: new PrWatcher({ octokit, login: AGENT, repos: [REPO], stateDir, log }) };
  };

  it('reports an unanswered review comment on the agent\'s PR only, and nothing once the agent replied', async () => {
    const mine = fake.openPullRequest({ repo: REPO, author: AGENT, title: 'Add retries' });
    const theirs = fake.openPullRequest({ repo: REPO, author: 'alice', title: 'Alice\'s change' });
    const c = fake.addReviewComment({ repo: REPO, number: mine.number, author: 'alice', body: 'Why 3 retries?', path: 'src/retry.ts', line: 4 });
    fake.addReviewComment({ repo: REPO, number: theirs.number, author: 'alice', body: 'note to self' });
    const { octokit, watcher: w } = watcher();

    const first = await w.check();
    expect(first).toMatchObject({ complete: true, pullRequests: 1 });
    expect(first.items).toEqual([expect.objectContaining({ key: `rc:${c.id}`, repo: REPO, number: mine.number, author: 'alice', path: 'src/retry.ts', line: 4, excerpt: 'Why 3 retries?', url: c.html_url })]);

    // The agent answers in the thread (as an agent's tool would).
    await octokit.rest.pulls.createReplyForReviewComment({ owner: 'acme', repo: 'app', pull_number: mine.number, comment_id: Number(c.id), body: 'Three is what the SLO allows.' });
    expect(fake.reviewComments(REPO, mine.number).at(-1)).toMatchObject({ in_reply_to_id: c.id, user: { login: AGENT } });
    expect((await w.check()).items).toEqual([]);
  });

  it('keeps state only for open pull requests: a closed one is forgotten (the watcher does not grow with every pull request ever opened)', async () => {
    const first = fake.openPullRequest({ repo: REPO, author: AGENT, title: 'First' });
    const second = fake.openPullRequest({ repo: REPO, author: AGENT, title: 'Second' });
    fake.addReviewComment({ repo: REPO, number: first.number, author: 'alice', body: 'Why?' });
    fake.addReviewComment({ repo: REPO, number: second.number, author: 'alice', body: 'And this?' });
    const { watcher: w } = watcher();
    expect((await w.check()).items).toHaveLength(2);
    expect(w.trackedPullRequests).toBe(2);

    fake.closePullRequest(REPO, first.number);
    const after = await w.check();
    expect(after).toMatchObject({ complete: true, pullRequests: 1 });
    expect(after.items.map((i) => i.number)).toEqual([second.number]);
    expect(w.trackedPullRequests).toBe(1);
  });

  it('an unchanged pull request costs no rate limit: every GET is a 304 and GraphQL is not asked again', async () => {
    const pr = fake.openPullRequest({ repo: REPO, author: AGENT, title: 'Add retries' });
    fake.addReview({ repo: REPO, number: pr.number, author: 'alice', body: 'Please add a test', state: 'CHANGES_REQUESTED' });
    const { watcher: w } = watcher();
    expect((await w.check()).items).toHaveLength(1);
    const remaining = (await fetchRemaining()) ?? 0;
    const before = fake.requests.length;

    const again = await w.check();
    expect(again.items).toHaveLength(1);
    const second = fake.requests.slice(before);
    // pulls list, then the review comments, reviews and conversation comments of the one PR
    expect(second.map((r) => `${r.method} ${r.status}`)).toEqual(['GET 304', 'GET 304', 'GET 304', 'GET 304']);
    expect(second.every((r) => r.ifNoneMatch)).toBe(true);
    expect((await fetchRemaining()) ?? 0).toBe(remaining - 1); // the probe's own request, nothing else

    // A restarted supervisor (a new watcher on the same home volume) still sends If-None-Match.
    const mark = fake.requests.length;
    const { watcher: w2 } = watcher();
    expect((await w2.check()).items).toHaveLength(1);
    const restarted = fake.requests.slice(mark);
    expect(restarted.filter((r) => r.method === 'GET').every((r) => r.status === 304)).toBe(true);
    expect(restarted.filter((r) => r.path === '/graphql')).toHaveLength(1); // thread resolution is not cached on disk
  });

  /** The agent's remaining core requests, read with a request of its own. */
  async function fetchRemaining(): Promise<number | undefined> {
    const res = await watcher().octokit.request('GET /user');
    return Number(res.headers['x-ratelimit-remaining']);
  }

  it('reads every page of a long list (Link rel="next")', async () => {
    const pr = fake.openPullRequest({ repo: REPO, author: AGENT, title: 'Busy PR' });
    for (let i = 0; i < 120; i++) fake.addIssueComment({ repo: REPO, number: pr.number, author: i % 2 ? 'alice' : AGENT, body: `comment ${i}` });
    const { watcher: w } = watcher();
    const result = await w.check();
    // The last comment (119, alice's) is after the agent's last (118): one item, found on page 2.
    expect(result.items.map((i) => i.excerpt)).toEqual(['comment 119']);
    expect(fake.requests.filter((r) => r.path.endsWith('/issues/1/comments')).map((r) => r.query.page)).toEqual(['1', '2']);
  });

  it('a thread resolved on GitHub is not reported', async () => {
    const pr = fake.openPullRequest({ repo: REPO, author: AGENT, title: 'Add retries' });
    const c = fake.addReviewComment({ repo: REPO, number: pr.number, author: 'alice', body: 'nit' });
    fake.resolveThread(REPO, pr.number, Number(c.id));
    const { watcher: w } = watcher();
    expect((await w.check()).items).toEqual([]);
  });

  it('a thread the reviewer resolves after it was reported stops being reported (REST shows no resolution: GraphQL is asked again)', async () => {
    const pr = fake.openPullRequest({ repo: REPO, author: AGENT, title: 'Add retries' });
    const c = fake.addReviewComment({ repo: REPO, number: pr.number, author: 'alice', body: 'nit' });
    const { watcher: w } = watcher();
    expect((await w.check()).items.map((i) => i.key)).toEqual([`rc:${c.id}`]);
    fake.resolveThread(REPO, pr.number, Number(c.id));
    expect((await w.check()).items).toEqual([]);
  });

  it('an exhausted rate limit or a bad token is logged and makes the check incomplete, never a crash', async () => {
    fake.openPullRequest({ repo: REPO, author: AGENT, title: 'Add retries' });
    fake.setRemaining(AGENT, 0);
    const { watcher: w } = watcher();
    expect(await w.check()).toMatchObject({ complete: false, items: [] });
    expect(lines.some((l) => l.msg === 'GitHub primary rate limit' && l.retrying === false)).toBe(true);
    expect(lines.some((l) => String(l.msg).startsWith('cannot read the pull requests') && l.status === 403)).toBe(true);

    const { watcher: bad } = watcher('ghp_NotAToken');
    expect(await bad.check()).toMatchObject({ complete: false });
    expect(lines.some((l) => String(l.msg).startsWith('cannot read the pull requests') && l.status === 401)).toBe(true);
    expect(JSON.stringify(lines)).not.toContain(AGENT_TOKEN);
  });

  it('a secondary rate limit with a short retry-after is waited out and retried once', async () => {
    const pr = fake.openPullRequest({ repo: REPO, author: AGENT, title: 'Add retries' });
    fake.addIssueComment({ repo: REPO, number: pr.number, author: 'alice', body: 'ping' });
    fake.secondaryLimit(1, 1);
    const { watcher: w } = watcher();
    const result = await w.check();
    expect(result).toMatchObject({ complete: true });
    expect(result.items).toHaveLength(1);
    expect(lines.some((l) => l.msg === 'GitHub secondary rate limit' && l.retrying === true)).toBe(true);
    expect(fake.requests.filter((r) => r.status === 403)).toHaveLength(1);
  });
});
