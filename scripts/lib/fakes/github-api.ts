/**
 * A fake GitHub API for tests and the demo: HTTPS on 127.0.0.1 (or `host`) with a leaf of
 * its own test CA (so it can stand behind the egress proxy as `api.github.test`, or as
 * `api.github.com` in the demo), serving the REST and GraphQL calls the PR watcher, an
 * answering agent and `gh pr create` make, in GitHub's documented shapes (typed with
 * @octokit/openapi-types components).
 *
 * REST (docs.github.com/en/rest, API version 2022-11-28):
 *   GET  /user                                              simple-user of the token
 *   GET  /repos/{o}/{r}                                     repository (a known one: addRepository, or one with pull requests)
 *   GET  /repos/{o}/{r}/pulls?state&head&base&per_page&page pull-request-simple[] (newest first, as GitHub's default sort=created direction=desc;
 *                                                           head is `owner:branch`)
 *   POST /repos/{o}/{r}/pulls                               {title, head, base, body?, draft?} -> 201 the pull request, as the token's user
 *   GET  /repos/{o}/{r}/pulls/{n}                           the pull request
 *   GET  /repos/{o}/{r}/pulls/{n}/comments?per_page&page    pull-request-review-comment[] (oldest first)
 *   POST /repos/{o}/{r}/pulls/{n}/comments/{id}/replies     {body} -> 201 pull-request-review-comment, as the token's user
 *   GET  /repos/{o}/{r}/pulls/{n}/reviews?per_page&page     pull-request-review[] (chronological)
 *   GET  /repos/{o}/{r}/issues/{n}/comments?per_page&page   issue-comment[] (oldest first)
 *   POST /repos/{o}/{r}/issues/{n}/comments                 {body} -> 201 issue-comment, as the token's user
 * GraphQL (docs.github.com/en/graphql): `POST /graphql`, executed by graphql-js against
 *   the schema subset in github-graphql.ts: the watcher's THREADS_QUERY, and what gh 2.23's
 *   `pr create` sends (repository info, viewer, pull requests for a branch, the
 *   createPullRequest mutation). A field outside the subset is a GraphQL error naming it.
 * GitHub Enterprise paths (`/api/v3/...`, `/api/graphql`) are served as the same calls, so
 * `gh` with GH_HOST=<the fake's name> works too.
 *
 * Pull requests: a test opens one with `openPullRequest` (any author), or the agent does
 * (`gh pr create`, REST POST .../pulls) as the token's user. With `git` (a view of the git
 * server holding the repositories), creating a pull request checks that the head branch
 * exists there, and every read of a pull request takes its head commit (sha and commit time)
 * from the branch as it is now, so the agent's pushes show as new head commits.
 *
 * Protocol behaviour:
 * - Authentication: `Authorization: Bearer <token>` or `token <token>` of a known user;
 *   anything else is 401 `{"message": "Bad credentials", ...}`. A test can assert what
 *   arrived (`requests[].authorization`): the real token behind the proxy, never the stub.
 * - Conditional requests: every GET carries a strong ETag of its body; `If-None-Match`
 *   with it is answered 304 with no body and does not count against the rate limit
 *   (docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api).
 * - Rate limits: `x-ratelimit-limit/-remaining/-used/-reset/-resource` (`core` for REST,
 *   `graphql`) per token; at zero remaining, 403 "API rate limit exceeded" (REST) with
 *   the same headers. `secondaryLimit(n)` makes the next n requests a 403 secondary rate
 *   limit with `retry-after` (docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api).
 * - Pagination: `per_page` (default 30, max 100), `page`, and a Link header with
 *   rel="next"/"last" (docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api).
 * - Times are RFC 3339 without fractions, strictly increasing per object created, so
 *   "after" comparisons never tie.
 */
import { createHash, randomBytes } from 'node:crypto';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { components } from '@octokit/openapi-types';
import { makeTestCa } from './test-ca.ts';
import { pullRequestShape, repositoryShape, simpleUserShape, type FakeUrls } from './github-shapes.ts';
import { actorNode, commitNode, executeGitHubGraphQL, GitHubGraphQLError, pullRequestNode, slice, type CreatePullRequestInput, type GraphQLRoot } from './github-graphql.ts';

type Schemas = components['schemas'];
export type SimpleUser = Schemas['simple-user'];
export type PullRequestSimple = Schemas['pull-request-simple'];
export type ReviewComment = Schemas['pull-request-review-comment'];
export type Review = Schemas['pull-request-review'];
export type IssueComment = Schemas['issue-comment'];
type Repository = Schemas['repository'];

