import { describe, expect, it } from 'vitest';
import { RewakeGate, rewakeId } from './rewake.ts';
import { describeItem, excerpt, rewakeText, unansweredItems, type PullRequestSnapshot, type ReviewCommentLike } from './unanswered.ts';

const AGENT = 'devbot';
const t = (minute: number) => new Date(Date.UTC(2026, 11, 6, 12, minute)).toISOString();

function pr(over: Partial<PullRequestSnapshot> = {}): PullRequestSnapshot {
  return {
    repo: 'acme/app',
    number: 7,
    title: 'Add retries',
    url: 'https://github.com/acme/app/pull/7',
    reviewComments: [],
    reviews: [],
    issueComments: [],
    resolvedThreads: new Map(),
    headCommittedAt: t(0),
    ...over,
  };
}

function rc(id: number, login: string, minute: number, over: Partial<ReviewCommentLike> = {}): ReviewCommentLike {
  return { id, user: { login }, body: `comment ${id}`, path: 'src/retry.ts', line: 12, created_at: t(minute), html_url: `https://github.com/acme/app/pull/7#discussion_r${id}`, ...over };
}

describe('unanswered review threads', () => {
  it('an unresolved thread whose last comment is someone else\'s is unanswered, with path and line', () => {
    const items = unansweredItems(pr({ reviewComments: [rc(1, 'alice', 5)] }), AGENT);
    expect(items).toEqual([expect.objectContaining({ key: 'rc:1', kind: 'review_comment', author: 'alice', path: 'src/retry.ts', line: 12, excerpt: 'comment 1' })]);
  });

  it('a thread the agent answered last is not unanswered (logins compare case-insensitively)', () => {
    const items = unansweredItems(pr({ reviewComments: [rc(1, 'alice', 5), rc(2, 'DevBot', 6, { in_reply_to_id: 1 })] }), AGENT);
    expect(items).toEqual([]);
  });

  it('only the comments after the agent\'s last reply in the thread count', () => {
    const comments = [rc(1, 'alice', 5), rc(2, AGENT, 6, { in_reply_to_id: 1 }), rc(3, 'alice', 7, { in_reply_to_id: 1 }), rc(4, 'bob', 8, { in_reply_to_id: 1 })];
    expect(unansweredItems(pr({ reviewComments: comments }), AGENT).map((i) => i.key)).toEqual(['rc:3', 'rc:4']);
  });

  it('a resolved thread is not unanswered, whoever spoke last', () => {
    const items = unansweredItems(pr({ reviewComments: [rc(1, 'alice', 5), rc(3, 'alice', 7, { in_reply_to_id: 1 })], resolvedThreads: new Map([[1, true]]) }), AGENT);
    expect(items).toEqual([]);
  });

  it('threads are independent: answering one leaves the other unanswered', () => {
    const comments = [rc(1, 'alice', 5), rc(2, 'bob', 6, { path: 'README.md', line: 3 }), rc(3, AGENT, 7, { in_reply_to_id: 1 })];
    expect(unansweredItems(pr({ reviewComments: comments }), AGENT)).toEqual([expect.objectContaining({ key: 'rc:2', path: 'README.md', line: 3 })]);
  });

  it('review comments written before the agent\'s last push still count while their thread waits', () => {
    const items = unansweredItems(pr({ reviewComments: [rc(1, 'alice', 5)], headCommittedAt: t(30) }), AGENT);
    expect(items.map((i) => i.key)).toEqual(['rc:1']);
  });
});

describe('unanswered reviews and conversation comments', () => {
  const review = (id: number, login: string, minute: number, body: string, state = 'COMMENTED') => ({ id, user: { login }, body, state, submitted_at: t(minute), html_url: `https://github.com/acme/app/pull/7#pullrequestreview-${id}` });
  const comment = (id: number, login: string, minute: number, body = `note ${id}`) => ({ id, user: { login }, body, created_at: t(minute), html_url: `https://github.com/acme/app/pull/7#issuecomment-${id}` });

  it('a review with a body after the agent\'s last push is unanswered', () => {
    const items = unansweredItems(pr({ reviews: [review(10, 'alice', 5, 'Please split this PR', 'CHANGES_REQUESTED')] }), AGENT);
    expect(items).toEqual([expect.objectContaining({ key: 'rv:10', kind: 'review', state: 'CHANGES_REQUESTED', excerpt: 'Please split this PR' })]);
  });

  it('a review before the agent\'s last push, or with no body, or pending, or its own, is not', () => {
    const reviews = [review(10, 'alice', 5, 'old'), review(11, 'alice', 40, ''), { ...review(12, 'alice', 41, 'draft'), state: 'PENDING', submitted_at: undefined }, review(13, AGENT, 42, 'self')];
    expect(unansweredItems(pr({ reviews, headCommittedAt: t(30) }), AGENT)).toEqual([]);
  });

  it('the agent\'s reply on the pull request answers the reviews and comments before it', () => {
    const snapshot = pr({ reviews: [review(10, 'alice', 5, 'Why?')], issueComments: [comment(20, 'bob', 6), comment(21, AGENT, 7, 'Because.'), comment(22, 'bob', 8, 'ok but')] });
    expect(unansweredItems(snapshot, AGENT).map((i) => i.key)).toEqual(['ic:22']);
  });

  it('an inline reply by the agent also counts as its last activity', () => {
    const snapshot = pr({ reviewComments: [rc(1, 'alice', 5), rc(2, AGENT, 9, { in_reply_to_id: 1 })], reviews: [review(10, 'alice', 5, 'see inline')] });
    expect(unansweredItems(snapshot, AGENT)).toEqual([]);
  });

  it('items come oldest first across kinds', () => {
    const snapshot = pr({ reviewComments: [rc(1, 'alice', 9)], reviews: [review(10, 'alice', 8, 'summary')], issueComments: [comment(20, 'bob', 7)] });
    expect(unansweredItems(snapshot, AGENT).map((i) => i.key)).toEqual(['ic:20', 'rv:10', 'rc:1']);
  });
});

describe('the rewake text', () => {
  it('names repo#number, author, path:line, an excerpt and the url on one line each', () => {
    const [item] = unansweredItems(pr({ reviewComments: [rc(1, 'alice', 5, { body: 'Rename\n  this   variable' })] }), AGENT);
    expect(describeItem(item!)).toBe('- acme/app#7 review comment by alice on src/retry.ts:12: "Rename this variable" https://github.com/acme/app/pull/7#discussion_r1');
    const text = rewakeText([item!], AGENT, 2);
    expect(text).toContain('GitHub login devbot');
    expect(text).toContain('2 earlier comments you were already told about are also still unanswered');
  });

  it('cuts long bodies', () => {
    expect(excerpt('x'.repeat(500), 20)).toHaveLength(20);
    expect(excerpt('x'.repeat(500), 20).endsWith('…')).toBe(true);
  });

  it('the inbox id depends on the set of comments, not their order', () => {
    const items = unansweredItems(pr({ reviewComments: [rc(1, 'alice', 5), rc(2, 'bob', 6)] }), AGENT);
    expect(rewakeId(items)).toBe(rewakeId([...items].reverse()));
    expect(rewakeId(items)).not.toBe(rewakeId(items.slice(0, 1)));
  });
});

describe('the consecutive-rewake gate', () => {
  it('closes after the limit and opens again on other input', () => {
    const gate = new RewakeGate(2);
    expect(gate.open).toBe(true);
    gate.delivered();
    gate.delivered();
    expect(gate.open).toBe(false);
    gate.reset();
    expect(gate.open).toBe(true);
  });
});
