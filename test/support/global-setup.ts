/**
 * Integration global setup: one Kubernetes control plane and one operator for the run.
 *
 * - By default it starts the local control plane (scripts/localcluster) on loopback.
 * - With `AGENT_SMITH_TEST_CLUSTER=existing`, it uses the cluster `$KUBECONFIG` points at
 *   (kind, k3d ...). Pods then need a real node to run; tests that wait for Ready expect
 *   the image to be pullable there.
 *
 * Either way it installs the CRD from crds/ and runs the operator as a child process
 * (`node operator/src/main.ts`), exactly as a user would, and stops both afterwards.
 */
import { spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { TestProject } from 'vitest/node';
import { startLocalCluster, type LocalCluster } from '../../scripts/lib/cluster.ts';
import { kubectl } from './kube.ts';
import { ROOT } from '../../scripts/lib/paths.ts';
import { TEST_SHARD_LABEL } from './operator.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    kubeconfig: string;
    operatorLog: string;
    /** Base URL of the operator's /healthz, /readyz and /metrics. */
    operatorHttp: string;
    /** PID of `localcluster up` (0 with an existing cluster); SIGUSR1 restarts kube-apiserver. */
    clusterPid: number;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let cluster: LocalCluster | undefined;
  let kubeconfig: string;
  if (process.env.AGENT_SMITH_TEST_CLUSTER === 'existing') {
    if (!process.env.KUBECONFIG) throw new Error('AGENT_SMITH_TEST_CLUSTER=existing needs KUBECONFIG');
    kubeconfig = process.env.KUBECONFIG;
  } else {
    const started = Date.now();
    // 4 kwok nodes of 110 pods each: the crash-recovery and steady-state tests alone run 150 pods,
    // and namespaces of earlier tests may still be draining.
    cluster = await startLocalCluster({ nodes: 4 });
    kubeconfig = cluster.kubeconfig;
    console.log(`[global-setup] local control plane ${cluster.version} ready in ${((Date.now() - started) / 1000).toFixed(1)} s at ${cluster.server}`);
  }
  // kubectl, as a user installs it. (client-node's typed serializer would drop the
  // schema's x-kubernetes-* and default keys of a raw CRD object.)
  for (const args of [
    ['apply', '--server-side', '-f', join(ROOT, 'crds')],
    ['wait', '--for=condition=Established', 'crd/agents.agentsmith.dev', '--timeout=60s'],
  ]) {
    const r = await kubectl(kubeconfig, args);
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed:\n${r.stderr}`);
  }

  const logDir = mkdtempSync(join(tmpdir(), 'agent-smith-operator-'));
  const operatorLog = join(logDir, 'operator.log');
  const out = createWriteStream(operatorLog);
  const operator = spawn(process.execPath, [join(ROOT, 'operator/src/main.ts'), '--kubeconfig', kubeconfig, '--metrics-port', '0', '--metrics-host', '127.0.0.1', '--resync-seconds', '20', '--agent-selector', `!${TEST_SHARD_LABEL}`], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LOG_LEVEL: 'debug' },
  });
  operator.stdout.pipe(out);
  operator.stderr.pipe(out);
  const operatorExited = new Promise<void>((resolve) => operator.once('exit', () => resolve()));
  // If the test runner dies without its teardown, the operator must not outlive it.
  process.on('exit', () => operator.kill('SIGKILL'));
  // The operator logs the port it bound (--metrics-port 0 picks a free one).
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`operator did not start; see ${operatorLog}`)), 30_000);
    const lines = createInterface({ input: operator.stdout });
    lines.on('line', (line) => {
      const m = /"metrics":(\d+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        // Not lines.close(): that would pause stdout, stop the copy to the log file and
        // at last block the operator on a full pipe.
        lines.removeAllListeners('line');
        resolve(Number(m[1]));
      }
    });
  });
  project.provide('kubeconfig', kubeconfig);
  project.provide('operatorLog', operatorLog);
  project.provide('clusterPid', cluster?.pid ?? 0);
  project.provide('operatorHttp', `http://127.0.0.1:${port}`);

  return async () => {
    operator.kill('SIGTERM');
    const t = setTimeout(() => operator.kill('SIGKILL'), 20_000);
    await operatorExited;
    clearTimeout(t);
    await cluster?.stop();
  };
}
