import { RetryAfter, TemporaryError, describeError, httpStatusOf } from '../runtime/errors.ts';

/** Wait used for a 429 whose Retry-After header is missing or not a number of seconds, in ms. */
const DEFAULT_RETRY_AFTER_MS = 1_000;
/** Bounds of the wait a Retry-After header may ask for, in ms: at least 1 s (no hot loop on 0), at most 5 min (a hostile or broken value must not park an Agent). */
const MIN_RETRY_AFTER_MS = 1_000;
const MAX_RETRY_AFTER_MS = 5 * 60_000;

/** The wait a Retry-After header asks for, in ms: delay-seconds only (digits), clamped to [1 s, 5 min]; anything else 1 s. */
export function retryAfterMs(header: string | undefined): number {
  if (header === undefined || !/^\s*\d{1,9}\s*$/.test(header)) return DEFAULT_RETRY_AFTER_MS;
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(MIN_RETRY_AFTER_MS, Number(header) * 1000));
}

/**
 * The reconcile error an API failure stands for, so the controller (runtime/controller.ts)
 * handles it by type: a 429 Too Many Requests (API Priority and Fairness) becomes
 * `RetryAfter` with the delay of its Retry-After header (seconds, RFC 9110 section
 * 10.2.3; {@link retryAfterMs}); any other failure (5xx, 403, a transport error) becomes a
 * `TemporaryError` retried with backoff. The message is `<what>: <describeError>` (the
 * HTTP status and the Status message, which for a 422 names the field; never the raw
 * response body); the original error is the `cause`.
 */
export function toReconcileError(what: string, err: unknown): Error {
  if (err instanceof RetryAfter || err instanceof TemporaryError) return err;
  const detail = `${what}: ${describeError(err)}`;
  if (httpStatusOf(err) === 429) {
    const header = (err as { headers?: Record<string, string | undefined> }).headers?.['retry-after'];
    return new RetryAfter(retryAfterMs(header), detail);
  }
  return new TemporaryError(detail, { cause: err });
}

/**
 * Runs one API call; a failure is thrown as {@link toReconcileError} says.
 * @param what the request in words, e.g. `reading Secret ns/name`
 */
export async function apiCall<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw toReconcileError(what, err);
  }
}

/**
 * Like {@link apiCall}, but a 404 Not Found resolves to `undefined` (a missing object is
 * an answer, not a failure).
 */
export async function readOrUndefined<T>(what: string, call: () => Promise<T>): Promise<T | undefined> {
  try {
    return await call();
  } catch (err) {
    if (httpStatusOf(err) === 404) return undefined;
    throw toReconcileError(what, err);
  }
}
