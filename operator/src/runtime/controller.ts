import type { Logger } from 'pino';
import type { OperatorMetrics } from '../observability/metrics.ts';
import { RetryAfter, TemporaryError, TerminalError, describeError } from './errors.ts';
import { WorkQueue, type AddOptions } from './queue.ts';

/** What one reconcile asks of the queue when it succeeds. */
export interface ReconcileResult {
  /** Reconcile this key again after this many milliseconds (a timed wait, e.g. resync). */
  requeueAfterMs?: number;
}

/**
 * Reconciles the object named by `key` (`namespace/name`). Level-based: it is told only
 * the key, and `light` when every add since its last reconcile asked only light work
 * (queue.ts AddOptions: e.g. a pod's status changed, so only the status needs computing).
 */
export type ReconcileFn = (key: string, log: Logger, how: { light: boolean }) => Promise<ReconcileResult>;

export interface ControllerOptions {
  name: string;
  reconcile: ReconcileFn;
  /** Number of concurrent workers; one key is never reconciled by two at once. */
  workers: number;
  /**
   * Workers, in addition to `workers`, that take only keys of the queue's high lane
   * (queue.ts), so such a key never waits for every worker's slow reconcile to end; default 0.
   */
  priorityWorkers?: number;
  /** Resolves when every informer's cache has synced; workers start only after it. */
  waitForCacheSync: () => Promise<void>;
  log: Logger;
  metrics?: OperatorMetrics;
  queue?: WorkQueue;
  /**
   * After a `TerminalError`, the key is looked at again only after this many ms (the
   * resync backstop of a level-based controller: what changed unwatched is still seen);
   * unset, only when its object changes.
   */
  terminalRecheckMs?: number;
}

/**
 * The controller loop of controller-runtime, Agent-agnostic: a keyed work queue feeding
 * `workers` workers. A `TemporaryError` (or any untyped failure, logged as a bug) is
 * retried with the queue's per-key exponential backoff; `RetryAfter` waits exactly its
 * delay; a `TerminalError` is logged and not retried (the reconciler is expected to have
 * shown it in a condition) until the object changes or `terminalRecheckMs` passes
 * (runtime/errors.ts).
 */
export class Controller {
  readonly queue: WorkQueue;
  private readonly running: Promise<void>[] = [];

  private readonly opts: ControllerOptions;

  constructor(opts: ControllerOptions) {
    this.opts = opts;
    this.queue = opts.queue ?? new WorkQueue();
    if (opts.metrics) {
      const { queueWait } = opts.metrics;
      this.queue.onWait = (ms) => queueWait.observe({ name: opts.name }, ms / 1000);
    }
  }

  /** Queues `key` (de-duplicated; `opts`: its lane and weight, queue.ts). Safe to call from informer callbacks before `start`. */
  enqueue(key: string, opts?: AddOptions): void {
    this.queue.add(key, opts);
    this.opts.metrics?.queueDepth.set({ name: this.opts.name }, this.queue.length);
  }

  /** Waits for the caches, then starts the workers. Resolves once they run. */
  async start(): Promise<void> {
    await this.opts.waitForCacheSync();
    this.opts.log.info({ controller: this.opts.name, workers: this.opts.workers }, 'caches synced; starting workers');
    for (let i = 0; i < this.opts.workers; i++) this.running.push(this.worker(false));
    for (let i = 0; i < (this.opts.priorityWorkers ?? 0); i++) this.running.push(this.worker(true));
  }

  /** Stops handing out keys and waits for in-flight reconciles to finish. */
  async stop(): Promise<void> {
    this.queue.shutDown();
    await Promise.all(this.running);
  }

  private async worker(highOnly: boolean): Promise<void> {
    for (;;) {
      const item = await this.queue.next({ highOnly });
      if (item === undefined) return;
      const { key } = item;
      try {
        await this.processOne(key, item.light);
      } finally {
        this.queue.done(key);
        this.opts.metrics?.queueDepth.set({ name: this.opts.name }, this.queue.length);
      }
    }
  }

  private async processOne(key: string, light: boolean): Promise<void> {
    const { name, metrics } = this.opts;
    const log = this.opts.log.child({ controller: name, key });
    const end = metrics?.reconcileTime.startTimer({ controller: name });
    try {
      const result = await this.opts.reconcile(key, log, { light });
      this.queue.forget(key);
      if (result.requeueAfterMs !== undefined) {
        this.queue.addAfter(key, result.requeueAfterMs);
        metrics?.reconcileTotal.inc({ controller: name, result: 'requeue_after' });
      } else {
        metrics?.reconcileTotal.inc({ controller: name, result: 'success' });
      }
    } catch (err) {
      if (err instanceof TerminalError) {
        this.queue.forget(key);
        if (this.opts.terminalRecheckMs !== undefined) this.queue.addAfter(key, this.opts.terminalRecheckMs);
        log.warn({ reason: err.reason, err: err.message }, 'reconcile failed terminally; waiting for a change');
        metrics?.reconcileTotal.inc({ controller: name, result: 'terminal' });
      } else if (err instanceof RetryAfter) {
        this.queue.addAfter(key, err.delayMs);
        log.info({ retryInMs: err.delayMs, err: err.message }, 'reconcile deferred');
        metrics?.reconcileTotal.inc({ controller: name, result: 'requeue_after' });
      } else {
        const delay = this.queue.addRateLimited(key);
        const attempt = this.queue.backoff.attempts(key);
        if (err instanceof TemporaryError) log.warn({ err: describeError(err), retryInMs: delay, attempt }, 'reconcile failed; will retry');
        // Not a typed error: a bug (or an API call outside kube/). Retried all the same, with its stack.
        else log.error({ err: describeError(err), stack: err instanceof Error ? err.stack : undefined, retryInMs: delay, attempt }, 'reconcile failed unexpectedly; will retry');
        metrics?.reconcileTotal.inc({ controller: name, result: 'error' });
        metrics?.queueRetries.inc({ name });
      }
    } finally {
      end?.();
    }
  }
}
