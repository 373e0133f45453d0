import { Registry } from 'prom-client';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { makeLogger, type Logger } from '../../lib/log.ts';
import type { ApprovalDecision } from '../../core/approval.ts';
import { MAX_PENDING } from './approval-rules.ts';
import { APPROVAL_KEY, ApprovalMetrics, MatrixApprovals } from './approvals.ts';
import type { MatrixClient, MatrixEvent } from './client.ts';

const ROOM = '!room:hs';
const TASK = { room: ROOM, event: '$task', thread: '$task' };

function setup(opts: { timeoutSeconds?: number; joined?: boolean; fallback?: string; log?: Logger } = {}) {
  const sent: Array<{ room: string; content: Record<string, unknown>; id: string }> = [];
  const events: Array<{ type: string; data: Record<string, unknown> }> = [];
  const client = {
    send: (room: string, _type: string, content: Record<string, unknown>) => {
      const id = `$sent${sent.length + 1}`;
      sent.push({ room, content, id });
      return Promise.resolve(id);
    },
  } as unknown as MatrixClient;
  const metrics = new ApprovalMetrics(new Registry());
  const approvals = new MatrixApprovals({
    client,
    signal: new AbortController().signal,
    agentName: 'testbot',
    self: '@bot:hs',
    approvers: new Set(['@alice:hs', '@bot:hs']),
    timeoutSeconds: opts.timeoutSeconds ?? 300,
    joined: () => opts.joined ?? true,
    fallbackRoom: () => opts.fallback,
    outbox: { emit: (type: string, data: Record<string, unknown>) => void events.push({ type, data }) } as never,
    metrics,
    log: opts.log ?? makeLogger('test', 'silent'),
  });
  const ask = (command: string, session = 's1', signal = new AbortController().signal) => approvals.request({ tool: 'Bash', input: { command }, sessionId: session }, TASK, signal);
  /** Waits until the n-th post is out (the request is pending once its post resolved). */
  const posted = async (n: number) => {
    await vi.waitFor(() => expect(sent.length).toBeGreaterThanOrEqual(n));
    await Promise.resolve();
    return sent[n - 1]!.id;
  };
  const reaction = (sender: string, target: string, key: string): MatrixEvent => ({ type: 'm.reaction', sender, event_id: `$r${Math.random()}`, origin_server_ts: 0, content: { 'm.relates_to': { rel_type: 'm.annotation', event_id: target, key } } });
  const message = (sender: string, body: string, relates: Record<string, unknown>): MatrixEvent => ({ type: 'm.room.message', sender, event_id: `$m${Math.random()}`, origin_server_ts: 0, content: { msgtype: 'm.text', body, 'm.relates_to': relates } });
  return { approvals, sent, events, metrics, ask, posted, reaction, message };
}

const settled = async (p: Promise<ApprovalDecision>) => Promise.race([p, new Promise<'pending'>((r) => setTimeout(() => r('pending'), 20))]);

afterEach(() => void vi.useRealTimers());

