/**
 * A thin client of the tmux server that holds the agent's session `main` (pane 0: the
 * CLI, pane 1: a shell in the primary repo). Every call is one `tmux` command run with
 * execFile (no shell). Facts from tmux(1), 3.3:
 * - `new-session`/`split-window`/`respawn-pane` given several arguments after `--` exec
 *   them directly (no `sh -c`), so `#{pane_pid}` is the program itself and a new process group;
 * - `remain-on-exit on` keeps a dead pane (with `#{pane_dead_status}`) so it can be respawned;
 * - `-f <file>` is read only when the server starts; `-S <socket>` picks the server,
 *   otherwise `$TMUX_TMPDIR/tmux-<uid>/default` (what `tmux attach -t main` finds).
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { TMUX_SESSION } from '../../contract/pod.ts';

const run = promisify(execFile);

/** The session people attach to: `tmux attach -t main`. */
export const CLI_PANE = `${TMUX_SESSION}:0.0`;
export const SHELL_PANE = `${TMUX_SESSION}:0.1`;

export interface PaneInfo {
  index: number;
  pid: number;
  dead: boolean;
  /**
   * Exit status of a dead pane's process: tmux's `pane_dead_status`, or the kernel's while
   * tmux has not reaped it (zombieExit). Undefined when killed by a signal, alive, or not
   * known yet.
   */
  deadStatus?: number;
  /** Signal number that killed a dead pane's process (tmux ≥ 3.3 `pane_dead_signal`, or the kernel's as for deadStatus). */
  deadSignal?: number;
}

export class TmuxError extends Error {
  override name = 'TmuxError';
}

export class Tmux {
  private readonly socket: string | undefined;
  private readonly configFile: string | undefined;
  private readonly env: NodeJS.ProcessEnv;

  /**
   * @param opts.socket tmux socket path (`-S`); default: tmux's own default for the user.
   * @param opts.configFile server config (`-f`), applied when this client starts the server.
   * @param opts.env environment of the tmux client, and of the server (and so of every pane) when it starts one.
   */
  constructor(opts: { socket?: string | undefined; configFile?: string | undefined; env: NodeJS.ProcessEnv }) {
    this.socket = opts.socket;
    this.configFile = opts.configFile;
    this.env = opts.env;
  }

  /** Runs `tmux <args>`; resolves stdout. @throws TmuxError with tmux's stderr. */
  async cmd(...args: string[]): Promise<string> {
    return this.cmdWithInput(undefined, ...args);
  }

  /**
   * Runs `tmux <args>` with `input` on its stdin (for `load-buffer -`); resolves stdout.
   * @throws TmuxError with tmux's stderr.
   */
  async cmdWithInput(input: string | undefined, ...args: string[]): Promise<string> {
    const base = [...(this.socket ? ['-S', this.socket] : []), ...(this.configFile ? ['-f', this.configFile] : [])];
    try {
      const pending = run('tmux', [...base, ...args], { env: this.env, timeout: 10_000, maxBuffer: 16 * 1024 * 1024 });
      pending.child.stdin?.on('error', () => undefined); // tmux failed before reading: its stderr says why
      pending.child.stdin?.end(input ?? '');
      const { stdout } = await pending;
      return stdout;
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { stderr?: string };
      throw new TmuxError(`tmux ${args[0] ?? ''}: ${(e.stderr ?? e.message).trim()}`);
    }
  }

  async hasSession(): Promise<boolean> {
    try {
      await this.cmd('has-session', '-t', TMUX_SESSION);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Creates session `main`: pane 0 runs `cli`, pane 1 runs `shell`, both in `cwd`.
   * @throws TmuxError when the session exists or tmux cannot start.
   */
  async createSession(opts: { cli: string[]; shell: string[]; cwd: string; env: Record<string, string>; width?: number; height?: number }): Promise<void> {
    const envArgs = Object.entries(opts.env).flatMap(([k, v]) => ['-e', `${k}=${v}`]);
    await this.cmd('new-session', '-d', '-s', TMUX_SESSION, '-x', String(opts.width ?? 200), '-y', String(opts.height ?? 50), '-c', opts.cwd, ...envArgs, '--', ...opts.cli);
    await this.cmd('split-window', '-d', '-v', '-l', '30%', '-t', CLI_PANE, '-c', opts.cwd, ...envArgs, '--', ...opts.shell);
  }

  /** Restarts a (dead) pane's program; `-k` kills a live one first. */
  async respawn(pane: string, argv: string[], cwd: string, env: Record<string, string>, kill = false): Promise<void> {
    const envArgs = Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]);
    await this.cmd('respawn-pane', ...(kill ? ['-k'] : []), '-t', pane, '-c', cwd, ...envArgs, '--', ...argv);
  }

