/**
 * A small Matrix client-server API client: the handful of endpoints the bridge uses, over
 * Node's fetch, with the access token in the `Authorization: Bearer` header (never in a
 * query string, so no URL the bridge could log carries it).
 *
 * Why not matrix-js-sdk: its sync loop stores the next sync token *before* it processes a
 * response and emits events without awaiting the listeners (src/sync.ts: "set the sync
 * token NOW *before* processing the events"), so it cannot persist the token only after an
 * event is safely in the inbox; on Node it keeps every room's timeline in memory, and it
 * pulls in the crypto WASM module the bridge does not use. The bridge needs six endpoints.
 *
 * Protocol facts: Matrix client-server API v1.x (spec.matrix.org/latest/client-server-api):
 * - errors are `{errcode, error}` JSON; 429 `M_LIMIT_EXCEEDED` carries `retry_after_ms`
 *   (and, since v1.10, a `Retry-After` header in seconds);
 * - `PUT /rooms/{roomId}/send/{eventType}/{txnId}` is idempotent per access token and
 *   transaction id: a retry with the same txnId returns the first event id;
 * - `GET /sync?filter=<JSON>&since=<token>&timeout=<ms>` long-polls; `filter` may be an
 *   inline JSON filter definition.
 */
import { setTimeout as sleep } from 'node:timers/promises';

export const CLIENT_API = '/_matrix/client/v3';

/** An error answer of the homeserver (or a transport failure: status 0). */
export class MatrixError extends Error {
  override name = 'MatrixError';
  /** HTTP status; 0 when the homeserver could not be reached or the request timed out. */
  readonly status: number;
  /** The Matrix `errcode` (M_FORBIDDEN, M_LIMIT_EXCEEDED, ...), when the homeserver sent one. */
  readonly errcode: string | undefined;
  /** How long the homeserver asked us to wait (ms), from `retry_after_ms` or `Retry-After`. */
  readonly retryAfterMs: number | undefined;

  constructor(message: string, status: number, errcode?: string, retryAfterMs?: number) {
    super(message);
    this.status = status;
    this.errcode = errcode;
    this.retryAfterMs = retryAfterMs;
  }

  /** Worth retrying: transport failures, rate limits and server errors. */
  get transient(): boolean {
    return this.status === 0 || this.status === 429 || this.status >= 500;
  }
}

/** A room event as /sync, /messages and /event return it (client format). */
export interface MatrixEvent {
  event_id: string;
  type: string;
  sender: string;
  origin_server_ts: number;
  content: Record<string, unknown>;
  state_key?: string;
  /** Room version 1..10: the redacted event id of an m.room.redaction (v11 moved it into content). */
  redacts?: string;
  unsigned?: { redacted_because?: unknown; transaction_id?: string; [k: string]: unknown };
}

/** A stripped state event of an invite (`rooms.invite[room].invite_state.events`). */
export interface StrippedStateEvent {
  type: string;
  sender: string;
  state_key: string;
  content: Record<string, unknown>;
}

export interface JoinedRoomSync {
  /** State before the timeline (only the types the filter asks for). */
  state?: { events?: MatrixEvent[] };
  timeline?: { events?: MatrixEvent[]; limited?: boolean; prev_batch?: string };
}

export interface SyncResponse {
  next_batch: string;
  rooms?: {
    join?: Record<string, JoinedRoomSync>;
    invite?: Record<string, { invite_state?: { events?: StrippedStateEvent[] } }>;
    leave?: Record<string, unknown>;
  };
}

export interface MessagesResponse {
  chunk: MatrixEvent[];
  start: string;
  end?: string;
}

export interface MatrixClientOptions {
  /** Base URL of the homeserver, e.g. https://matrix.example.org (no trailing /_matrix). */
  homeserverUrl: string;
  /** The access token; called again after the homeserver answers 401 (a rotated Secret). */
  accessToken: () => Promise<string>;
  /** Per-request timeout (ms) for everything but /sync's long poll. Default 30 s. */
  requestTimeoutMs?: number;
}

/** Cap on how long a rate limit makes `withRetry` wait in one go (ms). */
const MAX_RETRY_WAIT_MS = 60_000;

export class MatrixClient {
  readonly homeserverUrl: string;
  private readonly tokenSource: () => Promise<string>;
  private token: string | undefined;
  private readonly requestTimeoutMs: number;

  constructor(opts: MatrixClientOptions) {
    this.homeserverUrl = opts.homeserverUrl.replace(/\/+$/, '');
    this.tokenSource = opts.accessToken;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
  }

