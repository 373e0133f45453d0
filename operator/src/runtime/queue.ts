import { ExponentialBackoff } from './backoff.ts';

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
 * `get()` resolves with the next key, or `undefined` once the queue is shut down.
 */
export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly waiters: Array<(key: string | undefined) => void> = [];
  /** When each waiting key was (first) added, in ms since the epoch: for the wait metric. */
  private readonly addedAt = new Map<string, number>();
  private shuttingDown = false;
  readonly backoff: ExponentialBackoff;
  /** Called with how long a key waited between add and get, in ms. */
  onWait?: (ms: number) => void;

  constructor(backoff = new ExponentialBackoff()) {
    this.backoff = backoff;
  }

  private handOut(key: string): string {
    const at = this.addedAt.get(key);
    this.addedAt.delete(key);
    if (at !== undefined) this.onWait?.(Date.now() - at);
    return key;
  }

  /** Adds `key` now. No-op if it is already waiting, or after shutdown. */
  add(key: string): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.dirty.add(key);
    if (!this.addedAt.has(key)) this.addedAt.set(key, Date.now());
    if (this.processing.has(key)) return; // re-queued by done()
    const waiter = this.waiters.shift();
    if (waiter) {
      this.dirty.delete(key);
      this.processing.add(key);
      waiter(this.handOut(key));
    } else {
      this.queue.push(key);
    }
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
  get(): Promise<string | undefined> {
    if (this.shuttingDown) return Promise.resolve(undefined);
    const key = this.queue.shift();
    if (key !== undefined) {
      this.dirty.delete(key);
      this.processing.add(key);
      return Promise.resolve(this.handOut(key));
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Marks `key` finished; re-queues it if it was added meanwhile. */
  done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.has(key)) {
      this.dirty.delete(key);
      this.add(key);
    }
  }

  /** Number of keys waiting (not counting timers or keys in flight). */
  get length(): number {
    return this.queue.length;
  }

  /** Stops handing out keys; pending `get()` calls resolve with `undefined`. */
  shutDown(): void {
    this.shuttingDown = true;
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    for (const w of this.waiters.splice(0)) w(undefined);
  }
}
