/**
 * Per-key exponential backoff, as client-go's ItemExponentialFailureRateLimiter:
 * delay = min(baseMs * 2^failures, maxMs). `forget(key)` resets a key after success.
 */
export class ExponentialBackoff {
  private readonly failures = new Map<string, number>();
  /**
   * @param baseMs first delay in milliseconds (client-go: 5 ms; we default to 100 ms)
   * @param maxMs cap in milliseconds (client-go: 1000 s; we default to 5 min)
   */
  readonly baseMs: number;
  readonly maxMs: number;
  constructor(baseMs = 100, maxMs = 5 * 60_000) {
    this.baseMs = baseMs;
    this.maxMs = maxMs;
  }

  /** Records one more failure of `key` and returns the delay before its next try, in ms. */
  next(key: string): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    return Math.min(this.baseMs * 2 ** n, this.maxMs);
  }

  /** Failures recorded for `key` since its last success. */
  attempts(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  forget(key: string): void {
    this.failures.delete(key);
  }
}
