/**
 * One pod's life on the development pod runner, in the kubelet's order:
 * volumes and ports ("sandbox") → init containers one by one (native sidecars, i.e. init
 * containers with `restartPolicy: Always`, are started, kept running and restarted, and
 * the next init container waits until they have started) → every main container, restarted
 * as the pod's restartPolicy says with the kubelet's crash-loop backoff → on deletion,
 * SIGTERM to the main containers, then the sidecars in reverse order, SIGKILL when the
 * grace period is over, and the pod object deleted with grace 0.
 *
 * Every change of a container is written to the pod's status (status.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { V1Container, V1ContainerState, V1Pod, V1PodStatus } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { writeFileAtomic } from '../../../agent-image/src/harness/files.ts';
import { PROXY_HEALTH_PORT, PROXY_PORT, SUPERVISOR_LOCAL_PORT, SUPERVISOR_PORT } from '../../../agent-image/src/contract/contract.ts';
import { freePort } from '../net.ts';
import { ContainerConfigError, containerEnv, expand, relocateValue, type ObjectData, type PodFacts, type Relocation } from './env.ts';
import { planContainer, type ImagePlan } from './images.ts';
import { exitCodeOf, setprivArgs, signalGroup, signalMarked, spawnContainer, type Identity } from './process.ts';
import { ProbeLoop } from './probe.ts';
import { buildRootfs, relink, type Mount } from './rootfs.ts';
import { podStatus, type ContainerSnapshot, type Role } from './status.ts';
import { forgetPodTokens, prepareVolumes, VolumeError, type PreparedVolume, type VolumeApi } from './volumes.ts';

/** The pod's IP and host IP: every pod shares the host's network. */
export const POD_IP = '127.0.0.1';

/** Crash-loop backoff (kubelet: 10 s doubling to 300 s, reset after 10 min of running). */
export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  /** A container that ran this long before exiting restarts without delay again. */
  resetAfterMs: number;
}
export const KUBELET_BACKOFF: BackoffOptions = { initialMs: 10_000, maxMs: 300_000, resetAfterMs: 600_000 };

/** What a pod worker needs from the API server (the runner's kube layer). */
export interface PodApi extends VolumeApi {
  /** Merge-patches the pod's status subresource with `status`; a 404 (pod gone) is not an error. @throws any other API error */
  writeStatus(pod: V1Pod, status: V1PodStatus): Promise<void>;
  /** Deletes the pod object with grace 0 and a UID precondition; a 404 or 409 (a newer pod of that name) is not an error. @throws any other API error */
  deletePod(pod: V1Pod): Promise<void>;
  /** Records a core/v1 Event on the pod (on `spec.containers{container}` when given); fire and forget, never throws. */
  event(pod: V1Pod, type: 'Normal' | 'Warning', reason: string, message: string, container?: string): void;
}

export interface WorkerOptions {
  api: PodApi;
  log: Logger;
  stateDir: string;
  /** Prefix of the process marker of this runner (process.ts). */
  runnerId: string;
  checkout: string;
  agentImages: readonly string[];
  backoff: BackoffOptions;
  /** PATH of every container unless its env sets one. */
  path: string;
  /** Development-only extra environment per container (PodRunnerOptions.containerEnv). */
  extraEnv?: ((pod: V1Pod, container: V1Container) => Record<string, string> | undefined) | undefined;
}

interface ContainerRun extends ContainerSnapshot {
  spec: V1Container;
  plan: ImagePlan;
  rootfs: string;
  /** The container's /tmp (short path: see rootfs.ts). */
  tmp: string;
  mounts: Mount[];
  proc?: ChildProcess;
  startedAtMs: number;
  crashes: number;
  probes: ProbeLoop[];
  /** Resolves when the current instance's process has exited and its leftovers are killed. */
  exited?: Promise<number>;
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });

const waiting = (reason: string, message?: string): V1ContainerState => ({ waiting: { reason, ...(message ? { message } : {}) } });

