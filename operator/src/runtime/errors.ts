/**
 * Typed reconcile errors (the kopf model). The work queue decides what to do by type:
 *
 * - `TerminalError`: the input is wrong and retrying cannot help (a bad reference, an
 *   invalid spec the API server let through). Shown in a condition; not retried until
 *   the object changes.
 * - `TemporaryError`: retried with the queue's exponential backoff.
 * - `RetryAfter`: retried after exactly `delayMs` (the wait is known, e.g. a 429 with
 *   Retry-After).
 *
 * Any other thrown value counts as temporary.
 */
export class TerminalError extends Error {
  override readonly name = 'TerminalError';
  /** CamelCase reason for the condition that shows this error. */
  readonly reason: string;
  constructor(reason: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.reason = reason;
  }
}

export class TemporaryError extends Error {
  override readonly name = 'TemporaryError';
}

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
