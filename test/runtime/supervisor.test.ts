/**
 * `agent-smith supervise` with its real parts: tmux, the real Claude Code binary (from
 * npm) against the fake Anthropic API, the supervisor's MCP server and inbox.
 */
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { spawn as spawnPty } from 'node-pty';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { alive } from '../../agent-image/src/programs/supervise/proc.ts';
import { startFakeAnthropic, type FakeAnthropic, type RecordedRequest, type Turn } from '../../scripts/lib/fakes/anthropic-api.ts';
import { CLI, makePod, runCli, startSupervisor, tmux, type PodFiles, type SupervisorProcess } from '../support/pod.ts';
import { waitFor } from '../support/wait.ts';

/** The raw text of a request's last message (hook-delivered messages arrive inside a system reminder). */
function lastMessageText(req: RecordedRequest): string {
  return JSON.stringify(req.body.messages.at(-1)?.content ?? '');
}

/** Every user-visible text of a request's conversation so far. */
function conversation(req: RecordedRequest): string {
  return JSON.stringify(req.body.messages);
}

/**
 * The fake model: a message asking to "call status" gets a tool call of the supervisor's
 * status tool; a tool result gets "status seen"; anything else is echoed by its marker.
 */
function scriptModel(fake: FakeAnthropic): void {
  fake.respond((req, h): Turn => {
    const last = lastMessageText(req);
    if (last.includes('tool_result')) return h.text('status seen');
    if (last.includes('call status')) return h.toolUse('mcp__agent-smith__status', {});
    const marker = /MARK-[\w-]+/.exec(last)?.[0] ?? 'nothing';
    return h.text(`echo ${marker}`);
  });
}

async function send(pod: PodFiles, text: string, id?: string): Promise<string> {
  const res = await fetch(`${pod.localUrl}/inbox`, { method: 'POST', body: JSON.stringify({ source: 'test', text, ...(id ? { id } : {}) }) });
  expect(res.status).toBe(202);
  return ((await res.json()) as { id: string }).id;
}

async function metric(sup: SupervisorProcess, line: RegExp): Promise<number | undefined> {
  const text = await (await fetch(`${sup.publicUrl()}/metrics`)).text();
  const m = text.split('\n').find((l) => line.test(l));
  return m ? Number(m.split(' ').at(-1)) : undefined;
}

const cliStarts = (sup: SupervisorProcess) => sup.logs().filter((l) => l.msg === 'CLI started');

