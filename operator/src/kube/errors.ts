import { RetryAfter, TemporaryError, describeError, httpStatusOf } from '../runtime/errors.ts';

/** Wait used for a 429 whose Retry-After header is missing or not a number of seconds, in ms. */
const DEFAULT_RETRY_AFTER_MS = 1_000;

/**
 * The reconcile error an API failure stands for, so the controller (runtime/controller.ts)
 * handles it by type: a 429 Too Many Requests (API Priority and Fairness) becomes
 * `RetryAfter` with the delay of its Retry-After header (seconds, RFC 9110 section
 * 10.2.3; 1 s when absent); any other failure (5xx, 403, a transport error) becomes a
 * `TemporaryError` retried with backoff. The message is `<what>: <describeError>`, never
 * the response body (it may echo request data); the original error is the `cause`.
 */
export function toReconcileError(what: string, err: unknown): Error {
  if (err instanceof RetryAfter || err instanceof TemporaryError) return err;
  const detail = `${what}: ${describeError(err)}`;
  if (httpStatusOf(err) === 429) {
    const header = (err as { headers?: Record<string, string | undefined> }).headers?.['retry-after'];
    const seconds = Number(header);
    const delayMs = header !== undefined && Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : DEFAULT_RETRY_AFTER_MS;
    return new RetryAfter(delayMs, detail);
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
