/**
 * The PR watcher: which open pull requests in the agent's repositories are authored by
 * its GitHub login, and what on them waits for its answer (rules in unanswered.ts).
 *
 * Requests per check, all conditional (a 304 is free; client.ts):
 * - `GET /repos/{owner}/{repo}/pulls?state=open` per repository
 *   (docs.github.com/en/rest/pulls/pulls#list-pull-requests);
 * - per pull request of the agent: `GET .../pulls/{n}/comments` (review comments,
 *   docs.github.com/en/rest/pulls/comments), `GET .../pulls/{n}/reviews`
 *   (docs.github.com/en/rest/pulls/reviews), `GET .../issues/{n}/comments`
 *   (docs.github.com/en/rest/issues/comments);
 * - GraphQL, when one of those or the head commit changed since the last check, or while
 *   a review thread waits on the agent:
 *   `pullRequest.reviewThreads { isResolved, comments(first: 1) { databaseId } }` (REST
 *   has no thread resolution, so resolving a thread changes no REST ETag; asking again
 *   while one waits is what notices a reviewer resolving it) and the head commit's
 *   `committedDate` (docs.github.com/en/graphql/reference/objects#pullrequestreviewthread).
 * So a quiet hour of polling costs no rate limit at all when no thread waits on the agent,
 * and one GraphQL point per pull request and check while one does.
 */
import path from 'node:path';
import type { Logger } from '../log.ts';
import { cachedList, ConditionalCache, errorStatus, type GitHubOctokit } from './client.ts';
import { unansweredItems, type IssueCommentLike, type PullRequestSnapshot, type ReviewCommentLike, type ReviewLike, type UnansweredItem } from './unanswered.ts';

/** The one GraphQL query of the watcher. */
export const THREADS_QUERY = `query PrReviewThreads($owner: String!, $name: String!, $number: Int!) {
  repository(owner: $owner, name: $name) {
    pullRequest(number: $number) {
      commits(last: 1) { nodes { commit { oid committedDate } } }
      reviewThreads(first: 100) { nodes { isResolved comments(first: 1) { nodes { databaseId } } } }
    }
  }
}`;

/** The response data of THREADS_QUERY. */
export interface ThreadsQueryData {
  repository: {
    pullRequest: {
      commits: { nodes: Array<{ commit: { oid: string; committedDate: string } }> };
      reviewThreads: { nodes: Array<{ isResolved: boolean; comments: { nodes: Array<{ databaseId: number | null }> } }> };
    } | null;
  } | null;
}

export interface PrWatcherOptions {
  octokit: GitHubOctokit;
  /** The agent's GitHub login. */
  login: string;
  /** `owner/repo` names to watch. */
  repos: string[];
  /** Where the conditional-request cache lives (the home volume). */
  stateDir: string;
  log: Logger;
}

/** What one check found. */
export interface CheckResult {
  items: UnansweredItem[];
  /** Open pull requests of the agent that were looked at. */
  pullRequests: number;
  /** False when a repository could not be read (the items are then a lower bound). */
  complete: boolean;
}

interface ThreadInfo {
  fingerprint: string;
  resolved: Map<number, boolean>;
  headCommittedAt: string | undefined;
}

const user = (u: { login: string } | null | undefined) => (u ? { login: u.login } : null);

/**
 * Reads the agent's open pull requests in its repositories and decides what waits on it
 * (unanswered.ts). Keeps the conditional-request cache under `<stateDir>/github/http-cache`
 * and, in memory, each pull request's thread resolution with the fingerprint it was read at.
 */
export class PrWatcher {
  private readonly opts: PrWatcherOptions;
  private readonly cache: ConditionalCache;
  private readonly threads = new Map<string, ThreadInfo>();

  constructor(opts: PrWatcherOptions) {
    this.opts = opts;
    this.cache = new ConditionalCache(path.join(opts.stateDir, 'github', 'http-cache'));
  }