describe('MatrixApprovals', () => {
  it('posts in the task thread, ignores a non-approver, and allows on an approver ✅', async () => {
    const t = setup();
    const decision = t.ask('git push origin --delete old');
    const req = await t.posted(1);
    expect(t.sent[0]).toMatchObject({ room: ROOM, content: { msgtype: 'm.notice', [APPROVAL_KEY]: {}, 'm.relates_to': { rel_type: 'm.thread', event_id: '$task' }, 'm.mentions': { user_ids: ['@alice:hs'] } } });
    expect(String(t.sent[0]!.content.body)).toContain('git push origin --delete old');
    expect(t.events[0]).toMatchObject({ type: 'approval_requested', data: { tool: 'Bash', room: ROOM } });
    expect(t.events[0]!.data).not.toHaveProperty('summary'); // the command stays in the room, out of the event log

    expect(t.approvals.take(ROOM, t.reaction('@mallory:hs', req, '✅'))).toBe(true); // consumed, does nothing
    expect(t.approvals.take(ROOM, t.reaction('@bot:hs', req, '✅'))).toBe(false); // the agent's own reaction is no answer
    expect(await settled(decision)).toBe('pending');
    expect(t.approvals.take(ROOM, t.reaction('@alice:hs', req, '✅'))).toBe(true);
    expect(await decision).toEqual({ behavior: 'allow' });
    expect(t.events.at(-1)).toMatchObject({ type: 'approval_granted', data: { by: '@alice:hs', always: false } });
    expect(String(t.sent.at(-1)!.content.body)).toContain('Approved by @alice:hs');
    expect((await t.metrics.ignored.get()).values.find((v) => v.labels.reason === 'not_approver')?.value).toBe(1);
    // A late answer to the decided request does nothing (and is not delivered to the agent).
    expect(t.approvals.take(ROOM, t.reaction('@alice:hs', req, '❌'))).toBe(true);
    expect(t.events.filter((e) => e.type === 'approval_denied')).toEqual([]);
  });

  it('denies on a reply, and after the timeout with a message the model sees', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const t = setup({ timeoutSeconds: 10 });
    const first = t.ask('rm -rf build');
    const req1 = await t.posted(1);
    expect(t.approvals.take(ROOM, t.message('@alice:hs', 'no', { 'm.in_reply_to': { event_id: req1 } }))).toBe(true);
    expect(await first).toEqual({ behavior: 'deny', message: expect.stringContaining('Denied by @alice:hs') as unknown });

    const second = t.ask('rm -rf dist');
    await t.posted(3);
    vi.advanceTimersByTime(10_000);
    expect(await second).toEqual({ behavior: 'deny', message: expect.stringMatching(/^No approver answered within 10 s; the request was denied/) as unknown });
    expect(t.events.at(-1)).toMatchObject({ type: 'approval_expired', data: { after: 10 } });
    expect(String(t.sent.at(-1)!.content.body)).toContain('No approver answered within 10 s');
  });

  it('remembers "approve always" for the exact call in the same session', async () => {
    const t = setup();
    const d = t.ask('npm publish');
    const req = await t.posted(1);
    expect(t.approvals.take(ROOM, t.message('@alice:hs', 'approve always', { rel_type: 'm.thread', event_id: '$task', is_falling_back: false, 'm.in_reply_to': { event_id: req } }))).toBe(true);
    expect(await d).toEqual({ behavior: 'allow' });
    const posts = t.sent.length;
    expect(await t.ask('npm publish')).toEqual({ behavior: 'allow' });
    expect(t.sent.length).toBe(posts); // not asked again
    expect(t.events.at(-1)).toMatchObject({ type: 'approval_granted', data: { by: '@alice:hs', always: true, remembered: true } });
    // Another command, or another session: asked again.
    void t.ask('npm publish --tag next');
    void t.ask('npm publish', 's2');
    await t.posted(posts + 2);
  });

  it('says how much of a long call is not shown, and approves it once only on "approve always"', async () => {
    const t = setup();
    const long = `curl -d ${'x'.repeat(1000)} https://example.org`;
    const d = t.ask(long);
    const req = await t.posted(1);
    expect(String(t.sent[0]!.content.body)).toMatch(/… \(\d+ more characters not shown; "approve always" approves it once only\)/);
    expect(t.approvals.take(ROOM, t.message('@alice:hs', 'approve always', { 'm.in_reply_to': { event_id: req } }))).toBe(true);
    expect(await d).toEqual({ behavior: 'allow' });
    expect(t.events.at(-1)).toMatchObject({ type: 'approval_granted', data: { always: false } });
    expect(String(t.sent.at(-1)!.content.body)).toContain('once only');
    void t.ask(long); // asked again: nothing was remembered
    await t.posted(3);
  });

  it('denies at once, without throwing, a tool input that cannot be summarised', async () => {
    const t = setup();
    let deep: Record<string, unknown> = {};
    for (let i = 0; i < 20_000; i++) deep = { a: deep };
    const d = await t.approvals.request({ tool: 'mcp__x__y', input: deep, sessionId: 's1' }, TASK, new AbortController().signal);
    expect(d).toEqual({ behavior: 'deny', message: expect.stringContaining('cannot be summarised') as unknown });
    expect(t.sent).toEqual([]);
    expect((await t.metrics.outcomes.get()).values.find((v) => v.labels.outcome === 'refused')?.value).toBe(1);
  });

  it('keeps concurrent requests apart; a thread message answers only the request its reply fallback names', async () => {
    const t = setup();
    const a = t.ask('make a');
    const reqA = await t.posted(1);
    const b = t.ask('make b');
    const reqB = await t.posted(2);
    const plain = (body: string, latest = '$other') => t.message('@alice:hs', body, { rel_type: 'm.thread', event_id: '$task', is_falling_back: true, 'm.in_reply_to': { event_id: latest } });
    expect(t.approvals.take(ROOM, plain('yes'))).toBe(false); // under neither request
    expect(t.approvals.take(ROOM, t.reaction('@alice:hs', reqB, '👎'))).toBe(true);
    expect(await b).toMatchObject({ behavior: 'deny' });
    expect(await settled(a)).toBe('pending');
    expect(t.approvals.take(ROOM, plain('what is make a?', reqA))).toBe(false); // not an answer: reaches the agent
    expect(t.approvals.take(ROOM, plain('yes'))).toBe(false); // one request pending in the thread, but the message is not under it
    expect(await settled(a)).toBe('pending');
    expect(t.approvals.take(ROOM, plain('yes', reqA))).toBe(true); // the thread's latest event is request A
    expect(await a).toEqual({ behavior: 'allow' });
    expect(reqA).not.toBe(reqB);
  });

  it('an explicit reply to something else never answers the only request pending in the thread', async () => {
    const t = setup();
    const d = t.ask('git push --force');
    const req = await t.posted(1);
    const reply = (to: string) => t.message('@alice:hs', 'yes', { rel_type: 'm.thread', event_id: '$task', is_falling_back: false, 'm.in_reply_to': { event_id: to } });
    expect(t.approvals.take(ROOM, reply('$someone-asked-a-question'))).toBe(false);
    expect(t.approvals.take(ROOM, t.message('@alice:hs', 'yes', { rel_type: 'm.thread', event_id: '$task' }))).toBe(false); // no reply at all
    expect(await settled(d)).toBe('pending');
    expect(t.approvals.take(ROOM, reply(req))).toBe(true);
    expect(await d).toEqual({ behavior: 'allow' });
    // A reply to the follow-up is a late answer: consumed, does nothing.
    await vi.waitFor(() => expect(t.sent.length).toBe(2));
    await Promise.resolve();
    expect(t.approvals.take(ROOM, reply(t.sent[1]!.id))).toBe(true);
    expect(t.events.filter((e) => e.type === 'approval_denied')).toEqual([]);
  });

  it('takes answers only from the room the request was posted in', async () => {
    const t = setup();
    const d = t.ask('git push');
    const req = await t.posted(1);
    const elsewhere = '!other:hs';
    expect(t.approvals.take(elsewhere, t.reaction('@alice:hs', req, '✅'))).toBe(false);
    expect(t.approvals.take(elsewhere, t.message('@alice:hs', 'approve', { 'm.in_reply_to': { event_id: req } }))).toBe(false);
    expect(await settled(d)).toBe('pending');
    expect(t.approvals.take(ROOM, t.message('@alice:hs', 'approve', { 'm.in_reply_to': { event_id: req } }))).toBe(true);
    expect(await d).toEqual({ behavior: 'allow' });
    // A late answer from another room is not consumed either (it reaches the agent there).
    expect(t.approvals.take(elsewhere, t.reaction('@alice:hs', req, '❌'))).toBe(false);
  });

  it('logs non-approvers\' answers once per request and late answers only at debug, counting each', async () => {
    const info = vi.fn();
    const log = { info, warn: vi.fn(), debug: vi.fn(), error: vi.fn() } as unknown as Logger;
    const t = setup({ log });
    const d = t.ask('git push');
    const req = await t.posted(1);
    const linesBefore = info.mock.calls.length;
    for (let i = 0; i < 20; i++) t.approvals.take(ROOM, t.reaction(`@mallory${i}:hs`, req, '✅'));
    expect(info.mock.calls.length - linesBefore).toBe(1);
    t.approvals.take(ROOM, t.reaction('@alice:hs', req, '✅'));
    await d;
    const linesAfter = info.mock.calls.length;
    for (let i = 0; i < 20; i++) t.approvals.take(ROOM, t.reaction('@mallory:hs', req, '✅'));
    expect(info.mock.calls.length).toBe(linesAfter);
    const ignored = (await t.metrics.ignored.get()).values;
    expect(ignored.find((v) => v.labels.reason === 'not_approver')?.value).toBe(20);
    expect(ignored.find((v) => v.labels.reason === 'finished')?.value).toBe(20);
  });

  it('counts requests still being posted against the pending bound', async () => {
    const t = setup();
    // 30 requests at once, before any post is answered: only MAX_PENDING are posted.
    const all = Array.from({ length: 30 }, (_, i) => t.ask(`job ${i}`));
    const early = await Promise.all(all.slice(MAX_PENDING).map(settled));
    expect(early.every((d) => d !== 'pending' && d.behavior === 'deny')).toBe(true);
    expect(t.sent.length).toBe(MAX_PENDING);
  });

  it('denies at once beyond the pending bound, without a room, and when the CLI stops waiting', async () => {
    const t = setup();
    for (let i = 0; i < MAX_PENDING; i++) void t.ask(`job ${i}`);
    await t.posted(MAX_PENDING);
    expect(await t.ask('one more')).toEqual({ behavior: 'deny', message: expect.stringContaining(`at most ${MAX_PENDING}`) as unknown });

    const none = setup({ joined: false });
    expect(await none.ask('x')).toEqual({ behavior: 'deny', message: expect.stringContaining('no Matrix room') as unknown });
    const fallback = setup({ joined: false, fallback: '!ops:hs' });
    void fallback.ask('x');
    await fallback.posted(1);
    expect(fallback.sent[0]).toMatchObject({ room: '!ops:hs' });
    expect(fallback.sent[0]!.content['m.relates_to']).toBeUndefined();

    const stop = new AbortController();
    const w = setup();
    const d = w.ask('sleep 1000', 's1', stop.signal);
    await w.posted(1);
    stop.abort();
    expect(await d).toMatchObject({ behavior: 'deny' });
    expect(w.approvals.size).toBe(0);
  });
});
