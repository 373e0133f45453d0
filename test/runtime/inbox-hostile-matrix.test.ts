/**
 * Hostile Matrix messages end to end on a real Synapse: a mention as large as the
 * homeserver accepts reaches the real Claude Code (cut, with a pointer to its full text)
 * and is answered, and the message after it too; a mention the CLI cannot take is set
 * aside after its attempts and its sender sees ⚠️ and a notice, while the next mention is
 * delivered.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeAnthropic, type FakeAnthropic, type RecordedRequest, type Turn } from '../../scripts/lib/fakes/anthropic-api.ts';
import { makeMatrixPod, metric, waitFor } from '../support/matrix-pod.ts';
import { terminate } from '../../scripts/lib/process.ts';
import { runCli, startSupervisor, type PodFiles, type SupervisorProcess } from '../support/pod.ts';
import { isReaction, startSynapse, type MatrixTestUser, type Synapse } from '../../scripts/lib/services/synapse.ts';

/** The last message of a request as text, with JSON string escapes of quotes undone. */
function lastMessage(req: RecordedRequest): string {
  return JSON.stringify(req.body.messages.at(-1)?.content ?? '').replaceAll('\\"', '"');
}

describe('hostile Matrix messages', () => {
  let synapse: Synapse;
  let alice: MatrixTestUser;
  const stops: Array<() => Promise<void>> = [];

  beforeAll(async () => {
    synapse = await startSynapse();
    alice = await synapse.register('alice');
  });

  afterAll(async () => {
    for (const stop of stops.reverse()) await stop();
    await synapse?.close();
  });

  async function start(pod: PodFiles): Promise<SupervisorProcess> {
    const sup = startSupervisor(pod);
    stops.push(async () => {
      await terminate(sup.proc, sup.exited);
      await pod.cleanup();
    });
    await sup.waitForLog((l) => l.msg === 'CLI started');
    return sup;
  }

  /** Waits until the bridge reacts 👀 to a plain message: it is live in the room. */
  async function bridgeLive(room: string, bot: MatrixTestUser): Promise<void> {
    await waitFor('the bridge live in the room', async () => {
      const id = await alice.sendText(room, 'good morning everyone');
      await alice.waitForEvent(room, (e) => isReaction(e, bot.userId, id), 3_000);
      return id;
    });
  }

  it('a 60 KB mention reaches the real Claude Code cut with a pointer to its full text, and is answered; the next one too', async () => {
    const fake: FakeAnthropic = await startFakeAnthropic();
    stops.push(() => fake.close());
    fake.respond((req, h): Turn => {
      const last = lastMessage(req);
      if (last.includes('tool_result')) return h.text('answered in Matrix');
      const at = last.lastIndexOf('<agent-smith-message ');
      if (at < 0) return h.text('nothing to do');
      const room = /room="([^"]*)"/.exec(last.slice(at))?.[1];
      const marker = /MARK-[\w-]+/.exec(last.slice(at))?.[0] ?? 'none';
      const pointer = /\[message is (\d+) KB; full text in ([^\]\s]+)\]/.exec(last.slice(at));
      return h.toolUse('mcp__agent-smith__matrix_reply', { room, text: `answer to ${marker}${pointer ? ` (${pointer[1]} KB in ${pointer[2]})` : ''}` });
    });
    const bot = await synapse.register('bigbot');
    const room = await alice.createRoom({ invite: [bot.userId] });
    const pod = await makeMatrixPod({ synapse, bot, name: 'bigbot', rooms: [room], modelUrl: fake.url, harness: { kind: 'claude', model: 'claude-sonnet-4-5', args: [] } });
    const setup = await runCli(pod, ['setup']);
    expect(setup.code, setup.stderr).toBe(0);
    const sup = await start(pod);
    await bridgeLive(room, bot);

    // About as large as Synapse takes (an event is at most 65536 bytes of JSON).
    const body = `bigbot: please read MARK-big\n${'All work and no play makes Jack a dull boy.\n'.repeat(1400)}the very end MARK-big-end`;
    expect(body.length).toBeGreaterThan(60 * 1024);
    const q = await alice.sendText(room, body, { 'm.mentions': { user_ids: [bot.userId] } });
    await alice.waitForEvent(room, (e) => isReaction(e, bot.userId, q));
    const answer = await alice.waitForEvent(room, (e) => e.sender === bot.userId && String(e.content.body).startsWith('answer to MARK-big'), 120_000);
    const [, kb, file] = /\((\d+) KB in (\S+)\)/.exec(String(answer.content.body)) ?? [];
    expect(Number(kb)).toBeGreaterThanOrEqual(60);
    // The agent is told the in-pod path; the test reads it through the pod root.
    expect(file?.startsWith('/home/agent/')).toBe(true);
    expect(await readFile(pod.path(file!), 'utf8')).toContain('the very end MARK-big-end');

    const q2 = await alice.sendText(room, 'bigbot: and MARK-small?', { 'm.mentions': { user_ids: [bot.userId] } });
    await alice.waitForEvent(room, (e) => isReaction(e, bot.userId, q2));
    await alice.waitForEvent(room, (e) => e.sender === bot.userId && e.content.body === 'answer to MARK-small', 120_000);
    expect(await metric(sup, 'agentsmith_supervisor_inbox_dead_letters')).toBe(0);
  });

  it('a mention the CLI cannot take is set aside: the sender sees ⚠️ and a notice, and the next mention is delivered', async () => {
    const bot = await synapse.register('fragilebot');
    const room = await alice.createRoom({ invite: [bot.userId] });
    // The "CLI" writes what is typed into it to received.txt and exits on a line holding POISON.
    const cli = 'while IFS= read -r l; do case "$l" in *POISON*) exit 3;; esac; printf "%s\\n" "$l" >> received.txt; done';
    const pod = await makeMatrixPod({ synapse, bot, name: 'fragilebot', rooms: [room], harness: { kind: 'custom', command: ['bash', '-c', cli], args: [] } });
    const sup = await start(pod);
    await bridgeLive(room, bot);

    const bad = await alice.sendText(room, 'fragilebot: POISON', { 'm.mentions': { user_ids: [bot.userId] } });
    await alice.waitForEvent(room, (e) => isReaction(e, bot.userId, bad));
    const next = await alice.sendText(room, 'fragilebot: then MARK-next', { 'm.mentions': { user_ids: [bot.userId] } });
    // The sender is told, on the message itself.
    await alice.waitForEvent(room, (e) => isReaction(e, bot.userId, bad, '⚠️'), 90_000);
    const notice = await alice.waitForEvent(room, (e) => e.sender === bot.userId && e.content.msgtype === 'm.notice' && String(e.content.body).includes('could not take this message'), 30_000);
    expect(notice.content['m.relates_to']).toMatchObject({ 'm.in_reply_to': { event_id: bad } });
    // The next mention is delivered.
    await waitFor('the next mention typed into the CLI', async () => (await readFile(pod.path('/workspace/received.txt'), 'utf8').catch(() => '')).includes('MARK-next'), 60_000);
    expect(sup.logs().filter((l) => String(l.msg).startsWith('message set aside'))).toEqual([expect.objectContaining({ id: bad, source: 'matrix', attempts: 3 })]);
    expect(await metric(sup, 'agentsmith_supervisor_inbox_dead_letters_total{source="matrix"}')).toBe(1);
    expect(next).toBeTruthy();
  });
});
