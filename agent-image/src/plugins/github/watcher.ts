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
 *
 * One odd pull request or comment never stops the others: a repository, or a pull request,
 * that cannot be read (a 404, a GraphQL error) is logged once while it keeps failing and
 * makes the check incomplete; the others are read. What GitHub sends is checked where it
 * enters (zod, lenient): a list item without the fields the decision needs is skipped and
 * counted, an odd optional field is read as absent, bodies are cut to MAX_BODY_CHARS, and
 * at most MAX_PULL_REQUESTS_PER_REPO of the agent's pull requests are read per repository.
 */
import path from 'node:path';
import { z } from 'zod';
import type { Logger } from '../../lib/log.ts';
import { cachedList, ConditionalCache, errorStatus, type GitHubOctokit } from './client.ts';
import { unansweredItems, type IssueCommentLike, type PullRequestSnapshot, type ReviewCommentLike, type ReviewLike, type UnansweredItem } from './unanswered.ts';

/** Most of the agent's open pull requests read per repository and check (the oldest beyond it wait). */
export const MAX_PULL_REQUESTS_PER_REPO = 50;
/** Longest comment or review body kept (characters): a rewake shows an excerpt of 160. */
export const MAX_BODY_CHARS = 4096;
/** Longest error text in a log line (characters). */
const MAX_ERROR_CHARS = 300;

// The fields the decision needs, checked leniently: ids and numbers must be there, other
// fields fall back to "absent" when GitHub (or something in between) sends an odd value.
const id = z.number().int().positive();
const login = z.object({ login: z.string().min(1).max(256) }).nullable().catch(null);
const str = (max: number) => z.string().catch('').transform((v) => v.slice(0, max));
const optionalInt = z.number().int().nullable().optional().catch(undefined);
const PullItem = z.object({ number: id, title: str(512), html_url: str(2048), user: login, head: z.object({ sha: z.string().min(1).max(128) }) });
const ReviewCommentItem = z.object({
  id,
  in_reply_to_id: id.optional().catch(undefined),
  user: login,
  body: str(MAX_BODY_CHARS),
  path: str(1024),
  line: optionalInt,
  original_line: optionalInt,
  created_at: str(64),
  html_url: str(2048),
});
const ReviewItem = z.object({ id, user: login, body: str(MAX_BODY_CHARS).nullable().catch(null), state: str(64), submitted_at: z.string().max(64).optional().catch(undefined), html_url: str(2048) });
const IssueCommentItem = z.object({ id, user: login, body: str(MAX_BODY_CHARS).optional(), created_at: str(64), html_url: str(2048) });

/** The items of `list` that pass `schema`, and how many did not. */
function valid<T>(schema: z.ZodType<T>, list: readonly unknown[]): { items: T[]; skipped: number } {
  const items: T[] = [];
  for (const raw of list) {
    const r = schema.safeParse(raw);
    if (r.success) items.push(r.data);
  }
  return { items, skipped: list.length - items.length };
}

