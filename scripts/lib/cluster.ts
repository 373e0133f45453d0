/**
 * Starts the local control plane (scripts/localcluster `up`) as a child process and
 * hands back its kubeconfig. Used by the test suite's global setup and by the main job.
 * The binaries come from scripts/lib/tools.sh (`ensure_cluster_tools`), which puts them
 * in $AGENT_SMITH_CACHE/bin.
 *
 * The child is started with `--exit-on-stdin-close`: if this process dies, the control
 * plane's stdin closes and it stops itself, so nothing is left behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

/** Where tools.sh caches binaries. */
export const CACHE_BIN = join(process.env.AGENT_SMITH_CACHE ?? join(homedir(), '.cache', 'agent-smith'), 'bin');

export interface LocalCluster {
  kubeconfig: string;
  server: string;
  version: string;
  dir: string;
  nodes: string[];
  /** PID of `localcluster up` (SIGUSR1 restarts kube-apiserver). */
  pid: number;
  /** With `realNode`: the real node's facts (see `localcluster up --help`); undefined otherwise. */
  real?: RealNode;
  /** Stops the control plane (SIGTERM, then SIGKILL after `graceMs` ms, default 60 s: the real node undoes its host changes first) and waits for it to exit; resolves to `up`'s exit code (null when a signal ended it, or it had already exited). */
  stop(graceMs?: number): Promise<number | null>;
  /** SIGKILL to `up` alone, for tests of what a killed run leaves: its children die with it (parent-death signal); a real node's containers and shims do not. */
  kill9(): Promise<void>;
}

/** The real node of `localcluster up --real-node` (kubelet, containerd, CNI, kube-proxy, CoreDNS). */
export interface RealNode {
  /** The Node's name (also its `kubernetes.io/hostname` label). */
  name: string;
  /** containerd's socket, for `ctr --address <it> -n k8s.io images import`. */
  containerdAddress: string;
  /** The host's address on the pod bridge: pods reach host-side servers listening there. */
  podGateway: string;
  /** The pods' addresses (e.g. `10.89.0.0/24`). */
  podCIDR: string;
  /** The cluster DNS Service address the kubelet gives pods. */
  clusterDNS: string;
  /** A hosts(5) file CoreDNS reloads: lines added there resolve in the cluster (e.g. `10.0.0.42 github.com`). */
  dnsHostsFile: string;
  /** containerd's root (content and snapshots), kept across runs. */
  imageStore: string;
}

interface ReadyLine {
  ready: true;
  kubeconfig: string;
  server: string;
  version: string;
  dir: string;
  nodes: string[];
  realNode?: string;
  containerdAddress?: string;
  podGateway?: string;
  clusterDNS?: string;
  dnsHostsFile?: string;
  podCIDR?: string;
  imageStore?: string;
}

/**
 * @param opts.nodes number of kwok fake nodes (default 2)
 * @param opts.onLog receives the control plane's stderr lines (default: dropped)
 * @param opts.timeoutMs start-up timeout in ms (default 180 000)
 * @param opts.realNode also run a real node (kubelet, containerd, CNI, kube-proxy, CoreDNS; root only, one per machine)
 * @param opts.unthrottled lift the control plane's rate limits, for scale benchmarks (`up --unthrottled`; default off,
 *   every component then keeps its defaults, which the test suite is tuned to). It changes exactly:
 *   kube-apiserver `--max-requests-inflight=0 --max-mutating-requests-inflight=0 --enable-priority-and-fairness=false`
 *   (defaults 400, 200 and APF on); kube-controller-manager and kube-scheduler `--kube-api-qps=2000
 *   --kube-api-burst=4000` (defaults 20/30 and 50/100); kube-controller-manager `--concurrent-statefulset-syncs=50
 *   --concurrent-service-endpoint-syncs=50` (defaults 5); kwok `podPlayStageParallelism: 64`,
 *   `nodePlayStageParallelism: 16`, `nodeLeaseParallelism: 16` (defaults 4); the dev volume provisioner's client
 *   2000 QPS / burst 4000 with 32 PV requests in flight (defaults 50/100 and 8), and the provisioner binds each claim
 *   to its new PV itself (the same writes as the PV controller, whose single worker otherwise binds about 20 claims/s
 *   here and sets the pace of every StatefulSet pod) instead of waiting for the PV controller to hand it over.
 * @throws Error with the tail of the control plane's output when it fails to start
 */
export async function startLocalCluster(opts: { nodes?: number; onLog?: (line: string) => void; timeoutMs?: number; realNode?: boolean; unthrottled?: boolean } = {}): Promise<LocalCluster> {
  const bin = join(CACHE_BIN, 'localcluster');
  const args = ['up', '--exit-on-stdin-close', '--kwok', join(CACHE_BIN, 'kwok'), '--nodes', String(opts.nodes ?? 2)];
  if (opts.realNode) args.push('--real-node');
  if (opts.unthrottled) args.push('--unthrottled');
  const child = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const tail: string[] = [];
  createInterface({ input: child.stderr }).on('line', (line) => {
    tail.push(line);
    if (tail.length > 40) tail.shift();
    opts.onLog?.(line);
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const ready = await new Promise<ReadyLine>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGTERM');
      reject(new Error(`local control plane not ready after ${opts.timeoutMs ?? 180_000} ms:\n${tail.join('\n')}`));
    }, opts.timeoutMs ?? 180_000);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${bin} (run scripts/test or scripts/demo, which build it): ${err.message}`));
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`local control plane exited with code ${code} during start-up:\n${tail.join('\n')}`));
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      try {
        const parsed = JSON.parse(line) as ReadyLine;
        if (parsed.ready) {
          clearTimeout(timer);
          resolve(parsed);
        }
      } catch {
        opts.onLog?.(line);
      }
    });
  });
  const { realNode, containerdAddress, podGateway, clusterDNS, dnsHostsFile, imageStore, podCIDR, ...rest } = ready;
  const real = realNode && containerdAddress && podGateway && clusterDNS && dnsHostsFile && imageStore && podCIDR ? { name: realNode, containerdAddress, podGateway, podCIDR, clusterDNS, dnsHostsFile, imageStore } : undefined;
  if (opts.realNode && !real) {
    await stopChild(child, exited, 60_000);
    throw new Error(`localcluster up --real-node printed no real node facts: ${JSON.stringify(ready)}`);
  }
  return {
    ...rest,
    ...(real ? { real } : {}),
    pid: child.pid ?? 0,
    stop: (graceMs = 60_000) => stopChild(child, exited, graceMs),
    kill9: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

async function stopChild(child: ChildProcess, exited: Promise<number | null>, graceMs: number): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  const code = await exited;
  clearTimeout(timer);
  return code;
}
