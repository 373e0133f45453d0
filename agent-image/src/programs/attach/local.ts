/**
 * `agent-smith attach --local`: `tmux attach -t main` against a supervisor on this
 * machine, run under a PTY of our own (node-pty) that is wired to the person's terminal.
 *
 * Why a PTY rather than spawning tmux with inherited stdio: the same wiring then serves a
 * person at a terminal and a test driving us from a PTY, the exit code and signal come
 * back through one callback, and resizes are forwarded explicitly rather than relying on
 * the child sharing our controlling terminal.
 */
import { execFile } from 'node:child_process';
import { spawn as spawnPty, type IPty } from 'node-pty';
import { AttachError, defaultTmuxSocket, hasSessionArgs, localAttachArgs, noSessionMessage, tmuxClientEnv } from './resolve.ts';
import { enterRawMode, onTerminationSignal, signalExitCode, terminalSize, type TerminalIO } from './terminal.ts';

/**
 * Whether tmux on `socket` (undefined: tmux's default) has session `main`.
 * @throws AttachError when tmux is not installed.
 */
async function hasSession(socket: string | undefined, env: NodeJS.ProcessEnv): Promise<boolean> {
  return await new Promise((resolve, reject) => {
    execFile('tmux', hasSessionArgs(socket), { env, timeout: 10_000 }, (err) => {
      if (!err) resolve(true);
      else if ((err as NodeJS.ErrnoException).code === 'ENOENT') reject(new AttachError('tmux is not installed (not found on PATH)'));
      else resolve(false);
    });
  });
}

/**
 * Attaches the person's terminal to session `main` on `socket` (undefined: tmux's default
 * socket, which honours TMUX_TMPDIR) until tmux exits, normally on detach (C-b d).
 * @returns tmux's exit code (0 after a detach), or 128 + n when tmux was killed by signal
 *   n or we were stopped by SIGTERM/SIGHUP/SIGINT.
 * @throws AttachError (exit code 1) when there is no session `main` on the socket, before
 *   the terminal is touched; or when tmux is not installed.
 */
export async function attachLocal(socket: string | undefined, io: TerminalIO, env: NodeJS.ProcessEnv): Promise<number> {
  const clientEnv = tmuxClientEnv(env);
  if (!(await hasSession(socket, clientEnv))) {
    throw new AttachError(noSessionMessage(socket ?? defaultTmuxSocket(clientEnv, process.getuid?.() ?? 0)));
  }

  const { cols, rows } = terminalSize(io.stdout);
  const child: IPty = spawnPty('tmux', localAttachArgs(socket), {
    name: env.TERM || 'xterm-256color',
    cols,
    rows,
    cwd: process.cwd(),
    env: clientEnv,
    // Bytes in, bytes out: tmux's output is passed through, never decoded and re-encoded.
    encoding: null,
  });

  const restore = enterRawMode(io.stdin);
  const cleanups: (() => void)[] = [];
  try {
    return await new Promise<number>((resolve) => {
      let stoppedBy: NodeJS.Signals | undefined;

      // With encoding null node-pty hands over Buffers (its typings say string).
      const output = child.onData((data: string | Buffer) => io.stdout.write(data));
      cleanups.push(() => output.dispose());

      const input = (data: Buffer | string): void => child.write(data);
      io.stdin.on('data', input);
      io.stdin.resume();
      cleanups.push(() => io.stdin.off('data', input));

      // Node emits 'resize' on a TTY stdout when it gets SIGWINCH.
      const resize = (): void => {
        const size = terminalSize(io.stdout);
        try {
          child.resize(size.cols, size.rows);
        } catch {
          // tmux exited between the signal and the resize: nothing to resize.
        }
      };
      io.stdout.on('resize', resize);
      cleanups.push(() => io.stdout.off('resize', resize));

      // The person's terminal went away (EPIPE, EIO): end the client like a hangup would.
      const outputFailed = (): void => {
        stoppedBy ??= 'SIGHUP';
        child.kill('SIGHUP');
      };
      io.stdout.on('error', outputFailed);
      cleanups.push(() => io.stdout.off('error', outputFailed));

      // SIGHUP makes the tmux client detach cleanly (tmux(1): the client exits on SIGHUP;
      // the session and its server keep running).
      cleanups.push(
        onTerminationSignal((signal) => {
          stoppedBy = signal;
          child.kill('SIGHUP');
        }),
      );

      const exit = child.onExit(({ exitCode, signal }) => {
        if (stoppedBy) resolve(signalExitCode(stoppedBy));
        else if (signal) resolve(signalExitCode(signal));
        else resolve(exitCode);
      });
      cleanups.push(() => exit.dispose());
    });
  } finally {
    for (const cleanup of cleanups.reverse()) cleanup();
    restore();
    io.stdin.pause();
  }
}
