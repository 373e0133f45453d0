/**
 * The egress proxy's listener: one port on 127.0.0.1 and ::1 (never the pod IP) for both
 * modes DESIGN.md flow 5 names.
 *
 * - Explicit (HTTPS_PROXY / HTTP_PROXY): `CONNECT host:port` (RFC 9110 section 9.3.6),
 *   then TLS (intercepted) or plain HTTP inside the tunnel; or absolute-form
 *   `GET http://host/path` requests (RFC 9112 section 3.2.2).
 * - Transparent (iptables REDIRECT): the connection arrives raw. The first byte decides:
 *   0x16 (a TLS handshake record, RFC 8446 section 5.1) is intercepted with the host from
 *   the ClientHello's server_name (RFC 6066 section 3; no SNI, no connection: Node has no
 *   SO_ORIGINAL_DST, so the name is all there is); anything else is parsed as HTTP and
 *   routed by its Host header. Transparent TLS is assumed to be for port 443 and plain
 *   HTTP for the Host header's port (default 80).
 *
 * Every parsed request goes through one `http.Server` (intercepted TLS sockets are
 * emitted into it), HTTP/1.1 only: ALPN offers `http/1.1` alone. The policy check runs
 * before any certificate is minted: a CONNECT or an SNI for a host that is not allowed is
 * refused without a leaf.
 *
 * Fail closed: until `setRuntime` (config, CA and every credential loaded), every request
 * and CONNECT is answered 503 and every TLS connection is closed. Limits (config.ts
 * ProxyLimits): concurrent connections, TLS handshake time, header size and time, idle
 * time, upstream connect time. The time limits are enforced by timeouts.ts on every path
 * (Node's own header timeout does not run for connections handed to a server that does not
 * listen); at the connection limit the longest-waiting connection with no request in
 * flight is closed to make room, so slow or silent clients cannot lock new ones out.
 */
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../lib/log.ts';
import { Auditor, auditPath, Trail, type AuditRecord, type Mode } from './audit.ts';
import type { LeafCertificates } from './ca.ts';
import type { ProxyLimits } from './config.ts';
import { checkConnect, parserError, refusalFields, sniCheck, timeoutLimit } from './admit.ts';
import { asRefusal, decideRequest, Refusal, type Decided, type Target } from './decide.ts';
import { forwardRequest, forwardUpgrade, rawDeny, writeDeny, type ForwardContext } from './forward.ts';
import { field, pairs } from './headers.ts';
import type { ProxyMetrics } from './metrics.ts';
import type { Allowlist, CanonicalHost } from './policy.ts';
import { shorten, type CredentialSet } from './swap.ts';
import { CloseReport, ConnectionTimeouts, type CloseReason, type TrackedConnection } from './timeouts.ts';
import { UpstreamPool } from './upstream.ts';

/** Everything loaded: the proxy serves once it has one. */
export interface ProxyRuntime {
  allowlist: Allowlist;
  allowCidrs: readonly string[];
  credentials: CredentialSet<CanonicalHost>;
  leaves: LeafCertificates;
  /** Upstream TLS context (upstream.ts `upstreamSecureContext`). */
  upstreamContext: tls.SecureContext;
}

interface Conn {
  id: number;
  mode: Mode;
  tls: boolean;
  bound?: Target;
  sni?: CanonicalHost;
  pool?: UpstreamPool;
  /** The client connection's phase and deadlines (timeouts.ts). */
  clock?: TrackedConnection;
}

export interface EgressProxyOptions {
  log: Logger;
  metrics: ProxyMetrics;
  auditor: Auditor;
  limits: ProxyLimits;
  /** Ports of this process (listener, health): never dialed on loopback. Filled in by `listen`. */
  ownPorts: Set<number>;
}

const TLS_HANDSHAKE = 0x16;



/**
 * The listener and every connection on it (see the module comment). `listen`, then
 * `setRuntime` once everything is loaded; `close` on SIGTERM.
 */
export class EgressProxy {
  readonly #opts: EgressProxyOptions;
  readonly #http: http.Server;
  readonly #listeners: net.Server[] = [];
  readonly #sockets = new Set<net.Socket>();
  readonly #conns = new WeakMap<object, Conn>();
  readonly #timeouts: ConnectionTimeouts;
  readonly #rawOf = new WeakMap<TrackedConnection, net.Socket>();
  readonly #closeReport: CloseReport;
  /** A context with no certificate: a handshake that never reaches SNICallback (no SNI) fails. */
  readonly #noCertificate = tls.createSecureContext({});
  #runtime: ProxyRuntime | undefined;
  #notReady = 'starting: config, egress CA and credentials not loaded yet';
  #nextId = 1;

