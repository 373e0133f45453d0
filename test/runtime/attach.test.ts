/**
 * `agent-smith attach --local` against a real tmux server on an isolated socket, driven
 * from a PTY that plays the person's terminal: the session's screen shows up, C-b d
 * detaches with tmux's own message and exit 0, the session survives, resizes reach tmux,
 * and the terminal is back in cooked mode afterwards.
 *
 * `agent-smith attach NAME` runs the same way through client-node's Exec against a fake
 * API server (test/fakes/kube-exec-api.ts) whose exec runs the requested command on this
 * machine: the real tmux client attaches to the real session over the channel protocol.
 * The local control plane cannot stand in: kwok nodes have no kubelet to exec into.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { spawn as spawnPty, type IPty } from 'node-pty';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startFakeKubeApi, type FakeKubeApi } from '../fakes/kube-exec-api.ts';
import { ROOT } from '../../scripts/lib/paths.ts';

const run = promisify(execFile);
const CLI = path.join(ROOT, 'agent-image/src/cli.ts');
const ATTACH = path.join(ROOT, 'agent-image/src/programs/attach/attach.ts');
// Printed with printf so the literal marker exists only on the session's screen, never in
// a command line tmux might show.
const SCREEN_PROGRAM = `while :; do printf 'SCREEN-%s\\n' MARKER; sleep 1; done`;

interface Terminal {
  pty: IPty;
  output: () => string;
  exited: Promise<{ exitCode: number; signal?: number }>;
}

/** Runs `file args` as the only process of a fresh 100x30 PTY: the person's terminal. */
function openTerminal(file: string, args: string[], env: NodeJS.ProcessEnv): Terminal {
  let output = '';
  const pty = spawnPty(file, args, { name: 'xterm-256color', cols: 100, rows: 30, cwd: ROOT, env });
  pty.onData((d) => (output += d));
  const exited = new Promise<{ exitCode: number; signal?: number }>((resolve) => pty.onExit(resolve));
  return { pty, output: () => output, exited };
}

/** `node cli.ts attach --local <args>`, as a person types it. */
function attachCli(args: string[], env: NodeJS.ProcessEnv): Terminal {
  return openTerminal(process.execPath, [CLI, 'attach', '--local', ...args], env);
}

/**
 * runAttach in-process, then `stty -a` on the same terminal before the process exits:
 * the mode the person's shell would get back. (Node itself resets the terminal when it
 * exits, so `stty` after the CLI has exited could not tell whether attach restored it.)
 */
function attachThenStty(socket: string, env: NodeJS.ProcessEnv): Terminal {
  const code = [
    `import { execFileSync } from 'node:child_process';`,
    `import { runAttach } from ${JSON.stringify(pathToFileURL(ATTACH).href)};`,
    `const rc = await runAttach({ local: true, socket: ${JSON.stringify(socket)} });`,
    `process.stdout.write('\\nSTTY-BEGIN\\n' + execFileSync('stty', ['-a'], { stdio: ['inherit', 'pipe', 'inherit'], encoding: 'utf8' }) + 'STTY-END\\n');`,
    `process.exitCode = rc;`,
  ].join('\n');
  return openTerminal(process.execPath, ['--input-type=module', '-e', code], env);
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The `stty -a` that attachThenStty printed shows cooked mode: canonical input and echo on. */
function cookedAfter(output: string): boolean {
  const begin = output.lastIndexOf('STTY-BEGIN');
  const end = output.lastIndexOf('STTY-END');
  if (begin < 0 || end < begin) throw new Error(`no stty output in: ${output.slice(-500)}`);
  const stty = output.slice(begin, end);
  return /(^|\s)icanon(\s|$)/m.test(stty) && /(^|\s)echo(\s|$)/m.test(stty);
}

let dir: string;
let sock: string;
let terminal: Terminal | undefined;
let env: NodeJS.ProcessEnv;

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'attach-test-'));
  sock = path.join(dir, 'sock');
  env = { ...process.env, TERM: 'xterm-256color' };
  delete env.TMUX;
  delete env.AGENT_SMITH_TMUX_SOCKET;
});

afterEach(async () => {
  if (terminal) {
    try {
      terminal.pty.kill('SIGKILL');
    } catch {
      // already gone
    }
    terminal = undefined;
  }
  await run('tmux', ['-S', sock, 'kill-server']).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
});

async function startSession(): Promise<void> {
  await run('tmux', ['-f', '/dev/null', '-S', sock, 'new-session', '-d', '-s', 'main', '-x', '120', '-y', '40', SCREEN_PROGRAM]);
}

async function sessionAlive(): Promise<boolean> {
  return run('tmux', ['-S', sock, 'has-session', '-t', '=main']).then(
    () => true,
    () => false,
  );
}

async function clientSize(): Promise<string> {
  const { stdout } = await run('tmux', ['-S', sock, 'list-clients', '-F', '#{client_width}x#{client_height}']);
  return stdout.trim();
}

