/**
 * Typed reconcile errors (the kopf model). The controller (controller.ts) decides what to
 * do by type:
 *
 * - `TerminalError`: the input is wrong and retrying cannot help until it changes (an
 *   Agent spec only its owner can fix, a stored Agent the operator's schema refuses).
 *   The reconciler shows it in a condition first where it can; the key is not retried
 *   with backoff: it is looked at again when the object changes (its informer queues
 *   it) or at the controller's `terminalRecheckMs` (the resync backstop).
 * - `TemporaryError`: retried with the queue's exponential backoff (kube/errors.ts
 *   wraps a failed API call in one, its message naming the request).
 * - `RetryAfter`: retried after exactly `delayMs` (the wait is known: a 429 with
 *   Retry-After, kube/errors.ts).
 *
 * Any other thrown value is a bug: retried with backoff like a temporary one, and logged
 * as an error with its stack.
 */
/** The input is wrong; no hot retry (see above). `reason` is CamelCase, as a condition's. */
export class TerminalError extends Error {
  override readonly name = 'TerminalError';
  /** CamelCase reason for the condition that shows this error. */
  readonly reason: string;
  constructor(reason: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.reason = reason;
  }
}

/** A failure expected to pass (an API server restarting, a dropped connection): retry with backoff. */
export class TemporaryError extends Error {
  override readonly name = 'TemporaryError';
}

/** Retry after a known delay (`delayMs`), not the backoff's. */
export class RetryAfter extends Error {
  override readonly name = 'RetryAfter';
  /** Delay before the next attempt, in milliseconds. */
  readonly delayMs: number;
  constructor(delayMs: number, message = `retry after ${delayMs} ms`) {
    super(message);
    this.delayMs = delayMs;
  }
}

/** HTTP status of an error thrown by client-node (`ApiException.code`), if any. */
export function httpStatusOf(err: unknown): number | undefined {
  if (typeof err === 'object' && err !== null) {
    const e = err as { code?: unknown; statusCode?: unknown };
    if (typeof e.code === 'number') return e.code;
    if (typeof e.statusCode === 'number') return e.statusCode;
  }
  return undefined;
}

/** One line that describes an error without its body (which may echo request data). */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const status = httpStatusOf(err);
    const body = (err as { body?: unknown }).body;
    let detail = '';
    if (typeof body === 'string') {
      try {
        const parsed = JSON.parse(body) as { message?: unknown };
        if (typeof parsed.message === 'string') detail = `: ${parsed.message}`;
      } catch {
        // not a Status object
      }
    } else if (typeof body === 'object' && body !== null && typeof (body as { message?: unknown }).message === 'string') {
      detail = `: ${(body as { message: string }).message}`;
    }
    return status !== undefined ? `HTTP ${status}${detail || `: ${err.message.split('\n')[0]}`}` : err.message;
  }
  return String(err);
}
