/**
 * What on an agent's open pull request is waiting for the agent's answer. Pure: the
 * watcher (watcher.ts) gathers a `PullRequestSnapshot` from GitHub and this module
 * decides; no I/O, no clock.
 *
 * Rules (issue 8, DESIGN.md flow 3):
 * - A review thread (inline review comments: the root and the replies that point to it by
 *   `in_reply_to_id`) that is not resolved and whose last comment is not the agent's is
 *   unanswered; the comments after the agent's last one in it are the items.
 *   Resolution is only in GraphQL (`PullRequestReviewThread.isResolved`); REST has none.
 * - A review from someone else with a body, submitted after the agent's last activity on
 *   the pull request (its head commit, or its last comment, reply or review), is unanswered.
 * - A conversation comment (issue comment on the pull request) from someone else after the
 *   agent's last activity is unanswered.
 *
 * Logins compare case-insensitively (GitHub logins are case-insensitive).
 *
 * Shapes follow GitHub's REST responses (docs.github.com/en/rest/pulls/comments,
 * /rest/pulls/reviews, /rest/issues/comments) trimmed to the fields used.
 */

/** A review comment as `GET /repos/{owner}/{repo}/pulls/{pull_number}/comments` returns it (fields used). */
export interface ReviewCommentLike {
  id: number;
  in_reply_to_id?: number | undefined;
  user: { login: string } | null;
  body: string;
  path: string;
  line?: number | null | undefined;
  original_line?: number | null | undefined;
  /** RFC 3339. */
  created_at: string;
  html_url: string;
}

/** A review as `GET /repos/{owner}/{repo}/pulls/{pull_number}/reviews` returns it (fields used). */
export interface ReviewLike {
  id: number;
  user: { login: string } | null;
  body: string | null;
  /** APPROVED, CHANGES_REQUESTED, COMMENTED, DISMISSED, PENDING. */
  state: string;
  /** RFC 3339; absent on a PENDING review. */
  submitted_at?: string | undefined;
  html_url: string;
}

/** A conversation comment as `GET /repos/{owner}/{repo}/issues/{issue_number}/comments` returns it (fields used). */
export interface IssueCommentLike {
  id: number;
  user: { login: string } | null;
  body?: string | undefined;
  created_at: string;
  html_url: string;
}

/** Everything the decision needs about one open pull request. */
export interface PullRequestSnapshot {
  /** `owner/repo`. */
  repo: string;
  number: number;
  title: string;
  url: string;
  reviewComments: ReviewCommentLike[];
  reviews: ReviewLike[];
  issueComments: IssueCommentLike[];
  /** Resolution of each review thread, keyed by the database id of its first comment (GraphQL). Absent: unresolved. */
  resolvedThreads: ReadonlyMap<number, boolean>;
  /** Committer date of the head commit (RFC 3339), the agent's last push as far as GitHub shows it. */
  headCommittedAt?: string | undefined;
}

export type UnansweredKind = 'review_comment' | 'review' | 'comment';

/** One comment waiting for the agent. */
export interface UnansweredItem {
  /** Stable across polls and unique across kinds: `rc:<id>`, `rv:<id>`, `ic:<id>` (the three id spaces of GitHub). */
  key: string;
  kind: UnansweredKind;
  repo: string;
  number: number;
  author: string;
  /** File and line of an inline review comment. */
  path?: string | undefined;
  line?: number | undefined;
  /** The review state of a review item (CHANGES_REQUESTED, COMMENTED, ...). */
  state?: string | undefined;
  /** First characters of the body, on one line. */
  excerpt: string;
  url: string;
  createdAt: string;
}

/** Characters of a comment body shown in a rewake. */
export const EXCERPT_CHARS = 160;

const same = (a: string | undefined, b: string) => a !== undefined && a.toLowerCase() === b.toLowerCase();
const ms = (t: string | undefined) => (t ? Date.parse(t) || 0 : 0);