  /**
   * One client-server API call. `path` is below /_matrix/client/v3 and already escaped.
   * @throws MatrixError (status 0 for transport failures and timeouts; the message names
   *   the method and path, never a query value or the token)
   */
  async request<T>(
    method: 'GET' | 'POST' | 'PUT',
    path: string,
    opts: { query?: Record<string, string | undefined>; body?: unknown; timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<T> {
    this.token ??= await this.tokenSource();
    const url = new URL(`${this.homeserverUrl}${CLIENT_API}${path}`);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    const what = `${method} ${CLIENT_API}${path}`;
    const timeout = AbortSignal.timeout(opts.timeoutMs ?? this.requestTimeoutMs);
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: { authorization: `Bearer ${this.token}`, ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
        signal: opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout,
      });
    } catch (err) {
      if (opts.signal?.aborted) throw err;
      const cause = (err as Error & { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
      throw new MatrixError(`${what}: homeserver unreachable (${cause})`, 0);
    }
    const text = await res.text().catch(() => '');
    if (res.ok) {
      try {
        return (text ? JSON.parse(text) : {}) as T;
      } catch {
        throw new MatrixError(`${what}: the homeserver answered ${res.status} with a body that is not JSON`, res.status);
      }
    }
    let body: { errcode?: string; error?: string; retry_after_ms?: number } = {};
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      // a proxy's HTML error page: keep the status only
    }
    const header = Number(res.headers.get('retry-after'));
    const retryAfterMs = typeof body.retry_after_ms === 'number' ? body.retry_after_ms : Number.isFinite(header) && header > 0 ? header * 1000 : undefined;
    if (res.status === 401) this.token = undefined; // read the (maybe rotated) token again next time
    throw new MatrixError(`${what}: ${res.status} ${body.errcode ?? ''} ${body.error ?? ''}`.trim(), res.status, body.errcode, retryAfterMs);
  }

  /** `GET /account/whoami` → the user id the token belongs to. */
  async whoami(signal?: AbortSignal): Promise<string> {
    return (await this.request<{ user_id: string }>('GET', '/account/whoami', { signal })).user_id;
  }

  /**
   * `GET /sync`. `timeoutMs` is the server's long-poll time; the request itself may take
   * that long plus `requestTimeoutMs`.
   */
  sync(opts: { since?: string | undefined; filter: object; timeoutMs: number; signal?: AbortSignal }): Promise<SyncResponse> {
    return this.request<SyncResponse>('GET', '/sync', {
      query: { filter: JSON.stringify(opts.filter), since: opts.since, timeout: String(opts.timeoutMs), set_presence: 'offline' },
      timeoutMs: opts.timeoutMs + this.requestTimeoutMs,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
  }

  /** `GET /rooms/{roomId}/messages` (pagination; `from`/`to` accept sync tokens). */
  messages(roomId: string, opts: { from: string; to?: string | undefined; dir: 'b' | 'f'; limit: number; filter?: object; signal?: AbortSignal }): Promise<MessagesResponse> {
    return this.request<MessagesResponse>('GET', `/rooms/${enc(roomId)}/messages`, {
      query: { from: opts.from, to: opts.to, dir: opts.dir, limit: String(opts.limit), filter: opts.filter ? JSON.stringify(opts.filter) : undefined },
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
  }

  /** `GET /rooms/{roomId}/event/{eventId}`. */
  event(roomId: string, eventId: string, signal?: AbortSignal): Promise<MatrixEvent> {
    return this.request<MatrixEvent>('GET', `/rooms/${enc(roomId)}/event/${enc(eventId)}`, signal ? { signal } : {});
  }

  /** `POST /join/{roomIdOrAlias}` → the room id. Joining a room already joined is a no-op. */
  async join(roomIdOrAlias: string, signal?: AbortSignal): Promise<string> {
    return (await this.request<{ room_id: string }>('POST', `/join/${enc(roomIdOrAlias)}`, { body: {}, ...(signal ? { signal } : {}) })).room_id;
  }

  /** `POST /rooms/{roomId}/leave` (also rejects an invite). */
  async leave(roomId: string, signal?: AbortSignal): Promise<void> {
    await this.request('POST', `/rooms/${enc(roomId)}/leave`, { body: {}, ...(signal ? { signal } : {}) });
  }

  /** `PUT /rooms/{roomId}/send/{type}/{txnId}` → the event id (idempotent per txnId). */
  async send(roomId: string, type: string, content: object, txnId: string, signal?: AbortSignal): Promise<string> {
    const path = `/rooms/${enc(roomId)}/send/${enc(type)}/${enc(txnId)}`;
    return (await this.request<{ event_id: string }>('PUT', path, { body: content, ...(signal ? { signal } : {}) })).event_id;
  }
}

function enc(s: string): string {
  return encodeURIComponent(s);
}

/**
 * Runs `fn` until it succeeds, retrying transient failures (transport, 429, 5xx) with a
 * doubling delay from `initialMs` (capped at `maxMs`), or exactly the homeserver's
 * `retry_after_ms` when it sent one. Gives up after `attempts` tries or when `signal` aborts.
 * @throws the last MatrixError, or any non-transient error at once
 */
export async function withRetry<T>(
  fn: () => Promise<T>,
  opts: { attempts: number; initialMs?: number; maxMs?: number; signal?: AbortSignal; onRetry?: (err: MatrixError, waitMs: number) => void },
): Promise<T> {
  let delay = opts.initialMs ?? 500;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof MatrixError) || !err.transient || attempt >= opts.attempts || opts.signal?.aborted) throw err;
      const waitMs = err.retryAfterMs !== undefined ? Math.min(err.retryAfterMs, MAX_RETRY_WAIT_MS) : delay;
      opts.onRetry?.(err, waitMs);
      await sleep(waitMs, undefined, opts.signal ? { signal: opts.signal } : {});
      delay = Math.min(delay * 2, opts.maxMs ?? 30_000);
    }
  }
}
