/**
 * The Matrix bridge's trigger and loop rules against a real Synapse: who reaches the agent,
 * who gets a 👀 and silence, the loop guard, edits and redactions, threaded replies to the
 * agent, invites, and the matrix_reply / matrix_react tools. The harness is a `cat` (the
 * rules are the supervisor's; the real Claude Code binary is in matrix-claude.test.ts).
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callTool, makeMatrixPod, metric, putInInbox, waitFor } from '../support/matrix-pod.ts';
import { runCli, startSupervisor, type PodFiles, type SupervisorProcess } from '../support/pod.ts';
import { isReaction, startSynapse, type MatrixTestUser, type RoomEvent, type Synapse } from '../../scripts/lib/services/synapse.ts';

describe('Matrix bridge triggers against a real Synapse', () => {
  let synapse: Synapse;
  let bot: MatrixTestUser;
  let alice: MatrixTestUser; // on the allowlist
  let bob: MatrixTestUser; // a person, not on the allowlist
  let otherbot: MatrixTestUser; // another agent of the team
  let dave: MatrixTestUser; // a stranger
  let room: string;
  let pod: PodFiles;
  let sup: SupervisorProcess;

  const eyesOn = (r: string, eventId: string) => alice.waitForEvent(r, (e) => isReaction(e, bot.userId, eventId));
  const taken = () => putInInbox(sup);

  beforeAll(async () => {
    synapse = await startSynapse();
    bot = await synapse.register('testbot');
    alice = await synapse.register('alice');
    bob = await synapse.register('bob');
    otherbot = await synapse.register('otherbot');
    dave = await synapse.register('dave');
    room = await alice.createRoom({ invite: [bot.userId, bob.userId, otherbot.userId], name: 'ops' });
    await bob.join(room);
    await otherbot.join(room);
    pod = await makeMatrixPod({ synapse, bot, allowedUsers: [alice.userId], rooms: [room], teammates: [{ name: 'otherbot', matrix: otherbot.userId }] });
    const setup = await runCli(pod, ['setup']);
    expect(setup.code, setup.stderr).toBe(0);
    sup = startSupervisor(pod);
    await sup.waitForLog((l) => l.msg === 'joined a configured room');
  });

  afterAll(async () => {
    await sup?.stop();
    await pod?.cleanup();
    await synapse?.close();
  });

  it('takes allow-listed senders and mentions, 👀s and ignores the rest, and stops the 4th agent message in a row', async () => {
    // An allow-listed sender: taken without a mention, acknowledged with 👀.
    const a1 = await alice.sendText(room, 'please rebuild the cache');
    await eyesOn(room, a1);
    expect(taken()).toContain(a1);
    const ready = (await (await fetch(`${sup.publicUrl()}/readyz`)).json()) as { ok: boolean; matrix: { state: string; rooms: string[] } };
    expect(ready).toMatchObject({ ok: true, matrix: { state: 'syncing' } });
    expect(ready.matrix.rooms).toContain(room);

    // A person not on the allowlist who does not mention the agent: 👀 and silence.
    const b1 = await bob.sendText(room, 'just chatting about lunch');
    await eyesOn(room, b1);
    expect(taken()).not.toContain(b1);
    // ... who names it (by name, then by m.mentions alone): taken.
    const b2 = await bob.sendText(room, 'testbot: can you look at the failing job?');
    const b3 = await bob.sendText(room, 'hey, a question for you', { 'm.mentions': { user_ids: [bot.userId] } });
    await eyesOn(room, b3);
    expect(taken()).toEqual(expect.arrayContaining([b2, b3]));

    // Another agent: not taken unless it names the agent, and never 👀ed.
    const o1 = await otherbot.sendText(room, 'deploy finished, all green');
    const b4 = await bob.sendText(room, 'ok'); // a person in between: the run of agent messages starts again
    await eyesOn(room, b4);
    expect(taken()).not.toContain(o1);
    expect((await alice.messages(room)).some((e) => isReaction(e, bot.userId, o1))).toBe(false);
    const named: string[] = [];
    for (let i = 1; i <= 4; i++) named.push(await otherbot.sendText(room, `testbot, check item ${i}`, {}, {}));
    // While the room has agent messages in a row, the agent's own answer is refused too.
    await waitFor('the 4 agent messages counted', async () => {
      const state = JSON.parse(await readFile(pod.path('/home/agent/.agent-smith/matrix/sync.json'), 'utf8')) as { agentRun: Record<string, number> };
      return (state.agentRun[room] ?? 0) >= 4;
    });
    const refused = await callTool(pod, 'matrix_reply', { room, text: 'me too' });
    expect(refused).toMatchObject({ isError: true });
    expect(refused.text).toMatch(/loop guard/);
    const b5 = await bob.sendText(room, 'testbot are you there?');
    await eyesOn(room, b5);
    // Three agent messages in a row are taken; the 4th is suppressed; a person resets the count.
    expect(taken()).toEqual(expect.arrayContaining([...named.slice(0, 3), b5]));
    expect(taken()).not.toContain(named[3]);
    expect(await metric(sup, 'agentsmith_supervisor_matrix_events_ignored_total{reason="loop_guard"}')).toBe(1);
    expect(await metric(sup, 'agentsmith_supervisor_matrix_events_ignored_total{reason="agent_not_named"}')).toBe(1);
    expect(await metric(sup, 'agentsmith_supervisor_matrix_events_ignored_total{reason="not_triggered"}')).toBe(2);

    // Edits and redactions of a taken message do not deliver it again.
    const before = taken().length;
    await alice.send(room, { msgtype: 'm.text', body: '* please rebuild the cache now', 'm.new_content': { msgtype: 'm.text', body: 'please rebuild the cache now' }, 'm.relates_to': { rel_type: 'm.replace', event_id: a1 } });
    await alice.redact(room, a1);
    const a2 = await alice.sendText(room, 'thanks');
    await eyesOn(room, a2);
    expect(taken().slice(before)).toEqual([a2]);
    expect(await metric(sup, 'agentsmith_supervisor_matrix_events_ignored_total{reason="edit"}')).toBe(1);
    expect(await metric(sup, 'agentsmith_supervisor_matrix_events_ignored_total{reason="redaction"}')).toBe(1);
    expect(new Set(taken()).size).toBe(taken().length);
  });

  it('answers with matrix_reply as m.notice in a thread rooted at the question, reacts with matrix_react, and takes follow-ups in that thread', async () => {
    const q = await bob.sendText(room, 'testbot what is the status?');
    await eyesOn(room, q);
    // The inbox entry says where the answer goes: a thread rooted at the top-level question.
    expect(sup.logs().find((l) => l.msg === 'Matrix message put in the inbox' && l.event === q)).toMatchObject({ trigger: 'mention', thread: q });
    const reply = await callTool(pod, 'matrix_reply', { room, event: q, text: 'all systems nominal' });
    expect(reply.isError, reply.text).toBe(false);
    const notice = await bob.waitForEvent(room, (e) => e.sender === bot.userId && e.content.body === 'all systems nominal');
    expect(notice.content).toMatchObject({ msgtype: 'm.notice', 'm.relates_to': { rel_type: 'm.thread', event_id: q, 'm.in_reply_to': { event_id: q } } });

    // Bob follows up in that thread without naming the agent: it reaches the agent.
    const t1 = await bob.sendText(room, 'why nominal?', { 'm.relates_to': { rel_type: 'm.thread', event_id: q, is_falling_back: true, 'm.in_reply_to': { event_id: notice.event_id } } });
    await eyesOn(room, t1);
    expect(taken()).toContain(t1);
    const line = sup.logs().find((l) => l.msg === 'Matrix message put in the inbox' && l.event === t1);
    expect(line).toMatchObject({ trigger: 'thread', thread: q });
    // Answering that message by its event id alone lands in its thread.
    await callTool(pod, 'matrix_reply', { room, event: t1, text: 'because the checks pass' });
    const inThread: RoomEvent = await bob.waitForEvent(room, (e) => e.sender === bot.userId && e.content.body === 'because the checks pass');
    expect(inThread.content['m.relates_to']).toMatchObject({ rel_type: 'm.thread', event_id: q, 'm.in_reply_to': { event_id: t1 } });

    // A rich reply to the agent's answer, outside the thread, is a reply to the agent.
    const r1 = await bob.sendText(room, 'and the backups?', { 'm.relates_to': { 'm.in_reply_to': { event_id: notice.event_id } } });
    await eyesOn(room, r1);
    expect(taken()).toContain(r1);

    // A thread on a message the agent did not take, without a mention, is not for the agent.
    const chat = await bob.sendText(room, 'lunch at noon?');
    await eyesOn(room, chat);
    const t2 = await bob.sendText(room, 'side note', { 'm.relates_to': { rel_type: 'm.thread', event_id: chat, is_falling_back: true, 'm.in_reply_to': { event_id: chat } } });
    await eyesOn(room, t2);
    expect(taken()).not.toContain(t2);

    const r = await callTool(pod, 'matrix_react', { room, event: t1, key: '✅' });
    expect(r.isError, r.text).toBe(false);
    await bob.waitForEvent(room, (e) => isReaction(e, bot.userId, t1, '✅'));
    expect(await metric(sup, 'agentsmith_supervisor_matrix_replies_sent_total')).toBe(2);
    expect(await metric(sup, 'agentsmith_supervisor_mcp_tool_calls_total{tool="matrix_reply"}')).toBe(3); // with the one the loop guard refused

    // A room the agent is not in is refused.
    const bad = await callTool(pod, 'matrix_reply', { room: '!nope:localhost', text: 'x' });
    expect(bad).toMatchObject({ isError: true });
    expect(bad.text).toMatch(/not a room this agent is in/);
  });

  it('accepts invites only from allow-listed users', async () => {
    const strangers = await dave.createRoom({ invite: [bot.userId] });
    const friends = await alice.createRoom({ invite: [bot.userId] });
    await waitFor('the invite from alice accepted', async () => (await bot.joinedRooms()).includes(friends));
    await sup.waitForLog((l) => l.msg === 'refused an invite from a user not in spec.matrix.allowedUsers' && l.room === strangers);
    expect(await bot.joinedRooms()).not.toContain(strangers);
    const m = await alice.sendText(friends, 'welcome, here is a task');
    await eyesOn(friends, m);
    expect(sup.logs().find((l) => l.msg === 'Matrix message put in the inbox' && l.event === m)).toMatchObject({ room: friends, trigger: 'allowlist' });
  });
});