  /** Reads every watched repository. Never throws: a failing repository is logged and makes the result incomplete. */
  async check(): Promise<CheckResult> {
    const result: CheckResult = { items: [], pullRequests: 0, complete: true };
    for (const repo of this.opts.repos) {
      const [owner, name] = repo.split('/');
      if (!owner || !name) continue;
      try {
        const pulls = await cachedList(this.cache, `GET /repos/${repo}/pulls?state=open`, (page, headers) =>
          this.opts.octokit.rest.pulls.list({ owner, repo: name, state: 'open', per_page: 100, page, headers }),
        );
        const mine = pulls.items.filter((p) => p.user?.login.toLowerCase() === this.opts.login.toLowerCase());
        for (const pr of mine) {
          result.items.push(...(await this.unanswered(owner, name, { number: pr.number, title: pr.title, url: pr.html_url, headSha: pr.head.sha })));
          result.pullRequests++;
        }
      } catch (err) {
        result.complete = false;
        const status = errorStatus(err);
        this.opts.log.warn({ repo, status, error: (err as Error).message }, 'cannot read the pull requests of a repository; trying again at the next check');
      }
    }
    return result;
  }

  /** The unanswered items of one pull request, asking GraphQL only when its answer may have changed (see the module comment). */
  private async unanswered(owner: string, name: string, pr: { number: number; title: string; url: string; headSha: string }): Promise<UnansweredItem[]> {
    const { octokit, login } = this.opts;
    const { fingerprint, snapshot } = await this.restSnapshot(owner, name, pr);
    const key = `${snapshot.repo}#${pr.number}`;
    const cached = this.threads.get(key);
    if (cached?.fingerprint === fingerprint) {
      const items = unansweredItems({ ...snapshot, resolvedThreads: cached.resolved, headCommittedAt: cached.headCommittedAt }, login);
      // A waiting thread may have been resolved since: REST would not show it.
      if (!items.some((i) => i.kind === 'review_comment')) return items;
    }
    const data = await octokit.graphql<ThreadsQueryData>(THREADS_QUERY, { owner, name, number: pr.number });
    const p = data.repository?.pullRequest;
    const resolved = new Map<number, boolean>();
    for (const t of p?.reviewThreads.nodes ?? []) {
      const root = t.comments.nodes[0]?.databaseId;
      if (typeof root === 'number') resolved.set(root, t.isResolved);
    }
    const info: ThreadInfo = { fingerprint, resolved, headCommittedAt: p?.commits.nodes[0]?.commit.committedDate };
    this.threads.set(key, info);
    return unansweredItems({ ...snapshot, resolvedThreads: info.resolved, headCommittedAt: info.headCommittedAt }, login);
  }

  /** The REST part of a pull request's snapshot, and a fingerprint of it (head commit and the lists' ETags). */
  private async restSnapshot(
    owner: string,
    name: string,
    pr: { number: number; title: string; url: string; headSha: string },
  ): Promise<{ fingerprint: string; snapshot: Omit<PullRequestSnapshot, 'resolvedThreads' | 'headCommittedAt'> }> {
    const { octokit } = this.opts;
    const repo = `${owner}/${name}`;
    const base = `/repos/${repo}`;
    const [comments, reviews, issueComments] = await Promise.all([
      cachedList(this.cache, `GET ${base}/pulls/${pr.number}/comments?sort=created`, (page, headers) =>
        octokit.rest.pulls.listReviewComments({ owner, repo: name, pull_number: pr.number, sort: 'created', direction: 'asc', per_page: 100, page, headers }),
      ),
      cachedList(this.cache, `GET ${base}/pulls/${pr.number}/reviews`, (page, headers) => octokit.rest.pulls.listReviews({ owner, repo: name, pull_number: pr.number, per_page: 100, page, headers })),
      cachedList(this.cache, `GET ${base}/issues/${pr.number}/comments`, (page, headers) => octokit.rest.issues.listComments({ owner, repo: name, issue_number: pr.number, per_page: 100, page, headers })),
    ]);
    const fingerprint = [pr.headSha, comments.etags, reviews.etags, issueComments.etags].join('|');
    const snapshot = {
      repo,
      number: pr.number,
      title: pr.title,
      url: pr.url,
      reviewComments: comments.items.map(
        (c): ReviewCommentLike => ({
          id: Number(c.id),
          in_reply_to_id: c.in_reply_to_id,
          user: user(c.user),
          body: c.body,
          path: c.path,
          line: c.line,
          original_line: c.original_line,
          created_at: c.created_at,
          html_url: c.html_url,
        }),
      ),
      reviews: reviews.items.map((r): ReviewLike => ({ id: Number(r.id), user: user(r.user), body: r.body, state: r.state, submitted_at: r.submitted_at, html_url: r.html_url })),
      issueComments: issueComments.items.map((c): IssueCommentLike => ({ id: Number(c.id), user: user(c.user), body: c.body, created_at: c.created_at, html_url: c.html_url })),
    };
    return { fingerprint, snapshot };
  }
}
