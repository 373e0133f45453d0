/**
 * The shipped default permissions with the real Claude Code binary: an Agent in mode
 * `unattended` (the default) with the shared rules of agents/_shared/settings.json, set up
 * by `agent-smith setup` and run by `agent-smith supervise` as in a pod. The fake model
 * drives real Bash tool calls: editing a file, committing and pushing a branch run with
 * nobody pressing a key; a force push, a push to main and reading the Matrix token mount
 * are refused, and the model is told so.
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeAnthropic, toolResults, type FakeAnthropic, type ToolResult } from '../../scripts/lib/fakes/anthropic-api.ts';
import { ROOT } from '../../scripts/lib/paths.ts';
import { makePod, runCli, startSupervisor, testContract, tmux, type PodFiles, type SupervisorProcess } from '../support/pod.ts';

const run = promisify(execFile);
const TOKEN = 'MATRIX-TOKEN-MARKER-0123456789';

/** The model's Bash calls, in order, each with the tool_use id its result comes back under. */
const STEPS = [
  { id: 'toolu_01Edit000000000000000000', command: "git switch -q -c fix-test && printf 'fixed\\n' > app.txt && git commit -qam 'fix: the failing test' && git log --oneline -1" },
  { id: 'toolu_01PushBranch0000000000000', command: 'git push -q -u origin fix-test && echo pushed-branch' },
  { id: 'toolu_01ForcePush00000000000000', command: 'git push --force origin fix-test' },
  { id: 'toolu_01PushMain000000000000000', command: 'git push origin main' },
  { id: 'toolu_01ReadToken00000000000000', command: 'cat /etc/agent-smith/matrix/access-token' },
] as const;

/** Git in a pod folder, from the host (the test's view of the volumes). */
async function git(cwd: string, ...args: string[]): Promise<string> {
  const env = { PATH: process.env.PATH, HOME: cwd, GIT_CONFIG_NOSYSTEM: '1', GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@t', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@t' };
  return (await run('git', args, { cwd, env })).stdout.trim();
}

describe('the shipped permissions with the real Claude Code binary', () => {
  let fake: FakeAnthropic;
  let pod: PodFiles;
  let sup: SupervisorProcess;
  let mainBefore: string;

  beforeAll(async () => {
    fake = await startFakeAnthropic();
    fake.respond((req, h) => {
      const done = h.toolResults(req).length;
      if (!JSON.stringify(req.body.messages).includes('MARK-fix')) return h.text('nothing to do');
      const step = STEPS[done];
      return step ? h.toolUse('Bash', { command: step.command, description: `step ${done + 1}` }, step.id) : h.text('all steps done');
    });
    pod = await makePod({
      modelUrl: fake.url,
      contract: testContract({
        workdir: '/workspace/app',
        git: { name: 'testbot', email: 'testbot@example.invalid' },
        permissions: { mode: 'unattended' },
      }),
      // What the operator renders for an agent without persona settings: the shared rules as they are.
      files: { 'settings.json': await readFile(join(ROOT, 'agents/_shared/settings.json'), 'utf8'), 'matrix/access-token': TOKEN },
    });
    // A repository with a main branch and its remote, both on the workspace volume.
    const remote = pod.path('/workspace/remote.git');
    const app = pod.path('/workspace/app');
    await mkdir(app, { recursive: true });
    await git(pod.path('/workspace'), 'init', '-q', '--bare', '-b', 'main', remote);
    await git(app, 'init', '-q', '-b', 'main');
    await writeFile(join(app, 'app.txt'), 'broken\n');
    await git(app, 'add', 'app.txt');
    await git(app, 'commit', '-qm', 'initial');
    await git(app, 'push', '-q', remote, 'main');
    // The in-pod path: the agent's git runs where /workspace is the volume.
    await git(app, 'remote', 'add', 'origin', '/workspace/remote.git');
    mainBefore = await git(remote, 'rev-parse', 'main');

    const setup = await runCli(pod, ['setup']);
    expect(setup.code, setup.stderr).toBe(0);
    sup = startSupervisor(pod);
    await sup.waitForLog((l) => l.msg === 'CLI started');
  });

  afterAll(async () => {
    await sup?.stop();
    await fake?.close();
    await pod?.cleanup();
  });

  it('commits and pushes a branch without a prompt, and refuses a force push, a push to main and reading the token', async () => {
    const settings = JSON.parse(await readFile(pod.path('/home/agent/.claude/settings.json'), 'utf8')) as { permissions: { defaultMode: string } };
    expect(settings.permissions.defaultMode).toBe('bypassPermissions');

    const res = await fetch(`${pod.localUrl}/inbox`, { method: 'POST', body: JSON.stringify({ source: 'test', text: 'fix the failing test MARK-fix' }) });
    expect(res.status).toBe(202);
    // Every step's result reaches the model with nobody at the keyboard: nothing waited on a dialog.
    const last = await fake.waitForRequest((r) => r.body.tools !== undefined && JSON.stringify(r.body.messages).includes(STEPS.at(-1)!.id) && JSON.stringify(r.body.messages).includes('tool_result'), 90_000);
    const results = new Map<string, ToolResult>(toolResults(last).map((r) => [r.toolUseId, r]));
    const result = (i: number) => results.get(STEPS[i]!.id);

    // The edit and the commit ran; the branch is on the remote.
    expect(result(0)).toMatchObject({ isError: false });
    expect(result(0)!.text).toContain('fix: the failing test');
    expect(result(1)).toMatchObject({ isError: false, text: 'pushed-branch' });
    const app = pod.path('/workspace/app');
    expect(await git(pod.path('/workspace/remote.git'), 'rev-parse', 'fix-test')).toBe(await git(app, 'rev-parse', 'HEAD'));

    // The refused ones: the model is told, and nothing happened.
    expect(result(2)).toEqual({ toolUseId: STEPS[2].id, isError: true, text: `Permission to use Bash with command ${STEPS[2].command} has been denied.` });
    expect(result(3)).toEqual({ toolUseId: STEPS[3].id, isError: true, text: `Permission to use Bash with command ${STEPS[3].command} has been denied.` });
    expect(await git(pod.path('/workspace/remote.git'), 'rev-parse', 'main')).toBe(mainBefore);
    expect(result(4)).toMatchObject({ isError: true });
    expect(result(4)!.text).toMatch(/denied|blocked by a deny rule/);
    expect(fake.requests.some((r) => JSON.stringify(r.body).includes(TOKEN))).toBe(false);

    // No dialog on the screen either.
    const screen = await tmux(pod, 'capture-pane', '-p', '-S', '-', '-t', 'main:0.0');
    expect(screen).not.toMatch(/Do you want to proceed|Yes, and don't ask again/);
  });
});