export class PodWorker {
  pod: V1Pod;
  readonly uid: string;
  private readonly o: WorkerOptions;
  private readonly log: Logger;
  private readonly podDir: string;
  private readonly logDir: string;
  private containers: ContainerRun[] = [];
  private readonly ports = new Map<number, number>();
  private volumes = new Map<string, PreparedVolume>();
  private objects: ObjectData = { configMaps: new Map(), secrets: new Map() };
  private sandboxReady = false;
  private initialized = false;
  private finished: 'Succeeded' | 'Failed' | undefined;
  private reason: string | undefined;
  private message: string | undefined;
  private readonly startTime = new Date();
  private readonly stop = new AbortController();
  private terminating: Promise<void> | undefined;
  private statusWrite: Promise<void> = Promise.resolve();
  private statusQueued = false;
  private lastWritten = '';
  private running: Promise<void> | undefined;
  private readonly warned = new Set<string>();
  /** The restart loops of the native sidecars (they outlive run()'s init phase). */
  private readonly sidecarLoops: Promise<void>[] = [];

  constructor(pod: V1Pod, o: WorkerOptions) {
    this.pod = pod;
    this.o = o;
    this.uid = pod.metadata?.uid ?? '';
    const id = `${pod.metadata?.namespace}_${pod.metadata?.name}_${this.uid}`;
    this.podDir = path.join(o.stateDir, 'pods', id);
    this.logDir = path.join(o.stateDir, 'logs', id);
    this.log = o.log.child({ pod: `${pod.metadata?.namespace}/${pod.metadata?.name}`, uid: this.uid });
  }

  /** Marker prefix of this pod's processes. */
  private get markerPrefix(): string {
    return `${this.o.runnerId}:${this.uid}:`;
  }

  /** Where a container's output goes: `<stateDir>/logs/<ns>_<name>_<uid>/<container>/<restartCount>.log`. */
  private logFile(container: string, restartCount: number): string {
    return path.join(this.logDir, container, `${restartCount}.log`);
  }

  /** Starts the pod's life; resolves when it has nothing more to run. */
  start(): Promise<void> {
    this.running ??= this.run().catch((err: unknown) => this.log.error({ err }, 'pod worker failed'));
    return this.running;
  }

  /** A newer version of the pod object (status writes keep others' conditions). */
  update(pod: V1Pod): void {
    this.pod = pod;
  }

