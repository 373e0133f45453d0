/**
 * The development pod runner (scripts/lib/pod-runner) for one integration test file: a
 * fresh namespace, a state directory under /tmp and a runner registered as its own Node,
 * logging at debug level to `<stateDir>/runner.log`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startPodRunner, type PodRunner, type PodRunnerOptions } from '../../scripts/lib/pod-runner/index.ts';
import { kubeClients, makeNamespace, type KubeClients } from './kube.ts';

export interface RunnerFixture {
  c: KubeClients;
  ns: { name: string; remove: () => Promise<void> };
  runner: PodRunner;
  /** The runner's state directory: pod directories, `runner.log`, container logs under `logs/`. */
  stateDir: string;
  /**
   * Stops the runner first (it ends every process of its pods, whatever state the test
   * left), then removes the namespace and the Node. With `keepLogs` (a test failed) the
   * state directory stays and its logs are printed; otherwise it is removed.
   */
  close(keepLogs: boolean): Promise<void>;
}

/**
 * Starts a runner registered as Node `node`, with a namespace named after `prefix`.
 * `options` are passed to startPodRunner (backoff, shutdownGraceMs, containerEnv ...).
 * @throws the namespace's or the runner's start-up error (the namespace is removed again)
 */
export async function startRunnerFixture(
  kubeconfig: string,
  node: string,
  prefix: string,
  options: Omit<PodRunnerOptions, 'kubeconfig' | 'nodeName' | 'stateDir' | 'log'> = {},
): Promise<RunnerFixture> {
  const c = kubeClients(kubeconfig);
  const ns = await makeNamespace(c, prefix);
  // Under /tmp, not a home directory: the pods' UIDs must reach it.
  const stateDir = await mkdtemp(join(tmpdir(), `agent-smith-${prefix}-`));
  let runner: PodRunner;
  try {
    runner = await startPodRunner({
      kubeconfig,
      nodeName: node,
      stateDir,
      log: pino({ level: 'debug' }, pino.destination({ dest: join(stateDir, 'runner.log'), sync: true })),
      ...options,
    });
  } catch (err) {
    await ns.remove();
    throw err;
  }
  return {
    c,
    ns,
    runner,
    stateDir,
    async close(keepLogs) {
      await runner.stop();
      await ns.remove();
      await c.core.deleteNode({ name: node }).catch(() => undefined);
      if (keepLogs) console.log(`[${prefix}] runner log: ${join(stateDir, 'runner.log')}, container logs: ${join(stateDir, 'logs')}`);
      else await rm(stateDir, { recursive: true, force: true });
    },
  };
}
