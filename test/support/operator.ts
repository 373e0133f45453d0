/** Starting extra operator processes from a test (crash recovery, leader election). */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './paths.ts';

/**
 * Agents with this label are left to operators that a test starts and stops itself;
 * the suite's own operator runs with `--agent-selector !agentsmith.dev/test-shard`.
 */
export const TEST_SHARD_LABEL = 'agentsmith.dev/test-shard';

export interface OperatorProcess {
  proc: ChildProcess;
  /** Everything it printed so far. */
  log: () => string;
  /** Resolves when it has exited. */
  exited: Promise<void>;
}

/** Runs `node operator/src/main.ts` with `args` (plus kubeconfig and a free metrics port). */
export function startOperator(kubeconfig: string, args: string[]): OperatorProcess {
  const proc = spawn(process.execPath, [join(ROOT, 'operator/src/main.ts'), '--kubeconfig', kubeconfig, '--metrics-port', '0', '--metrics-host', '127.0.0.1', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LOG_LEVEL: 'info' },
  });
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  return { proc, log: () => out, exited };
}
