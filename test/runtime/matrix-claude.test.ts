/**
 * Flow 2 end to end: a person mentions the agent in a Matrix room on a real Synapse → 👀 →
 * the supervisor's inbox → the real Claude Code binary (against the fake model API, which
 * answers with a `mcp__agent-smith__matrix_reply` tool call) → the answer in the room as
 * m.notice; asked in a thread, answered in that thread. The access token stays out of the
 * logs, the panes and the CLI's environment.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeAnthropic, type FakeAnthropic, type RecordedRequest, type Turn } from '../../scripts/lib/fakes/anthropic-api.ts';
import { makeMatrixPod, metric, waitFor } from '../support/matrix-pod.ts';
import { runCli, startSupervisor, tmux, type PodFiles, type SupervisorProcess } from '../support/pod.ts';
import { isReaction, startSynapse, type MatrixTestUser, type Synapse } from '../../scripts/lib/services/synapse.ts';

/** The last message of a request as text, with JSON string escapes of quotes undone. */
function lastMessage(req: RecordedRequest): string {
  return JSON.stringify(req.body.messages.at(-1)?.content ?? '').replaceAll('\\"', '"');
}

/**
 * The fake model: a message from agent-smith's Matrix bridge is answered with a
 * matrix_reply call that passes back the message's room and thread; the tool's result
 * ends the turn.
 */
function scriptModel(fake: FakeAnthropic): void {
  fake.respond((req, h): Turn => {
    const last = lastMessage(req);
    if (last.includes('tool_result')) return h.text('answered in Matrix');
    const at = last.lastIndexOf('<agent-smith-message ');
    if (at < 0) return h.text('nothing to do');
    const header = last.slice(at, last.indexOf('>', at));
    const attrs: Record<string, string> = Object.fromEntries([...header.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
    const marker = /MARK-[\w-]+/.exec(last.slice(at))?.[0] ?? 'none';
    return h.toolUse('mcp__agent-smith__matrix_reply', { room: attrs.room, ...(attrs.thread ? { thread: attrs.thread } : {}), text: `answer to ${marker}` });
  });
}

describe('Matrix → Claude Code → Matrix', () => {
  let synapse: Synapse;
  let fake: FakeAnthropic;
  let bot: MatrixTestUser;
  let alice: MatrixTestUser;
  let room: string;
  let pod: PodFiles;
  let sup: SupervisorProcess;

  beforeAll(async () => {
    synapse = await startSynapse();
    fake = await startFakeAnthropic();
    scriptModel(fake);
    bot = await synapse.register('testbot');
    alice = await synapse.register('alice');
    room = await alice.createRoom({ invite: [bot.userId] });
    // Alice is not on the allowlist: only a mention reaches the agent.
    pod = await makeMatrixPod({ synapse, bot, rooms: [room], modelUrl: fake.url, harness: { kind: 'claude', model: 'claude-sonnet-4-5', args: [] } });
    const setup = await runCli(pod, ['setup']);
    expect(setup.code, setup.stderr).toBe(0);
    sup = startSupervisor(pod);
    await sup.waitForLog((l) => l.msg === 'CLI started');
  });

  afterAll(async () => {
    await sup?.stop();
    await fake?.close();
    await pod?.cleanup();
    await synapse?.close();
  });

  it('answers a mention in the room in a thread rooted at it, and a mention in that thread in the thread, as m.notice', async () => {
    // The bridge is live in the room once a plain message gets its 👀 (and goes nowhere).
    const hello = await waitFor('the bridge live in the room', async () => {
      const id = await alice.sendText(room, 'good morning everyone');
      await alice.waitForEvent(room, (e) => isReaction(e, bot.userId, id), 3_000);
      return id;
    });

    const q1 = await alice.sendText(room, 'testbot: please look at MARK-room', { 'm.mentions': { user_ids: [bot.userId] } });
    await alice.waitForEvent(room, (e) => isReaction(e, bot.userId, q1));
    const a1 = await alice.waitForEvent(room, (e) => e.sender === bot.userId && e.content.body === 'answer to MARK-room', 90_000);
    expect(a1.content.msgtype).toBe('m.notice');
    // A top-level question is answered in a thread rooted at it (the thread its inbox entry names).
    expect(a1.content['m.relates_to']).toMatchObject({ rel_type: 'm.thread', event_id: q1 });

    const q2 = await alice.sendText(room, 'testbot and what about MARK-thread?', {
      'm.relates_to': { rel_type: 'm.thread', event_id: q1, is_falling_back: true, 'm.in_reply_to': { event_id: q1 } },
    });
    await alice.waitForEvent(room, (e) => isReaction(e, bot.userId, q2));
    const a2 = await alice.waitForEvent(room, (e) => e.sender === bot.userId && e.content.body === 'answer to MARK-thread', 90_000);
    expect(a2.content).toMatchObject({ msgtype: 'm.notice', 'm.relates_to': { rel_type: 'm.thread', event_id: q1 } });

    // The model saw each message once, with its room, sender, event and thread.
    const prompts = fake.requests.filter((r) => !r.side && lastMessage(r).includes('<agent-smith-message '));
    expect(prompts.filter((r) => lastMessage(r).includes(`event="${q1}"`))).toHaveLength(1);
    const threaded = prompts.filter((r) => lastMessage(r).includes(`event="${q2}"`));
    expect(threaded).toHaveLength(1);
    expect(lastMessage(threaded[0]!)).toContain(`thread="${q1}"`);
    expect(fake.requests.some((r) => lastMessage(r).includes(hello))).toBe(false);
    expect(await metric(sup, 'agentsmith_supervisor_matrix_events_delivered_total{reason="mention"}')).toBe(2);
    expect(await metric(sup, 'agentsmith_supervisor_matrix_replies_sent_total')).toBe(2);
    expect(await metric(sup, 'agentsmith_supervisor_mcp_tool_calls_total{tool="matrix_reply"}')).toBe(2);

    // The access token is nowhere the agent or a person reading logs could see it.
    const token = bot.accessToken;
    expect(sup.logs().some((l) => JSON.stringify(l).includes(token))).toBe(false);
    expect(sup.stdout()).not.toContain(token);
    for (const pane of ['main:0.0', 'main:0.1']) expect(await tmux(pod, 'capture-pane', '-p', '-S', '-', '-t', pane)).not.toContain(token);
    const cliPid = Number((await tmux(pod, 'display-message', '-p', '-t', 'main:0.0', '#{pane_pid}')).trim());
    expect(await readFile(`/proc/${cliPid}/environ`, 'utf8')).not.toContain(token);
    expect(fake.requests.some((r) => JSON.stringify(r.body).includes(token))).toBe(false);
  });
});
