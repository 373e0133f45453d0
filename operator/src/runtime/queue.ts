import { ExponentialBackoff } from './backoff.ts';

/**
 * How a key is added: `priority: 'high'` puts it in the lane `get()` serves first (and
 * moves it there if it already waits in the normal lane); `light: true` says the work
 * asked for is light (e.g. only recompute a status from caches). A key is handed out as
 * light only when every add since it was last handed out was light: a single ordinary add
 * makes the next hand-out full.
 */
export interface AddOptions {
  priority?: 'normal' | 'high';
  light?: boolean;
}

/** A key handed out by {@link WorkQueue.next}, and whether only light work was asked for it. */
export interface QueueItem {
  key: string;
  light: boolean;
}

/**
 * A keyed, de-duplicating work queue with the semantics of client-go's workqueue:
 *
 * - a key added while it is waiting is not added twice;
 * - a key is handed to at most one worker at a time; if it is added while being
 *   processed, it is marked dirty and queued again once `done(key)` is called;
 * - `addAfter(key, ms)` schedules a timed add (requeueAfter); the earliest pending
 *   timer for a key wins;
 * - `addRateLimited(key)` adds after the key's exponential backoff; `forget(key)`
 *   resets it.
 *
 * Two lanes, as controller-runtime's priority queue: keys added with `priority: 'high'`
 * (e.g. a pod's status changed) are handed out before every key of the normal lane, FIFO
 * within a lane; a waiting key is in one lane only (a high add promotes it). Timed and
 * rate-limited adds are normal, full adds.
 *
 * `get()` resolves with the next key, or `undefined` once the queue is shut down;
 * `next()` also says whether the key was asked only light work ({@link AddOptions}).
 */
export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly urgent: string[] = [];
  /** Keys waiting (or marked to come back after done) in the high lane. */
  private readonly high = new Set<string>();
  /** Keys waiting (or marked) for which only light adds were made. */
  private readonly lightOnly = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  /** Workers waiting for a key; `highOnly` ones take only keys of the high lane. */
  private readonly waiters: Array<{ resolve: (item: QueueItem | undefined) => void; highOnly: boolean }> = [];
  /** When each waiting key was (first) added, in ms since the epoch: for the wait metric. */
  private readonly addedAt = new Map<string, number>();
  private shuttingDown = false;
  readonly backoff: ExponentialBackoff;
  /** Called with how long a key waited between add and get, in ms, and its lane. */
  onWait?: (ms: number, priority: 'normal' | 'high') => void;

  constructor(backoff = new ExponentialBackoff()) {
    this.backoff = backoff;
  }

  private handOut(key: string): QueueItem {
    const at = this.addedAt.get(key);
    this.addedAt.delete(key);
    const priority = this.high.delete(key) ? 'high' : 'normal';
    if (at !== undefined) this.onWait?.(Date.now() - at, priority);
    const light = this.lightOnly.delete(key);
    this.dirty.delete(key);
    this.processing.add(key);
    return { key, light };
  }

  /**
   * Adds `key` now (see {@link AddOptions}). No-op after shutdown; a key already waiting
   * is not added twice, but a high add moves it to the high lane and a full add makes it full.
   */
  add(key: string, opts: AddOptions = {}): void {
    if (this.shuttingDown) return;
    const urgent = opts.priority === 'high';
    if (this.dirty.has(key)) {
      if (!opts.light) this.lightOnly.delete(key);
      if (urgent && !this.high.has(key)) {
        this.high.add(key);
        const i = this.queue.indexOf(key);
        if (i >= 0) {
          this.queue.splice(i, 1);
          this.urgent.push(key);
        }
      }
      return;
    }
    this.dirty.add(key);
    if (opts.light) this.lightOnly.add(key);
    if (urgent) this.high.add(key);
    if (!this.addedAt.has(key)) this.addedAt.set(key, Date.now());
    if (this.processing.has(key)) return; // re-queued by done()
    // A high key goes to a worker reserved for the high lane first, keeping the others for the rest.
    const at = urgent ? Math.max(this.waiters.findIndex((w) => w.highOnly), 0) : this.waiters.findIndex((w) => !w.highOnly);
    const waiter = at >= 0 ? this.waiters.splice(at, 1)[0] : undefined;
    if (waiter) waiter.resolve(this.handOut(key));
    else (urgent ? this.urgent : this.queue).push(key);
  }

  /** Adds `key` after `delayMs` milliseconds, unless an earlier timed add is pending. */
  addAfter(key: string, delayMs: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const at = Date.now() + delayMs;
    const existing = this.timers.get(key);
    if (existing && existing.at <= at) return;
    if (existing) clearTimeout(existing.timer);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, delayMs);
    timer.unref();
    this.timers.set(key, { at, timer });
  }

  /** Adds `key` after its backoff delay; returns that delay in ms. */
  addRateLimited(key: string): number {
    const delay = this.backoff.next(key);
    this.addAfter(key, delay);
    return delay;
  }

  /** Resets the backoff of `key` (call after a successful reconcile). */
  forget(key: string): void {
    this.backoff.forget(key);
  }

  /** Next key to process; waits while the queue is empty. `undefined` after shutdown. */
  async get(): Promise<string | undefined> {
    return (await this.next())?.key;
  }

  /**
   * Next key to process, high lane first, and whether only light work was asked for it;
   * `undefined` after shutdown. `highOnly`: only a key of the high lane (a worker reserved
   * for it, so a pod's status change never waits for a slow full reconcile to end).
   */
  next(opts: { highOnly?: boolean } = {}): Promise<QueueItem | undefined> {
    if (this.shuttingDown) return Promise.resolve(undefined);
    const highOnly = opts.highOnly ?? false;
    const key = this.urgent.shift() ?? (highOnly ? undefined : this.queue.shift());
    if (key !== undefined) return Promise.resolve(this.handOut(key));
    return new Promise((resolve) => this.waiters.push({ resolve, highOnly }));
  }

  /** Marks `key` finished; re-queues it (in the lane and weight it was added with) if it was added meanwhile. */
  done(key: string): void {
    this.processing.delete(key);
    if (!this.dirty.has(key)) return;
    const light = this.lightOnly.has(key);
    const priority = this.high.has(key) ? 'high' : 'normal';
    this.dirty.delete(key);
    this.lightOnly.delete(key);
    this.high.delete(key);
    this.add(key, { priority, light });
  }

  /** Number of keys waiting (not counting timers or keys in flight). */
  get length(): number {
    return this.queue.length + this.urgent.length;
  }

  /** Stops handing out keys; pending `get()` calls resolve with `undefined`. */
  shutDown(): void {
    this.shuttingDown = true;
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    for (const w of this.waiters.splice(0)) w.resolve(undefined);
  }
}