  constructor(opts: EgressProxyOptions) {
    this.#opts = opts;
    const l = opts.limits;
    this.#http = http.createServer({
      maxHeaderSize: l.maxHeaderBytes,
      // Host is checked by decide.ts, so a missing one is audited like any refusal.
      requireHostHeader: false,
      joinDuplicateHeaders: false,
      insecureHTTPParser: false,
      // Node's headersTimeout and requestTimeout never run here (this server does not
      // listen; timeouts.ts enforces the limits). keepAliveTimeout still closes an idle
      // keep-alive socket and tells clients (`Keep-Alive: timeout=N`) when it will.
      requestTimeout: 0,
      keepAliveTimeout: l.keepAliveTimeoutMs,
    });
    this.#closeReport = new CloseReport((reason, closed) =>
      opts.log.warn({ reason, closed, limitMs: timeoutLimit(l, reason) }, 'egress proxy: closed client connections that sent too little in time (at most one line per reason a minute)'),
    );
    this.#timeouts = new ConnectionTimeouts({
      limits: l,
      onExpire: (clock, reason) => this.#expire(clock, reason),
      afterSweep: () => this.#closeReport.flush(),
    });
    this.#http.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => this.#guard(req.socket, () => this.#onRequest(req, res)));
    this.#http.on('connect', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.#guard(socket, () => this.#onConnect(req, socket, head)));
    this.#http.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.#guard(socket, () => this.#onUpgrade(req, socket, head)));
    this.#http.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.#guard(socket, () => this.#onClientError(err, socket)));
  }

  /**
   * Runs a connection's handler; an exception closes that connection (nothing was
   * forwarded by a handler that threw before forwarding) instead of the process, whose
   * other tunnels would go with it.
   */
  #guard(socket: Duplex, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#opts.log.error({ err: (err as Error).name, message: this.#logText((err as Error).message) }, 'egress proxy: handler failed; connection closed');
      socket.destroy();
    }
  }

  /** Closes a connection for `reason`: counted, and logged at most once a minute per reason. */
  #closeFor(raw: net.Socket, reason: CloseReason): void {
    this.#opts.metrics.connectionsClosed.inc({ reason });
    this.#closeReport.note(reason);
    raw.destroy();
  }

  #expire(clock: TrackedConnection, reason: CloseReason): void {
    const raw = this.#rawOf.get(clock);
    if (raw) this.#closeFor(raw, reason);
  }

  /** Serve: everything is loaded and valid. */
  setRuntime(runtime: ProxyRuntime): void {
    this.#runtime = runtime;
  }

  /** Answer 503 (the reason goes into the body and /readyz; never a value). */
  setNotReady(reason: string): void {
    this.#runtime = undefined;
    this.#notReady = reason;
  }

  get ready(): boolean {
    return this.#runtime !== undefined;
  }

  get notReadyReason(): string | undefined {
    return this.#runtime ? undefined : this.#notReady;
  }

  /**
   * Listens on 127.0.0.1 and ::1 (::1 skipped with a warning where IPv6 is off).
   * @param port 0 picks a free port (the same on both addresses)
   * @returns the bound port
   * @throws when the port is taken
   */
  async listen(port: number): Promise<number> {
    for (let attempt = 0; ; attempt++) {
      const v4 = await this.#listenOne('127.0.0.1', port);
      const bound = (v4.address() as net.AddressInfo).port;
      try {
        const v6 = await this.#listenOne('::1', bound);
        this.#listeners.push(v4, v6);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EADDRINUSE' && port === 0 && attempt < 5) {
          await new Promise<void>((r) => v4.close(() => r()));
          continue;
        }
        if (code !== 'EADDRNOTAVAIL' && code !== 'EAFNOSUPPORT' && code !== 'EADDRINUSE') throw err;
        this.#opts.log.warn({ code }, 'egress proxy: ::1 is not available; listening on 127.0.0.1 only');
        this.#listeners.push(v4);
      }
      this.#opts.ownPorts.add(bound);
      this.#timeouts.start();
      return bound;
    }
  }

  #listenOne(host: string, port: number): Promise<net.Server> {
    // noDelay: a response head and body go out as separate small writes; with Nagle on,
    // each waits for the peer's delayed ACK (40 ms on Linux).
    const server = net.createServer({ allowHalfOpen: false, noDelay: true }, (s) => this.#guard(s, () => this.#onAccept(s)));
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port, ipv6Only: host === '::1', exclusive: true }, () => {
        server.off('error', reject);
        resolve(server);
      });
    });
  }

  /** Stops accepting, lets requests in flight finish for up to `graceMs`, then closes the rest. */
  async close(graceMs = 5_000): Promise<void> {
    const closed = Promise.all(this.#listeners.map((s) => new Promise<void>((r) => s.close(() => r()))));
    // Connections with nothing in flight go now (Node's closeIdleConnections knows only
    // connections of a listening server); the rest get the grace period.
    for (const s of this.#sockets) if (this.#conns.get(s)?.clock?.phase !== 'busy') s.destroy();
    const deadline = Date.now() + graceMs;
    while (this.#sockets.size && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const s of this.#sockets) s.destroy();
    this.#timeouts.stop();
    await closed;
    this.#http.close();
  }

  // --- connections -------------------------------------------------------------------

  #onAccept(socket: net.Socket): void {
    const { limits, metrics } = this.#opts;
    if (this.#sockets.size >= limits.maxConnections) {
      // Make room by closing the connection that has waited longest with no request in
      // flight; refuse the new one only when every connection is doing work.
      const victim = this.#timeouts.evictable();
      const raw = victim && this.#rawOf.get(victim);
      if (!victim || !raw) {
        metrics.connectionsRefused.inc({ reason: 'limit' });
        socket.destroy();
        return;
      }
      this.#timeouts.untrack(victim);
      this.#closeFor(raw, 'evicted');
      // The victim's 'close' (which updates the count) comes later; it is out of the set now.
      this.#sockets.delete(raw);
    }
    this.#sockets.add(socket);
    metrics.connections.set(this.#sockets.size);
    const clock = this.#timeouts.track(socket);
    this.#rawOf.set(clock, socket);
    const conn: Conn = { id: this.#nextId++, mode: 'explicit', tls: false, clock };
    this.#conns.set(socket, conn);
    socket.on('error', () => undefined);
    socket.once('close', () => {
      this.#sockets.delete(socket);
      this.#timeouts.untrack(clock);
      metrics.connections.set(this.#sockets.size);
      conn.pool?.close();
    });
    this.#sniff(socket, conn, false);
  }

  /**
   * Reads the first byte without consuming it (read + unshift): TLS is intercepted, the
   * rest goes to the HTTP parser. `tunnel`: the socket is inside a CONNECT.
   */
  #sniff(socket: net.Socket, conn: Conn, tunnel: boolean): void {
    const onReadable = () =>
      this.#guard(socket, () => {
        const b = socket.read(1) as Buffer | null;
        if (b === null) return;
        socket.off('readable', onReadable);
        socket.unshift(b);
        if (b[0] === TLS_HANDSHAKE) {
          if (!tunnel) conn.mode = 'transparent';
          this.#intercept(socket, conn).catch((err: Error) => {
            this.#opts.log.error({ err: err.name, message: this.#logText(err.message) }, 'egress proxy: TLS interception failed; connection closed');
            socket.destroy();
          });
        } else {
          // Plain HTTP: a request head is due within headersTimeoutMs.
          if (conn.clock) this.#timeouts.enter(conn.clock, 'head');
          this.#http.emit('connection', socket);
        }
      });
    socket.on('readable', onReadable);
  }

  #connOf(socket: object): Conn {
    let conn = this.#conns.get(socket);
    if (!conn) {
      conn = { id: this.#nextId++, mode: 'explicit', tls: false };
      this.#conns.set(socket, conn);
    }
    return conn;
  }

  #pool(conn: Conn, rt: ProxyRuntime): UpstreamPool {
    conn.pool ??= new UpstreamPool({
      allowCidrs: rt.allowCidrs,
      secureContext: rt.upstreamContext,
      ownPorts: this.#opts.ownPorts,
      connectTimeoutMs: this.#opts.limits.upstreamConnectTimeoutMs,
      idleTimeoutMs: this.#opts.limits.idleTimeoutMs,
      maxHeaderBytes: this.#opts.limits.maxHeaderBytes,
    });
    return conn.pool;
  }

  /** An error message for a log line: credential values redacted (every form), then cut to 200 characters. */
  #logText(message: string): string {
    return shorten(this.#runtime ? this.#runtime.credentials.redact(message) : message, 200);
  }

  #audit(rec: AuditRecord): void {
    this.#opts.auditor.write(rec);
    this.#opts.metrics.decisions.inc({ decision: rec.decision, reason: rec.reason, mode: rec.mode });
    if (rec.durationMs !== undefined) this.#opts.metrics.latency.observe({ decision: rec.decision }, rec.durationMs / 1000);
  }

  #trail(base: AuditRecord): Trail {
    return new Trail(base, (rec) => this.#audit(rec));
  }

  // --- TLS interception ----------------------------------------------------------------

  /**
   * Terminates the agent's TLS. Bound (CONNECT): the leaf is for the CONNECT target and
   * an SNI must name the same host. Transparent: the SNI names the host; it must be a DNS
   * name the allowlist allows on 443 before a leaf is minted; no SNI fails the handshake.
   */
  async #intercept(raw: net.Socket, conn: Conn): Promise<void> {
    const rt = this.#runtime;
    const base = (): AuditRecord => ({ mode: conn.mode, conn: conn.id, method: 'TLS', decision: 'deny', reason: 'tls_handshake' });
    if (!rt) {
      this.#audit({ ...base(), reason: 'not_ready', message: this.#notReady });
      this.#opts.metrics.connectionsRefused.inc({ reason: 'not_ready' });
      raw.destroy();
      return;
    }
    let refusal: Refusal | undefined;
    let context = this.#noCertificate;
    if (conn.bound) {
      try {
        context = await rt.leaves.context(conn.bound.host, conn.bound.port);
      } catch (err) {
        this.#audit({ ...base(), host: conn.bound.host.host, port: conn.bound.port, reason: 'policy_error', message: (err as Error).message });
        raw.destroy();
        return;
      }
    }
    const sniCallback = sniCheck(conn, rt, (r) => (refusal = r));
    const socket = new tls.TLSSocket(raw, {
      isServer: true,
      secureContext: context,
      SNICallback: sniCallback,
      ALPNProtocols: ['http/1.1'],
      requestCert: false,
    });
    this.#conns.set(socket, conn);
    socket.once('secure', () => {
      conn.tls = true;
      if (conn.clock) this.#timeouts.enter(conn.clock, 'head');
      this.#http.emit('connection', socket);
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (conn.tls) return; // after the handshake: the HTTP server's clientError reports it
      const noSni = !conn.sni && !conn.bound;
      const r = refusal ?? (noSni ? new Refusal(0, 'no_sni', 'TLS without SNI: a transparent connection is identified by its server_name (RFC 6066 section 3) alone') : new Refusal(0, 'tls_handshake', `TLS handshake failed (${err.code ?? 'error'})`));
      const target = conn.bound ?? (conn.sni ? { host: conn.sni, port: 443 } : undefined);
      this.#audit({ ...base(), ...(target ? { host: target.host.host, port: target.port } : {}), reason: r.reason, message: r.message });
      socket.destroy();
    });
  }

  // --- CONNECT ---------------------------------------------------------------------------

  #onConnect(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const conn = this.#connOf(socket);
    // Busy while the target is checked and resolved; the tunnel then starts a new handshake phase.
    if (conn.clock) this.#timeouts.begin(conn.clock);
    const trail = this.#trail({ mode: 'connect', conn: conn.id, method: 'CONNECT', decision: 'deny', reason: 'policy_error' });
    socket.on('error', () => undefined);
    const deny = (r: Refusal, target?: Target) => {
      trail.done({ decision: 'deny', reason: r.reason, status: r.status, message: r.message, ...refusalFields(r), ...(target ? { host: target.host.host, port: target.port } : {}) });
      rawDeny(socket, r.status, r.reason, this.#runtime ? this.#runtime.credentials.scrubValue(r.message) : r.message);
    };
    const rt = this.#runtime;
    if (!rt) return deny(new Refusal(503, 'not_ready', this.#notReady));
    if (conn.tls || conn.bound) return deny(new Refusal(400, 'bad_request', 'CONNECT inside a tunnel'));
    const checked = checkConnect(req, rt);
    if (!checked.ok) return deny(checked.refusal, checked.target);
    const { target, rule } = checked;
    const bound = target;
    // Resolve and vet now, so a refused address is answered before the tunnel opens.
    this.#pool(conn, rt)
      .leg(bound.host, bound.port, true)
      .then(
        () => {
          if (socket.destroyed) return;
          conn.mode = 'connect';
          conn.bound = bound;
          trail.done({ decision: 'allow', reason: 'ok', status: 200, host: bound.host.host, port: bound.port, rule });
          socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
          const raw = socket as net.Socket;
          if (head.length) raw.unshift(head);
          if (conn.clock) {
            conn.clock.inFlight = 0;
            this.#timeouts.enter(conn.clock, 'handshake');
          }
          this.#sniff(raw, conn, true);
        },
        (err) => deny(asRefusal(err), bound),
      );
  }

  // --- requests --------------------------------------------------------------------------

  #forwardContext(conn: Conn, rt: ProxyRuntime): ForwardContext {
    return { credentials: rt.credentials, pool: this.#pool(conn, rt), limits: this.#opts.limits, metrics: this.#opts.metrics, tls: conn.tls };
  }

  #onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const conn = this.#connOf(req.socket);
    const clock = conn.clock;
    if (clock) {
      this.#timeouts.begin(clock);
      res.once('close', () => this.#timeouts.end(clock));
    }
    req.on('error', () => undefined);
    res.on('error', () => undefined);
    const trail = this.#trail({ mode: conn.mode, conn: conn.id, method: req.method ?? '', path: auditPath(req.url ?? ''), decision: 'deny', reason: 'policy_error' });
    const rt = this.#runtime;
    if (!rt) {
      trail.done({ reason: 'not_ready', status: 503, message: this.#notReady });
      writeDeny(res, 503, 'not_ready', this.#notReady, true);
      return;
    }
    let d;
    try {
      d = decideRequest(conn, { method: req.method ?? 'GET', url: req.url ?? '', httpVersion: req.httpVersion, rawHeaders: req.rawHeaders }, rt);
    } catch (err) {
      const r = asRefusal(err);
      if (!conn.bound) trail.rec.mode = /^[a-z][a-z0-9+.-]*:\/\//i.test(req.url ?? '') ? 'explicit' : 'transparent';
      trail.done({ reason: r.reason, status: r.status, message: r.message, ...refusalFields(r) });
      writeDeny(res, r.status, r.reason, rt.credentials.scrubValue(r.message), true);
      return;
    }
    this.#recordDecision(conn, trail, d);
    forwardRequest(this.#forwardContext(conn, rt), req, res, d, trail);
  }

  #onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const conn = this.#connOf(socket);
    // Busy for good: the socket is a WebSocket pipe or closes after the refusal.
    if (conn.clock) this.#timeouts.begin(conn.clock);
    socket.on('error', () => undefined);
    const trail = this.#trail({ mode: conn.mode, conn: conn.id, method: req.method ?? '', path: auditPath(req.url ?? ''), decision: 'deny', reason: 'policy_error', upgrade: true });
    const deny = (r: Refusal) => {
      trail.done({ reason: r.reason, status: r.status, message: r.message, ...refusalFields(r) });
      rawDeny(socket, r.status, r.reason, this.#runtime ? this.#runtime.credentials.scrubValue(r.message) : r.message);
    };
    const rt = this.#runtime;
    if (!rt) return deny(new Refusal(503, 'not_ready', this.#notReady));
    const upgrade = field(pairs(req.rawHeaders), 'upgrade') ?? '';
    if (req.method !== 'GET' || upgrade.trim().toLowerCase() !== 'websocket') {
      return deny(new Refusal(400, 'bad_upgrade', 'only WebSocket upgrades (GET, Upgrade: websocket) are forwarded; HTTP/1.1 only'));
    }
    let d;
    try {
      d = decideRequest(conn, { method: 'GET', url: req.url ?? '', httpVersion: req.httpVersion, rawHeaders: req.rawHeaders, upgrade: true }, rt);
    } catch (err) {
      return deny(asRefusal(err));
    }
    this.#recordDecision(conn, trail, d);
    forwardUpgrade(this.#forwardContext(conn, rt), socket, head, d, trail);
  }

  /** Fills a request's audit record from an allowed decision and counts its swap. */
  #recordDecision(conn: Conn, trail: Trail, d: Decided): void {
    if (!conn.bound) trail.rec.mode = d.absoluteForm ? 'explicit' : 'transparent';
    Object.assign(trail.rec, { host: d.target.host.host, port: d.target.port, rule: d.rule, path: auditPath(d.path) });
    if (d.credential) trail.rec.credential = d.credential;
    if (d.swapped) {
      trail.rec.location = d.swapped.location;
      this.#opts.metrics.swaps.inc({ credential: d.swapped.credential, location: d.swapped.location });
    }
  }

  #onClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const conn = this.#connOf(socket);
    const { status, reason } = parserError(err);
    // err.rawPacket holds the request bytes (maybe a credential): never logged.
    this.#audit({ mode: conn.mode, conn: conn.id, decision: 'deny', reason, status, message: `HTTP parse error ${err.code ?? ''}`.trim() });
    rawDeny(socket, status, reason, `the request was refused by the HTTP parser (${err.code ?? 'error'})`);
  }
}

