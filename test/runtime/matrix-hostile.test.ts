/**
 * The Matrix bridge against hostile and careless room members on a real Synapse, as a
 * person in the room would notice it (issue 14):
 * - one bad event (an id longer than the spec allows, a relation of the wrong shape, a body
 *   that is not text, a review request under an over-long id) is skipped on its own: its
 *   sender is told, and later mentions in the same and in another room still arrive;
 * - mentions follow m.mentions and pills in any encoding, a name only as a whole word;
 * - follow-ups in a thread the agent was asked in reach it, with the thread to answer in,
 *   also after a restart;
 * - an encrypted room is told once, across restarts, that the agent cannot read it;
 * - a batch that keeps failing while the homeserver answers makes /readyz fail, with
 *   backoff, until it goes through.
 * Hostile content goes through Synapse's client API, as a room member would send it.
 */
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callTool, makeMatrixPod, metric, putInInbox, waitFor } from '../support/matrix-pod.ts';
import { runCli, startSupervisor, type PodFiles, type SupervisorProcess } from '../support/pod.ts';
import { isReaction, startSynapse, type MatrixTestUser, type RoomEvent, type Synapse } from '../../scripts/lib/services/synapse.ts';

const WARNING = '⚠️';
const SKIPPED = 'Matrix event skipped: it cannot be handled on its own content';
const thread = (root: string) => ({ 'm.relates_to': { rel_type: 'm.thread', event_id: root, is_falling_back: true, 'm.in_reply_to': { event_id: root } } });