describe('agent-smith attach --local', () => {
  it("shows the session's screen, follows resizes, detaches on C-b d with exit 0, and leaves the session running", async () => {
    await startSession();
    terminal = attachCli(['--socket', sock], env);

    await waitFor('the session screen', () => terminal!.output().includes('SCREEN-MARKER'));
    // The person's terminal is 100x30; tmux sees the client at that size.
    await waitFor('client at 100x30', async () => (await clientSize()) === '100x30');

    // A window resize reaches tmux (SIGWINCH -> 'resize' -> PTY resize).
    terminal.pty.resize(90, 25);
    await waitFor('client at 90x25 after the resize', async () => (await clientSize()) === '90x25');

    terminal.pty.write('\x02d');
    const { exitCode } = await terminal.exited;
    expect(exitCode).toBe(0);
    expect(terminal.output()).toContain('[detached');
    expect(await sessionAlive()).toBe(true);
  });

  it('uses $AGENT_SMITH_TMUX_SOCKET when --socket is not given', async () => {
    await startSession();
    terminal = attachCli([], { ...env, AGENT_SMITH_TMUX_SOCKET: sock });
    await waitFor('the session screen', () => terminal!.output().includes('SCREEN-MARKER'));
    terminal.pty.write('\x02d');
    expect((await terminal.exited).exitCode).toBe(0);
    expect(terminal.output()).toContain('[detached');
  });

  it('ends with 128+15 on SIGTERM and leaves the session running', async () => {
    await startSession();
    terminal = attachCli(['--socket', sock], env);
    await waitFor('the session screen', () => terminal!.output().includes('SCREEN-MARKER'));
    await waitFor('one client', async () => (await clientSize()) !== '');

    process.kill(terminal.pty.pid, 'SIGTERM');

    expect((await terminal.exited).exitCode).toBe(143);
    expect(await sessionAlive()).toBe(true);
    expect(await clientSize()).toBe('');
  });

  it('gives the terminal back in cooked mode after a detach and after SIGTERM', async () => {
    await startSession();
    terminal = attachThenStty(sock, env);
    await waitFor('the session screen', () => terminal!.output().includes('SCREEN-MARKER'));
    terminal.pty.write('\x02d');
    expect((await terminal.exited).exitCode).toBe(0);
    expect(cookedAfter(terminal.output())).toBe(true);

    terminal = attachThenStty(sock, env);
    await waitFor('the session screen', () => terminal!.output().includes('SCREEN-MARKER'));
    process.kill(terminal.pty.pid, 'SIGTERM');
    expect((await terminal.exited).exitCode).toBe(143);
    expect(cookedAfter(terminal.output())).toBe(true);
  });

  it('fails fast with exit 1 and a clear message when there is no session main', async () => {
    // A server with another session: the socket exists, `main` does not.
    await run('tmux', ['-f', '/dev/null', '-S', sock, 'new-session', '-d', '-s', 'mainly', 'sleep 600']);
    terminal = attachCli(['--socket', sock], env);
    expect((await terminal.exited).exitCode).toBe(1);
    expect(terminal.output()).toContain(`no tmux session 'main' on socket ${sock}: is the supervisor running?`);

    terminal = attachThenStty(sock, env);
    expect((await terminal.exited).exitCode).toBe(1);
    expect(cookedAfter(terminal.output())).toBe(true);
  });

  it('fails fast with exit 1 when no tmux server listens on the socket', async () => {
    terminal = attachCli(['--socket', sock], env);
    expect((await terminal.exited).exitCode).toBe(1);
    expect(terminal.output()).toContain(`no tmux session 'main' on socket ${sock}: is the supervisor running?`);
  });
});

