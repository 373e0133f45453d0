import { describe, expect, it } from 'vitest';
import { describeItem, rewakeText, type UnansweredItem } from '../../../agent-image/src/plugins/github/unanswered.ts';
import { hasTool, isSideRequest, lastUserText, toolResults, type Helpers, type MessageIn, type RecordedRequest, type ToolUseOut } from '../fakes/anthropic-api.ts';
import { pullRequestUrl, rewakeItems, workerResponder, WORKER_PREFIX } from './worker-model.ts';

const h: Helpers = {
  lastUserText,
  toolResults,
  hasTool,
  isSideRequest,
  text: (text) => ({ content: [{ type: 'text', text }] }),
  toolUse: (name, input, id) => ({ content: [{ type: 'tool_use', name, input, ...(id ? { id } : {}) }] }),
};
const tools = [{ name: 'mcp__agent-smith__matrix_reply' }, { name: 'mcp__agent-smith__publish_event' }, { name: 'Bash' }, { name: 'Read' }, { name: 'Edit' }];
const request = (messages: MessageIn[]): RecordedRequest => ({ path: '/v1/messages', query: {}, headers: {}, body: { model: 'm', max_tokens: 10, messages, tools }, side: false, at: 0 });
const matrix = (text: string) =>
  `<system-reminder>today is a day</system-reminder>A message for you arrived through agent-smith from matrix.\n<agent-smith-message id="$e1" source="matrix" room="!r:localhost" sender="@demo:localhost" thread="$t1">\n${text}\n</agent-smith-message>`;

/** Plays the worker against canned tool results until it ends the turn; returns the tool calls. */
function play(first: string, result: (call: ToolUseOut) => { text: string; isError?: boolean }): { calls: ToolUseOut[]; end: string } {
  const worker = workerResponder({ dir: '/w/app' });
  const messages: MessageIn[] = [{ role: 'user', content: [{ type: 'text', text: first }] }];
  const calls: ToolUseOut[] = [];
  for (let i = 0; i < 30; i++) {
    const turn = worker(request(messages), h);
    const call = turn.content.find((b): b is ToolUseOut => b.type === 'tool_use');
    if (!call) return { calls, end: turn.content.map((b) => (b.type === 'text' ? b.text : '')).join('') };
    const id = `toolu_${i}`;
    calls.push(call);
    messages.push({ role: 'assistant', content: [{ type: 'tool_use', id, name: call.name, input: call.input }] });
    const r = result(call);
    messages.push({ role: 'user', content: [{ type: 'tool_result', tool_use_id: id, content: [{ type: 'text', text: `${r.text}<system-reminder>budget</system-reminder>` }], is_error: r.isError === true }] });
  }
  throw new Error('the worker never ended its turn');
}

const cmd = (c: ToolUseOut) => (c.name === 'Bash' ? String(c.input.command).replace("cd '/w/app' && ", '') : c.name);

describe('the worker model', () => {
  it('fixes the test step by step, each step after the previous result, and answers with the PR link', () => {
    let runs = 0;
    const { calls, end } = play(matrix('devbot: the test in homelab-apps fails, fix it and open a PR'), (c) => {
      if (cmd(c) === 'node --test') return ++runs === 1 ? { text: '# pass 0\n# fail 1', isError: true } : { text: '# pass 1\n# fail 0' };
      if (cmd(c).startsWith('gh pr create')) return { text: 'https://github.com/agent-smith/homelab-apps/pull/7\n' };
      return { text: 'ok' };
    });
    expect(calls.map(cmd)).toEqual([
      'node --test',
      'Read',
      'Read',
      'Edit',
      'node --test',
      'git checkout -b fix/slugify-dashes',
      "git commit -am 'slugify: join words with dashes, as the test expects'",
      'git push -u origin fix/slugify-dashes',
      expect.stringMatching(/^gh pr create --repo agent-smith\/homelab-apps --title .* --head fix\/slugify-dashes --base main$/) as string,
      'mcp__agent-smith__matrix_reply',
      'mcp__agent-smith__publish_event',
      'mcp__agent-smith__publish_event',
    ]);
    expect(calls[9]?.input).toMatchObject({ room: '!r:localhost', thread: '$t1', text: expect.stringContaining('https://github.com/agent-smith/homelab-apps/pull/7') as string });
    expect(calls[10]?.input).toMatchObject({ type: 'pr_opened', data: { repo: 'agent-smith/homelab-apps', number: 7, url: 'https://github.com/agent-smith/homelab-apps/pull/7' } });
    expect(calls[11]?.input).toMatchObject({ type: 'task_done', data: { url: 'https://github.com/agent-smith/homelab-apps/pull/7' } });
    expect(end).toContain('pull/7');
  });

  it('stops and says so in the room when the tests still fail after the edit', () => {
    const { calls, end } = play(matrix('the test in homelab-apps fails, please fix it'), (c) => (cmd(c) === 'node --test' ? { text: '# pass 0\n# fail 1', isError: true } : { text: 'ok' }));
    expect(calls.map(cmd).slice(-2)).toEqual(['node --test', 'mcp__agent-smith__matrix_reply']);
    expect(String(calls.at(-1)?.input.text)).toBe(`${WORKER_PREFIX} I could not finish (Run the tests again): the tests still fail:\n# pass 0\n# fail 1`);
    expect(end).toContain('could not finish');
  });

  it('answers a review rewake: edit, test, commit, push, a reply per review comment', () => {
    const item: UnansweredItem = { key: 'rc:42', kind: 'review_comment', repo: 'agent-smith/homelab-apps', number: 7, author: 'alice', path: 'src/slug.mjs', line: 3, excerpt: 'drop punctuation', url: 'https://github.com/agent-smith/homelab-apps/pull/7#discussion_r42', createdAt: '2026-12-07T00:00:00Z' };
    expect(rewakeItems(describeItem(item))).toEqual([{ repo: 'agent-smith/homelab-apps', number: 7, kind: 'review_comment', id: 42, author: 'alice' }]);
    const msg = `<agent-smith-message id="github-1" source="github">\n${rewakeText([item], 'devbot-agent')}\n</agent-smith-message>`;
    const { calls } = play(msg, (c) => (cmd(c) === 'node --test' ? { text: 'ℹ pass 1\nℹ fail 0' } : { text: 'ok' }));
    expect(calls.map(cmd)).toEqual(['Read', 'Edit', 'node --test', "git commit -am 'slugify: drop punctuation, as the review asked'", 'git push', expect.stringMatching(/^gh api repos\/agent-smith\/homelab-apps\/pulls\/7\/comments\/42\/replies -f body=/) as string]);
  });

  it('reports a denied branch deletion in the room as the tool result said it', () => {
    const { calls, end } = play(matrix('devbot: delete the branch fix/x'), () => ({ text: 'Denied: nobody approved.', isError: true }));
    expect(calls.map(cmd)).toEqual(['git push origin --delete fix/x', 'mcp__agent-smith__matrix_reply']);
    expect(calls[1]?.input.text).toBe(`${WORKER_PREFIX} I did not delete fix/x: Denied: nobody approved.`);
    expect(end).toContain('did not delete');
  });

  it('leaves other messages to the offline echo, and finds gh\'s URL', () => {
    const { calls } = play(matrix('hello there'), () => ({ text: 'sent' }));
    expect(calls[0]?.input.text).toContain('[offline demo] you said: hello there');
    expect(pullRequestUrl('Creating pull request...\nhttps://github.com/o/r/pull/12\n')).toEqual({ url: 'https://github.com/o/r/pull/12', number: 12 });
  });
});
