/**
 * The development pod runner as a command (README "Development pod runner"):
 *
 *   node scripts/pod-runner.ts --kubeconfig <file> [--node local] [--state-dir DIR]
 *
 * Registers Node <node> and runs the pods bound to it as local processes until SIGINT or
 * SIGTERM, then stops every process it started. Never a production component.
 */
import { homedir } from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { pino } from 'pino';
import { startPodRunner } from './lib/pod-runner/index.ts';

const program = new Command()
  .name('pod-runner')
  .description('DEVELOPMENT ONLY: run the pods bound to one Node as local processes (not a kubelet)')
  .option('--kubeconfig <file>', 'kubeconfig of the cluster', process.env.KUBECONFIG)
  .option('--node <name>', 'name of the Node to register', 'local')
  .option('--state-dir <dir>', 'pod directories, logs and claim fallbacks (root: must be reachable by other users)')
  .option('--agent-image <repo...>', 'more image repositories (no tag) to run as the agent image')
  .option('--backoff-initial-ms <ms>', 'first crash-loop delay (kubelet: 10000)', (v) => Number(v))
  .option('--backoff-max-ms <ms>', 'longest crash-loop delay (kubelet: 300000)', (v) => Number(v))
  .parse();

const opts = program.opts<{ kubeconfig?: string; node: string; stateDir?: string; agentImage?: string[]; backoffInitialMs?: number; backoffMaxMs?: number }>();
if (!opts.kubeconfig) {
  program.error('--kubeconfig (or $KUBECONFIG) is required');
}
const stateDir =
  opts.stateDir ??
  (process.getuid?.() === 0 ? path.join('/var/lib/agent-smith/pod-runner', opts.node) : path.join(process.env.AGENT_SMITH_CACHE ?? path.join(homedir(), '.cache', 'agent-smith'), 'pod-runner', opts.node));
const log = pino({ name: 'pod-runner', level: process.env.LOG_LEVEL ?? 'info' });

const runner = await startPodRunner({
  kubeconfig: opts.kubeconfig ?? '',
  nodeName: opts.node,
  stateDir,
  log,
  ...(opts.agentImage ? { agentImages: opts.agentImage } : {}),
  backoff: {
    ...(opts.backoffInitialMs !== undefined ? { initialMs: opts.backoffInitialMs } : {}),
    ...(opts.backoffMaxMs !== undefined ? { maxMs: opts.backoffMaxMs } : {}),
  },
});

let stopping = false;
const stop = (signal: string) => {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, 'stopping the pod runner');
  runner
    .stop()
    .then(() => process.exit(0))
    .catch((err: unknown) => {
      log.error({ err }, 'stop failed');
      process.exit(1);
    });
};
process.on('SIGINT', () => stop('SIGINT'));
process.on('SIGTERM', () => stop('SIGTERM'));
