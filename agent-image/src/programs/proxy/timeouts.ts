/**
 * Per-connection timeouts the proxy enforces itself, on every path a client socket takes.
 *
 * Node arms `headersTimeout` and `requestTimeout` only for connections of an `http.Server`
 * that `listen()`s (lib/_http_server.js: the connection list and its checking interval are
 * set up on 'listening'); the proxy hands every parsed connection to its server with
 * `emit('connection')` (after the first-byte sniff, a CONNECT or a TLS handshake), so
 * Node's header timeout never ran, and `socket.setTimeout` is an idle timer that a client
 * sending a byte every few seconds resets for ever (slowloris). So each connection has a
 * phase, and one sweep a second checks deadlines that bytes do not extend:
 *
 * - `handshake`: from accept, or from the CONNECT 200, until the first byte decided the
 *   protocol and a TLS handshake (if any) finished: `handshakeTimeoutMs`.
 * - `head`: a request head is awaited: `headersTimeoutMs` from the hand-off to the HTTP
 *   parser, or from the first byte read on an idle keep-alive connection (seen within one
 *   sweep: the deadline is late by at most `intervalMs`).
 * - `idle`: keep-alive between requests, nothing read: `keepAliveTimeoutMs`.
 * - `busy`: a request, CONNECT or upgrade in flight: closed after `idleTimeoutMs` with no
 *   byte read or written (an idle timer, as a download or an upload is progress).
 *
 * Bytes are counted on the raw TCP socket (`bytesRead`, `bytesWritten`), which counts TLS
 * records too, so one rule covers plain, tunnelled and intercepted connections.
 *
 * At the connection limit, the server evicts the connection that has waited longest
 * without a request in flight ({@link ConnectionTimeouts.evictable}) rather than refusing
 * the new one: connections that send nothing useful cannot lock new clients out.
 */

/** Where a connection is in its life (see the module comment). */
export type ConnectionPhase = 'handshake' | 'head' | 'idle' | 'busy';

/** Why the proxy closed a client connection itself: a metric label and a log field. */
export type CloseReason = 'handshake_timeout' | 'headers_timeout' | 'keep_alive_timeout' | 'idle_timeout' | 'evicted';

/** The limits the sweep applies (config.ts ProxyLimits), in ms. */
export interface TimeoutLimits {
  handshakeTimeoutMs: number;
  headersTimeoutMs: number;
  keepAliveTimeoutMs: number;
  idleTimeoutMs: number;
}

/** The byte counters of a connection's raw socket (net.Socket `bytesRead`, `bytesWritten`). */
export interface ByteCounts {
  readonly bytesRead: number;
  readonly bytesWritten: number;
}

/** One tracked connection. Read-only outside this module. */
export class TrackedConnection {
  phase: ConnectionPhase = 'handshake';
  /** When the phase began (ms, the clock of {@link ConnectionTimeouts}). */
  since: number;
  /** Last time a byte was read or written (ms). */
  activeAt: number;
  /** Requests, CONNECTs or upgrades whose head has arrived and whose exchange is not over. */
  inFlight = 0;
  readonly counts: ByteCounts;
  #read: number;
  #total: number;
  /** bytesRead when the phase began. */
  #phaseRead: number;

  constructor(counts: ByteCounts, now: number) {
    this.counts = counts;
    this.since = now;
    this.activeAt = now;
    this.#read = counts.bytesRead;
    this.#total = counts.bytesRead + counts.bytesWritten;
    this.#phaseRead = counts.bytesRead;
  }

  /** Bytes read since the phase began (a busy connection: its request body, if any). */
  get readInPhase(): number {
    return this.counts.bytesRead - this.#phaseRead;
  }

  /** The phase begins now (for {@link readInPhase}). */
  markPhase(): void {
    this.#phaseRead = this.counts.bytesRead;
  }

  /** Samples the counters: whether a byte was read since the last sample. */
  sample(now: number): boolean {
    const read = this.counts.bytesRead;
    const total = read + this.counts.bytesWritten;
    const readSome = read !== this.#read;
    if (total !== this.#total) this.activeAt = now;
    this.#read = read;
    this.#total = total;
    return readSome;
  }
}

export interface ConnectionTimeoutsOptions {
  limits: TimeoutLimits;
  /** Called once for a connection past its deadline; the caller closes it. */
  onExpire: (conn: TrackedConnection, reason: CloseReason) => void;
  /** Sweep period (ms; default 1000): deadlines are late by at most this. */
  intervalMs?: number;
  /** Called after every sweep (e.g. to flush a {@link CloseReport}). */
  afterSweep?: () => void;
  now?: () => number;
}

/** The phases and deadlines of every open client connection; see the module comment. */
export class ConnectionTimeouts {
  readonly #opts: ConnectionTimeoutsOptions;
  readonly #now: () => number;
  readonly #conns = new Set<TrackedConnection>();
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: ConnectionTimeoutsOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.#conns.size;
  }

