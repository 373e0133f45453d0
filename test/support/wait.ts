/** Polling for tests: one helper for the integration tests (Kubernetes) and the runtime tests (the pod's programs). */

/**
 * Polls `check` every `intervalMs` until it returns a truthy value, and returns that.
 * Errors thrown by `check` count as "not yet".
 * @throws Error naming `what` and the last error or value when `timeoutMs` passes
 */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | null | false> | T | undefined | null | false, timeoutMs = 60_000, intervalMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
      last = v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
