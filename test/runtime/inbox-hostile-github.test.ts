/**
 * The PR watcher (agent-image/src/plugins/github/watcher.ts) against the GitHub fake over real
 * HTTPS, with odd data on some pull requests: one listed but answering 404, one whose
 * author or head commit is missing, comments without an id or with absurd sizes. The
 * other pull requests and repositories are still read and their comments reported; the
 * 404 is logged once while it lasts.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { makeGitHubClient } from '../../agent-image/src/plugins/github/client.ts';
import { GitHubMetrics } from '../../agent-image/src/plugins/github/metrics.ts';
import { PrRewake } from '../../agent-image/src/plugins/github/rewake.ts';
import { PrWatcher } from '../../agent-image/src/plugins/github/watcher.ts';
import { Inbox } from '../../agent-image/src/core/inbox.ts';
import { startGitHubFake, type GitHubFake } from '../../scripts/lib/fakes/github-api.ts';
import { capturingLogger } from '../support/log.ts';

const AGENT = 'devbot';
const AGENT_TOKEN = 'ghp_AgentToken000000000000000000000000001';

describe('PR watcher with odd pull requests and comments', () => {
  let fake: GitHubFake;
  let stateDir: string;
  let lines: Array<Record<string, unknown>>;

  beforeEach(async () => {
    fake = await startGitHubFake();
    fake.addUser(AGENT, AGENT_TOKEN);
    fake.addUser('alice', 'ghp_alice');
    stateDir = await mkdtemp(join(tmpdir(), 'gh-hostile-'));
    lines = [];
  });
  afterEach(async () => {
    await fake.close();
    await rm(stateDir, { recursive: true, force: true });
  });

  it('reads the other pull requests and repositories when one pull request answers 404, one has no author or head, and comments are malformed', async () => {
    // acme/app: the fake hands back its own records, so changing them is changing what GitHub answers.
    const gone = fake.openPullRequest({ repo: 'acme/app', author: AGENT, title: 'Listed, but its comments are 404' });
    const noAuthor = fake.openPullRequest({ repo: 'acme/app', author: 'alice', title: 'No user' });
    const noHead = fake.openPullRequest({ repo: 'acme/app', author: AGENT, title: 'No head' });
    const good = fake.openPullRequest({ repo: 'acme/app', author: AGENT, title: 'Fine' });
    const wanted = fake.addReviewComment({ repo: 'acme/app', number: good.number, author: 'alice', body: 'Why? MARK-good', path: 'a.ts', line: 1 });
    const huge = fake.addIssueComment({ repo: 'acme/app', number: good.number, author: 'alice', body: `MARK-huge ${'y'.repeat(1024 * 1024)}` });
    const noId = fake.addIssueComment({ repo: 'acme/app', number: good.number, author: 'alice', body: 'no id MARK-noid' });
    const oddUser = fake.addReviewComment({ repo: 'acme/app', number: good.number, author: 'alice', body: 'odd user MARK-odd', path: 'b.ts', line: 2 });
    Object.assign(gone, { number: 9999 });
    Object.assign(noAuthor, { user: {} });
    Object.assign(noHead, { head: null });
    Object.assign(noId, { id: null });
    Object.assign(oddUser, { user: { login: 42 }, line: 'seven', created_at: null });
    // acme/lib: an ordinary pull request with a comment waiting.
    const lib = fake.openPullRequest({ repo: 'acme/lib', author: AGENT, title: 'Lib change' });
    const libComment = fake.addIssueComment({ repo: 'acme/lib', number: lib.number, author: 'alice', body: 'And here? MARK-lib' });

    const log = capturingLogger(lines, 'debug');
    const octokit = makeGitHubClient({ apiUrl: fake.url, token: AGENT_TOKEN, log, env: {}, ca: [fake.caPem], retryAfterBaseValue: 10, maxRetryWaitSeconds: 5 });
    const watcher = new PrWatcher({ octokit, login: AGENT, repos: ['acme/app', 'acme/lib'], stateDir, log });

    const first = await watcher.check();
    const keys = first.items.map((i) => i.key);
    expect(keys).toEqual(expect.arrayContaining([`rc:${wanted.id}`, `ic:${huge.id}`, `ic:${libComment.id}`]));
    // The comment whose author is odd is still reported (by "ghost"); the one without an id is not.
    expect(first.items.find((i) => i.excerpt.includes('MARK-odd'))).toMatchObject({ author: 'ghost', path: 'b.ts' });
    expect(first.items.some((i) => i.excerpt.includes('MARK-noid'))).toBe(false);
    expect(first.items.find((i) => i.key === `ic:${huge.id}`)!.excerpt.length).toBeLessThanOrEqual(160);
    // The 404 pull request makes the result a lower bound, and is named once in the log.
    expect(first).toMatchObject({ complete: false, pullRequests: 2 });
    const warned = () => lines.filter((l) => Number(l.level) >= 40 && JSON.stringify(l).includes('#9999'));
    expect(warned()).toHaveLength(1);
    expect(warned()[0]).toMatchObject({ status: 404 });
    expect(JSON.stringify(warned()[0]).length).toBeLessThan(1000);

    // The next check: the same, and no second warning for the same failure.
    const second = await watcher.check();
    expect(second.items.map((i) => i.key).sort()).toEqual(keys.sort());
    expect(warned()).toHaveLength(1);
    expect(JSON.stringify(lines)).not.toContain(AGENT_TOKEN);
  });

  it('a rewake naming comments with absurdly long paths and URLs still reaches the inbox, bounded', async () => {
    const pr = fake.openPullRequest({ repo: 'acme/app', author: AGENT, title: 'Many comments' });
    for (let i = 0; i < 25; i++) {
      const c = fake.addReviewComment({ repo: 'acme/app', number: pr.number, author: 'alice', body: `comment ${i} MARK-${i}`, path: `${'deep/'.repeat(400)}f${i}.ts`, line: i + 1 });
      Object.assign(c, { html_url: `https://github.test/acme/app/pull/1#discussion_r${i}${'x'.repeat(5000)}` });
    }
    const log = capturingLogger(lines, 'warn');
    const octokit = makeGitHubClient({ apiUrl: fake.url, token: AGENT_TOKEN, log, env: {}, ca: [fake.caPem], retryAfterBaseValue: 10, maxRetryWaitSeconds: 5 });
    const watcher = new PrWatcher({ octokit, login: AGENT, repos: ['acme/app'], stateDir, log });
    const inbox = new Inbox(join(stateDir, 'inbox'));
    await inbox.open();
    const rewake = new PrRewake({
      watcher,
      inbox,
      probe: { hasHooks: false, status: () => ({ state: 'idle', inboxPending: 0, hookArmed: false }), capturePane: () => Promise.resolve('') },
      login: AGENT,
      intervalSeconds: 3600,
      maxConsecutiveRewakes: 3,
      stateDir,
      metrics: new GitHubMetrics(new Registry()),
      log,
      emit: () => Promise.resolve(),
    });
    await rewake.runCheck('poll');
    const m = inbox.peek();
    expect(m, JSON.stringify(lines)).toBeDefined();
    expect(m!.source).toBe('github');
    expect(m!.text).toContain('MARK-0');
    expect(m!.text.length).toBeLessThanOrEqual(64 * 1024);
  });
});