  /** Panes of window 0 of `main`, or undefined when the session is gone. */
  async panes(): Promise<PaneInfo[] | undefined> {
    let out: string;
    try {
      out = await this.cmd('list-panes', '-t', `${TMUX_SESSION}:0`, '-F', '#{pane_index} #{pane_pid} #{pane_dead} #{pane_dead_status} #{pane_dead_signal}');
    } catch {
      return undefined;
    }
    return out
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((line) => {
        const [index, pid, dead, status, signal] = line.split(' ');
        // tmux 3.3 marks a pane dead when its terminal closes but fills pane_dead_status /
        // pane_dead_signal only once it has reaped the process, which it can leave a zombie
        // for seconds (observed with 3.3a); the kernel already knows how it ended.
        const ended = dead === '1' && !status && !signal ? zombieExit(Number(pid)) : undefined;
        return {
          index: Number(index),
          pid: Number(pid),
          dead: dead === '1',
          ...(status ? { deadStatus: Number(status) } : ended?.status !== undefined ? { deadStatus: ended.status } : {}),
          ...(signal ? { deadSignal: Number(signal) } : ended?.signal !== undefined ? { deadSignal: ended.signal } : {}),
        };
      });
  }

  /** Tees a pane's output (raw, with terminal escapes) into `file` (opened for append by `cat`). */
  async pipeOutput(pane: string, file: string): Promise<void> {
    await this.cmd('pipe-pane', '-t', pane, `exec cat >> '${file.replaceAll("'", `'\\''`)}'`);
  }

  /**
   * Types `text` into a pane as one bracketed paste, then presses Enter. The text goes to
   * tmux through `load-buffer -` (stdin), not as a `set-buffer` argument: a tmux command
   * and its arguments must fit in one client message (about 16 KiB in 3.3a, "command too
   * long"), a buffer loaded from stdin has no such limit. Callers bound the size (a large
   * paste is slow in a TUI) and strip control characters (pasteSafe in delivery.ts):
   * tmux pastes bytes as they are, so an ESC in the text could end the bracketed paste.
   * @throws TmuxError when tmux refuses (no session, no pane)
   */
  async paste(pane: string, text: string): Promise<void> {
    const buffer = `agent-smith-${process.pid}-${Date.now()}`;
    await this.cmdWithInput(text, 'load-buffer', '-b', buffer, '-');
    await this.cmd('paste-buffer', '-p', '-d', '-b', buffer, '-t', pane);
    // Give the CLI a moment to take the paste before the Enter that submits it.
    await new Promise((r) => setTimeout(r, 150));
    await this.cmd('send-keys', '-t', pane, 'Enter');
  }

  /** The visible screen of a pane as text (no escapes). */
  async capture(pane: string): Promise<string> {
    return this.cmd('capture-pane', '-p', '-t', pane);
  }

  async killServer(): Promise<void> {
    try {
      await this.cmd('kill-server');
    } catch {
      // already gone
    }
  }
}

/**
 * How a zombie process ended, from /proc/<pid>/stat field 52 `exit_code` (proc(5), Linux
 * >= 3.5: "the thread's exit status in the form reported by waitpid(2)"): `status` for a
 * normal exit (WEXITSTATUS), `signal` for a kill (WTERMSIG). Undefined when the process is
 * not a zombie (alive, or already reaped) or /proc cannot tell.
 */
export function zombieExit(pid: number): { status?: number; signal?: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] !== 'Z') return undefined;
    const code = Number(fields[52 - 3]);
    if (!Number.isInteger(code)) return undefined;
    return (code & 0x7f) === 0 ? { status: (code >> 8) & 0xff } : { signal: code & 0x7f };
  } catch {
    return undefined;
  }
}
