/** Waiting between retries: abortable sleeps and capped, jittered exponential backoff. */

/** Sleeps `ms`, or less when `signal` aborts. Never rejects. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** The delay after `ms`: doubled, capped at `max` (ms), with ±20 % jitter so agents do not retry in step. */
export function nextBackoff(ms: number, max: number): number {
  return Math.min(max, ms * 2) * (0.8 + Math.random() * 0.4);
}
