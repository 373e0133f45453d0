/** Stopping the real servers the tests start (Synapse, nats-server). */
import type { ChildProcess } from 'node:child_process';

/**
 * SIGTERM to `proc`, SIGKILL after `graceMs` (default 10 s); resolves when `exited` does.
 * Nothing to do when there is no process or it has exited already.
 */
export async function terminate(proc: ChildProcess | undefined, exited: Promise<unknown>, graceMs = 10_000): Promise<void> {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}
