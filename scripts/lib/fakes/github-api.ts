/**
 * A fake GitHub API for tests: HTTPS on 127.0.0.1 with a leaf of its own test CA (so it
 * can stand behind the egress proxy as `api.github.test`), serving exactly the REST and
 * GraphQL calls the PR watcher and an answering agent make, in GitHub's documented shapes
 * (typed with @octokit/openapi-types components).
 *
 * REST (docs.github.com/en/rest, API version 2022-11-28):
 *   GET  /user                                              simple-user of the token
 *   GET  /repos/{o}/{r}/pulls?state&per_page&page           pull-request-simple[] (newest first, as GitHub's default sort=created direction=desc)
 *   GET  /repos/{o}/{r}/pulls/{n}/comments?per_page&page    pull-request-review-comment[] (oldest first)
 *   POST /repos/{o}/{r}/pulls/{n}/comments/{id}/replies     {body} -> 201 pull-request-review-comment, as the token's user
 *   GET  /repos/{o}/{r}/pulls/{n}/reviews?per_page&page     pull-request-review[] (chronological)
 *   GET  /repos/{o}/{r}/issues/{n}/comments?per_page&page   issue-comment[] (oldest first)
 *   POST /repos/{o}/{r}/issues/{n}/comments                 {body} -> 201 issue-comment, as the token's user
 * GraphQL (docs.github.com/en/graphql): `POST /graphql` answers a query that asks for
 *   `repository(owner, name) { pullRequest(number) { commits(last: 1) ... reviewThreads ... } }`
 *   (the watcher's THREADS_QUERY) with the fields it selects; anything else gets a GraphQL error.
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
  /** Opens a pull request authored by `author` in `repo` (`owner/name`); its head commit was made `committedAt` (default: now). */
  openPullRequest(o: { repo: string; author: string; title: string; committedAt?: Date }): PullRequestSimple;
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

