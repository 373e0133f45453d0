/**
 * Exactly once across restarts: 100 messages sent to a room while the supervisor is
 * restarted 3 times (twice with SIGTERM, once with SIGKILL) and Synapse once; each message
 * reaches the inbox once and the CLI once, asserted by event id. The timeline limit is 10,
 * so the messages that pile up while the supervisor is down come through the gap filling
 * (/messages between the saved sync token and the new batch).
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deliveredToCli, makeMatrixPod, putInInbox, waitFor } from '../support/matrix-pod.ts';
import { runCli, startSupervisor, type PodFiles, type SupervisorProcess } from '../support/pod.ts';
import { isReaction, startSynapse, type MatrixTestUser, type Synapse } from '../../scripts/lib/services/synapse.ts';

const COUNT = 100;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('Matrix bridge across restarts', () => {
  let synapse: Synapse;
  let bot: MatrixTestUser;
  let alice: MatrixTestUser;
  let room: string;
  let pod: PodFiles;
  const sups: SupervisorProcess[] = [];
  const current = () => sups.at(-1)!;

  beforeAll(async () => {
    synapse = await startSynapse();
    bot = await synapse.register('testbot');
    alice = await synapse.register('alice');
    room = await alice.createRoom({ invite: [bot.userId] });
    pod = await makeMatrixPod({
      synapse,
      bot,
      allowedUsers: [alice.userId],
      rooms: [room],
      // The "CLI" appends whatever is typed into it to a file in its working directory.
      harness: { kind: 'custom', command: ['sh', '-c', 'exec cat >> received.txt'], args: [] },
      extraEnv: { AGENT_SMITH_MATRIX_TIMELINE_LIMIT: '10' },
    });
    const setup = await runCli(pod, ['setup']);
    expect(setup.code, setup.stderr).toBe(0);
  });

  afterAll(async () => {
    const sup = sups.at(-1);
    await sup?.stop();
    await pod?.cleanup();
    await synapse?.close();
  });

  it('delivers 100 messages exactly once while the supervisor restarts 3 times and Synapse once', async () => {
    sups.push(startSupervisor(pod));
    await current().waitForLog((l) => l.msg === 'Matrix bridge starting');
    const warm = await waitFor('the bridge live in the room', async () => {
      const id = await alice.sendText(room, 'warm-up');
      await alice.waitForEvent(room, (e) => isReaction(e, bot.userId, id), 3_000);
      return id;
    });

    const sent: string[] = [];
    const sender = (async () => {
      for (let i = 0; i < COUNT; i++) {
        // A fixed transaction id per message: a retry while Synapse restarts is the same event.
        sent.push(await alice.sendText(room, `task ${i}`, {}, { txnId: `task-${i}`, retryForMs: 60_000 }));
        await sleep(10);
      }
    })();
    const whenSent = (n: number) => waitFor(`${n} messages sent`, () => sent.length >= n, 60_000);
    const restart = async (signal: 'SIGTERM' | 'SIGKILL', resumeAfter?: number) => {
      const sup = current();
      sup.proc.kill(signal);
      await sup.exited;
      if (resumeAfter !== undefined) await whenSent(resumeAfter);
      const next = startSupervisor(pod);
      sups.push(next);
      await next.waitForLog((l) => l.msg === 'Matrix bridge starting');
    };

    await whenSent(10);
    await restart('SIGTERM', 35); // 25 messages pile up while it is down: more than the timeline limit
    await whenSent(45);
    await synapse.stop();
    await sleep(1000);
    await synapse.start();
    await whenSent(60);
    await restart('SIGKILL');
    await whenSent(80);
    await restart('SIGTERM');
    await sender;

    const expected = [warm, ...sent];
    expect(new Set(sent).size).toBe(COUNT);
    await waitFor('every message delivered to the CLI', () => expected.every((id) => deliveredToCli(...sups).includes(id)), 60_000).catch((err: Error) => {
      const missing = expected.filter((id) => !deliveredToCli(...sups).includes(id));
      throw new Error(`${err.message}; missing ${missing.length}: ${missing.slice(0, 5).join(' ')}`);
    });

    // The bridge put each message into the inbox once, over all four supervisor runs ...
    const puts = putInInbox(...sups);
    expect(puts.filter((id) => !expected.includes(id))).toEqual([]);
    expect(new Set(puts).size).toBe(puts.length);
    // ... the inbox delivered each once ...
    const delivered = JSON.parse(await readFile(pod.path('/home/agent/.agent-smith/inbox/delivered.json'), 'utf8')) as string[];
    expect(delivered.filter((id) => expected.includes(id)).sort()).toEqual([...expected].sort());
    expect(deliveredToCli(...sups).sort()).toEqual([...expected].sort());
    // ... and the CLI received each once. (A message being typed when a supervisor stops is
    // typed again by the next one: the inbox is at-least-once towards a CLI without hooks.
    // Such a message can only be the first one a later run delivered.)
    const received = await readFile(pod.path('/workspace/received.txt'), 'utf8');
    const counts = new Map(expected.map((id) => [id, received.split(`id="${id}"`).length - 1]));
    expect([...counts.values()].every((n) => n >= 1)).toBe(true);
    const twice = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
    const firstOfLaterRuns = sups.slice(1).map((s) => deliveredToCli(s)[0]);
    expect(twice.filter((id) => !firstOfLaterRuns.includes(id))).toEqual([]);

    // Every run but the first resumed from the saved sync token; the gap was filled.
    expect(sups.slice(1).every((s) => s.logs().some((l) => l.msg === 'Matrix bridge starting' && l.resumed === true))).toBe(true);
    expect(sups.some((s) => s.logs().some((l) => l.msg === 'timeline was limited; filled the gap from /messages'))).toBe(true);
    expect(sups.some((s) => s.logs().some((l) => l.msg === 'Matrix sync failed; retrying' && l.kind === 'unreachable'))).toBe(true);
  });
});