describe('supervise with the real Claude Code binary', () => {
  let fake: FakeAnthropic;
  let pod: PodFiles;
  let sup: SupervisorProcess | undefined;

  beforeEach(async () => {
    fake = await startFakeAnthropic();
    scriptModel(fake);
    pod = await makePod({ modelUrl: fake.url });
    const setup = await runCli(pod, ['setup']);
    expect(setup.code, setup.stderr).toBe(0);
  });

  afterEach(async () => {
    await sup?.stop();
    sup = undefined;
    await fake.close();
    await pod.cleanup();
  });

  it('starts the CLI in tmux with no first-run dialog; an inbox message becomes a turn whose tool call reaches the MCP server', async () => {
    sup = startSupervisor(pod);
    await sup.waitForLog((l) => l.msg === 'CLI started');
    // The prompt box is up and nothing asks a question (onboarding, trust, permission mode).
    const screen = await waitFor('the prompt', async () => {
      const s = await tmux(pod, 'capture-pane', '-p', '-t', 'main:0.0');
      return s.includes('❯') && s;
    });
    expect(screen).not.toMatch(/trust|theme|Do you want|Yes, proceed|API key/i);
    // Pane 0's output is teed to the supervisor's stdout (the container log).
    await waitFor('the pane output on stdout', () => sup!.stdout().includes('Claude Code'));
    const panes = await tmux(pod, 'list-panes', '-t', 'main:0', '-F', '#{pane_index} #{pane_current_command} #{pane_current_path}');
    expect(panes).toMatch(/^0 claude /m);
    expect(panes).toMatch(/^1 bash \/workspace$/m);

    // First message: no hook armed yet, so it is typed into pane 0.
    await send(pod, 'please call status');
    const withResult = await fake.waitForRequest((r) => lastMessageText(r).includes('tool_result'), 60_000);
    // The fake saw the tool's answer: the supervisor's own status (agent name, state).
    expect(lastMessageText(withResult)).toContain('testbot');
    expect(lastMessageText(withResult)).toContain('\\"harness\\":\\"claude\\"');
    // ... and the supervisor saw the call.
    expect(await metric(sup, /^agentsmith_supervisor_mcp_tool_calls_total\{tool="status"\}/)).toBe(1);
    await sup.waitForLog((l) => l.msg === 'message delivered to the CLI' && l.route === 'tmux');

    // Second message: the CLI is idle with its Stop hook armed; the hook wakes it.
    await waitFor('the Stop hook armed', async () => ((await (await fetch(`${pod.localUrl}/status`)).json()) as { hookArmed: boolean }).hookArmed);
    await send(pod, 'second one MARK-hook');
    await fake.waitForRequest((r) => lastMessageText(r).includes('MARK-hook'), 60_000);
    await sup.waitForLog((l) => l.msg === 'message delivered to the CLI' && l.route === 'hook');
    await waitFor('the answer on screen', async () => (await tmux(pod, 'capture-pane', '-p', '-t', 'main:0.0')).includes('echo MARK-hook'));

    // The same id again is not delivered twice.
    const id = await send(pod, 'dup MARK-dup', 'fixed-id-1');
    await fake.waitForRequest((r) => lastMessageText(r).includes('MARK-dup'), 60_000);
    const again = await fetch(`${pod.localUrl}/inbox`, { method: 'POST', body: JSON.stringify({ source: 'test', text: 'dup MARK-dup', id }) });
    expect(await again.json()).toMatchObject({ duplicate: true });
    expect((await fetch(`${sup.publicUrl()}/readyz`)).status).toBe(200);
  });

  it('restarts a CLI killed ten times with a growing delay, reports the crash loop once, and resumes the same session', async () => {
    sup = startSupervisor(pod);
    await sup.waitForLog((l) => l.msg === 'CLI started');
    await waitFor('the CLI idle', async () => ((await (await fetch(`${pod.localUrl}/status`)).json()) as { state: string }).state === 'idle');
    await send(pod, 'remember MARK-before-crash');
    await fake.waitForRequest((r) => lastMessageText(r).includes('MARK-before-crash'));
    await waitFor('the answer on screen', async () => (await tmux(pod, 'capture-pane', '-p', '-t', 'main:0.0')).includes('echo MARK-before-crash'));
    const sessionId = (JSON.parse(await readFile(pod.path('/home/agent/.agent-smith/session.json'), 'utf8')) as { id: string }).id;

    for (let i = 1; i <= 10; i++) {
      // Kill a CLI that has finished starting (its SessionStart hook made it idle; still far
      // below stableAfterSeconds, so the delays keep growing): a kill in the first moments of
      // `--resume` can leave a transcript Claude Code then refuses (the supervisor then starts
      // a new session, tested below), and on a loaded machine starting takes longer than any
      // fixed wait.
      await waitFor(`CLI ${i} started`, async () => ((await (await fetch(`${pod.localUrl}/status`)).json()) as { state: string }).state === 'idle', 30_000);
      const pid = Number((await tmux(pod, 'display-message', '-p', '-t', 'main:0.0', '#{pane_pid}')).trim());
      process.kill(pid, 'SIGKILL');
      await waitFor(`restart ${i}`, () => cliStarts(sup!).length >= i + 1, 30_000).catch((err: Error) => {
        throw new Error(`${err.message}\n${sup!.logs().map((l) => JSON.stringify(l)).join('\n')}`);
      });
      if (i === 5) {
        // The configured limit (5 restarts in the window) is reached: not ready.
        await sup.waitForLog((l) => String(l.msg).startsWith('crash loop'));
        expect((await fetch(`${sup.publicUrl()}/readyz`)).status).toBe(503);
      }
    }
    const delays = sup.logs().filter((l) => l.msg === 'CLI exited; restarting after delay').map((l) => Number(l.delayMs));
    expect(delays).toHaveLength(10);
    for (let i = 1; i < delays.length; i++) expect(delays[i]).toBeGreaterThanOrEqual(delays[i - 1]!);
    expect(delays.at(-1)!).toBeGreaterThan(delays[0]! * 8);
    expect(sup.logs().filter((l) => String(l.msg).startsWith('crash loop'))).toHaveLength(1);
    const outbox = await readFile(pod.path('/home/agent/.agent-smith/events/outbox.jsonl'), 'utf8');
    expect(outbox.split('\n').filter((l) => l.includes('"type":"crash_loop"'))).toHaveLength(1);

    // Recovery: the CLI stays up past stableAfterSeconds (8 s here) → ready again.
    await sup.waitForLog((l) => l.msg === 'CLI recovered from the crash loop', 30_000);
    expect((await fetch(`${sup.publicUrl()}/readyz`)).status).toBe(200);
    // Every restart resumed the one session: the model sees the turn from before the crashes.
    expect(cliStarts(sup).slice(1).every((l) => l.resume === true && l.sessionId === sessionId)).toBe(true);
    await send(pod, 'after recovery MARK-after');
    const req = await fake.waitForRequest((r) => lastMessageText(r).includes('MARK-after'), 60_000);
    expect(conversation(req)).toContain('MARK-before-crash');
    expect(conversation(req)).toContain('echo MARK-before-crash');
  });

  it('recreates the tmux session with both panes when the tmux server is killed; agent-smith attach shows the CLI', async () => {
    sup = startSupervisor(pod);
    await sup.waitForLog((l) => l.msg === 'CLI started');
    await waitFor('the prompt', async () => (await tmux(pod, 'capture-pane', '-p', '-t', 'main:0.0')).includes('❯'));
    await tmux(pod, 'kill-server');
    await waitFor('a second CLI start', () => cliStarts(sup!).length >= 2, 30_000);
    const panes = await waitFor('both panes', async () => {
      const p = await tmux(pod, 'list-panes', '-t', 'main:0', '-F', '#{pane_index} #{pane_current_command}');
      return /^0 claude$/m.test(p) && /^1 bash$/m.test(p) && p;
    });
    expect(panes).toBeTruthy();
    await waitFor('the CLI on screen again', async () => (await tmux(pod, 'capture-pane', '-p', '-t', 'main:0.0')).includes('Claude Code'));
    expect((await fetch(`${sup.publicUrl()}/readyz`)).status).toBe(200);

    // A person attaches with `agent-smith attach --local` from a terminal (a PTY here),
    // sees the CLI's screen, and detaches with C-b d; the session lives on.
    let screen = '';
    const term = spawnPty(process.execPath, [CLI, 'attach', '--local', '--socket', pod.tmuxSocket], { name: 'xterm-256color', cols: 120, rows: 40, env: pod.env });
    term.onData((d) => (screen += d));
    const exited = new Promise<{ exitCode: number }>((resolve) => term.onExit(resolve));
    await waitFor('the CLI screen through attach', () => screen.includes('Claude Code') && screen.includes('❯'), 20_000);
    term.write('\x02d');
    expect((await exited).exitCode).toBe(0);
    expect(screen).toContain('[detached');
    expect(await tmux(pod, 'list-panes', '-t', 'main:0', '-F', '#{pane_current_command}')).toMatch(/^claude$/m);
  });

  it('starts a new session when the CLI keeps refusing to resume its transcript, instead of crash-looping', async () => {
    sup = startSupervisor(pod);
    await sup.waitForLog((l) => l.msg === 'CLI started');
    await waitFor('the CLI idle', async () => ((await (await fetch(`${pod.localUrl}/status`)).json()) as { state: string }).state === 'idle');
    await send(pod, 'remember MARK-old-session');
    await waitFor('the answer on screen', async () => (await tmux(pod, 'capture-pane', '-p', '-t', 'main:0.0')).includes('echo MARK-old-session'));
    // The turn over (Stop hook: idle), so the CLI writes no more of its transcript after the
    // damage below; on a loaded machine it could still be appending and undo it.
    await waitFor('the CLI idle after the answer', async () => ((await (await fetch(`${pod.localUrl}/status`)).json()) as { state: string }).state === 'idle', 60_000);
    const oldId = (JSON.parse(await readFile(pod.path('/home/agent/.agent-smith/session.json'), 'utf8')) as { id: string }).id;
    // Damage the transcript and its good copy the way an interrupted rewrite can: a user
    // line Claude Code cannot use. Then kill the CLI so it has to resume.
    const projects = pod.path('/home/agent/.claude/projects');
    const [dir] = await readdir(projects);
    for (const f of [`${oldId}.jsonl`, `${oldId}.jsonl.agent-smith-good`]) await writeFile(join(projects, dir!, f), '{"type":"user"}\n');
    process.kill(Number((await tmux(pod, 'display-message', '-p', '-t', 'main:0.0', '#{pane_pid}')).trim()), 'SIGKILL');
    const reset = await sup.waitForLog((l) => String(l.msg).includes('starting a new session'), 60_000);
    expect(reset).toMatchObject({ from: oldId });
    const newId = (JSON.parse(await readFile(pod.path('/home/agent/.agent-smith/session.json'), 'utf8')) as { id: string }).id;
    expect(newId).not.toBe(oldId);
    // The CLI runs again in the new session and answers.
    await waitFor('the CLI idle again', async () => ((await (await fetch(`${pod.localUrl}/status`)).json()) as { state: string }).state === 'idle', 60_000);
    await send(pod, 'again MARK-new-session');
    await fake.waitForRequest((r) => lastMessageText(r).includes('MARK-new-session'), 60_000);
  });

  it('on SIGTERM stops the CLI and the shell within the grace period and reports their exit status', async () => {
    sup = startSupervisor(pod);
    await sup.waitForLog((l) => l.msg === 'CLI started');
    await waitFor('the prompt', async () => (await tmux(pod, 'capture-pane', '-p', '-t', 'main:0.0')).includes('❯'));
    const pids = (await tmux(pod, 'list-panes', '-t', 'main:0', '-F', '#{pane_pid}')).trim().split('\n').map(Number);
    expect(pids).toHaveLength(2);
    const t0 = Date.now();
    sup.proc.kill('SIGTERM');
    expect(await sup.exited).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5_000 + 3_000); // stopGraceSeconds 5 + slack
    const stopped = await sup.waitForLog((l) => l.msg === 'CLI and shell stopped');
    expect(stopped).toHaveProperty('cli');
    expect(stopped).toHaveProperty('shell');
    // Both went on their own (the interactive shell on SIGHUP), none needed SIGKILL.
    expect(stopped.killed).toBe(false);
    // Gone, or a zombie that runs nothing (tmux may not have reaped it before it was killed
    // itself; in the pod tini, PID 1, reaps it).
    for (const pid of pids) expect(alive(pid)).toBe(false);
    await expect(tmux(pod, 'has-session', '-t', 'main')).rejects.toThrow();
  });
});