const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ').slice(0, MAX_ERROR_CHARS);

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
  /** False when a repository or a pull request could not be read (the items are then a lower bound). */
  complete: boolean;
  /** Pull requests that could not be read, and list items (pull requests, comments, reviews) skipped as malformed, in this check. */
  skipped?: { pullRequests: number; items: number } | undefined;
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
  /** What keeps failing (`owner/repo` or `owner/repo#n` -> error), so each is logged once until it recovers. */
  private readonly failing = new Map<string, string>();

  constructor(opts: PrWatcherOptions) {
    this.opts = opts;
    this.cache = new ConditionalCache(path.join(opts.stateDir, 'github', 'http-cache'));
  }

  /** Reads every watched repository. Never throws: a failing repository or pull request is logged (once while it fails) and makes the result incomplete. */
  async check(): Promise<CheckResult> {
    const skipped = { pullRequests: 0, items: 0 };
    const result: CheckResult = { items: [], pullRequests: 0, complete: true, skipped };
    for (const repo of this.opts.repos) {
      const [owner, name] = repo.split('/');
      if (!owner || !name) continue;
      let mine: Array<z.infer<typeof PullItem>>;
      try {
        const pulls = await cachedList(this.cache, `GET /repos/${repo}/pulls?state=open`, (page, headers) =>
          this.opts.octokit.rest.pulls.list({ owner, repo: name, state: 'open', per_page: 100, page, headers }),
        );
        const checked = valid(PullItem, pulls.items);
        skipped.items += checked.skipped;
        mine = checked.items.filter((p) => p.user?.login.toLowerCase() === this.opts.login.toLowerCase());
        this.recovered(repo);
      } catch (err) {
        result.complete = false;
        this.failed(repo, err, 'cannot read the pull requests of a repository; trying again at every check');
        continue;
      }
      if (mine.length > MAX_PULL_REQUESTS_PER_REPO) {
        this.opts.log.debug({ repo, open: mine.length, read: MAX_PULL_REQUESTS_PER_REPO }, 'more open pull requests of the agent than one check reads');
        mine = mine.sort((a, b) => b.number - a.number).slice(0, MAX_PULL_REQUESTS_PER_REPO);
      }
      this.forgetClosed(repo, new Set(mine.map((p) => `${repo}#${p.number}`)));
      for (const pr of mine) {
        const key = `${repo}#${pr.number}`;
        try {
          const { items, skipped: prSkipped } = await this.unanswered(owner, name, { number: pr.number, title: pr.title, url: pr.html_url, headSha: pr.head.sha });
          result.items.push(...items);
          skipped.items += prSkipped;
          result.pullRequests++;
          this.recovered(key);
        } catch (err) {
          result.complete = false;
          skipped.pullRequests++;
          this.failed(key, err, 'cannot read a pull request; the others are read, this one again at every check');
        }
      }
    }
    if (skipped.items) this.opts.log.debug({ skipped: skipped.items }, 'malformed pull requests, comments or reviews skipped');
    return result;
  }

  /** Logs a failure of `key` (a repository or pull request) once while it keeps failing the same way. */
  private failed(key: string, err: unknown, msg: string): void {
    const error = errorText(err);
    const status = errorStatus(err);
    const was = this.failing.get(key);
    this.failing.set(key, `${status ?? ''} ${error}`);
    if (was === `${status ?? ''} ${error}`) return;
    this.opts.log.warn({ [key.includes('#') ? 'pullRequest' : 'repo']: key, status, error }, msg);
  }

  /**
   * Drops what is kept per pull request (thread resolutions, failure notes) for the pull
   * requests of `repo` that are no longer among the open ones read (`open`, keys
   * `owner/repo#n`): a closed or merged pull request is not read again, so without this
   * both maps would grow with every pull request the agent ever opened.
   */
  private forgetClosed(repo: string, open: Set<string>): void {
    for (const map of [this.threads, this.failing]) {
      for (const key of map.keys()) if (key.startsWith(`${repo}#`) && !open.has(key)) map.delete(key);
    }
  }

  /** How many pull requests the watcher keeps state for (thread resolutions, failure notes): the open ones it read last. */
  get trackedPullRequests(): number {
    return new Set([...this.threads.keys(), ...[...this.failing.keys()].filter((k) => k.includes('#'))]).size;
  }

  private recovered(key: string): void {
    if (this.failing.delete(key)) this.opts.log.info({ what: key }, 'readable again');
  }

  /** The unanswered items of one pull request, asking GraphQL only when its answer may have changed (see the module comment). */
  private async unanswered(owner: string, name: string, pr: { number: number; title: string; url: string; headSha: string }): Promise<{ items: UnansweredItem[]; skipped: number }> {
    const { octokit, login } = this.opts;
    const { fingerprint, snapshot, skipped } = await this.restSnapshot(owner, name, pr);
    const key = `${snapshot.repo}#${pr.number}`;
    const cached = this.threads.get(key);
    if (cached?.fingerprint === fingerprint) {
      const items = unansweredItems({ ...snapshot, resolvedThreads: cached.resolved, headCommittedAt: cached.headCommittedAt }, login);
      // A waiting thread may have been resolved since: REST would not show it.
      if (!items.some((i) => i.kind === 'review_comment')) return { items, skipped };
    }
    const data = await octokit.graphql<ThreadsQueryData>(THREADS_QUERY, { owner, name, number: pr.number });
    // Optional chaining all the way: a partial GraphQL answer (a null node) is "not known", not an error.
    const p = data?.repository?.pullRequest;
    const resolved = new Map<number, boolean>();
    for (const t of (p?.reviewThreads?.nodes ?? []).slice(0, 100)) {
      const root = t?.comments?.nodes?.[0]?.databaseId;
      if (typeof root === 'number' && typeof t.isResolved === 'boolean') resolved.set(root, t.isResolved);
    }
    const committed = p?.commits?.nodes?.[0]?.commit?.committedDate;
    const info: ThreadInfo = { fingerprint, resolved, headCommittedAt: typeof committed === 'string' ? committed.slice(0, 64) : undefined };
    this.threads.set(key, info);
    return { items: unansweredItems({ ...snapshot, resolvedThreads: info.resolved, headCommittedAt: info.headCommittedAt }, login), skipped };
  }

  /** The REST part of a pull request's snapshot, and a fingerprint of it (head commit and the lists' ETags). */
  private async restSnapshot(
    owner: string,
    name: string,
    pr: { number: number; title: string; url: string; headSha: string },
  ): Promise<{ fingerprint: string; snapshot: Omit<PullRequestSnapshot, 'resolvedThreads' | 'headCommittedAt'>; skipped: number }> {
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
    const rc = valid(ReviewCommentItem, comments.items);
    const rv = valid(ReviewItem, reviews.items);
    const ic = valid(IssueCommentItem, issueComments.items);
    const snapshot = {
      repo,
      number: pr.number,
      title: pr.title,
      url: pr.url,
      reviewComments: rc.items.map(
        (c): ReviewCommentLike => ({
          id: c.id,
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
      reviews: rv.items.map((r): ReviewLike => ({ id: r.id, user: user(r.user), body: r.body, state: r.state, submitted_at: r.submitted_at, html_url: r.html_url })),
      issueComments: ic.items.map((c): IssueCommentLike => ({ id: c.id, user: user(c.user), body: c.body, created_at: c.created_at, html_url: c.html_url })),
    };
    return { fingerprint, snapshot, skipped: rc.skipped + rv.skipped + ic.skipped };
  }
}
