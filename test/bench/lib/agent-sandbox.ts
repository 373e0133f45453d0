/**
 * kubernetes-sigs/agent-sandbox (Go module sigs.k8s.io/agent-sandbox, pinned in
 * scripts/lib/tools.sh as AGENT_SANDBOX_VERSION, v1.0.1) for the side-by-side scale
 * benchmark (issue 18): build its controller, run it out of cluster against a local control
 * plane as its own KWOK presubmit does (dev/ci/presubmits/test-e2e-scalability-kwok), and
 * build the Sandbox nearest to one of our Agents.
 *
 * Facts about the controller are from the v1.0.1 sources in the Go module cache
 * (cmd/agent-sandbox-controller/main.go for the flags, controllers/sandbox_controller.go
 * for what it creates and when a Sandbox is Ready).
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { V1PersistentVolumeClaimSpec, V1PodSpec } from '@kubernetes/client-node';
import { freePort } from '../../../scripts/lib/net.ts';
import { ROOT } from '../../../scripts/lib/paths.ts';

/** The Sandbox API: agents.x-k8s.io/v1beta1, the only version v1.0.1 serves. */
export const SANDBOX_API_VERSION = 'agents.x-k8s.io/v1beta1';

/**
 * Builds the controller when needed (`ensure_agent_sandbox` in scripts/lib/tools.sh: a cold
 * `go install` downloads about 150 MB of modules and compiles for about 2 minutes on 2
 * cores; later calls return at once) and says where it is.
 * @returns bin: the controller binary ($AGENT_SMITH_CACHE/bin/agent-sandbox-controller-v1.0.1);
 *   crd: the Sandbox CRD of the same version (agents.x-k8s.io_sandboxes.yaml, read-only, in
 *   the Go module cache), for `kubectl apply --server-side -f`
 * @throws Error with the build's exit status when it fails (its output went to stderr)
 */
export async function ensureAgentSandbox(): Promise<{ bin: string; crd: string }> {
  const child = spawn('bash', ['-c', 'source scripts/lib/tools.sh && ensure_agent_sandbox'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', resolve);
  });
  const [bin, crd] = out.trim().split('\n').slice(-2);
  if (code !== 0 || !bin || !crd) throw new Error(`ensure_agent_sandbox (scripts/lib/tools.sh) failed with exit code ${code}; its output is above${out ? `; stdout: ${out}` : ''}`);
  return { bin, crd };
}

/** A running agent-sandbox controller. */
export interface AgentSandbox {
  pid: number;
  /** Its Prometheus endpoint, e.g. `http://127.0.0.1:40123/metrics`. API requests: sum `rest_client_requests_total` over all label sets ({code, host, method}). */
  metricsUrl: string;
  /** SIGTERM, then SIGKILL after 10 s; resolves once it has exited. */
  stop(): Promise<void>;
}

/**
 * Starts the controller out of cluster as the admin of `kubeconfig` (no RBAC needed) and
 * waits until its `/readyz` answers 200. Flags: `--kubeconfig`, `--leader-elect=false`
 * (with leader election on it needs `--leader-election-namespace` out of cluster), metrics
 * and health probes on free loopback ports, `--sandbox-concurrent-workers` (default 100,
 * theirs too), `--kube-api-qps`/`--kube-api-burst` (default 2000/4000, the limits of
 * `localcluster up --unthrottled`'s controller-manager; their own default is -1, no limit,
 * with burst 10, and their KWOK presubmit runs at 1000) and `--zap-log-level` (default
 * `error`). The Sandbox CRD must be applied first. The controller stops with this process
 * only through `stop()`: call it in a `finally`.
 * @param opts.bin the binary (default: `ensureAgentSandbox()`'s)
 * @param opts.onLog receives its log lines (stderr; default: kept only for errors)
 * @param opts.timeoutMs how long to wait for /readyz (default 60 000 ms)
 * @throws Error with the tail of its log when it exits or is not ready in time
 */
