/**
 * The development pod runner (issue 9): registers a Node and runs the pods bound to it as
 * local processes, reporting their status like a kubelet. A development tool, never a
 * production component; differences.ts lists where it is not a kubelet.
 *
 *   const runner = await startPodRunner({ kubeconfig, nodeName: 'local', stateDir, log });
 *   ...
 *   await runner.stop();   // stops every process it started, marks the Node NotReady
 *
 * Pods reach the Node by selecting `agentsmith.dev/pod-runner: <node>` and tolerating the
 * NoSchedule taint of the same key (node.ts).
 */
import { createHash } from 'node:crypto';
import { chmod, copyFile, link, mkdir, readdir, readFile, realpath, rename, rm, stat, utimes } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CoreV1Api, KubeConfig, type V1Container, type V1Pod } from '@kubernetes/client-node';
import { pino, type Logger } from 'pino';
import { ResilientInformer } from '../../../operator/src/runtime/informer.ts';
import { differencesBlock } from './differences.ts';
import { DEFAULT_AGENT_IMAGES } from './images.ts';
import { makePodApi } from './kube.ts';
import { POD_RUNNER_LABEL, registerNode } from './node.ts';
import { killMarkedSync, signalMarked } from './process.ts';
import { KUBELET_BACKOFF, PodWorker, type BackoffOptions } from './pod-worker.ts';
import { untraversable } from './volumes.ts';

/** Root of this checkout. */
export const CHECKOUT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

export interface PodRunnerOptions {
  /** Path of a kubeconfig, or a loaded KubeConfig. */
  kubeconfig: string | KubeConfig;
  /** Node name (default `local`). */
  nodeName?: string;
  /** Where pod directories, logs and claim fallbacks live; must be reachable by the pods' UIDs when root. */
  stateDir: string;
  log?: Logger;
  /** Image repositories (no tag) to run as the agent image, besides the operator's default. */
  agentImages?: string[];
  /** Crash-loop backoff (default the kubelet's). */
  backoff?: Partial<BackoffOptions>;
  /** Longest wait for a pod's processes on stop() (ms, default 30 000); its grace period otherwise. */
  shutdownGraceMs?: number;
  /** Period of the volume refresh and resync (ms, default 10 000). */
  resyncMs?: number;
  /**
   * DEVELOPMENT ONLY: extra environment variables for a container, on top of the pod's own
   * (the runner's AGENT_SMITH_ROOT, TMPDIR, ports ... still win). Values are used as given
   * (host paths are not relocated). The demo hands the egress proxy its two development
   * hooks with it (AGENT_SMITH_PROXY_HOSTS_FILE, AGENT_SMITH_UPSTREAM_CA), so the pod
   * itself stays exactly what the operator renders. Called at every container start.
   */
  containerEnv?: (pod: V1Pod, container: V1Container) => Record<string, string> | undefined;
}

export interface PodRunner {
  nodeName: string;
  stateDir: string;
  /** Host ports, directories and PIDs of a running pod (by namespace and name), for tools and tests. */
  describe(namespace: string, name: string): ReturnType<PodWorker['describe']> | undefined;
  /** Stops every pod process (their grace periods, capped by shutdownGraceMs), marks the Node NotReady. */
  stop(): Promise<void>;
}

/**
 * This Node binary where every UID can run it: `<stateDir>/bin/node`, a hard link (a copy
 * across file systems). The runner's own may sit under a home only its user can enter
 * (/root/.cache/...), and the agent image's `agent-smith` runs `node` from PATH.
 */
async function shareNode(stateDir: string): Promise<string> {
  const dir = path.join(stateDir, 'bin');
  const target = path.join(dir, 'node');
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const [want, have] = await Promise.all([stat(process.execPath), stat(target).catch(() => undefined)]);
  if (have && have.size === want.size && have.mtimeMs === want.mtimeMs) return dir;
  const tmp = `${target}.${process.pid}`;
  await rm(tmp, { force: true });
  await link(process.execPath, tmp).catch(async () => {
    await copyFile(process.execPath, tmp);
    await utimes(tmp, want.atime, want.mtime);
  });
  await chmod(tmp, 0o755);
  await rename(tmp, target);
  return dir;
}

/**
 * Removes the directories of pods this state dir ran before and that are no longer bound
 * here (the runner was killed, or the pod went while it was down): `<stateDir>/pods/<ns>_<name>_<uid>`
 * and the containers' /tmp directories named in its pod.json. Claims and logs stay.
 */