/** A body on one line, cut at `max` characters with an ellipsis. */
export function excerpt(body: string | null | undefined, max = EXCERPT_CHARS): string {
  const line = (body ?? '').replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** The time of the agent's last activity on the pull request (ms since the epoch; 0 when none). */
export function agentLastActivity(pr: PullRequestSnapshot, login: string): number {
  let last = ms(pr.headCommittedAt);
  for (const c of pr.reviewComments) if (same(c.user?.login, login)) last = Math.max(last, ms(c.created_at));
  for (const c of pr.issueComments) if (same(c.user?.login, login)) last = Math.max(last, ms(c.created_at));
  for (const r of pr.reviews) if (same(r.user?.login, login)) last = Math.max(last, ms(r.submitted_at));
  return last;
}

/** The unanswered items of one pull request, oldest first. */
export function unansweredItems(pr: PullRequestSnapshot, login: string): UnansweredItem[] {
  const items: UnansweredItem[] = [];
  const base = { repo: pr.repo, number: pr.number };

  // Review threads: grouped by their root comment.
  const threads = new Map<number, ReviewCommentLike[]>();
  for (const c of pr.reviewComments) {
    const root = c.in_reply_to_id ?? c.id;
    const list = threads.get(root) ?? [];
    list.push(c);
    threads.set(root, list);
  }
  for (const [root, comments] of threads) {
    if (pr.resolvedThreads.get(root) === true) continue;
    comments.sort((a, b) => ms(a.created_at) - ms(b.created_at) || a.id - b.id);
    let lastMine = -1;
    comments.forEach((c, i) => {
      if (same(c.user?.login, login)) lastMine = i;
    });
    for (const c of comments.slice(lastMine + 1)) {
      const line = c.line ?? c.original_line ?? undefined;
      items.push({ ...base, key: `rc:${c.id}`, kind: 'review_comment', author: c.user?.login ?? 'ghost', path: c.path, line, excerpt: excerpt(c.body), url: c.html_url, createdAt: c.created_at });
    }
  }

  const since = agentLastActivity(pr, login);
  for (const r of pr.reviews) {
    if (same(r.user?.login, login) || r.state === 'PENDING' || !r.body?.trim() || ms(r.submitted_at) <= since) continue;
    items.push({ ...base, key: `rv:${r.id}`, kind: 'review', author: r.user?.login ?? 'ghost', state: r.state, excerpt: excerpt(r.body), url: r.html_url, createdAt: r.submitted_at ?? '' });
  }
  for (const c of pr.issueComments) {
    if (same(c.user?.login, login) || !c.body?.trim() || ms(c.created_at) <= since) continue;
    items.push({ ...base, key: `ic:${c.id}`, kind: 'comment', author: c.user?.login ?? 'ghost', excerpt: excerpt(c.body), url: c.html_url, createdAt: c.created_at });
  }
  return items.sort((a, b) => ms(a.createdAt) - ms(b.createdAt));
}

/** One line per item: `owner/repo#12 review comment by alice on src/a.ts:3: "…" <url>`. */
export function describeItem(i: UnansweredItem): string {
  const what =
    i.kind === 'review_comment'
      ? `review comment by ${i.author} on ${i.path}${i.line ? `:${i.line}` : ''}`
      : i.kind === 'review'
        ? `review (${(i.state ?? 'COMMENTED').toLowerCase().replaceAll('_', ' ')}) by ${i.author}`
        : `comment by ${i.author}`;
  return `- ${i.repo}#${i.number} ${what}: "${i.excerpt}" ${i.url}`;
}

/**
 * The text of a rewake: the new items, a count of new ones left for the next message
 * (`more`), and a count of older ones still waiting that were already shown once.
 */
export function rewakeText(fresh: readonly UnansweredItem[], login: string, alreadyShown = 0, more = 0): string {
  const lines = [
    `Review feedback on your pull requests (GitHub login ${login}) is waiting for your answer:`,
    ...fresh.map(describeItem),
    ...(more ? [`(${more} more new comment${more === 1 ? '' : 's'} will follow in the next message.)`] : []),
    ...(alreadyShown ? [`(${alreadyShown} earlier comment${alreadyShown === 1 ? '' : 's'} you were already told about ${alreadyShown === 1 ? 'is' : 'are'} also still unanswered.)`] : []),
    'Answer each one: reply in its review thread (or on the pull request), and push a fix where one is asked for. You are told about a comment once.',
  ];
  return lines.join('\n');
}