  /** Starts the sweep (an unref'd interval: it never keeps the process alive). */
  start(): void {
    this.#timer ??= setInterval(() => {
      this.sweep();
      this.#opts.afterSweep?.();
    }, this.#opts.intervalMs ?? 1000).unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Tracks a new connection, in phase `handshake`. */
  track(counts: ByteCounts): TrackedConnection {
    const c = new TrackedConnection(counts, this.#now());
    this.#conns.add(c);
    return c;
  }

  /** Stops tracking (the socket closed). */
  untrack(conn: TrackedConnection): void {
    this.#conns.delete(conn);
  }

  /** Moves `conn` to `phase`; its deadline counts from now. */
  enter(conn: TrackedConnection, phase: ConnectionPhase): void {
    const now = this.#now();
    conn.sample(now);
    conn.markPhase();
    conn.phase = phase;
    conn.since = now;
  }

  /** A request head (or CONNECT, or upgrade) arrived: the connection is busy until {@link end}. */
  begin(conn: TrackedConnection): void {
    conn.inFlight++;
    if (conn.phase !== 'busy') this.enter(conn, 'busy');
  }

  /** An exchange is over; with none left in flight the connection is an idle keep-alive one. */
  end(conn: TrackedConnection): void {
    conn.inFlight = Math.max(0, conn.inFlight - 1);
    if (conn.inFlight === 0 && conn.phase === 'busy') this.enter(conn, 'idle');
  }

  /**
   * The connection to close to make room for a new one: the one without a request in
   * flight (handshake, head or idle) whose phase began longest ago. When every connection
   * has a request in flight, the slowest uploader: of the busy connections that have been
   * busy for at least `headersTimeoutMs` and have read bytes since (a request body), the
   * one with the lowest read rate. A body trickled a byte at a time holds a slot as surely
   * as a slow head, and its bytes keep the idle deadline away; a connection that read
   * nothing since its head (a long poll waiting on its upstream) is not taken. Undefined
   * when none qualifies.
   */
  evictable(): TrackedConnection | undefined {
    let oldest: TrackedConnection | undefined;
    for (const c of this.#conns) {
      if (c.phase === 'busy') continue;
      if (!oldest || c.since < oldest.since) oldest = c;
    }
    if (oldest) return oldest;
    const now = this.#now();
    let slowest: TrackedConnection | undefined;
    let slowestRate = Number.POSITIVE_INFINITY;
    for (const c of this.#conns) {
      const age = now - c.since;
      const read = c.readInPhase;
      if (age < this.#opts.limits.headersTimeoutMs || read <= 0) continue;
      const rate = read / age;
      if (rate < slowestRate) {
        slowest = c;
        slowestRate = rate;
      }
    }
    return slowest;
  }

  /** Checks every deadline once; `onExpire` for each connection past one (then untracked). */
  sweep(): void {
    const now = this.#now();
    const l = this.#opts.limits;
    const expired: Array<[TrackedConnection, CloseReason]> = [];
    for (const c of this.#conns) {
      const readSome = c.sample(now);
      switch (c.phase) {
        case 'handshake':
          if (now - c.since >= l.handshakeTimeoutMs) expired.push([c, 'handshake_timeout']);
          break;
        case 'head':
          if (now - c.since >= l.headersTimeoutMs) expired.push([c, 'headers_timeout']);
          break;
        case 'idle':
          // The next request began: its head must be complete within headersTimeoutMs.
          if (readSome) {
            c.phase = 'head';
            c.since = now;
            c.markPhase();
          } else if (now - c.since >= l.keepAliveTimeoutMs) {
            expired.push([c, 'keep_alive_timeout']);
          }
          break;
        case 'busy':
          if (now - c.activeAt >= l.idleTimeoutMs) expired.push([c, 'idle_timeout']);
          break;
      }
    }
    for (const [c, reason] of expired) {
      this.#conns.delete(c);
      this.#opts.onExpire(c, reason);
    }
  }
}

/**
 * Counts of closes by reason for a log that says each reason at most once per
 * `intervalMs`: the first close of a reason is logged at once, later ones are summed into
 * the next line (a flood of slow clients makes one line a minute, not one per client).
 */
export class CloseReport {
  readonly #intervalMs: number;
  readonly #write: (reason: CloseReason, closed: number) => void;
  readonly #now: () => number;
  readonly #pending = new Map<CloseReason, number>();
  readonly #lastAt = new Map<CloseReason, number>();

  /**
   * @param write one log line: `closed` connections for `reason` since the last line
   * @param intervalMs at most one line per reason in this time (ms)
   */
  constructor(write: (reason: CloseReason, closed: number) => void, intervalMs = 60_000, now: () => number = Date.now) {
    this.#write = write;
    this.#intervalMs = intervalMs;
    this.#now = now;
  }

  /** One close for `reason`: logged now unless a line for it was written within the interval. */
  note(reason: CloseReason): void {
    this.#pending.set(reason, (this.#pending.get(reason) ?? 0) + 1);
    this.flush();
  }

  /** Writes the pending counts of every reason whose interval has passed. */
  flush(): void {
    const now = this.#now();
    for (const [reason, closed] of this.#pending) {
      const last = this.#lastAt.get(reason);
      if (last !== undefined && now - last < this.#intervalMs) continue;
      this.#pending.delete(reason);
      this.#lastAt.set(reason, now);
      this.#write(reason, closed);
    }
  }
}