describe('agent-smith attach NAME (pods/exec through a fake API server)', () => {
  let api: FakeKubeApi;
  let kubeconfig: string;

  beforeEach(async () => {
    // The "container" uses tmux's default socket, as in the pod: TMUX_TMPDIR puts it in dir.
    const containerEnv = { ...env, TMUX_TMPDIR: dir };
    sock = path.join(dir, `tmux-${process.getuid!()}`, 'default');
    api = await startFakeKubeApi(containerEnv);
    kubeconfig = await api.writeKubeconfig(path.join(dir, 'kubeconfig'), 'team');
    api.agents.set('team/devbot', { apiVersion: 'agentsmith.dev/v1alpha1', kind: 'Agent', metadata: { name: 'devbot', namespace: 'team' }, status: { podName: 'devbot-0' } });
    api.pods.set('team/devbot-0', {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'devbot-0', namespace: 'team' },
      spec: { containers: [{ name: 'agent', image: 'agent-smith' }] },
      status: { phase: 'Running', containerStatuses: [{ name: 'agent', ready: true, restartCount: 0, image: 'agent-smith', imageID: '', state: { running: {} } }] },
    });
  });

  afterEach(async () => {
    await api.close();
  });

  async function startPodSession(): Promise<void> {
    await run('tmux', ['-f', '/dev/null', 'new-session', '-d', '-s', 'main', '-x', '120', '-y', '40', SCREEN_PROGRAM], { env: { ...env, TMUX_TMPDIR: dir } });
  }

  /** The CLI without a terminal, for the failures reported before the terminal is touched. */
  async function attachFails(args: string[]): Promise<{ code: number; stderr: string }> {
    const cliEnv = { ...env };
    delete cliEnv.KUBECONFIG;
    try {
      await run(process.execPath, [CLI, 'attach', ...args, '--kubeconfig', kubeconfig], { env: cliEnv, cwd: ROOT });
      return { code: 0, stderr: '' };
    } catch (err) {
      const e = err as { code: number; stderr: string };
      return { code: e.code, stderr: e.stderr };
    }
  }

  it("attaches to the agent container's session, follows resizes, detaches with exit 0", async () => {
    await startPodSession();
    terminal = openTerminal(process.execPath, [CLI, 'attach', 'devbot', '--kubeconfig', kubeconfig], env);

    await waitFor('the session screen', () => terminal!.output().includes('SCREEN-MARKER'));
    const attach = api.execs.at(-1)!;
    expect(attach).toMatchObject({ namespace: 'team', pod: 'devbot-0', container: 'agent', tty: true, stdin: true, stdout: true, stderr: false });
    expect(attach.command.slice(-4)).toEqual(['tmux', 'attach', '-t', 'main']);
    // The session check ran first, without a terminal.
    expect(api.execs[0]).toMatchObject({ command: ['tmux', 'has-session', '-t', '=main'], tty: false });

    await waitFor('client at 100x30', async () => (await clientSize()) === '100x30');
    terminal.pty.resize(90, 25);
    await waitFor('client at 90x25 after the resize', async () => (await clientSize()) === '90x25');
    expect(api.resizes).toContainEqual({ width: 90, height: 25 });

    terminal.pty.write('\x02d');
    expect((await terminal.exited).exitCode).toBe(0);
    expect(terminal.output()).toContain('[detached');
    expect(await sessionAlive()).toBe(true);
  });

  it("returns the remote tmux's exit status (1 when its server goes away)", async () => {
    await startPodSession();
    terminal = openTerminal(process.execPath, [CLI, 'attach', 'devbot', '--kubeconfig', kubeconfig], env);
    await waitFor('the session screen', () => terminal!.output().includes('SCREEN-MARKER'));
    await run('tmux', ['-S', sock, 'kill-server']);
    expect((await terminal.exited).exitCode).toBe(1);
    expect(terminal.output()).toContain('[server exited]');
  });

  it('finds the pod as <agent>-0 when the Agent has no status.podName yet', async () => {
    await startPodSession();
    api.agents.set('team/devbot', { apiVersion: 'agentsmith.dev/v1alpha1', kind: 'Agent', metadata: { name: 'devbot', namespace: 'team' } });
    terminal = openTerminal(process.execPath, [CLI, 'attach', 'devbot', '--kubeconfig', kubeconfig], env);
    await waitFor('the session screen', () => terminal!.output().includes('SCREEN-MARKER'));
    expect(api.execs.at(-1)).toMatchObject({ pod: 'devbot-0' });
    terminal.pty.write('\x02d');
    expect((await terminal.exited).exitCode).toBe(0);
  });

  it('names the namespace when the Agent does not exist', async () => {
    expect(await attachFails(['nobot'])).toEqual({ code: 1, stderr: 'agent-smith attach: Agent "nobot" not found in namespace "team" (kubectl get agents -n team)\n' });
    expect((await attachFails(['devbot', '-n', 'other'])).stderr).toContain('Agent "devbot" not found in namespace "other"');
  });

  it("shows the pod's phase when it is not running", async () => {
    api.pods.set('team/devbot-0', {
      metadata: { name: 'devbot-0', namespace: 'team' },
      status: { phase: 'Pending', containerStatuses: [{ name: 'agent', state: { waiting: { reason: 'ContainerCreating' } } }] },
    });
    const { code, stderr } = await attachFails(['devbot']);
    expect(code).toBe(1);
    expect(stderr).toContain('pod devbot-0 is Pending, not Running (container "agent" ContainerCreating)');
    expect(api.execs).toHaveLength(0);
  });

  it('names the RBAC verb and resource when exec is forbidden', async () => {
    api.forbidExec = true;
    const { code, stderr } = await attachFails(['devbot']);
    expect(code).toBe(1);
    expect(stderr).toContain('forbidden: attaching needs RBAC verb "create" on "pods/exec" in namespace "team"');
  });

  it('fails with a clear message when the pod has no session main', async () => {
    // No tmux server at all in the "container".
    const { code, stderr } = await attachFails(['devbot']);
    expect(code).toBe(1);
    expect(stderr).toContain("no tmux session 'main' in pod team/devbot-0 (container \"agent\"): is the supervisor running?");
  });
});
