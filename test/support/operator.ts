/** Starting extra operator processes from a test (crash recovery, leader election). */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import { parseAllDocuments, stringify } from 'yaml';
import { CACHE_BIN } from '../../scripts/lib/cluster.ts';
import { kubeClients, kubectl } from './kube.ts';
import { ROOT } from '../../scripts/lib/paths.ts';

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

/**
 * A kubeconfig that acts as the Helm chart's operator ServiceAccount, with exactly the
 * chart's ClusterRole: renders `charts/agent-smith` as release `release` in `namespace`,
 * applies its ServiceAccount, ClusterRole and ClusterRoleBinding, and writes a kubeconfig
 * with a one-hour token of that ServiceAccount (TokenRequest). An operator started with it
 * proves the chart grants what the operator does.
 * @returns the kubeconfig path, and `remove` to delete the cluster-scoped ClusterRole and
 *   binding (the ServiceAccount goes with the namespace)
 * @throws Error with kubectl's stderr when the rendered RBAC is refused
 */
export async function chartRbacKubeconfig(adminKubeconfig: string, namespace: string, release: string): Promise<{ path: string; remove: () => Promise<void> }> {
  const helm = existsSync(join(CACHE_BIN, 'helm')) ? join(CACHE_BIN, 'helm') : 'helm';
  const { stdout } = await promisify(execFile)(helm, ['template', release, join(ROOT, 'charts/agent-smith'), '--namespace', namespace], { maxBuffer: 16 * 1024 * 1024 });
  const rbac = parseAllDocuments(stdout)
    .map((d) => d.toJS() as { kind?: string; metadata?: { name?: string } } | null)
    .filter((o): o is { kind: string; metadata: { name: string } } => !!o?.kind && ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding'].includes(o.kind));
  const applied = await kubectl(adminKubeconfig, ['apply', '-f', '-'], rbac.map((o) => stringify(o)).join('---\n'));
  if (applied.code !== 0) throw new Error(`applying the chart's RBAC failed:\n${applied.stderr}`);
  const sa = rbac.find((o) => o.kind === 'ServiceAccount')?.metadata.name ?? '';
  const c = kubeClients(adminKubeconfig);
  const token = await c.core.createNamespacedServiceAccountToken({ name: sa, namespace, body: { spec: { audiences: [], expirationSeconds: 3600 } } });
  const cluster = c.kc.getCurrentCluster();
  if (!cluster || !token.status?.token) throw new Error('no cluster or no token');
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [cluster],
    users: [{ name: sa, token: token.status.token }],
    contexts: [{ name: sa, cluster: cluster.name, user: sa }],
    currentContext: sa,
  });
  const path = join(mkdtempSync(join(tmpdir(), 'chart-rbac-')), 'kubeconfig');
  writeFileSync(path, kc.exportConfig(), { mode: 0o600 });
  const remove = async () => {
    for (const o of rbac) {
      if (o.kind !== 'ServiceAccount') await kubectl(adminKubeconfig, ['delete', o.kind.toLowerCase(), o.metadata.name, '--ignore-not-found']);
    }
  };
  return { path, remove };
}
