/**
 * Approvals over chat (issue 17 item 2) against a real Synapse and a real nats-server: the
 * real `agent-smith hook permission-request` process asks the real supervisor, which posts
 * the request in the thread of the task (the last Matrix message the CLI took). A
 * non-approver's ✅ does nothing; an approver's ✅ makes the hook print allow; a second
 * request at the same time nobody answers is denied after the timeout with the message the
 * model sees, and a follow-up in the thread. Each step is in JetStream. The harness is a
 * `cat` (the approval is the supervisor's work; the real Claude Code calling the hook is
 * in matrix-approvals-claude.test.ts).
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PodContractInput } from '../../agent-image/src/contract/contract.ts';
import { NO_APPROVER_MESSAGE } from '../../agent-image/src/core/approval.ts';
import { APPROVAL_KEY } from '../../agent-image/src/plugins/matrix/approvals.ts';
import { startNats, type NatsServer } from '../../scripts/lib/services/nats.ts';
import { terminate } from '../../scripts/lib/process.ts';
import { startSynapse, type MatrixTestUser, type RoomEvent, type Synapse } from '../../scripts/lib/services/synapse.ts';
import { deliveredToCli, metric, waitFor } from '../support/matrix-pod.ts';
import { CLI, makePod, runCli, startSupervisor, testContract, type PodFiles, type SupervisorProcess } from '../support/pod.ts';

const TIMEOUT_SECONDS = 6;

interface HookRun {
  exited: Promise<{ code: number | null; stdout: string; stderr: string }>;
  done: () => boolean;
}

/** Runs the real `agent-smith hook permission-request` of `pod` with Claude Code's stdin JSON for a Bash call. */
function permissionHook(pod: PodFiles, command: string, env: NodeJS.ProcessEnv = {}): HookRun {
  const [cmd, argv] = pod.command([process.execPath, CLI, 'hook', 'permission-request']);
  const proc = spawn(cmd, argv, { env: { ...pod.env, AGENT_SMITH_SUPERVISOR_URL: pod.localUrl, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let finished = false;
  proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const input = { session_id: 'session-1', transcript_path: '/tmp/t.jsonl', cwd: '/workspace', permission_mode: 'bypassPermissions', hook_event_name: 'PermissionRequest', tool_name: 'Bash', tool_input: { command, description: 'x' } };
  proc.stdin.end(JSON.stringify(input));
  const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    proc.once('exit', (code) => {
      finished = true;
      resolve({ code, stdout, stderr });
    }),
  );
  return { exited, done: () => finished };
}

/** The decision a hook printed (Claude Code's PermissionRequest output). */
function decisionOf(stdout: string): { behavior: string; message?: string } {
  const out = JSON.parse(stdout) as { hookSpecificOutput: { hookEventName: string; decision: { behavior: string; message?: string } } };
  expect(out.hookSpecificOutput.hookEventName).toBe('PermissionRequest');
  return out.hookSpecificOutput.decision;
}

describe('approvals over chat against a real Synapse', () => {
  let synapse: Synapse;
  let nats: NatsServer;
  let bot: MatrixTestUser;
  let alice: MatrixTestUser; // an approver (spec.matrix.allowedUsers)
  let mallory: MatrixTestUser; // in the room, not an approver
  let room: string;
  const pods: PodFiles[] = [];
  const sups: SupervisorProcess[] = [];

  async function start(over: Partial<PodContractInput>, files: Record<string, string> = {}): Promise<{ pod: PodFiles; sup: SupervisorProcess }> {
    const pod = await makePod({ contract: testContract({ harness: { kind: 'custom', command: ['cat'], args: [] }, ...over }), files });
    pods.push(pod);
    const setup = await runCli(pod, ['setup']);
    expect(setup.code, setup.stderr).toBe(0);
    const sup = startSupervisor(pod);
    sups.push(sup);
    await sup.waitForLog((l) => l.msg === 'supervisor listening');
    return { pod, sup };
  }

  beforeAll(async () => {
    [synapse, nats] = await Promise.all([startSynapse(), startNats()]);
    bot = await synapse.register('testbot');
    alice = await synapse.register('alice');
    mallory = await synapse.register('mallory');
    room = await alice.createRoom({ invite: [bot.userId, mallory.userId], name: 'ops' });
    await mallory.join(room);
  });

  afterAll(async () => {
    await Promise.all(sups.map((sup) => terminate(sup.proc, sup.exited)));
    for (const pod of pods) await pod.cleanup();
    await Promise.all([synapse?.close(), nats?.close()]);
  });

  it('posts in the task thread; a non-approver ✅ does nothing, an approver ✅ allows; a concurrent request expires and is denied', async () => {
    const { pod, sup } = await start(
      {
        matrix: { homeserverUrl: synapse.url, userId: bot.userId, allowedUsers: [alice.userId], rooms: [room], approvals: { timeoutSeconds: TIMEOUT_SECONDS } },
        events: { natsUrl: nats.url, subjectPrefix: 'agents' },
      },
      { 'matrix/access-token': `${bot.accessToken}\n` },
    );
    await sup.waitForLog((l) => l.msg === 'joined a configured room');

    // The task: alice asks in the room; the CLI takes it (its thread is rooted at it).
    const task = await alice.sendText(room, 'testbot, please delete the old branch');
    await waitFor('the task delivered to the CLI', () => (deliveredToCli(sup).includes(task) ? true : undefined), 30_000);

    // Two requests at once: each gets its own post in the task's thread.
    const approved = permissionHook(pod, 'git push origin --delete old-branch');
    const ignored = permissionHook(pod, 'git push origin --delete main');
    const post = (cmd: string) => (e: RoomEvent) => e.sender === bot.userId && APPROVAL_KEY in e.content && String(e.content.body).includes(cmd) && String(e.content.body).includes('asks to run');
    const req1 = await alice.waitForEvent(room, post('old-branch'));
    const req2 = await alice.waitForEvent(room, post('--delete main'));
    expect(req1.event_id).not.toBe(req2.event_id);
    expect(req1.content['m.relates_to']).toMatchObject({ rel_type: 'm.thread', event_id: task });
    expect(req1.content['m.mentions']).toEqual({ user_ids: [alice.userId] });
    expect(String(req1.content.body)).toMatch(/react ✅ or reply "approve"/);
    expect(String(req1.content.body)).toContain(`in ${TIMEOUT_SECONDS} s`);

    // mallory (not an approver) reacts ✅: nothing happens.
    await mallory.send(room, { 'm.relates_to': { rel_type: 'm.annotation', event_id: req1.event_id, key: '✅' } }, { type: 'm.reaction' });
    await sup.waitForLog((l) => l.msg.startsWith('answer to an approval request from a user not in spec.matrix.allowedUsers'));
    expect(approved.done()).toBe(false);
    expect(await metric(sup, 'agentsmith_supervisor_approval_answers_ignored_total{reason="not_approver"}')).toBe(1);

    // alice reacts ✅ on the first request: the hook prints allow.
    await alice.send(room, { 'm.relates_to': { rel_type: 'm.annotation', event_id: req1.event_id, key: '✅' } }, { type: 'm.reaction' });
    const r1 = await approved.exited;
    expect(r1.code).toBe(0);
    expect(decisionOf(r1.stdout)).toEqual({ behavior: 'allow' });
    await alice.waitForEvent(room, (e) => e.sender === bot.userId && String(e.content.body).startsWith(`✅ Approved by ${alice.userId}`));

    // Nobody answers the second: denied after the timeout, the model is told, the thread too.
    expect(ignored.done()).toBe(false);
    const r2 = await ignored.exited;
    expect(decisionOf(r2.stdout)).toEqual({ behavior: 'deny', message: expect.stringMatching(new RegExp(`^No approver answered within ${TIMEOUT_SECONDS} s; the request was denied`)) as unknown });
    const followUp = await alice.waitForEvent(room, (e) => e.sender === bot.userId && String(e.content.body).includes(`No approver answered within ${TIMEOUT_SECONDS} s`));
    expect(followUp.content['m.relates_to']).toMatchObject({ rel_type: 'm.thread', event_id: task });
    // A late ✅ on the expired request does nothing.
    await alice.send(room, { 'm.relates_to': { rel_type: 'm.annotation', event_id: req2.event_id, key: '✅' } }, { type: 'm.reaction' });
    // (logged at debug only: a finished request's answers are counted)
    await waitFor('the late answer counted', async () => ((await metric(sup, 'agentsmith_supervisor_approval_answers_ignored_total{reason="finished"}')) === 1 ? true : undefined), 10_000);
    // Neither the answers nor the requests reached the agent as messages.
    expect(deliveredToCli(sup)).toEqual([task]);

    // The events, in JetStream.
    const events = await waitFor(
      'the approval events in JetStream',
      async () => {
        const out = await runCli(pod, ['events', '--limit', '100']);
        const list = out.stdout
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as { type: string; data: Record<string, unknown> })
          .filter((e) => e.type.startsWith('approval_'));
        return list.length >= 4 ? list : undefined;
      },
      30_000,
    );
    const requested = events.filter((e) => e.type === 'approval_requested');
    // The ids are the posts' dev.agentsmith.approval ids; the command is not in the event.
    const id1 = (req1.content[APPROVAL_KEY] as { id: string }).id;
    const id2 = (req2.content[APPROVAL_KEY] as { id: string }).id;
    expect(requested).toHaveLength(2);
    expect(requested.map((e) => e.data)).toEqual(expect.arrayContaining([{ id: id1, tool: 'Bash', room }, { id: id2, tool: 'Bash', room }]));
    expect(events.find((e) => e.type === 'approval_granted')!.data).toEqual({ id: id1, by: alice.userId, always: false });
    expect(events.find((e) => e.type === 'approval_expired')!.data).toEqual({ id: id2, after: TIMEOUT_SECONDS });
    // The next test's supervisor has the same Matrix account: this one goes.
    await terminate(sup.proc, sup.exited);
  });

  it('an approver\'s threaded reply "approve always" allows, and the same call again runs without asking; "no" denies', async () => {
    const { pod, sup } = await start(
      { matrix: { homeserverUrl: synapse.url, userId: bot.userId, allowedUsers: [alice.userId], rooms: [room], approvals: { timeoutSeconds: 60 } } },
      { 'matrix/access-token': `${bot.accessToken}\n` },
    );
    await sup.waitForLog((l) => l.msg === 'joined a configured room');
    // No task from Matrix yet: the request goes to the top level of spec.matrix.rooms[0].
    const first = permissionHook(pod, 'npm publish --tag next');
    const req = await alice.waitForEvent(room, (e) => e.sender === bot.userId && APPROVAL_KEY in e.content && String(e.content.body).includes('npm publish --tag next'));
    expect(req.content['m.relates_to']).toBeUndefined();
    // mallory's "yes" in the request's thread does nothing; alice's "approve always" there decides.
    const inThread = { 'm.relates_to': { rel_type: 'm.thread', event_id: req.event_id, is_falling_back: true, 'm.in_reply_to': { event_id: req.event_id } } };
    await mallory.sendText(room, 'yes', inThread);
    await sup.waitForLog((l) => l.msg.startsWith('answer to an approval request from a user not in spec.matrix.allowedUsers'));
    expect(first.done()).toBe(false);
    await alice.sendText(room, 'Approve always', inThread);
    expect(decisionOf((await first.exited).stdout)).toEqual({ behavior: 'allow' });
    await alice.waitForEvent(room, (e) => e.sender === bot.userId && String(e.content.body).startsWith(`✅ Approved by ${alice.userId} (always`));

    // The very same call: allowed at once, nothing posted. Another command is asked again, and "no" denies it.
    const posts = (await alice.messages(room)).filter((e) => e.sender === bot.userId && APPROVAL_KEY in e.content).length;
    expect(decisionOf((await permissionHook(pod, 'npm publish --tag next').exited).stdout)).toEqual({ behavior: 'allow' });
    expect((await alice.messages(room)).filter((e) => e.sender === bot.userId && APPROVAL_KEY in e.content)).toHaveLength(posts);
    const other = permissionHook(pod, 'npm publish --tag latest');
    const req2 = await alice.waitForEvent(room, (e) => e.sender === bot.userId && APPROVAL_KEY in e.content && String(e.content.body).includes('--tag latest'));
    await alice.sendText(room, 'no', { 'm.relates_to': { 'm.in_reply_to': { event_id: req2.event_id } } });
    expect(decisionOf((await other.exited).stdout)).toEqual({ behavior: 'deny', message: expect.stringContaining(`Denied by ${alice.userId}`) as unknown });
    expect(await metric(sup, 'agentsmith_supervisor_approvals_total{outcome="remembered"}')).toBe(1);
  });

  it('denies at once without spec.matrix, and when the supervisor is unreachable', async () => {
    const { pod } = await start({});
    const t0 = Date.now();
    const r = await permissionHook(pod, 'git push origin --delete x').exited;
    expect(decisionOf(r.stdout)).toEqual({ behavior: 'deny', message: NO_APPROVER_MESSAGE });
    expect(Date.now() - t0).toBeLessThan(10_000);

    const gone = await permissionHook(pod, 'git push', { AGENT_SMITH_SUPERVISOR_URL: 'http://127.0.0.1:1' }).exited;
    expect(gone.code).toBe(0);
    expect(decisionOf(gone.stdout)).toEqual({ behavior: 'deny', message: expect.stringContaining('supervisor unreachable') as unknown });
  });
});