describe('Matrix bridge against hostile room members (real Synapse)', () => {
  let synapse: Synapse;
  let bot: MatrixTestUser;
  let alice: MatrixTestUser; // on the allowlist
  let bob: MatrixTestUser; // a person, not on the allowlist
  let mallory: MatrixTestUser; // a hostile member of the room
  let roomA: string;
  let roomB: string;
  let pod: PodFiles;
  const sups: SupervisorProcess[] = [];
  const current = () => sups.at(-1)!;
  const taken = () => putInInbox(...sups);
  const putLine = (event: string) => sups.flatMap((s) => s.logs()).find((l) => l.msg === 'Matrix message put in the inbox' && l.event === event);
  const eyesOn = (room: string, event: string) => alice.waitForEvent(room, (e) => isReaction(e, bot.userId, event));
  const readyz = async () => {
    const res = await fetch(`${current().publicUrl()}/readyz`);
    return { status: res.status, body: (await res.json()) as { ok: boolean; reason: string } };
  };
  const restart = async () => {
    const s = current();
    s.proc.kill('SIGTERM');
    await s.exited;
    sups.push(startSupervisor(pod));
    await current().waitForLog((l) => l.msg === 'Matrix connected: syncing');
  };
  /** The agent's notice replying to `event`. */
  const noticeFor = (room: string, event: string) =>
    alice.waitForEvent(room, (e) => e.sender === bot.userId && e.content.msgtype === 'm.notice' && (e.content['m.relates_to'] as { 'm.in_reply_to'?: { event_id?: string } } | undefined)?.['m.in_reply_to']?.event_id === event);

  beforeAll(async () => {
    synapse = await startSynapse();
    bot = await synapse.register('testbot');
    alice = await synapse.register('alice');
    bob = await synapse.register('bob');
    mallory = await synapse.register('mallory');
    roomA = await alice.createRoom({ invite: [bot.userId, bob.userId, mallory.userId], name: 'ops' });
    roomB = await alice.createRoom({ invite: [bot.userId, bob.userId, mallory.userId], name: 'dev' });
    for (const [u, r] of [[bob, roomA], [mallory, roomA], [bob, roomB], [mallory, roomB]] as const) await u.join(r);
    pod = await makeMatrixPod({ synapse, bot, allowedUsers: [alice.userId], rooms: [roomA, roomB] });
    const setup = await runCli(pod, ['setup']);
    expect(setup.code, setup.stderr).toBe(0);
    sups.push(startSupervisor(pod));
    await waitFor('the bridge live in both rooms', async () => {
      for (const room of [roomA, roomB]) {
        const id = await alice.sendText(room, 'warm-up');
        await alice.waitForEvent(room, (e) => isReaction(e, bot.userId, id), 3_000);
      }
      return true;
    });
  });

  afterAll(async () => {
    const sup = sups.at(-1);
    await sup?.stop();
    await pod?.cleanup();
    await synapse?.close();
  });

  it('skips each poison event on its own, tells its sender, and still delivers later mentions in the same and another room', async () => {
    const huge = `$${'a'.repeat(20_000)}`;
    // A reply to an event id so long the homeserver drops a lookup of it (Synapse accepts
    // m.in_reply_to without checking it); not naming the agent, so the bridge would look it up.
    const p1 = await mallory.sendText(roomA, 'what about this one', { 'm.relates_to': { 'm.in_reply_to': { event_id: huge } } });
    // The same, naming the agent: a message it would have taken.
    const p2 = await mallory.sendText(roomA, 'testbot: look at this', { 'm.relates_to': { 'm.in_reply_to': { event_id: huge } } });
    // m.relates_to of the wrong type, naming the agent.
    const p3 = await mallory.sendText(roomA, 'testbot: hello there', { 'm.relates_to': 'not an object' });
    // A reply relation whose event id is a number, mentioning the agent (m.mentions).
    const p4 = await mallory.sendText(roomA, 'a question', { 'm.relates_to': { 'm.in_reply_to': { event_id: 12345 } }, 'm.mentions': { user_ids: [bot.userId] } });
    // A "review request" (an m.notice naming the agent) under an id longer than the inbox takes:
    // the bogus review id is ignored, the message itself is taken.
    const p5 = await mallory.send(roomA, { msgtype: 'm.notice', body: 'testbot: please review', 'dev.agentsmith.review_request': { event_id: `$${'r'.repeat(300)}` } });
    // m.mentions with user_ids that is not a list: judged by m.mentions, not a mention.
    const p6 = await mallory.sendText(roomA, 'testbot: hi', { 'm.mentions': { user_ids: bot.userId } });
    // In the other room: a reply id with a NUL, naming the agent; a thread root that is a
    // number and a reply target that is a list, not naming it; m.relates_to null (no relation).
    const q1 = await mallory.sendText(roomB, 'testbot: and this', { 'm.relates_to': { 'm.in_reply_to': { event_id: '$a\u0000b' } } });
    const q2 = await mallory.sendText(roomB, 'more', { 'm.relates_to': { rel_type: 'm.thread', event_id: 5 } });
    const q3 = await mallory.sendText(roomB, 'even more', { 'm.relates_to': { 'm.in_reply_to': [] } });
    const q4 = await mallory.sendText(roomB, 'testbot: plain after all', { 'm.relates_to': null });

    // Later messages, in the same room and in another one, reach the agent and get their 👀.
    const a1 = await alice.sendText(roomA, 'testbot: after the poison, room A');
    const b1 = await bob.sendText(roomB, 'testbot: after the poison, room B');
    await eyesOn(roomA, a1);
    await eyesOn(roomB, b1);
    expect(taken()).toEqual(expect.arrayContaining([a1, b1, p5, q4]));
    for (const p of [p1, p2, p3, p4, p6, q1, q2, q3]) expect(taken()).not.toContain(p);

    // Each sender is told: a notice saying why for what the agent would have taken, ⚠️ otherwise.
    for (const p of [p2, p3, p4]) expect(String((await noticeFor(roomA, p)).content.body)).toMatch(/did not reach me/);
    expect(String((await noticeFor(roomA, p2)).content.body)).toMatch(/not valid/);
    await alice.waitForEvent(roomA, (e) => isReaction(e, bot.userId, p1, WARNING));
    await eyesOn(roomA, p6);
    expect(String((await noticeFor(roomB, q1)).content.body)).toMatch(/did not reach me/);
    for (const q of [q2, q3]) await alice.waitForEvent(roomB, (e) => isReaction(e, bot.userId, q, WARNING));

    // One warning line per skipped event, with no more than a clipped id of what was sent.
    const lines = current().logs().filter((l) => l.msg === SKIPPED);
    for (const p of [p1, p2, p3, p4, q1, q2, q3]) expect(lines.filter((l) => l.event === p)).toHaveLength(1);
    for (const l of lines) {
      expect(JSON.stringify(l).length).toBeLessThan(1000);
      expect(JSON.stringify(l)).not.toContain('a'.repeat(100));
    }
    expect(await metric(current(), 'agentsmith_supervisor_matrix_events_failed_total{reason="invalid_relation"}')).toBe(7);
    expect(await readyz()).toMatchObject({ status: 200, body: { ok: true } });
  });

  it('counts pills of its id in any encoding and its name as a whole word, never another user id, a URL or a longer word; m.mentions decides when present', async () => {
    const pill = (href: string, text = 'Tess') => ({ format: 'org.matrix.custom.html', formatted_body: `<a href="${href}">${text}</a>: have a look` });
    const yes = [
      await bob.sendText(roomA, 'Tess: have a look', pill('https://matrix.to/#/%40testbot%3alocalhost')),
      await bob.sendText(roomA, 'Tess: have a look', pill('https://matrix.to/#/@testbot:localhost?via=localhost')),
      await bob.sendText(roomA, 'hey testbot, have a look'),
      await bob.sendText(roomA, 'a question for you', { 'm.mentions': { user_ids: [bot.userId] } }),
    ];
    const no = [
      await bob.sendText(roomA, '@testbot:evil.example can you look?'),
      await bob.sendText(roomA, 'ping @testbot2:localhost please'),
      await bob.sendText(roomA, 'the docs are at https://git.example/agents/testbot/README'),
      await bob.sendText(roomA, 'xtestbotx broke'),
      await bob.sendText(roomA, 'testbots are fun'),
      await bob.sendText(roomA, 'Tess: have a look', pill('https://matrix.to/#/%40testbot%3aevil.example')),
      // A client that sends m.mentions (v1.7) without the agent in it did not mention it.
      await bob.sendText(roomA, 'testbot: hi', { 'm.mentions': {} }),
    ];
    for (const e of [...yes, ...no]) await eyesOn(roomA, e);
    expect(taken()).toEqual(expect.arrayContaining(yes));
    for (const e of no) expect(taken()).not.toContain(e);
  });

  it('takes follow-ups in a thread it was asked in, with the thread to answer in, also after a restart', async () => {
    // A top-level question: its inbox entry names the thread rooted at it.
    const q = await bob.sendText(roomA, 'testbot: can you check the deploy?');
    await eyesOn(roomA, q);
    expect(putLine(q)).toMatchObject({ trigger: 'mention', thread: q });
    // A follow-up there, not naming the agent, reaches it.
    const f1 = await bob.sendText(roomA, 'it is the staging one', thread(q));
    await eyesOn(roomA, f1);
    expect(putLine(f1)).toMatchObject({ trigger: 'thread', thread: q });
    // So does a plain reply to the question, outside the thread; its answer goes to the thread too.
    const f0 = await bob.sendText(roomA, 'also the cron job', { 'm.relates_to': { 'm.in_reply_to': { event_id: q } } });
    await eyesOn(roomA, f0);
    expect(putLine(f0)).toMatchObject({ trigger: 'thread', thread: q });
    // The agent answers the root by its event id alone: in the thread.
    const r = await callTool(pod, 'matrix_reply', { room: roomA, event: q, text: 'looking at staging' });
    expect(r.isError, r.text).toBe(false);
    const answer = await bob.waitForEvent(roomA, (e) => e.sender === bot.userId && e.content.body === 'looking at staging');
    expect(answer.content['m.relates_to']).toMatchObject({ rel_type: 'm.thread', event_id: q });

    // A message with another relation cannot root a thread: its entry names none, and the answer is a plain reply.
    const ref = await bob.sendText(roomA, 'testbot: see the question above', { 'm.relates_to': { rel_type: 'm.reference', event_id: q } });
    await eyesOn(roomA, ref);
    expect(putLine(ref)).toMatchObject({ trigger: 'mention' });
    expect(putLine(ref)?.thread).toBeUndefined();
    const r3 = await callTool(pod, 'matrix_reply', { room: roomA, event: ref, text: 'seen it' });
    expect(r3.isError, r3.text).toBe(false);
    const plain = await bob.waitForEvent(roomA, (e) => e.sender === bot.userId && e.content.body === 'seen it');
    expect(plain.content['m.relates_to']).toEqual({ 'm.in_reply_to': { event_id: ref } });
    // Even when asked to start a thread there, the answer arrives, as a plain reply.
    const r4 = await callTool(pod, 'matrix_reply', { room: roomA, event: ref, thread: ref, text: 'seen it twice' });
    expect(r4.isError, r4.text).toBe(false);
    await bob.waitForEvent(roomA, (e) => e.sender === bot.userId && e.content.body === 'seen it twice');

    // A thread on someone else's message where the agent is named midway: later messages there reach it.
    const root = await mallory.sendText(roomA, 'the build is red again');
    await eyesOn(roomA, root);
    const m1 = await bob.sendText(roomA, 'testbot: any idea why?', thread(root));
    const m2 = await bob.sendText(roomA, 'it started after the merge', thread(root));
    await eyesOn(roomA, m2);
    expect(putLine(m1)).toMatchObject({ trigger: 'mention', thread: root });
    expect(putLine(m2)).toMatchObject({ trigger: 'thread', thread: root });
    expect(taken()).not.toContain(root);

    // Restarted, it still knows both threads, and where the answer to the root goes.
    await restart();
    const f2 = await bob.sendText(roomA, 'and now prod too', thread(q));
    const m3 = await bob.sendText(roomA, 'reverting fixed it', thread(root));
    await eyesOn(roomA, m3);
    expect(putLine(f2)).toMatchObject({ trigger: 'thread', thread: q });
    expect(putLine(m3)).toMatchObject({ trigger: 'thread', thread: root });
    const r2 = await callTool(pod, 'matrix_reply', { room: roomA, event: q, text: 'prod checked too' });
    expect(r2.isError, r2.text).toBe(false);
    const answer2 = await bob.waitForEvent(roomA, (e) => e.sender === bot.userId && e.content.body === 'prod checked too');
    expect(answer2.content['m.relates_to']).toMatchObject({ rel_type: 'm.thread', event_id: q });
  });

  it('tells an encrypted room once, across restarts, that it cannot read it, with a warning, an event and a metric', async () => {
    const encryption = { type: 'm.room.encryption', state_key: '', content: { algorithm: 'm.megolm.v1.aes-sha2' } };
    const ciphertext = { algorithm: 'm.megolm.v1.aes-sha2', ciphertext: 'AwgAEnAc', sender_key: 'k', session_id: 's', device_id: 'D' };
    // Joined encrypted: the room's state says so.
    const enc = (await alice.api<{ room_id: string }>('POST', '/createRoom', { preset: 'private_chat', invite: [bot.userId], initial_state: [encryption] })).room_id;
    // Encrypted later: the state event arrives in the timeline.
    const later = await alice.createRoom({ invite: [bot.userId] });
    await waitFor('both rooms joined', async () => (await bot.joinedRooms()).includes(later) && (await bot.joinedRooms()).includes(enc));
    await alice.api('PUT', `/rooms/${encodeURIComponent(later)}/state/m.room.encryption/`, encryption.content);
    const isNotice = (e: RoomEvent) => e.sender === bot.userId && e.content.msgtype === 'm.notice' && /cannot read end-to-end encrypted messages/.test(String(e.content.body));
    await alice.waitForEvent(enc, isNotice);
    await alice.waitForEvent(later, isNotice);
    expect(await metric(current(), 'agentsmith_supervisor_matrix_encrypted_rooms_total')).toBe(2);

    // Encrypted messages, before and after a restart, add no second notice.
    const x1 = await alice.send(enc, ciphertext, { type: 'm.room.encrypted' });
    // Its writer sees that it was not read.
    await alice.waitForEvent(enc, (e) => isReaction(e, bot.userId, x1, WARNING));
    await restart();
    await alice.send(enc, ciphertext, { type: 'm.room.encrypted' });
    await alice.send(later, ciphertext, { type: 'm.room.encrypted' });
    await waitFor('the encrypted events seen after the restart', async () => (await metric(current(), 'agentsmith_supervisor_matrix_events_ignored_total{reason="encrypted"}')) >= 2);
    const hello = await alice.sendText(roomA, 'testbot: still there?');
    await eyesOn(roomA, hello);
    for (const room of [enc, later]) expect((await alice.messages(room)).filter(isNotice)).toHaveLength(1);

    const warnings = sups.flatMap((s) => s.logs()).filter((l) => l.msg.startsWith('Matrix room is end-to-end encrypted'));
    expect(warnings.map((l) => l.room).sort()).toEqual([enc, later].sort());
    const outbox = (await readFile(pod.path('/home/agent/.agent-smith/events/outbox.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { type: string; data: { room?: string } });
    expect(outbox.filter((e) => e.type === 'matrix_encrypted_room').map((e) => e.data.room).sort()).toEqual([enc, later].sort());
    // The restarted supervisor did not tell them again.
    expect(await metric(current(), 'agentsmith_supervisor_matrix_encrypted_rooms_total')).toBe(0);
  });

  it('fails /readyz while a batch keeps failing with the homeserver up, backs off, and recovers', async () => {
    // The state file cannot be replaced (a directory is in its way): every batch fails after /sync answered.
    const stateFile = pod.path('/home/agent/.agent-smith/matrix/sync.json');
    await rm(stateFile, { force: true });
    await mkdir(join(stateFile, 'in-the-way'), { recursive: true });
    const failed = () => current().logs().filter((l) => l.msg === 'Matrix batch failed; retrying it');
    const before = failed().length;
    const m1 = await alice.sendText(roomA, 'testbot: are you stuck?');
    await waitFor('/readyz fails', async () => (await readyz()).status === 503, 30_000);
    expect((await readyz()).body.reason).toMatch(/Matrix stalled/);
    await waitFor('three failed attempts', async () => failed().length >= before + 3, 30_000);
    // Backoff, not a retry every 500 ms for ever.
    expect(failed().slice(before, before + 3).map((l) => Number(l.retryInMs))).toEqual([500, 1000, 2000]);
    expect(await metric(current(), 'agentsmith_supervisor_matrix_connected')).toBe(1);

    await rm(stateFile, { recursive: true, force: true });
    await waitFor('/readyz ok again', async () => (await readyz()).status === 200, 30_000);
    const m2 = await bob.sendText(roomB, 'testbot: and now?');
    await eyesOn(roomB, m2);
    expect(taken()).toEqual(expect.arrayContaining([m1, m2]));
    expect(taken().filter((e) => e === m1)).toHaveLength(1);
  });
});