/** Starts the fake. `hostnames`: names its certificate covers besides 127.0.0.1 (default api.github.test). */
export async function startGitHubFake(opts: { hostnames?: string[] } = {}): Promise<GitHubFake> {
  const hostnames = opts.hostnames ?? ['api.github.test'];
  const ca = await makeTestCa('agent-smith test GitHub CA');
  const leaf = await ca.issue([...hostnames.map((value) => ({ type: 'dns' as const, value })), { type: 'ip', value: '127.0.0.1' }]);
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
  const web = 'https://github.test';

  const simpleUser = (login: string, id: number, type: string): SimpleUser => ({
    login,
    id,
    node_id: Buffer.from(`04:User${id}`).toString('base64'),
    avatar_url: `https://avatars.github.test/u/${id}?v=4`,
    gravatar_id: '',
    url: `${base}/users/${login}`,
    html_url: `${web}/${login}`,
    followers_url: `${base}/users/${login}/followers`,
    following_url: `${base}/users/${login}/following{/other_user}`,
    gists_url: `${base}/users/${login}/gists{/gist_id}`,
    starred_url: `${base}/users/${login}/starred{/owner}{/repo}`,
    subscriptions_url: `${base}/users/${login}/subscriptions`,
    organizations_url: `${base}/users/${login}/orgs`,
    repos_url: `${base}/users/${login}/repos`,
    events_url: `${base}/users/${login}/events{/privacy}`,
    received_events_url: `${base}/users/${login}/received_events`,
    type,
    site_admin: false,
    user_view_type: 'public',
  });

  const userOf = (login: string): SimpleUser => {
    const u = users.get(login.toLowerCase());
    if (!u) throw new Error(`github fake: no user ${login} (addUser first)`);
    return u.user;
  };

  const repository = (full: string, owner: SimpleUser): Repository => {
    const r = `${base}/repos/${full}`;
    const name = full.split('/')[1] ?? full;
    const id = 100 + [...full].reduce((a, c) => a + c.charCodeAt(0), 0);
    return {
      id,
      node_id: Buffer.from(`010:Repository${id}`).toString('base64'),
      name,
      full_name: full,
      license: null,
      forks: 0,
      owner,
      private: false,
      html_url: `${web}/${full}`,
      description: null,
      fork: false,
      url: r,
      archive_url: `${r}/{archive_format}{/ref}`,
      assignees_url: `${r}/assignees{/user}`,
      blobs_url: `${r}/git/blobs{/sha}`,
      branches_url: `${r}/branches{/branch}`,
      collaborators_url: `${r}/collaborators{/collaborator}`,
      comments_url: `${r}/comments{/number}`,
      commits_url: `${r}/commits{/sha}`,
      compare_url: `${r}/compare/{base}...{head}`,
      contents_url: `${r}/contents/{+path}`,
      contributors_url: `${r}/contributors`,
      deployments_url: `${r}/deployments`,
      downloads_url: `${r}/downloads`,
      events_url: `${r}/events`,
      forks_url: `${r}/forks`,
      git_commits_url: `${r}/git/commits{/sha}`,
      git_refs_url: `${r}/git/refs{/sha}`,
      git_tags_url: `${r}/git/tags{/sha}`,
      git_url: `git://github.test/${full}.git`,
      issue_comment_url: `${r}/issues/comments{/number}`,
      issue_events_url: `${r}/issues/events{/number}`,
      issues_url: `${r}/issues{/number}`,
      keys_url: `${r}/keys{/key_id}`,
      labels_url: `${r}/labels{/name}`,
      languages_url: `${r}/languages`,
      merges_url: `${r}/merges`,
      milestones_url: `${r}/milestones{/number}`,
      notifications_url: `${r}/notifications{?since,all,participating}`,
      pulls_url: `${r}/pulls{/number}`,
      releases_url: `${r}/releases{/id}`,
      ssh_url: `git@github.test:${full}.git`,
      stargazers_url: `${r}/stargazers`,
      statuses_url: `${r}/statuses/{sha}`,
      subscribers_url: `${r}/subscribers`,
      subscription_url: `${r}/subscription`,
      tags_url: `${r}/tags`,
      teams_url: `${r}/teams`,
      trees_url: `${r}/git/trees{/sha}`,
      clone_url: `${web}/${full}.git`,
      mirror_url: null,
      hooks_url: `${r}/hooks`,
      svn_url: `${web}/${full}`,
      homepage: null,
      language: 'TypeScript',
      forks_count: 0,
      stargazers_count: 0,
      watchers_count: 0,
      size: 1,
      default_branch: 'main',
      open_issues_count: 0,
      has_issues: true,
      has_projects: false,
      has_wiki: false,
      has_pages: false,
      has_downloads: true,
      archived: false,
      disabled: false,
      visibility: 'public',
      pushed_at: null,
      created_at: null,
      updated_at: null,
      open_issues: 0,
      watchers: 0,
    };
  };

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
    if (req.method === 'POST' && url.pathname === '/graphql') return graphql(parse(), ok);

    const m = /^\/repos\/([^/]+)\/([^/]+)\/(pulls|issues)(?:\/(\d+)(?:\/(comments|reviews)(?:\/(\d+)\/(replies))?)?)?$/.exec(url.pathname);
    if (!m) return notFound();
    const repo = `${m[1]}/${m[2]}`;
    const [, , , kind, num, sub, commentId, replies] = m;
    if (kind === 'pulls' && !num && req.method === 'GET') {
      const state = url.searchParams.get('state') ?? 'open';
      const list = [...pulls.values()].filter((p) => p.repo.toLowerCase() === repo.toLowerCase() && (state === 'all' || p.pr.state === state)).map((p) => p.pr);
      const { page, link } = paginate(url, list.reverse());
      return ok(200, page, link);
    }
    const p = num ? pulls.get(`${repo}#${num}`) : undefined;
    if (!p) return notFound();
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

  /** The watcher's review-thread query, answered with the fields it selects. */
  function graphql(input: Record<string, unknown>, ok: (status: number, data: unknown) => void): void {
    const query = typeof input.query === 'string' ? input.query : '';
    const v = (input.variables ?? {}) as { owner?: string; name?: string; number?: number };
    if (!/reviewThreads/.test(query) || !/pullRequest\(number: \$number\)/.test(query)) {
      return ok(200, { errors: [{ message: 'this fake answers only the PR watcher\'s review-thread query', locations: [{ line: 1, column: 1 }] }] });
    }
    const p = pulls.get(`${v.owner}/${v.name}#${v.number}`);
    if (!p) {
      return ok(200, {
        data: { repository: null },
        errors: [{ type: 'NOT_FOUND', path: ['repository'], locations: [{ line: 2, column: 3 }], message: `Could not resolve to a Repository with the name '${v.owner}/${v.name}'.` }],
      });
    }
    const roots = p.comments.filter((c) => c.in_reply_to_id === undefined);
    const threads = roots.map((r) => ({ isResolved: p.resolved.get(Number(r.id)) ?? false, comments: { nodes: [{ databaseId: Number(r.id) }] } }));
    ok(200, {
      data: {
        repository: {
          pullRequest: {
            commits: { nodes: [{ commit: { oid: p.pr.head.sha, committedDate: p.headCommittedAt } }] },
            reviewThreads: { nodes: threads.slice(0, 100) },
          },
        },
      },
    });
  }

  const server = https.createServer({ cert: leaf.certPem, key: leaf.keyPem }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ message: String(err) }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    url: `https://127.0.0.1:${port}`,
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
    openPullRequest(o) {
      const author = userOf(o.author);
      const number = (numbers.get(o.repo) ?? 0) + 1;
      numbers.set(o.repo, number);
      const ownerLogin = o.repo.split('/')[0] ?? '';
      const owner = users.get(ownerLogin.toLowerCase())?.user ?? simpleUser(ownerLogin, 9_000, 'Organization');
      const repoObj = repository(o.repo, owner);
      const at = stamp();
      const id = nextId++;
      const r = `${base}/repos/${o.repo}`;
      const headSha = sha();
      const link = (href: string) => ({ href });
      const pr: PullRequestSimple = {
        url: `${r}/pulls/${number}`,
        id,
        node_id: Buffer.from(`011:PullRequest${id}`).toString('base64'),
        html_url: `${web}/${o.repo}/pull/${number}`,
        diff_url: `${web}/${o.repo}/pull/${number}.diff`,
        patch_url: `${web}/${o.repo}/pull/${number}.patch`,
        issue_url: `${r}/issues/${number}`,
        commits_url: `${r}/pulls/${number}/commits`,
        review_comments_url: `${r}/pulls/${number}/comments`,
        review_comment_url: `${r}/pulls/comments{/number}`,
        comments_url: `${r}/issues/${number}/comments`,
        statuses_url: `${r}/statuses/${headSha}`,
        number,
        state: 'open',
        locked: false,
        title: o.title,
        user: author,
        body: null,
        labels: [],
        milestone: null,
        active_lock_reason: null,
        created_at: at,
        updated_at: at,
        closed_at: null,
        merged_at: null,
        merge_commit_sha: null,
        assignee: null,
        assignees: [],
        requested_reviewers: [],
        requested_teams: [],
        head: { label: `${author.login}:change-${number}`, ref: `change-${number}`, repo: repoObj, sha: headSha, user: author },
        base: { label: `${owner.login}:main`, ref: 'main', repo: repoObj, sha: sha(), user: owner },
        _links: {
          comments: link(`${r}/issues/${number}/comments`),
          commits: link(`${r}/pulls/${number}/commits`),
          statuses: link(`${r}/statuses/${headSha}`),
          html: link(`${web}/${o.repo}/pull/${number}`),
          issue: link(`${r}/issues/${number}`),
          review_comments: link(`${r}/pulls/${number}/comments`),
          review_comment: link(`${r}/pulls/comments{/number}`),
          self: link(`${r}/pulls/${number}`),
        },
        author_association: 'CONTRIBUTOR',
        auto_merge: null,
        draft: false,
      };
      pulls.set(`${o.repo}#${number}`, { pr, repo: o.repo, comments: [], reviews: [], issueComments: [], resolved: new Map(), headCommittedAt: iso(o.committedAt ?? new Date(Date.parse(at))) });
      return pr;
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
