/**
 * Readiness seen from the benchmark's side: one watch per resource (pods, Agents,
 * Sandboxes) recording, per unit, the moment (performance.now(), ms) its Ready condition
 * was first seen True. Watches instead of polled LISTs: at N = 5000 a LIST of all pods
 * every 500 ms is tens of MB of JSON a second, which would load the very control plane
 * being measured; and condition lastTransitionTime has 1 s resolution, too coarse for a
 * "Ready within 1 s of the pod" figure, so arrival times of watch events are used.
 *
 * Both sides of every comparison are timed by this same code in the same process.
 */
import { KubernetesObjectApi, Watch, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';

/** A watched object with the condition list this tracker reads (pods, Agents, Sandboxes alike). */
interface Conditioned extends KubernetesObject {
  status?: { conditions?: { type: string; status: string }[] };
}

/** True when the object's `Ready` condition is `True`. */
export function isReady(o: Conditioned): boolean {
  return o.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

/** What a tracker watches: the collection path, and how an object maps to its unit (Agent or Sandbox name). */
export interface TrackedResource {
  /** API path of the namespaced collection, e.g. `/api/v1/namespaces/bench/pods`. */
  path: string;
  /** apiVersion and kind, for the re-list after a 410 Gone. */
  apiVersion: string;
  kind: string;
  namespace: string;
  /** The unit an object belongs to (undefined: not one of ours). */
  unitOf: (o: KubernetesObject) => string | undefined;
}

/**
 * Records when each unit first became Ready. Restarts its watch from the last
 * resourceVersion when the server ends it (watch timeouts), and re-lists on 410 Gone.
 */
export class ReadinessTracker {
  /** Unit name → ms (performance.now()) when first seen Ready. */
  readonly readyAt = new Map<string, number>();
  private resourceVersion: string | undefined;
  private abort: AbortController | undefined;
  private stopped = false;
  private waiters: { n: number; resolve: () => void }[] = [];

  private readonly kc: KubeConfig;
  private readonly res: TrackedResource;

  constructor(kc: KubeConfig, res: TrackedResource) {
    this.kc = kc;
    this.res = res;
  }

  /** Starts watching (from "now": start it before the objects are created). */
  async start(): Promise<void> {
    await this.watch();
  }

  private async watch(): Promise<void> {
    if (this.stopped) return;
    const params: Record<string, string | boolean> = { allowWatchBookmarks: true };
    if (this.resourceVersion) params.resourceVersion = this.resourceVersion;
    this.abort = await new Watch(this.kc).watch(
      this.res.path,
      params,
      (type, obj: Conditioned) => {
        if (obj.metadata?.resourceVersion) this.resourceVersion = obj.metadata.resourceVersion;
        if (type === 'ERROR') {
          this.resourceVersion = undefined; // 410 Gone: re-list below
          return;
        }
        if (type !== 'BOOKMARK') this.see(obj);
      },
      (err) => {
        if (this.stopped) return;
        if (err) console.error(`watch ${this.res.path} ended: ${String(err)}; restarting`);
        this.restart();
      },
    );
  }

  /** Watches again (from the last version, or after a re-list); a failure is logged and retried a second later, never thrown into a run of an hour. */
  private restart(): void {
    (this.resourceVersion ? this.watch() : this.relist().then(() => this.watch())).catch((err: unknown) => {
      console.error(`watch ${this.res.path}: ${String(err)}; retrying in 1 s`);
      if (!this.stopped) setTimeout(() => this.restart(), 1000);
    });
  }

  private async relist(): Promise<void> {
    const list = await KubernetesObjectApi.makeApiClient(this.kc).list<Conditioned>(this.res.apiVersion, this.res.kind, this.res.namespace);
    for (const o of list.items) this.see(o);
    this.resourceVersion = list.metadata?.resourceVersion;
  }

  private see(o: Conditioned): void {
    const unit = this.res.unitOf(o);
    if (!unit || this.readyAt.has(unit) || !isReady(o)) return;
    this.readyAt.set(unit, performance.now());
    this.waiters = this.waiters.filter((w) => (this.readyAt.size >= w.n ? (w.resolve(), false) : true));
  }

  /** Resolves once `n` units have been seen Ready (or rejects after `timeoutMs`). */
  waitFor(n: number, timeoutMs: number): Promise<void> {
    if (this.readyAt.size >= n) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.res.kind}: ${this.readyAt.size}/${n} Ready after ${timeoutMs / 1000} s`)), timeoutMs);
      this.waiters.push({ n, resolve: () => (clearTimeout(timer), resolve()) });
    });
  }

  /** Stops the watch. */
  stop(): void {
    this.stopped = true;
    this.abort?.abort();
  }
}

/** Percentiles (nearest rank) of `values`, in their unit; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (!values.length) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/**
 * Per unit, how long after its pod was seen Ready the unit itself was (ms; negative
 * would mean the unit was marked Ready before its pod, which neither controller does).
 */
export function readyLag(pods: ReadinessTracker, units: ReadinessTracker): number[] {
  const lags: number[] = [];
  for (const [unit, at] of units.readyAt) {
    const pod = pods.readyAt.get(unit);
    if (pod !== undefined) lags.push(at - pod);
  }
  return lags;
}