  /** Re-reads ConfigMaps, Secrets and tokens into the pod's volumes (the kubelet's periodic sync). */
  async refreshVolumes(): Promise<void> {
    if (!this.sandboxReady || this.stop.signal.aborted) return;
    try {
      for (const [name, vol] of await prepareVolumes(this.volumeContext(), true)) this.volumes.set(name, vol);
      for (const c of this.containers) await relink(c.rootfs, c.mounts);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'volume refresh failed; keeping the current files');
    }
  }

  private volumeContext() {
    return {
      pod: this.pod,
      podDir: this.podDir,
      stateDir: this.o.stateDir,
      api: this.o.api,
      facts: this.facts(),
      canChown: process.getuid?.() === 0,
      warn: (message: string) => {
        if (this.warned.has(message)) return;
        this.warned.add(message);
        this.log.warn(message);
      },
    };
  }

  private facts(): PodFacts {
    return { podIP: POD_IP, hostIP: POD_IP };
  }

  private async run(): Promise<void> {
    const spec = this.pod.spec ?? { containers: [] };
    const make = (c: V1Container, role: Role): ContainerRun => ({
      name: c.name,
      image: c.image ?? '',
      role,
      spec: c,
      plan: planContainer(c, { agentImages: this.o.agentImages, checkout: this.o.checkout }),
      state: waiting(role === 'main' ? 'PodInitializing' : 'ContainerCreating'),
      ready: false,
      started: false,
      restartCount: this.previousRestarts(c.name, role),
      rootfs: path.join(this.podDir, 'containers', c.name, 'rootfs'),
      tmp: path.join('/tmp', `pod-runner-${createHash('sha256').update(`${this.o.runnerId}:${this.uid}:${c.name}`).digest('hex').slice(0, 12)}`),
      mounts: [],
      startedAtMs: 0,
      crashes: 0,
      probes: [],
    });
    this.containers = [
      ...(spec.initContainers ?? []).map((c) => make(c, c.restartPolicy === 'Always' ? 'sidecar' : 'init')),
      ...spec.containers.map((c) => make(c, 'main')),
    ];
    const refused = this.containers.filter((c) => c.plan.kind === 'refused');
    if (refused.length) {
      for (const c of refused) {
        const message = c.plan.kind === 'refused' ? c.plan.message : '';
        c.state = waiting('ErrImagePull', message);
        this.o.api.event(this.pod, 'Warning', 'Failed', message, c.name);
        this.log.error({ container: c.name, image: c.image }, message);
      }
      this.writeStatus();
      return;
    }
    await mkdir(this.podDir, { recursive: true, mode: 0o755 });
    await chmod(this.podDir, 0o755);
    await this.allocatePorts();
    if (!(await this.setUpVolumes())) return;
    for (const c of this.containers) {
      c.mounts = (c.spec.volumeMounts ?? []).map((m) => {
        const vol = this.volumes.get(m.name);
        if (!vol) throw new VolumeError(`volumeMount ${m.name} of container ${c.name} names no volume`);
        return { mountPath: m.mountPath, source: m.subPath ? path.join(vol.hostPath, m.subPath) : vol.hostPath };
      });
      await buildRootfs(c.rootfs, c.mounts, c.tmp);
      await mkdir(path.join(this.logDir, c.name), { recursive: true });
    }
    this.sandboxReady = true;
    this.writeStatus();
    await this.writeDescription();

    for (const c of this.containers.filter((x) => x.role !== 'main')) {
      if (this.stop.signal.aborted) return;
      if (c.plan.kind !== 'refused' && c.plan.skip) {
        this.log.warn({ container: c.name }, c.plan.skip);
        const now = new Date();
        c.state = { terminated: { exitCode: 0, reason: 'Completed', message: c.plan.skip, startedAt: now, finishedAt: now } };
        c.ready = true;
        this.writeStatus();
        continue;
      }
      if (c.role === 'sidecar') {
        this.sidecarLoops.push(this.loop(c, () => true).catch((err: unknown) => this.log.error({ err, container: c.name }, 'sidecar loop failed')));
        await this.waitStarted(c);
        continue;
      }
      for (;;) {
        const code = await this.runOnce(c);
        if (this.stop.signal.aborted) return;
        if (code === 0) {
          c.ready = true;
          this.writeStatus();
          break;
        }
        if (spec.restartPolicy === 'Never') {
          await this.finish('Failed');
          return;
        }
        await this.backoff(c);
        if (this.stop.signal.aborted) return;
      }
    }
    this.initialized = true;
    this.writeStatus();
    const policy = spec.restartPolicy ?? 'Always';
    await Promise.all(this.containers.filter((c) => c.role === 'main').map((c) => this.loop(c, (code) => policy === 'Always' || (policy === 'OnFailure' && code !== 0))));
    if (this.stop.signal.aborted) return;
    const mains = this.containers.filter((c) => c.role === 'main');
    await this.finish(mains.every((c) => c.state.terminated?.exitCode === 0) ? 'Succeeded' : 'Failed');
  }

  /** After a runner restart, restart counts continue from the pod's last status. */
  private previousRestarts(name: string, role: Role): number {
    const list = role === 'main' ? this.pod.status?.containerStatuses : this.pod.status?.initContainerStatuses;
    const prev = list?.find((s) => s.name === name);
    return prev ? prev.restartCount + (prev.state?.running || prev.state?.terminated ? 1 : 0) : 0;
  }

  private async allocatePorts(): Promise<void> {
    const wanted = new Set<number>();
    for (const c of this.containers) for (const p of c.spec.ports ?? []) wanted.add(p.containerPort);
    if (this.containers.some((c) => c.plan.kind === 'agent')) for (const p of [SUPERVISOR_PORT, SUPERVISOR_LOCAL_PORT, PROXY_PORT, PROXY_HEALTH_PORT]) wanted.add(p);
    for (const p of wanted) this.ports.set(p, await freePort());
    this.log.info({ ports: Object.fromEntries(this.ports) }, 'pod ports remapped (in-pod port: host port)');
  }

  /** @returns false when the pod was stopped before its volumes could be set up. */
  private async setUpVolumes(): Promise<boolean> {
    let delay = 1000;
    for (;;) {
      try {
        this.volumes = await prepareVolumes(this.volumeContext());
        await this.fetchEnvObjects();
        this.message = undefined;
        return true;
      } catch (err) {
        const message = (err as Error).message;
        this.log.warn({ err: message, retryInMs: delay }, 'cannot set up the pod yet');
        this.o.api.event(this.pod, 'Warning', 'FailedMount', message);
        this.message = message;
        this.writeStatus();
        await sleep(delay, this.stop.signal);
        if (this.stop.signal.aborted) return false;
        delay = Math.min(delay * 2, 30_000);
      }
    }
  }

  /** Reads the ConfigMaps and Secrets the containers' env and envFrom name. */
  private async fetchEnvObjects(): Promise<void> {
    const ns = this.pod.metadata?.namespace ?? 'default';
    const cms = new Set<string>();
    const secrets = new Set<string>();
    for (const c of this.containers) {
      for (const f of c.spec.envFrom ?? []) {
        if (f.configMapRef?.name) cms.add(f.configMapRef.name);
        if (f.secretRef?.name) secrets.add(f.secretRef.name);
      }
      for (const e of c.spec.env ?? []) {
        if (e.valueFrom?.configMapKeyRef?.name) cms.add(e.valueFrom.configMapKeyRef.name);
        if (e.valueFrom?.secretKeyRef?.name) secrets.add(e.valueFrom.secretKeyRef.name);
      }
    }
    const text = (d: Record<string, Buffer> | undefined) => (d ? Object.fromEntries(Object.entries(d).map(([k, v]) => [k, v.toString('utf8')])) : undefined);
    const objects: ObjectData = { configMaps: new Map(), secrets: new Map() };
    for (const n of cms) {
      const d = text(await this.o.api.configMap(ns, n));
      if (d) objects.configMaps.set(n, d);
    }
    for (const n of secrets) {
      const d = text(await this.o.api.secret(ns, n));
      if (d) objects.secrets.set(n, d);
    }
    this.objects = objects;
  }

  private relocation(c: ContainerRun): Relocation {
    return { rootfs: c.rootfs, mountPaths: c.mounts.map((m) => m.mountPath), ports: this.ports };
  }

  /** The process to start for `c`: argv, env, cwd and identity. @throws ContainerConfigError */
  private processSpec(c: ContainerRun): { argv: string[]; env: Record<string, string>; cwd: string; identity?: Identity } {
    if (c.plan.kind === 'refused') throw new ContainerConfigError(c.plan.message);
    const plan = c.plan;
    const own = containerEnv(this.pod, c.spec, this.objects, this.facts());
    const r = this.relocation(c);
    const env: Record<string, string> = { PATH: this.o.path, HOSTNAME: this.pod.spec?.hostname ?? this.pod.metadata?.name ?? '', ...plan.config.env, ...own };
    for (const [k, v] of Object.entries(env)) env[k] = relocateValue(v, r);
    // Host paths given by the development setup, not the pod: no relocation.
    Object.assign(env, this.o.extraEnv?.(this.pod, c.spec));
    // The runner's own variables win: they say where this container really is.
    env.HOME ??= c.rootfs;
    env.AGENT_SMITH_ROOT = c.rootfs;
    env.TMPDIR = c.tmp;
    env.TMUX_TMPDIR = c.tmp;
    for (const [from, to] of this.ports) env[`POD_RUNNER_PORT_${from}`] = String(to);
    if (plan.kind === 'agent') {
      const set = (name: string, port: number) => {
        const mapped = this.ports.get(port);
        if (mapped !== undefined) env[name] = String(mapped);
      };
      set('AGENT_SMITH_PORT', SUPERVISOR_PORT);
      set('AGENT_SMITH_LOCAL_PORT', SUPERVISOR_LOCAL_PORT);
      set('AGENT_SMITH_PROXY_PORT', PROXY_PORT);
      set('AGENT_SMITH_PROXY_HEALTH_PORT', PROXY_HEALTH_PORT);
    }
    const argv = plan.argv.map((a, i) => {
      const expanded = expand(a, (n) => own[n]);
      return i === 0 ? expanded : relocateValue(expanded, r);
    });
    const workingDir = c.spec.workingDir ?? plan.config.workingDir;
    const cwd = path.join(c.rootfs, workingDir);
    const identity = this.identity(c);
    const nonRoot = c.spec.securityContext?.runAsNonRoot ?? this.pod.spec?.securityContext?.runAsNonRoot;
    const effectiveUid = identity?.uid ?? process.getuid?.() ?? 0;
    if (nonRoot && effectiveUid === 0) throw new ContainerConfigError('container has runAsNonRoot and image will run as root');
    return { argv, env, cwd, ...(identity ? { identity } : {}) };
  }

  /** The UID, GID and groups of `c` when the runner is root; undefined otherwise (it runs as the runner). */
  private identity(c: ContainerRun): Identity | undefined {
    if (process.getuid?.() !== 0 || c.plan.kind === 'refused') return undefined;
    const psc = this.pod.spec?.securityContext;
    const sc = c.spec.securityContext;
    const imageUser = c.plan.config.user;
    const uid = sc?.runAsUser ?? psc?.runAsUser ?? imageUser?.uid;
    if (uid === undefined) return undefined;
    const gid = sc?.runAsGroup ?? psc?.runAsGroup ?? (imageUser && imageUser.uid === uid ? imageUser.gid : 0);
    const groups = [...new Set([...(psc?.fsGroup !== undefined ? [psc.fsGroup] : []), ...(psc?.supplementalGroups ?? [])])];
    const drop = sc?.capabilities?.drop ?? [];
    return {
      uid,
      gid,
      groups,
      noNewPrivs: sc?.allowPrivilegeEscalation === false,
      dropAllCaps: drop.includes('ALL'),
      addCaps: (sc?.capabilities?.add ?? []).map((x) => `cap_${x.toLowerCase().replace(/^cap_/, '')}`),
    };
  }

  /** Runs one instance of `c` and waits for it to exit. @returns its exit code */
  private async runOnce(c: ContainerRun): Promise<number> {
    let spec;
    for (;;) {
      try {
        spec = this.processSpec(c);
        break;
      } catch (err) {
        if (!(err instanceof ContainerConfigError)) throw err;
        c.state = waiting('CreateContainerConfigError', err.message);
        this.o.api.event(this.pod, 'Warning', 'Failed', `Error: ${err.message}`, c.name);
        this.writeStatus();
        await sleep(5000, this.stop.signal);
        if (this.stop.signal.aborted) return 137;
        await this.fetchEnvObjects().catch(() => undefined);
      }
    }
    await mkdir(spec.cwd, { recursive: true });
    // Checked after the last await before the spawn: a pod stopped meanwhile starts nothing.
    if (this.stop.signal.aborted) return 137;
    const marker = `${this.markerPrefix}${c.name}`;
    // A restart: the count and lastState change with the new instance's running state, in
    // one synchronous step and so in one status write, as the kubelet reports a new
    // container (restartCount+1, lastState = the exited one, state running) together.
    // startedAtMs is 0 before this worker's first instance (previousRestarts counted an
    // instance of an earlier runner already).
    if (c.startedAtMs) c.restartCount++;
    if (c.state.terminated) c.lastState = { terminated: c.state.terminated };
    const proc = spawnContainer({ ...spec, logFile: this.logFile(c.name, c.restartCount), marker });
    c.proc = proc;
    const startedAt = new Date();
    c.startedAtMs = startedAt.getTime();
    const exited = new Promise<{ code: number; error?: string }>((resolve) => {
      proc.once('error', (err) => resolve({ code: 128, error: err.message }));
      proc.once('exit', (code, signal) => resolve({ code: exitCodeOf(code, signal) }));
    });
    c.containerID = `pod-runner://${proc.pid ?? 0}`;
    c.state = { running: { startedAt } };
    c.started = !c.spec.startupProbe;
    c.ready = c.started && !c.spec.readinessProbe;
    // The command as the pod spec gives it, before $(VAR) expansion: an argument may expand
    // to a Secret's value (env from secretKeyRef), and this log is not a place for it.
    const command = c.plan.kind === 'refused' ? [] : c.plan.argv;
    this.log.info({ container: c.name, pid: proc.pid, restartCount: c.restartCount, command, uid: spec.identity?.uid }, 'container started');
    this.o.api.event(this.pod, 'Normal', 'Started', `Started container ${c.name}`, c.name);
    this.startProbes(c, spec);
    this.writeStatus();
    void this.writeDescription();
    c.exited = exited.then(async (r) => {
      // The container's init is gone: so is everything it started (as a PID namespace's processes).
      await signalMarked(marker, 'SIGKILL');
      return r.code;
    });
    const result = await exited;
    await c.exited;
    for (const p of c.probes) p.stop();
    c.probes = [];
    c.proc = undefined;
    const finishedAt = new Date();
    c.state = {
      terminated: {
        exitCode: result.code,
        reason: result.error ? 'StartError' : result.code === 0 ? 'Completed' : 'Error',
        ...(result.error ? { message: result.error } : {}),
        startedAt,
        finishedAt,
        containerID: c.containerID,
      },
    };
    c.ready = c.role === 'init' && result.code === 0;
    c.started = false;
    this.log.info({ container: c.name, exitCode: result.code, ranMs: finishedAt.getTime() - startedAt.getTime() }, 'container exited');
    this.writeStatus();
    return result.code;
  }

  private startProbes(c: ContainerRun, spec: { argv: string[]; env: Record<string, string>; cwd: string; identity?: Identity }): void {
    const target = {
      port: (p: number | string) => {
        const n = typeof p === 'number' ? p : /^\d+$/.test(p) ? Number(p) : c.spec.ports?.find((x) => x.name === p)?.containerPort;
        return n === undefined ? undefined : (this.ports.get(n) ?? n);
      },
      exec: (command: string[], timeoutMs: number) => this.execInContainer(c, command, spec, timeoutMs),
      warn: (message: string) => this.log.warn({ container: c.name }, message),
    };
    const readiness = () => {
      if (c.spec.readinessProbe) {
        const p = new ProbeLoop(c.spec.readinessProbe, target, (ok, message) => {
          if (c.ready !== ok) {
            c.ready = ok;
            if (!ok) this.o.api.event(this.pod, 'Warning', 'Unhealthy', `Readiness probe failed: ${message ?? ''}`, c.name);
            this.writeStatus();
          }
        });
        c.probes.push(p);
        p.start();
      }
      if (c.spec.livenessProbe) {
        const p = new ProbeLoop(c.spec.livenessProbe, target, (ok, message) => {
          if (!ok) void this.probeKill(c, 'Liveness', message, c.spec.livenessProbe?.terminationGracePeriodSeconds);
        });
        c.probes.push(p);
        p.start();
      }
    };
    if (c.spec.startupProbe) {
      const p = new ProbeLoop(c.spec.startupProbe, target, (ok, message) => {
        if (ok && !c.started) {
          c.started = true;
          c.ready = !c.spec.readinessProbe;
          p.stop();
          this.writeStatus();
          readiness();
        } else if (!ok) {
          p.stop();
          void this.probeKill(c, 'Startup', message, c.spec.startupProbe?.terminationGracePeriodSeconds);
        }
      });
      c.probes.push(p);
      p.start();
    } else {
      readiness();
    }
  }

  private async probeKill(c: ContainerRun, which: string, message: string | undefined, graceSeconds: number | undefined): Promise<void> {
    this.o.api.event(this.pod, 'Warning', 'Unhealthy', `${which} probe failed: ${message ?? ''}`, c.name);
    this.log.warn({ container: c.name, probe: which, message }, 'probe failed; killing the container to restart it');
    await this.killContainer(c, (graceSeconds ?? this.pod.spec?.terminationGracePeriodSeconds ?? 30) * 1000);
  }

  private execInContainer(c: ContainerRun, command: string[], spec: { env: Record<string, string>; cwd: string; identity?: Identity }, timeoutMs: number): Promise<number> {
    const r = this.relocation(c);
    const argv = command.map((a, i) => (i === 0 ? a : relocateValue(a, r)));
    const [file, ...args] = spec.identity ? ['setpriv', ...setprivArgs(spec.identity), ...argv] : argv;
    return new Promise((resolve) => {
      const p = spawn(file ?? '', args, { cwd: spec.cwd, env: spec.env, stdio: 'ignore', timeout: timeoutMs });
      p.once('error', () => resolve(-1));
      p.once('exit', (code) => resolve(code ?? -1));
    });
  }

  /** Waits until sidecar `c` has started (startup probe passed, or running without one). */
  private async waitStarted(c: ContainerRun): Promise<void> {
    while (!c.started && !this.stop.signal.aborted) await sleep(100, this.stop.signal);
  }

  /** Runs `c` and restarts it while `restart(exitCode)` says so and the pod is not stopping. */
  private async loop(c: ContainerRun, restart: (code: number) => boolean): Promise<void> {
    for (;;) {
      if (this.stop.signal.aborted) return;
      const code = await this.runOnce(c);
      if (this.stop.signal.aborted || !restart(code)) return;
      await this.backoff(c);
    }
  }

  /** The kubelet's restart delay: none for the first restart, then initial doubling to max. The restart itself is counted when it spawns (runOnce). */
  private async backoff(c: ContainerRun): Promise<void> {
    const ran = Date.now() - c.startedAtMs;
    if (ran >= this.o.backoff.resetAfterMs) c.crashes = 0;
    const delay = c.crashes === 0 ? 0 : Math.min(this.o.backoff.initialMs * 2 ** (c.crashes - 1), this.o.backoff.maxMs);
    c.crashes++;
    if (delay > 0) {
      const message = `back-off ${Math.round(delay / 1000)}s restarting failed container=${c.name} pod=${this.pod.metadata?.name}_${this.pod.metadata?.namespace}(${this.uid})`;
      if (c.state.terminated) c.lastState = { terminated: c.state.terminated };
      c.state = waiting('CrashLoopBackOff', message);
      this.o.api.event(this.pod, 'Warning', 'BackOff', 'Back-off restarting failed container', c.name);
      this.writeStatus();
      await sleep(delay, this.stop.signal);
    }
  }

  /** SIGTERM to the container's process group, SIGKILL to everything of it after `graceMs`. */
  private async killContainer(c: ContainerRun, graceMs: number): Promise<void> {
    const proc = c.proc;
    if (!proc?.pid || !c.exited) return;
    this.o.api.event(this.pod, 'Normal', 'Killing', `Stopping container ${c.name}`, c.name);
    signalGroup(proc.pid, 'SIGTERM');
    const exited = c.exited;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([exited.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), Math.max(0, graceMs))))]);
    clearTimeout(timer);
    if (timedOut) {
      this.log.warn({ container: c.name, graceMs }, 'grace period over: SIGKILL');
      signalGroup(proc.pid, 'SIGKILL');
      await signalMarked(`${this.markerPrefix}${c.name}`, 'SIGKILL');
      await exited;
    }
  }

  private async finish(phase: 'Succeeded' | 'Failed'): Promise<void> {
    const sidecars = this.containers.filter((c) => c.role === 'sidecar').reverse();
    this.finished = phase;
    this.stop.abort();
    for (const c of sidecars) await this.killContainer(c, (this.pod.spec?.terminationGracePeriodSeconds ?? 30) * 1000);
    this.writeStatus();
  }

  /**
   * Stops the pod: SIGTERM to the main containers, then the sidecars in reverse order,
   * SIGKILL to whatever is left when `graceMs` has passed; removes the pod's directory
   * (not its claims, not its logs). Idempotent.
   * @param opts.deleteObject delete the pod object with grace 0 afterwards (pod deletion)
   * @param opts.reason / message: the pod's final status (runner shutdown), when not deleting
   */
  terminate(graceMs: number, opts: { deleteObject: boolean; reason?: string; message?: string }): Promise<void> {
    this.terminating ??= (async () => {
      const deadline = Date.now() + graceMs;
      this.stop.abort();
      this.log.info({ graceMs, deleteObject: opts.deleteObject }, 'stopping the pod');
      const left = () => Math.max(0, deadline - Date.now());
      await Promise.all(this.containers.filter((c) => c.role === 'main').map((c) => this.killContainer(c, left())));
      for (const c of this.containers.filter((x) => x.role !== 'main').reverse()) await this.killContainer(c, left());
      await signalMarked(this.markerPrefix, 'SIGKILL');
      await this.running;
      await Promise.all(this.sidecarLoops);
      forgetPodTokens(this.uid);
      for (const dir of [this.podDir, ...this.containers.map((c) => c.tmp)]) {
        await rm(dir, { recursive: true, force: true }).catch((err: unknown) => this.log.warn({ err, dir }, 'cannot remove a directory of the pod'));
      }
      if (opts.deleteObject) {
        await this.statusWrite;
        await this.o.api.deletePod(this.pod);
        this.log.info('pod stopped and deleted');
      } else {
        this.finished = 'Failed';
        this.reason = opts.reason;
        this.message = opts.message;
        for (const c of this.containers) c.ready = false;
        this.writeStatus();
        await this.statusWrite;
        this.log.info('pod stopped');
      }
    })();
    return this.terminating;
  }

  /** Coalesces status writes: one in flight, the latest state wins. */
  private writeStatus(): void {
    if (this.statusQueued) return;
    this.statusQueued = true;
    this.statusWrite = this.statusWrite.then(async () => {
      await new Promise((r) => setTimeout(r, 20));
      this.statusQueued = false;
      const status = podStatus(
        this.pod,
        {
          sandboxReady: this.sandboxReady,
          initialized: this.initialized,
          ...(this.finished ? { finished: this.finished } : {}),
          ...(this.reason ? { reason: this.reason } : {}),
          ...(this.message ? { message: this.message } : {}),
          startTime: this.startTime,
          podIP: POD_IP,
          containers: this.containers,
        },
        new Date(),
      );
      const json = JSON.stringify(status, (k, v: unknown) => (k === 'lastTransitionTime' ? undefined : v));
      if (json === this.lastWritten) return;
      try {
        await this.o.api.writeStatus(this.pod, status);
        this.lastWritten = json;
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'status write failed; retrying');
        setTimeout(() => this.writeStatus(), 1000).unref();
      }
    });
  }

  /**
   * `<podDir>/pod.json`: describe() plus the pod's namespace, name and uid, for tools in
   * other processes (attach, the demo). Rewritten when a container starts (its PID).
   */
  private async writeDescription(): Promise<void> {
    const body = JSON.stringify({ namespace: this.pod.metadata?.namespace, name: this.pod.metadata?.name, uid: this.uid, ...this.describe() }, null, 2);
    await writeFileAtomic(path.join(this.podDir, 'pod.json'), body).catch((err: unknown) => this.log.debug({ err }, 'pod.json not written'));
  }

  /** Paths and ports of this pod on the host, for tools (attach, the demo). */
  describe(): { podDir: string; logDir: string; ports: Record<string, number>; containers: Record<string, { rootfs: string; tmp: string; pid?: number }> } {
    return {
      podDir: this.podDir,
      logDir: this.logDir,
      ports: Object.fromEntries([...this.ports].map(([k, v]) => [String(k), v])),
      containers: Object.fromEntries(this.containers.map((c) => [c.name, { rootfs: c.rootfs, tmp: c.tmp, ...(c.proc?.pid ? { pid: c.proc.pid } : {}) }])),
    };
  }
}