export async function startAgentSandbox(
  kubeconfig: string,
  opts: { bin?: string; workers?: number; qps?: number; burst?: number; logLevel?: string; onLog?: (line: string) => void; timeoutMs?: number } = {},
): Promise<AgentSandbox> {
  const bin = opts.bin ?? (await ensureAgentSandbox()).bin;
  const [metricsPort, healthPort] = [await freePort(), await freePort()];
  const args = [
    `--kubeconfig=${kubeconfig}`,
    '--leader-elect=false',
    `--metrics-bind-address=127.0.0.1:${metricsPort}`,
    `--health-probe-bind-address=127.0.0.1:${healthPort}`,
    `--sandbox-concurrent-workers=${opts.workers ?? 100}`,
    `--kube-api-qps=${opts.qps ?? 2000}`,
    `--kube-api-burst=${opts.burst ?? 4000}`,
    `--zap-log-level=${opts.logLevel ?? 'error'}`,
  ];
  const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const tail: string[] = [];
  createInterface({ input: child.stderr }).on('line', (line) => {
    tail.push(line);
    if (tail.length > 30) tail.shift();
    opts.onLog?.(line);
  });
  let exited: number | string | null | undefined;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      exited = code ?? signal;
      resolve();
    }),
  );
  child.once('error', (err) => {
    exited = err.message;
  });
  const stop = async () => {
    if (exited !== undefined) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exit;
    clearTimeout(timer);
  };
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (exited !== undefined) throw new Error(`agent-sandbox-controller exited (${exited}) before /readyz answered:\n${tail.join('\n')}`);
    if (await fetch(`http://127.0.0.1:${healthPort}/readyz`).then((r) => r.ok, () => false)) break;
    if (performance.now() > deadline) {
      await stop();
      throw new Error(`agent-sandbox-controller: /readyz not 200 after ${timeoutMs} ms:\n${tail.join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { pid: child.pid ?? 0, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`, stop };
}

/** A Sandbox as `sandboxObject` builds it (the fields we set; the CRD has more). */
export interface Sandbox {
  apiVersion: typeof SANDBOX_API_VERSION;
  kind: 'Sandbox';
  metadata: { name: string; namespace: string; labels: Record<string, string> };
  spec: {
    service: true;
    podTemplate: { metadata: { labels: Record<string, string> }; spec: V1PodSpec };
    volumeClaimTemplates: { metadata: { name: string }; spec: V1PersistentVolumeClaimSpec }[];
  };
}

/**
 * Sizes of the two volumes: the Agent's defaults (operator/src/api/agent.ts StorageSpec:
 * home 5Gi, workspace 20Gi), ReadWriteOnce and the cluster's default StorageClass, as
 * operator/src/render/statefulset.ts's volumeClaimTemplates have them.
 */
export const SANDBOX_STORAGE = { home: '5Gi', workspace: '20Gi' } as const;

/**
 * The Sandbox nearest to Agent number `i`: `bench-<i>` in `namespace`, with `service: true`
 * (a headless Service, like ours), claims `home` and `workspace` (named `home-bench-<i>`,
 * `workspace-bench-<i>` by the controller; ours are `home-bench-<i>-0` ... by the StatefulSet
 * controller) and `podSpec` (our StatefulSet's pod template spec) as its pod. Its pod is
 * named `bench-<i>` (ours `bench-<i>-0`). Pure.
 *
 * What differs from our work per Agent (say it beside the figures):
 * - The controller creates a bare Pod, 2 PVCs and a Service itself; we apply a StatefulSet,
 *   and the kube-controller-manager's StatefulSet controller creates the Pod, the PVCs and a
 *   ControllerRevision (its requests are not in our count, nor theirs in theirs).
 * - We also apply, per Agent, a ServiceAccount, a ConfigMap, a CA Secret, a NetworkPolicy
 *   and the team's roster ConfigMap; a Sandbox has none of them. The pod spec still names
 *   our ConfigMap and Secret in its volumes (kwok mounts nothing, so the dangling references
 *   cost nothing and keep the pod the same size); `serviceAccountName` is dropped (the pod
 *   runs as `default`), since the ServiceAccount admission plugin refuses a pod whose
 *   ServiceAccount does not exist.
 * - A Sandbox is Ready when its pod is Running and Ready with podIPs and the Service exists
 *   (controllers/sandbox_controller.go computeReadyCondition); an Agent's Ready is
 *   operator/src/reconcile/status.ts's (its StatefulSet's pod Ready, among others).
 */
export function sandboxObject(i: number, namespace: string, podSpec: V1PodSpec, storage: { home: string; workspace: string } = SANDBOX_STORAGE): Sandbox {
  const name = `bench-${i}`;
  const spec: V1PodSpec = { ...podSpec };
  delete spec.serviceAccountName;
  const claim = (size: string): V1PersistentVolumeClaimSpec => ({ accessModes: ['ReadWriteOnce'], resources: { requests: { storage: size } } });
  return {
    apiVersion: SANDBOX_API_VERSION,
    kind: 'Sandbox',
    metadata: { name, namespace, labels: { 'app.kubernetes.io/name': 'bench-sandbox' } },
    spec: {
      service: true,
      podTemplate: { metadata: { labels: { 'app.kubernetes.io/name': 'bench-sandbox', 'bench.agentsmith.dev/index': String(i) } }, spec },
      volumeClaimTemplates: [
        { metadata: { name: 'home' }, spec: claim(storage.home) },
        { metadata: { name: 'workspace' }, spec: claim(storage.workspace) },
      ],
    },
  };
}
