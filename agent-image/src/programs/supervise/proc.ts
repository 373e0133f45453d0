/**
 * The processes in the supervisor's panes: whether one is alive (not a zombie), whether
 * tmux knows how it ended, and signals to its process group.
 */
import { readFileSync } from 'node:fs';
import type { PaneInfo } from './tmux.ts';

/** Whether it is known how the pane's process ended (tmux.ts PaneInfo: dead, with a status or a signal). */
export function settled(p: PaneInfo): boolean {
  return p.dead && (p.deadStatus !== undefined || p.deadSignal !== undefined);
}


/**
 * Whether a process is alive: it exists (signal 0) and is not a zombie. A SIGKILLed
 * multi-threaded CLI can stay a zombie for many seconds before tmux can reap it (its
 * threads are still exiting), so the state letter in /proc/<pid>/stat (proc(5)) counts.
 */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.charAt(stat.lastIndexOf(')') + 2);
    return state !== 'Z' && state !== 'X';
  } catch {
    return true; // no /proc here: trust signal 0
  }
}


/** Sends `signal` to the process group of `pid` (the pane's process leads one), else to `pid` alone; a process gone is no error. */
export function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // gone
    }
  }
}


/** Resolves after `ms` milliseconds (node:timers/promises). */
export { setTimeout as sleep } from 'node:timers/promises';

