/**
 * The person's terminal during an attach: raw mode that is always undone, its size, and
 * the signals that end the session from outside.
 */
import os from 'node:os';

/** The streams attach reads and writes (process.stdin/stdout/stderr in the CLI). */
export interface TerminalIO {
  stdin: NodeJS.ReadStream;
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
}

export function processTerminal(): TerminalIO {
  return { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr };
}

/**
 * Puts stdin in raw mode when it is a TTY, so every key (C-b, C-c, C-z) goes to tmux
 * instead of the local line discipline. Returns an idempotent restore; it also runs on
 * process 'exit', so a thrown error or process.exit() elsewhere cannot leave the
 * person's shell raw. A non-TTY stdin is left alone (restore does nothing).
 */
export function enterRawMode(stdin: NodeJS.ReadStream): () => void {
  if (!stdin.isTTY) return () => {};
  stdin.setRawMode(true);
  let restored = false;
  const restore = (): void => {
    if (restored) return;
    restored = true;
    process.off('exit', restore);
    try {
      stdin.setRawMode(false);
    } catch {
      // The terminal is gone (hangup): nothing left to restore.
    }
    stdin.pause();
  };
  process.on('exit', restore);
  return restore;
}

/** Columns and rows of stdout, 80x24 when it is not a terminal (or reports 0). */
export function terminalSize(stdout: NodeJS.WriteStream): { cols: number; rows: number } {
  return stdout.isTTY && stdout.columns > 0 && stdout.rows > 0 ? { cols: stdout.columns, rows: stdout.rows } : { cols: 80, rows: 24 };
}

/** Signals that end an attach from outside (SIGINT only arrives as a signal when stdin is not raw). */
const TERMINATION_SIGNALS: NodeJS.Signals[] = ['SIGTERM', 'SIGHUP', 'SIGINT'];

/**
 * Calls `handler` (once) on SIGTERM, SIGHUP or SIGINT instead of Node's default exit, so
 * the caller can end the session and restore the terminal first. Returns the remover.
 */
export function onTerminationSignal(handler: (signal: NodeJS.Signals) => void): () => void {
  let fired = false;
  const listener = (signal: NodeJS.Signals): void => {
    if (fired) return;
    fired = true;
    handler(signal);
  };
  for (const s of TERMINATION_SIGNALS) process.on(s, listener);
  return () => {
    for (const s of TERMINATION_SIGNALS) process.off(s, listener);
  };
}

/** `128 + n` for a signal, the shell's convention for "killed by signal n". */
export function signalExitCode(signal: NodeJS.Signals | number): number {
  const n = typeof signal === 'number' ? signal : os.constants.signals[signal];
  return 128 + n;
}