/** One request as the fake saw it. */
export interface GitHubFakeRequest {
  method: string;
  /** Path without the query string. */
  path: string;
  query: Record<string, string>;
  /** The Authorization header as received (undefined when absent). */
  authorization: string | undefined;
  ifNoneMatch: string | undefined;
  /** The login the token belongs to, when it is known. */
  login: string | undefined;
  status: number;
  body: string;
}

interface UserRecord {
  user: SimpleUser;
  tokens: string[];
  /** Remaining requests per resource. */
  remaining: Record<'core' | 'graphql', number>;
}

interface PullRecord {
  pr: PullRequestSimple;
  repo: string;
  comments: ReviewComment[];
  reviews: Review[];
  issueComments: IssueComment[];
  /** Resolution per thread root comment id. */
  resolved: Map<number, boolean>;
  headCommittedAt: string;
  /** GraphQL node ids of the review threads, by root comment id. */
  threadIds?: Map<number, string>;
}

/** A branch head as the git server has it. */
export interface BranchHead {
  sha: string;
  /** RFC 3339 commit time. */
  committedAt: string;
}

/** What the fake may ask of the git server that holds the repositories (see scripts/lib/fakes/git-server.ts `branch`). */
export interface GitView {
  /** The head of `branch` in `repo` (`owner/name`), undefined when there is no such branch or repository. */
  branch(repo: string, branch: string): Promise<BranchHead | undefined>;
}

export interface GitHubFake {
  /** https://127.0.0.1:<port> (the certificate also names 127.0.0.1 and the hostnames). */
  url: string;
  port: number;
  /** PEM of the fake's CA: what a client (or the egress proxy, upstream) must trust. */
  caPem: string;
  requests: GitHubFakeRequest[];
  /** A user that owns `token`; `type` "Bot" for app accounts. */
  addUser(login: string, token: string, type?: 'User' | 'Bot'): SimpleUser;
  /** Makes `repo` (`owner/name`) known (GET /repos/..., GraphQL `repository`); `defaultBranch` default main. */
  addRepository(repo: string, opts?: { defaultBranch?: string }): void;
  /**
   * Opens a pull request authored by `author` in `repo` (`owner/name`); its head commit was
   * made `committedAt` (default: now). `head` default `change-<n>`, `base` default main.
   */
  openPullRequest(o: { repo: string; author: string; title: string; body?: string; head?: string; base?: string; committedAt?: Date }): PullRequestSimple;
  /** Pull requests of `repo`, oldest first (the ones the agent opened too). */
  pullRequests(repo: string): PullRequestSimple[];
  /** Closes the pull request (a person closed or merged it): it leaves `?state=open` lists. */
  closePullRequest(repo: string, number: number): void;
  /** A new head commit on the pull request (the agent pushed). */
  push(repo: string, number: number, committedAt?: Date): void;
  /** An inline review comment (a new thread, or a reply when `inReplyTo` is set). */
  addReviewComment(o: { repo: string; number: number; author: string; body: string; path?: string; line?: number; inReplyTo?: number }): ReviewComment;
  /** A submitted review (state APPROVED, CHANGES_REQUESTED or COMMENTED). */
  addReview(o: { repo: string; number: number; author: string; body: string; state?: 'APPROVED' | 'CHANGES_REQUESTED' | 'COMMENTED' }): Review;
  addIssueComment(o: { repo: string; number: number; author: string; body: string }): IssueComment;
  /** Resolves (or unresolves) the thread whose first comment is `rootId`. */
  resolveThread(repo: string, number: number, rootId: number, resolved?: boolean): void;
  reviewComments(repo: string, number: number): ReviewComment[];
  issueComments(repo: string, number: number): IssueComment[];
  /** Sets the remaining requests of `login` (both resources unless one is named). */
  setRemaining(login: string, remaining: number, resource?: 'core' | 'graphql'): void;
  /** The next `n` requests get a secondary rate limit (403, retry-after: `retryAfterSeconds`). */
  secondaryLimit(n: number, retryAfterSeconds?: number): void;
  close(): Promise<void>;
}

const LIMIT = 5000;

