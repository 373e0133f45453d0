/**
 * Approvals over chat with the real Claude Code binary (fake model API, real Synapse): an
 * `ask` rule holds the model's Bash call, Claude Code runs agent-smith's PermissionRequest
 * hook, the request appears in the task's thread; an approver's ✅ runs the command. A
 * second call nobody answers is denied after the timeout, and the model's tool result is
 * the deny message.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeAnthropic, toolResults, type FakeAnthropic } from '../../scripts/lib/fakes/anthropic-api.ts';
import { startSynapse, type MatrixTestUser, type RoomEvent, type Synapse } from '../../scripts/lib/services/synapse.ts';
import { APPROVAL_KEY } from '../../agent-image/src/plugins/matrix/approvals.ts';
import { makePod, runCli, startSupervisor, testContract, type PodFiles, type SupervisorProcess } from '../support/pod.ts';

const TIMEOUT_SECONDS = 10;
const STEPS = [
  { id: 'toolu_01Approved0000000000000000', command: 'touch /workspace/approved-1' },
  { id: 'toolu_01Expired00000000000000000', command: 'touch /workspace/expired-1' },
] as const;

describe('approvals over chat with the real Claude Code binary', () => {
  let synapse: Synapse;
  let fake: FakeAnthropic;
  let bot: MatrixTestUser;
  let alice: MatrixTestUser;
  let room: string;
  let pod: PodFiles;
  let sup: SupervisorProcess;

  beforeAll(async () => {
    [synapse, fake] = await Promise.all([startSynapse(), startFakeAnthropic()]);
    fake.respond((req, h) => {
      if (!JSON.stringify(req.body.messages).includes('MARK-approve')) return h.text('nothing to do');
      const step = STEPS[h.toolResults(req).length];
      return step ? h.toolUse('Bash', { command: step.command, description: 'Create a file' }, step.id) : h.text('all steps done');
    });
    bot = await synapse.register('testbot');
    alice = await synapse.register('alice');
    room = await alice.createRoom({ invite: [bot.userId] });
    pod = await makePod({
      modelUrl: fake.url,
      contract: testContract({
        matrix: { homeserverUrl: synapse.url, userId: bot.userId, allowedUsers: [alice.userId], rooms: [room], approvals: { timeoutSeconds: TIMEOUT_SECONDS } },
      }),
      files: {
        // Everything runs unasked but `touch`, which an ask rule holds for a person.
        'settings.json': JSON.stringify({ permissions: { defaultMode: 'bypassPermissions', ask: ['Bash(touch *)'] }, skipDangerousModePermissionPrompt: true }),
        'matrix/access-token': `${bot.accessToken}\n`,
      },
    });
    const setup = await runCli(pod, ['setup']);
    expect(setup.code, setup.stderr).toBe(0);
    sup = startSupervisor(pod);
    await sup.waitForLog((l) => l.msg === 'joined a configured room');
  });

  afterAll(async () => {
    await sup?.stop();
    await fake?.close();
    await pod?.cleanup();
    await synapse?.close();
  });

  it('posts the held Bash call in the thread; ✅ runs it; an unanswered one is denied and the model told', async () => {
    const settings = JSON.parse(await readFile(pod.path('/home/agent/.claude/settings.json'), 'utf8')) as { hooks: Record<string, Array<{ hooks: Array<{ command: string; timeout: number }> }>> };
    expect(settings.hooks.PermissionRequest![0]!.hooks[0]).toMatchObject({ command: expect.stringContaining('hook permission-request') as unknown, timeout: TIMEOUT_SECONDS + 60 });

    const task = await alice.sendText(room, 'testbot: make the marker files MARK-approve');
    const post = (cmd: string) => (e: RoomEvent) => e.sender === bot.userId && APPROVAL_KEY in e.content && String(e.content.body).includes(cmd) && String(e.content.body).includes('asks to run Bash');
    const req1 = await alice.waitForEvent(room, post(STEPS[0].command), 90_000);
    expect(req1.content['m.relates_to']).toMatchObject({ rel_type: 'm.thread', event_id: task });
    expect(existsSync(pod.path('/workspace/approved-1'))).toBe(false);
    await alice.send(room, { 'm.relates_to': { rel_type: 'm.annotation', event_id: req1.event_id, key: '✅' } }, { type: 'm.reaction' });

    // The second call is held too; nobody answers it.
    await alice.waitForEvent(room, post(STEPS[1].command), 60_000);
    expect(existsSync(pod.path('/workspace/approved-1'))).toBe(true);
    const last = await fake.waitForRequest((r) => JSON.stringify(r.body.messages).includes(STEPS[1].id) && JSON.stringify(r.body.messages).includes('tool_result'), 60_000);
    const results = new Map(toolResults(last).map((r) => [r.toolUseId, r]));
    expect(results.get(STEPS[0].id)).toMatchObject({ isError: false });
    expect(results.get(STEPS[1].id)).toMatchObject({ isError: true, text: expect.stringMatching(new RegExp(`^No approver answered within ${TIMEOUT_SECONDS} s; the request was denied`)) as unknown });
    expect(existsSync(pod.path('/workspace/expired-1'))).toBe(false);
  });
});