async function removeStalePods(stateDir: string, live: ReadonlySet<string>, log: Logger): Promise<void> {
  const podsDir = path.join(stateDir, 'pods');
  for (const entry of await readdir(podsDir).catch(() => [] as string[])) {
    const uid = entry.slice(entry.lastIndexOf('_') + 1);
    if (live.has(uid)) continue;
    const dir = path.join(podsDir, entry);
    const described = await readFile(path.join(dir, 'pod.json'), 'utf8')
      .then((t) => JSON.parse(t) as { containers?: Record<string, { tmp?: string }> })
      .catch(() => undefined);
    for (const c of Object.values(described?.containers ?? {})) if (c.tmp?.startsWith('/tmp/pod-runner-')) await rm(c.tmp, { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
    log.info({ dir }, 'removed the directory of a pod no longer bound here');
  }
}

/** PATH of the containers: the checkout's agent-smith and node_modules/.bin, a Node every UID can run, the system's. */
function containerPath(nodeDir: string): string {
  return [path.join(CHECKOUT, 'agent-image/bin'), nodeDir, path.join(CHECKOUT, 'node_modules/.bin'), path.dirname(process.execPath), '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'].join(':');
}

/**
 * Starts the runner.
 * @throws Error when the Node cannot be registered, or when running as root with a state
 *   directory other users cannot reach
 */
export async function startPodRunner(opts: PodRunnerOptions): Promise<PodRunner> {
  const nodeName = opts.nodeName ?? 'local';
  const log = (opts.log ?? pino({ name: 'pod-runner' })).child({ node: nodeName });
  let kc: KubeConfig;
  if (typeof opts.kubeconfig === 'string') {
    kc = new KubeConfig();
    kc.loadFromFile(opts.kubeconfig);
  } else {
    kc = opts.kubeconfig;
  }
  await mkdir(opts.stateDir, { recursive: true });
  const stateDir = await realpath(opts.stateDir);
  const root = process.getuid?.() === 0;
  if (root) {
    await chmod(stateDir, 0o755);
    const blocked = await untraversable(stateDir);
    if (blocked.length) throw new Error(`state dir ${stateDir}: ${blocked.join(', ')} cannot be traversed by other users, and pods run as their own UIDs; pick a state dir under /var/lib or /tmp`);
  }
  // One marker per state dir: a runner that was killed left processes with it; they go now.
  const runnerId = `pr-${createHash('sha256').update(stateDir).digest('hex').slice(0, 12)}`;
  const leftovers = await signalMarked(`${runnerId}:`, 'SIGKILL');
  if (leftovers) log.warn({ killed: leftovers }, 'killed processes left by an earlier run of this state dir');
  const onExit = () => killMarkedSync(`${runnerId}:`);
  process.on('exit', onExit);

  log.warn(differencesBlock(nodeName));
  if (!root) log.warn('not running as root: every container runs as this user, whatever its runAsUser says, and volume ownership (fsGroup) is not set');

  const api = makePodApi(kc, nodeName, log);
  const node = await registerNode(kc, nodeName, log, stateDir);
  const workers = new Map<string, PodWorker>();
  const workerOptions = {
    api,
    log,
    stateDir,
    runnerId,
    checkout: CHECKOUT,
    agentImages: [...DEFAULT_AGENT_IMAGES, ...(opts.agentImages ?? [])],
    backoff: { ...KUBELET_BACKOFF, ...opts.backoff },
    path: containerPath(root ? await shareNode(stateDir) : path.dirname(process.execPath)),
    extraEnv: opts.containerEnv,
  };
  let stopping = false;
  const graceMs = (pod: V1Pod) => 1000 * (pod.metadata?.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30);

  // Level-based: whatever the event, look at the pod as it is now.
  const sync = (pod: V1Pod, gone: boolean) => {
    if (stopping) return;
    const uid = pod.metadata?.uid ?? '';
    let worker = workers.get(uid);
    if (gone) {
      if (worker) void worker.terminate(graceMs(pod), { deleteObject: false }).finally(() => workers.delete(uid));
      return;
    }
    if (pod.metadata?.deletionTimestamp) {
      if (worker) void worker.terminate(graceMs(pod), { deleteObject: true }).finally(() => workers.delete(uid));
      else void api.deletePod(pod).catch((err: unknown) => log.warn({ err, pod: pod.metadata?.name }, 'cannot delete pod'));
      return;
    }
    if (worker) {
      worker.update(pod);
      return;
    }
    if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') return;
    worker = new PodWorker(pod, workerOptions);
    workers.set(uid, worker);
    log.info({ pod: `${pod.metadata?.namespace}/${pod.metadata?.name}` }, 'pod bound to this node: starting it');
    void worker.start();
  };

  const core = kc.makeApiClient(CoreV1Api);
  const fieldSelector = `spec.nodeName=${nodeName}`;
  const informer = new ResilientInformer<V1Pod>(kc, {
    name: 'pods',
    path: '/api/v1/pods',
    fieldSelector,
    list: () => core.listPodForAllNamespaces({ fieldSelector }),
    onChange: (pod) => {
      const cached = informer.cache.get(pod.metadata?.name ?? '', pod.metadata?.namespace);
      sync(cached && cached.metadata?.uid === pod.metadata?.uid ? cached : pod, !cached || cached.metadata?.uid !== pod.metadata?.uid);
    },
    log,
  });
  informer.start();
  await informer.waitForSync();
  await removeStalePods(stateDir, new Set(workers.keys()), log);
  const resync = setInterval(() => {
    for (const pod of informer.cache.list()) sync(pod, false);
    for (const w of workers.values()) void w.refreshVolumes();
  }, opts.resyncMs ?? 10_000);
  resync.unref();
  log.info({ stateDir, selector: `${POD_RUNNER_LABEL}=${nodeName}` }, 'pod runner ready');

  return {
    nodeName,
    stateDir,
    describe(namespace, name) {
      for (const w of workers.values()) if (w.pod.metadata?.namespace === namespace && w.pod.metadata?.name === name) return w.describe();
      return undefined;
    },
    async stop() {
      if (stopping) return;
      stopping = true;
      clearInterval(resync);
      await informer.stop();
      const cap = opts.shutdownGraceMs ?? 30_000;
      await Promise.all(
        [...workers.values()].map((w) =>
          w.terminate(Math.min(cap, graceMs(w.pod)), { deleteObject: false, reason: 'PodRunnerStopped', message: `pod-runner on node ${nodeName} stopped; the pod's processes were stopped` }),
        ),
      );
      workers.clear();
      await signalMarked(`${runnerId}:`, 'SIGKILL');
      process.off('exit', onExit);
      await node.stop();
      log.info('pod runner stopped; no process of it is left');
    },
  };
}