function iso(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Options of {@link startGitHubFake}. */
export interface GitHubFakeOptions {
  /** Names its certificate covers besides 127.0.0.1 and `host` (default api.github.test). */
  hostnames?: string[];
  /** IPv4 address to listen on (default 127.0.0.1); the demo gives the real node's pod gateway. */
  host?: string;
  /**
   * Base of the web URLs (`html_url`, GraphQL `url`): default https://github.com when
   * `hostnames` has api.github.com, else https://github.test.
   */
  webUrl?: string;
  /** The git server holding the repositories (see {@link GitView}). */
  git?: GitView;
}

/** Starts the fake. */
export async function startGitHubFake(opts: GitHubFakeOptions = {}): Promise<GitHubFake> {
  const hostnames = opts.hostnames ?? ['api.github.test'];
  const host = opts.host ?? '127.0.0.1';
  const ca = await makeTestCa('agent-smith test GitHub CA');
  const leaf = await ca.issue([...hostnames.map((value) => ({ type: 'dns' as const, value })), ...[...new Set(['127.0.0.1', host])].map((value) => ({ type: 'ip' as const, value }))]);
  const requests: GitHubFakeRequest[] = [];
  const users = new Map<string, UserRecord>();
  const byToken = new Map<string, UserRecord>();
  const pulls = new Map<string, PullRecord>();
  const numbers = new Map<string, number>();
  let nextId = 1_000_000;
  let lastTime = 0;
  let secondary = { n: 0, retryAfter: 1 };
  const resetAt = () => Math.floor(Date.now() / 1000) + 3600;
  /** Strictly increasing times, one second apart at least. */
  const stamp = (at?: Date) => {
    const t = Math.max(at ? at.getTime() : Date.now(), lastTime + 1000);
    lastTime = Math.floor(t / 1000) * 1000;
    return iso(new Date(lastTime));
  };
  let base = 'https://api.github.test';
  const web = (opts.webUrl ?? (hostnames.includes('api.github.com') ? 'https://github.com' : 'https://github.test')).replace(/\/$/, '');
  /** Known repositories (lower-case owner/name) → their spelling and default branch. */
  const repos = new Map<string, { full: string; defaultBranch: string }>();
  const knowRepo = (full: string, defaultBranch = 'main') => {
    if (!repos.has(full.toLowerCase())) repos.set(full.toLowerCase(), { full, defaultBranch });
    return repos.get(full.toLowerCase())!;
  };

  const urls = (): FakeUrls => ({ api: base, web });
  const simpleUser = (login: string, id: number, type: string): SimpleUser => simpleUserShape(urls(), login, id, type);

  const userOf = (login: string): SimpleUser => {
    const u = users.get(login.toLowerCase());
    if (!u) throw new Error(`github fake: no user ${login} (addUser first)`);
    return u.user;
  };

  const repository = (full: string, owner: SimpleUser): Repository => repositoryShape(urls(), full, owner, repos.get(full.toLowerCase())?.defaultBranch);

  const pull = (repo: string, number: number): PullRecord => {
    const p = pulls.get(`${repo}#${number}`);
    if (!p) throw new Error(`github fake: no pull request ${repo}#${number}`);
    return p;
  };
  const touch = (p: PullRecord, at: string) => {
    p.pr.updated_at = at;
  };
  const sha = () => randomBytes(20).toString('hex');

  const reviewComment = (p: PullRecord, author: SimpleUser, body: string, path: string, line: number, inReplyTo?: number): ReviewComment => {
    const id = nextId++;
    const at = stamp();
    const r = `${base}/repos/${p.repo}`;
    const html = `${web}/${p.repo}/pull/${p.pr.number}#discussion_r${id}`;
    return {
      url: `${r}/pulls/comments/${id}`,
      pull_request_review_id: nextId++,
      id,
      node_id: Buffer.from(`024:PullRequestReviewComment${id}`).toString('base64'),
      diff_hunk: `@@ -1,3 +1,4 @@\n line`,
      path,
      commit_id: p.pr.head.sha,
      original_commit_id: p.pr.head.sha,
      ...(inReplyTo !== undefined ? { in_reply_to_id: inReplyTo } : {}),
      user: author,
      body,
      created_at: at,
      updated_at: at,
      html_url: html,
      pull_request_url: `${r}/pulls/${p.pr.number}`,
      author_association: 'CONTRIBUTOR',
      _links: { self: { href: `${r}/pulls/comments/${id}` }, html: { href: html }, pull_request: { href: `${r}/pulls/${p.pr.number}` } },
      start_line: null,
      original_start_line: null,
      start_side: null,
      line,
      original_line: line,
      side: 'RIGHT',
      subject_type: 'line',
    };
  };

  const issueComment = (p: PullRecord, author: SimpleUser, body: string): IssueComment => {
    const id = nextId++;
    const at = stamp();
    const r = `${base}/repos/${p.repo}`;
    return {
      id,
      node_id: Buffer.from(`012:IssueComment${id}`).toString('base64'),
      url: `${r}/issues/comments/${id}`,
      body,
      html_url: `${web}/${p.repo}/pull/${p.pr.number}#issuecomment-${id}`,
      user: author,
      created_at: at,
      updated_at: at,
      issue_url: `${r}/issues/${p.pr.number}`,
      author_association: 'CONTRIBUTOR',
    };
  };

  /** Opens a pull request (the public openPullRequest, REST POST .../pulls and the createPullRequest mutation). */
  const createPull = (o: { repo: string; author: SimpleUser; title: string; body?: string | null; head?: string; base?: string; headSha?: string; committedAt?: Date | string; draft?: boolean }): PullRecord => {
      const author = o.author;
      const known = knowRepo(o.repo);
      const number = (numbers.get(o.repo) ?? 0) + 1;
      numbers.set(o.repo, number);
      const ownerLogin = o.repo.split('/')[0] ?? '';
      const owner = users.get(ownerLogin.toLowerCase())?.user ?? simpleUser(ownerLogin, 9_000, 'Organization');
      const repoObj = repository(o.repo, owner);
      const at = stamp();
      const id = nextId++;
      const headRef = o.head ?? `change-${number}`;
      const baseRef = o.base ?? known.defaultBranch;
      const headSha = o.headSha ?? sha();
      const pr = pullRequestShape(urls(), { repo: o.repo, number, id, title: o.title, body: o.body ?? null, author, owner, repoObj, headRef, baseRef, headSha, baseSha: sha(), at, draft: o.draft ?? false });
      const committed = typeof o.committedAt === 'string' ? o.committedAt : iso(o.committedAt ?? new Date(Date.parse(at)));
      const rec: PullRecord = { pr, repo: o.repo, comments: [], reviews: [], issueComments: [], resolved: new Map(), headCommittedAt: committed };
      pulls.set(`${o.repo}#${number}`, rec);
      return rec;
  };

  // --- HTTP ---------------------------------------------------------------------------

  const etagOf = (body: string) => `"${createHash('sha256').update(body).digest('hex').slice(0, 40)}"`;
  const sameTag = (a: string, b: string) => a.replace(/^W\//, '') === b.replace(/^W\//, '');

  function paginate<T>(req: URL, items: T[]): { page: T[]; link: string | undefined } {
    const perPage = Math.min(Math.max(Number(req.searchParams.get('per_page') ?? 30) || 30, 1), 100);
    const pageNo = Math.max(Number(req.searchParams.get('page') ?? 1) || 1, 1);
    const last = Math.max(Math.ceil(items.length / perPage), 1);
    const page = items.slice((pageNo - 1) * perPage, pageNo * perPage);
    const at = (n: number) => {
      const u = new URL(req.toString());
      u.searchParams.set('page', String(n));
      u.searchParams.set('per_page', String(perPage));
      return `<${base}${u.pathname}${u.search}>`;
    };
    const links: string[] = [];
    if (pageNo < last) links.push(`${at(pageNo + 1)}; rel="next"`, `${at(last)}; rel="last"`);
    if (pageNo > 1) links.push(`${at(1)}; rel="first"`, `${at(pageNo - 1)}; rel="prev"`);
    return { page, link: links.length ? links.join(', ') : undefined };
  }

  async function readBody(req: IncomingMessage): Promise<string> {
    const chunks: Buffer[] = [];
    for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
    return Buffer.concat(chunks).toString('utf8');
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const host = req.headers.host ?? '127.0.0.1';
    base = `https://${host.replace(/:443$/, '')}`;
    const url = new URL(req.url ?? '/', base);
    // GitHub Enterprise Server's paths (what gh uses for a GH_HOST other than github.com).
    if (url.pathname === '/api/graphql') url.pathname = '/graphql';
    else if (url.pathname.startsWith('/api/v3/')) url.pathname = url.pathname.slice('/api/v3'.length);
    const body = await readBody(req);
    const authorization = req.headers.authorization;
    const token = /^(?:bearer|token)\s+(\S+)$/i.exec(authorization ?? '')?.[1];
    const who = token ? byToken.get(token) : undefined;
    const ifNoneMatch = typeof req.headers['if-none-match'] === 'string' ? req.headers['if-none-match'] : undefined;
    const rec: GitHubFakeRequest = {
      method: req.method ?? '',
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      authorization,
      ifNoneMatch,
      login: who?.user.login,
      status: 0,
      body,
    };
    requests.push(rec);
    const common: Record<string, string> = {
      'x-github-request-id': randomBytes(8).toString('hex').toUpperCase(),
      'x-github-media-type': 'github.v3; format=json',
      'x-github-api-version-selected': '2022-11-28',
      vary: 'Accept, Authorization, Cookie, X-GitHub-OTP',
    };
    const send = (status: number, data: unknown, headers: Record<string, string> = {}) => {
      rec.status = status;
      const text = data === undefined ? '' : JSON.stringify(data);
      res.writeHead(status, { ...common, ...(text ? { 'content-type': 'application/json; charset=utf-8' } : {}), ...headers }).end(text);
    };
    if (!who) {
      send(401, { message: 'Bad credentials', documentation_url: 'https://docs.github.com/rest', status: '401' });
      return;
    }
    const resource = url.pathname === '/graphql' ? 'graphql' : 'core';
    const limitHeaders = () => ({
      'x-ratelimit-limit': String(LIMIT),
      'x-ratelimit-remaining': String(who.remaining[resource]),
      'x-ratelimit-used': String(LIMIT - who.remaining[resource]),
      'x-ratelimit-reset': String(resetAt()),
      'x-ratelimit-resource': resource,
    });
    if (secondary.n > 0) {
      secondary.n--;
      send(403, { message: 'You have exceeded a secondary rate limit. Please wait a few minutes before you try again.', documentation_url: 'https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits', status: '403' }, { ...limitHeaders(), 'retry-after': String(secondary.retryAfter) });
      return;
    }
    if (who.remaining[resource] <= 0) {
      send(403, { message: `API rate limit exceeded for user ID ${who.user.id}.`, documentation_url: 'https://docs.github.com/rest/overview/rate-limits-for-the-rest-api', status: '403' }, limitHeaders());
      return;
    }
    const ok = (status: number, data: unknown, link?: string) => {
      const text = JSON.stringify(data);
      const etag = etagOf(text + (link ?? ''));
      if (req.method === 'GET' && ifNoneMatch && sameTag(ifNoneMatch, etag)) {
        // A 304 does not count against the rate limit.
        send(304, undefined, { ...limitHeaders(), etag });
        return;
      }
      who.remaining[resource]--;
      send(status, data, { ...limitHeaders(), ...(req.method === 'GET' ? { etag } : {}), ...(link ? { link } : {}) });
    };
    const notFound = () => {
      who.remaining[resource]--;
      send(404, { message: 'Not Found', documentation_url: 'https://docs.github.com/rest', status: '404' }, limitHeaders());
    };
    /** 422 for a create call without a body (docs.github.com/en/rest/using-the-rest-api/troubleshooting-the-rest-api). */
    const missingBody = (object: string, docs: string) => {
      who.remaining[resource]--;
      send(422, { message: 'Validation Failed', errors: [{ resource: object, code: 'missing_field', field: 'body' }], documentation_url: docs, status: '422' }, limitHeaders());
    };
    const parse = (): Record<string, unknown> => {
      try {
        const v = JSON.parse(body || '{}') as unknown;
        return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : {};
      } catch {
        return {};
      }
    };

    if (req.method === 'GET' && url.pathname === '/user') return ok(200, who.user);
    if (req.method === 'POST' && url.pathname === '/graphql') {
      await refreshHeads();
      return ok(200, await executeGitHubGraphQL(graphqlRoot(who.user), parse()));
    }

    const repoOnly = /^\/repos\/([^/]+)\/([^/]+)$/.exec(url.pathname);
    if (repoOnly && req.method === 'GET') {
      const known = repos.get(`${repoOnly[1]}/${repoOnly[2]}`.toLowerCase());
      return known ? ok(200, repository(known.full, ownerOf(known.full))) : notFound();
    }
    const m = /^\/repos\/([^/]+)\/([^/]+)\/(pulls|issues)(?:\/(\d+)(?:\/(comments|reviews)(?:\/(\d+)\/(replies))?)?)?$/.exec(url.pathname);
    if (!m) return notFound();
    const repo = repos.get(`${m[1]}/${m[2]}`.toLowerCase())?.full ?? `${m[1]}/${m[2]}`;
    const [, , , kind, num, sub, commentId, replies] = m;
    if (kind === 'pulls') await refreshHeads();
    if (kind === 'pulls' && !num && req.method === 'GET') {
      const state = url.searchParams.get('state') ?? 'open';
      const head = url.searchParams.get('head');
      const baseRef = url.searchParams.get('base');
      const list = [...pulls.values()]
        .filter((p) => p.repo.toLowerCase() === repo.toLowerCase() && (state === 'all' || p.pr.state === state))
        .filter((p) => (!head || p.pr.head.label.toLowerCase() === head.toLowerCase()) && (!baseRef || p.pr.base.ref === baseRef))
        .map((p) => p.pr);
      const { page, link } = paginate(url, list.reverse());
      return ok(200, page, link);
    }
    if (kind === 'pulls' && !num && req.method === 'POST') {
      const input = parse();
      const headIn = typeof input.head === 'string' ? input.head : '';
      const made = await openFromAgent(who.user, repo, { title: input.title, body: input.body, head: headIn.includes(':') ? headIn.slice(headIn.indexOf(':') + 1) : headIn, base: input.base, draft: input.draft });
      if (typeof made === 'string') {
        who.remaining[resource]--;
        send(422, { message: 'Validation Failed', errors: [{ resource: 'PullRequest', code: 'custom', message: made }], documentation_url: 'https://docs.github.com/rest/pulls/pulls#create-a-pull-request', status: '422' }, limitHeaders());
        return;
      }
      return ok(201, made.pr);
    }
    const p = num ? pulls.get(`${repo}#${num}`) : undefined;
    if (!p) return notFound();
    if (kind === 'pulls' && !sub && req.method === 'GET') return ok(200, p.pr);
    if (kind === 'pulls' && sub === 'comments' && !commentId && req.method === 'GET') {
      const { page, link } = paginate(url, p.comments);
      return ok(200, page, link);
    }
    if (kind === 'pulls' && sub === 'comments' && replies && req.method === 'POST') {
      const to = p.comments.find((c) => Number(c.id) === Number(commentId));
      const text = parse().body;
      if (!to) return notFound();
      if (typeof text !== 'string' || !text) return missingBody('PullRequestReviewComment', 'https://docs.github.com/rest/pulls/comments#create-a-reply-for-a-review-comment');
      const root = to.in_reply_to_id ?? Number(to.id);
      const c = reviewComment(p, who.user, text, to.path, to.line ?? 1, root);
      p.comments.push(c);
      touch(p, c.created_at);
      return ok(201, c);
    }
    if (kind === 'pulls' && sub === 'reviews' && req.method === 'GET') {
      const { page, link } = paginate(url, p.reviews);
      return ok(200, page, link);
    }
    if (kind === 'issues' && sub === 'comments' && req.method === 'GET') {
      const { page, link } = paginate(url, p.issueComments);
      return ok(200, page, link);
    }
    if (kind === 'issues' && sub === 'comments' && req.method === 'POST') {
      const text = parse().body;
      if (typeof text !== 'string' || !text) return missingBody('IssueComment', 'https://docs.github.com/rest/issues/comments#create-an-issue-comment');
      const c = issueComment(p, who.user, text);
      p.issueComments.push(c);
      touch(p, c.created_at);
      return ok(201, c);
    }
    return notFound();
  }

  /** The owner of `full` as a user object (a registered user, else an organization). */
  const ownerOf = (full: string): SimpleUser => {
    const login = full.split('/')[0] ?? '';
    return users.get(login.toLowerCase())?.user ?? simpleUser(login, 9_000, 'Organization');
  };

  /** With `git`: every open pull request's head follows its branch on the git server (the agent pushed). */
  async function refreshHeads(): Promise<void> {
    if (!opts.git) return;
    for (const p of pulls.values()) {
      if (p.pr.state !== 'open') continue;
      const head = await opts.git.branch(p.repo, p.pr.head.ref);
      if (!head || head.sha === p.pr.head.sha) continue;
      p.pr.head.sha = head.sha;
      p.pr.statuses_url = `${base}/repos/${p.repo}/statuses/${head.sha}`;
      p.pr._links.statuses = { href: p.pr.statuses_url };
      p.headCommittedAt = head.committedAt;
      touch(p, stamp());
    }
  }

  /**
   * A pull request the token's user opens (REST or GraphQL): GitHub's checks, in its words
   * (the messages of a 422 / an UNPROCESSABLE GraphQL error), or the new pull request.
   */
  async function openFromAgent(author: SimpleUser, repo: string, input: { title?: unknown; body?: unknown; head?: unknown; base?: unknown; draft?: unknown }): Promise<PullRecord | string> {
    const known = repos.get(repo.toLowerCase());
    if (!known) return `Could not resolve to a Repository with the name '${repo}'.`;
    const title = typeof input.title === 'string' ? input.title.trim() : '';
    const head = typeof input.head === 'string' ? input.head : '';
    const baseRef = typeof input.base === 'string' && input.base ? input.base : known.defaultBranch;
    if (!title) return 'Title can\'t be blank';
    if (!head) return 'Head ref must be a branch';
    if (head === baseRef) return `No commits between ${baseRef} and ${head}`;
    const existing = [...pulls.values()].find((p) => p.repo.toLowerCase() === repo.toLowerCase() && p.pr.state === 'open' && p.pr.head.ref === head && p.pr.base.ref === baseRef);
    if (existing) return `A pull request already exists for ${ownerOf(known.full).login}:${head}.`;
    let headCommit: BranchHead | undefined;
    if (opts.git) {
      headCommit = await opts.git.branch(known.full, head);
      const baseCommit = await opts.git.branch(known.full, baseRef);
      if (!headCommit || !baseCommit) return `${!headCommit ? 'Head sha can\'t be blank, ' : ''}${!baseCommit ? 'Base sha can\'t be blank, ' : ''}No commits between ${baseRef} and ${head}, ${!headCommit ? 'Head' : 'Base'} ref must be a branch`;
      if (headCommit.sha === baseCommit.sha) return `No commits between ${baseRef} and ${head}`;
    }
    return createPull({
      repo: known.full,
      author,
      title,
      body: typeof input.body === 'string' ? input.body : null,
      head,
      base: baseRef,
      draft: input.draft === true,
      ...(headCommit ? { headSha: headCommit.sha, committedAt: headCommit.committedAt } : {}),
    });
  }

  // --- GraphQL: the fake's state as GitHub's objects (github-graphql.ts executes queries on them).

  const repoNodeId = (full: string) => repository(full, ownerOf(full)).node_id;
  const refNode = async (full: string, name: string) => {
    const head = opts.git ? await opts.git.branch(full, name) : { sha: createHash('sha1').update(`${full}:${name}`).digest('hex'), committedAt: iso(new Date(lastTime || Date.now())) };
    if (!head) return null;
    return { id: Buffer.from(`03:Ref${full}:${name}`).toString('base64'), name, prefix: 'refs/heads/', target: commitNode(head.sha, head.committedAt) };
  };
  const connection = <T>(nodes: T[], all: number) => ({ nodes, totalCount: all, pageInfo: { hasNextPage: nodes.length < all, hasPreviousPage: false, startCursor: null, endCursor: null } });

  const prNode = (p: PullRecord) => pullRequestNode(p, { repository: (full) => repoNode(full), owner: ownerOf });

  function repoNode(full: string, viewer?: SimpleUser): Record<string, unknown> {
    const known = knowRepo(full);
    const rest = repository(known.full, ownerOf(known.full));
    const owner = ownerOf(known.full);
    const mine = () => [...pulls.values()].filter((p) => p.repo.toLowerCase() === known.full.toLowerCase());
    return {
      __typename: 'Repository',
      id: rest.node_id,
      databaseId: rest.id,
      name: rest.name,
      nameWithOwner: known.full,
      owner: actorNode(owner),
      url: rest.html_url,
      description: rest.description,
      isPrivate: false,
      isFork: false,
      isArchived: false,
      hasIssuesEnabled: true,
      hasWikiEnabled: false,
      hasProjectsEnabled: false,
      // The token's user may push and open pull requests (the agent's is a collaborator's token).
      viewerPermission: viewer && viewer.login.toLowerCase() === owner.login.toLowerCase() ? 'ADMIN' : 'WRITE',
      defaultBranchRef: () => refNode(known.full, known.defaultBranch),
      parent: null,
      mergeCommitAllowed: true,
      rebaseMergeAllowed: true,
      squashMergeAllowed: true,
      ref: ({ qualifiedName }: { qualifiedName: string }) => refNode(known.full, qualifiedName.replace(/^refs\/heads\//, '')),
      pullRequest: ({ number }: { number: number }) => {
        const p = pulls.get(`${known.full}#${number}`);
        if (!p) throw new GitHubGraphQLError('NOT_FOUND', `Could not resolve to a PullRequest with the number of ${number}.`);
        return prNode(p);
      },
      pullRequests: (a: { first?: number; last?: number; headRefName?: string; baseRefName?: string; states?: string[]; orderBy?: { field: string; direction: string } }) => {
        let list = mine()
          .map(prNode)
          .filter((n) => (!a.headRefName || n.headRefName === a.headRefName) && (!a.baseRefName || n.baseRefName === a.baseRefName) && (!a.states?.length || a.states.includes(n.state as string)));
        if (a.orderBy?.direction === 'DESC') list = list.reverse();
        return connection(slice(list, a), list.length);
      },
    };
  }

  /** The root of one request's GraphQL execution, as `viewer` (the token's user). */
  const graphqlRoot = (viewer: SimpleUser): GraphQLRoot => ({
    repository: ({ owner, name }) => {
      const known = repos.get(`${owner}/${name}`.toLowerCase());
      if (!known) throw new GitHubGraphQLError('NOT_FOUND', `Could not resolve to a Repository with the name '${owner}/${name}'.`);
      return repoNode(known.full, viewer);
    },
    viewer: () => actorNode(viewer),
    node: ({ id }) => {
      for (const p of pulls.values()) if (p.pr.node_id === id) return prNode(p);
      for (const r of repos.values()) if (repoNodeId(r.full) === id) return repoNode(r.full, viewer);
      throw new GitHubGraphQLError('NOT_FOUND', `Could not resolve to a node with the global id of '${id}'`);
    },
    createPullRequest: async ({ input }: { input: CreatePullRequestInput }) => {
      const target = [...repos.values()].find((r) => repoNodeId(r.full) === input.repositoryId);
      if (!target) throw new GitHubGraphQLError('NOT_FOUND', `Could not resolve to a node with the global id of '${input.repositoryId}'`);
      const made = await openFromAgent(viewer, target.full, { title: input.title, body: input.body, head: input.headRefName.replace(/^.*:/, ''), base: input.baseRefName, draft: input.draft });
      if (typeof made === 'string') throw new GitHubGraphQLError('UNPROCESSABLE', made);
      return { clientMutationId: input.clientMutationId ?? null, pullRequest: prNode(made) };
    },
  });

  const server = https.createServer({ cert: leaf.certPem, key: leaf.keyPem }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ message: String(err) }));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  const port = (server.address() as AddressInfo).port;

  return {
    url: `https://${host}:${port}`,
    port,
    caPem: ca.caPem,
    requests,
    addUser(login, token, type = 'User') {
      const existing = users.get(login.toLowerCase());
      if (existing) {
        existing.tokens.push(token);
        byToken.set(token, existing);
        return existing.user;
      }
      const u: UserRecord = { user: simpleUser(login, nextId++, type), tokens: [token], remaining: { core: LIMIT, graphql: LIMIT } };
      users.set(login.toLowerCase(), u);
      byToken.set(token, u);
      return u.user;
    },
    addRepository(repo, o = {}) {
      knowRepo(repo, o.defaultBranch);
    },
    openPullRequest(o) {
      return createPull({ ...o, author: userOf(o.author) }).pr;
    },
    pullRequests: (repo) => [...pulls.values()].filter((p) => p.repo.toLowerCase() === repo.toLowerCase()).map((p) => p.pr),
    closePullRequest(repo, number) {
      const p = pull(repo, number);
      const at = stamp();
      p.pr.state = 'closed';
      p.pr.closed_at = at;
      touch(p, at);
    },
    push(repo, number, committedAt) {
      const p = pull(repo, number);
      p.pr.head.sha = sha();
      p.pr.statuses_url = `${base}/repos/${repo}/statuses/${p.pr.head.sha}`;
      p.headCommittedAt = committedAt ? iso(committedAt) : stamp();
      touch(p, p.headCommittedAt);
    },
    addReviewComment(o) {
      const p = pull(o.repo, o.number);
      let root = o.inReplyTo;
      if (root !== undefined) {
        const to = p.comments.find((c) => Number(c.id) === root);
        if (!to) throw new Error(`github fake: no review comment ${root} on ${o.repo}#${o.number}`);
        root = to.in_reply_to_id ?? Number(to.id);
      }
      const parent = root !== undefined ? p.comments.find((c) => Number(c.id) === root) : undefined;
      const c = reviewComment(p, userOf(o.author), o.body, parent?.path ?? o.path ?? 'README.md', parent?.line ?? o.line ?? 1, root);
      p.comments.push(c);
      touch(p, c.created_at);
      return c;
    },
    addReview(o) {
      const p = pull(o.repo, o.number);
      const id = nextId++;
      const at = stamp();
      const r = `${base}/repos/${o.repo}`;
      const html = `${web}/${o.repo}/pull/${o.number}#pullrequestreview-${id}`;
      const review: Review = {
        id,
        node_id: Buffer.from(`017:PullRequestReview${id}`).toString('base64'),
        user: userOf(o.author),
        body: o.body,
        state: o.state ?? 'COMMENTED',
        html_url: html,
        pull_request_url: `${r}/pulls/${o.number}`,
        _links: { html: { href: html }, pull_request: { href: `${r}/pulls/${o.number}` } },
        submitted_at: at,
        commit_id: p.pr.head.sha,
        author_association: 'CONTRIBUTOR',
      };
      p.reviews.push(review);
      touch(p, at);
      return review;
    },
    addIssueComment(o) {
      const p = pull(o.repo, o.number);
      const c = issueComment(p, userOf(o.author), o.body);
      p.issueComments.push(c);
      touch(p, c.created_at);
      return c;
    },
    resolveThread(repo, number, rootId, resolved = true) {
      pull(repo, number).resolved.set(rootId, resolved);
    },
    reviewComments: (repo, number) => [...pull(repo, number).comments],
    issueComments: (repo, number) => [...pull(repo, number).issueComments],
    setRemaining(login, remaining, resource) {
      const u = users.get(login.toLowerCase());
      if (!u) throw new Error(`github fake: no user ${login}`);
      if (!resource || resource === 'core') u.remaining.core = remaining;
      if (!resource || resource === 'graphql') u.remaining.graphql = remaining;
    },
    secondaryLimit(n, retryAfterSeconds = 1) {
      secondary = { n, retryAfter: retryAfterSeconds };
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
