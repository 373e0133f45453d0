/**
 * The proxy's DNS listener: under `egress.enforcement: iptables` egress-init redirects
 * UDP and TCP port 53 of every UID but the proxy's to it (PROXY_DNS_PORT on 127.0.0.1 and
 * ::1), so it is the pod's only DNS. What it answers is dns-policy.ts's decision:
 *
 * - an allowed or declared name (A, AAAA): the upstream resolver's addresses (the
 *   proxy's own resolv.conf nameservers, which its UID may reach), asked for exactly that
 *   absolute name, with their TTL (at most 300 s); another type for such a name: NOERROR
 *   without records (clients fall back to A/AAAA);
 * - every other name: NXDOMAIN, without any upstream query, and one audit line per name
 *   the client meant (search-list expansions of one name within AUDIT_WINDOW_MS share it).
 *
 * Input is bounded and checked before it is decoded (dns-packet, RFC 1035 section 4.1):
 * at most `maxQueryBytes` per message; exactly one question of class IN; opcode QUERY;
 * a message with QR set (a response) is dropped, never answered. A malformed message is
 * answered FORMERR when its header can be read (else dropped), logged once per kind and
 * counted; nothing a client or the upstream sends can throw out of the listener (an
 * answer is at most MAX_ANSWER_RECORDS records, so it always fits a TCP message). The
 * question is echoed byte for byte as it was asked. Upstream queries have a per-query
 * timeout and a cap on those in flight until the upstream settles (SERVFAIL beyond it).
 * Audit lines of denied names are rate-limited (AUDIT_LINES_PER_SECOND). TCP (RFC 1035
 * section 4.2.2, RFC 7766): 2-byte length prefix, queries answered in order, a connection
 * cap, an idle timeout, a lifetime cap and a cap on answers the client has not read. UDP
 * answers larger than the client's limit (512, or its EDNS size up to 1232, RFC 6891) are
 * sent truncated (TC set, no records) so it retries over TCP.
 */
import dgram from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import net from 'node:net';
import * as dnsPacket from 'dns-packet';
import type { Logger } from '../../lib/log.ts';
import type { Auditor } from './audit.ts';
import { decideName, type DnsPolicy, type DnsVerdict } from './dns-policy.ts';
import type { ProxyMetrics } from './metrics.ts';

/** Bounds of the DNS listener. */
export interface DnsLimits {
  /** Largest query message accepted, in bytes (UDP datagram or TCP message). */
  maxQueryBytes: number;
  /** Time one upstream query may take before the client gets SERVFAIL (ms). */
  upstreamTimeoutMs: number;
  /** Upstream queries in flight at once; beyond it SERVFAIL (`busy`). */
  maxInFlight: number;
  /** Open TCP connections; beyond it a new one is closed at accept. */
  maxTcpConnections: number;
  /** A TCP connection idle this long is closed (ms). */
  tcpIdleMs: number;
  /** Queries waiting for their answer on one TCP connection; beyond it the connection is closed. */
  maxTcpPending: number;
  /** Answers written but not yet taken by a TCP client, in bytes; beyond it (a client that does not read) the connection is closed. */
  maxTcpUnsentBytes: number;
  /** Longest life of one TCP connection (ms), however busy: a client trickling bytes cannot hold a slot. */
  tcpMaxLifetimeMs: number;
}

/** The bounds the proxy runs with (not configurable today). */
export const DEFAULT_DNS_LIMITS: DnsLimits = {
  maxQueryBytes: 512,
  upstreamTimeoutMs: 3_000,
  maxInFlight: 128,
  maxTcpConnections: 32,
  tcpIdleMs: 10_000,
  maxTcpPending: 16,
  maxTcpUnsentBytes: 64 * 1024,
  tcpMaxLifetimeMs: 60_000,
};

/** Same-name denials within this window share one audit line (a client's search expansions, its A and AAAA). */
export const AUDIT_WINDOW_MS = 30_000;
const AUDIT_MEMORY = 1024;
/** Longest TTL handed to the pod (s): a changed allowlist or address is seen within it. */
const MAX_TTL = 300;
/**
 * Most address records in one answer: an upstream's longer list is cut. 64 records of a
 * 253-character name stay under 20 KB, far inside a TCP message's 65,535 bytes.
 */
export const MAX_ANSWER_RECORDS = 64;
/** Audit lines of denied names per second at most (each distinct name otherwise writes one); the rest are counted and summed up in one line. */
export const AUDIT_LINES_PER_SECOND = 20;
/** Internal errors (not the client's input) logged at most this often (ms); each is counted. */
const INTERNAL_LOG_INTERVAL_MS = 60_000;

/** The record types answered from upstream. */
type AddressType = 'A' | 'AAAA';

/** What the upstream resolver said for one name and type. */
export interface UpstreamAnswer {
  rcode: 'NOERROR' | 'NXDOMAIN' | 'SERVFAIL';
  addresses: Array<{ address: string; ttl: number }>;
}

/** Asks the real resolver for `name` (canonical, absolute) and `type`; never rejects. */
export type Upstream = (name: string, type: AddressType) => Promise<UpstreamAnswer>;

/**
 * The entries of `entries` node:dns can use as servers (`ip`, `ip:port`, `[v6]:port`) and
 * the ones it cannot (a name, garbage), which `Resolver.setServers` would throw on. Pure.
 */
export function usableNameservers(entries: readonly string[]): { servers: string[]; refused: string[] } {
  const out = { servers: [] as string[], refused: [] as string[] };
  for (const e of entries) {
    const host = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(e)?.[1] ?? (net.isIP(e) ? e : /^([^:]+):\d{1,5}$/.exec(e)?.[1]);
    (host !== undefined && net.isIP(host) ? out.servers : out.refused).push(e);
  }
  return out;
}

/**
 * An {@link Upstream} over node:dns (c-ares): plain DNS queries to `servers` (`ip` or
 * `ip:port`, `[v6]:port`), no search list, no /etc/hosts, one try per server, each
 * `timeoutMs`. ENOTFOUND is NXDOMAIN, ENODATA is NOERROR without records, anything else
 * (timeout, refused, SERVFAIL) is SERVFAIL.
 */
export function resolverUpstream(servers: readonly string[], timeoutMs: number): Upstream {
  const resolver = new Resolver({ timeout: timeoutMs, tries: 1 });
  if (servers.length) resolver.setServers([...servers]);
  return async (name, type) => {
    if (!servers.length) return { rcode: 'SERVFAIL', addresses: [] };
    try {
      const records = type === 'A' ? await resolver.resolve4(name, { ttl: true }) : await resolver.resolve6(name, { ttl: true });
      return { rcode: 'NOERROR', addresses: records.map((r) => ({ address: r.address, ttl: r.ttl })) };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTFOUND') return { rcode: 'NXDOMAIN', addresses: [] };
      if (code === 'ENODATA') return { rcode: 'NOERROR', addresses: [] };
      return { rcode: 'SERVFAIL', addresses: [] };
    }
  };
}

/** Why a message was not answered by policy: the `reason` label for malformed or refused input. */
type InputReason = 'oversized' | 'malformed' | 'not_query' | 'questions' | 'bad_class' | 'response';

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
type Rcode = keyof typeof RCODE;

/**
 * A header-only response (RFC 1035 section 4.1.1) to the message `query` starts with: its
 * ID, opcode and RD echoed, QR and RA set, `rcode`, no sections. For messages that cannot
 * be decoded.
 */
function headerOnly(query: Buffer, rcode: Rcode): Buffer {
  const out = Buffer.alloc(12);
  out.writeUInt16BE(query.readUInt16BE(0), 0);
  const flags = query.readUInt16BE(2);
  out.writeUInt16BE(0x8000 | (flags & 0x7800) | (flags & 0x0100) | 0x0080 | RCODE[rcode], 2);
  return out;
}

/**
 * Length in bytes of the question section of `message` (one question: its name as labels
 * or a compression pointer, then type and class), or undefined when it runs past the end.
 */
function questionLength(message: Buffer): number | undefined {
  let at = 12;
  while (at < message.length) {
    const len = message[at]!;
    if (len === 0) return at + 1 + 4 <= message.length ? at + 1 + 4 - 12 : undefined;
    if ((len & 0xc0) === 0xc0) return at + 2 + 4 <= message.length ? at + 2 + 4 - 12 : undefined;
    at += 1 + len;
  }
  return undefined;
}

/**
 * `reply` (an encoded response to `query`, with one question) with its question section
 * replaced by the query's own bytes: the client matches a reply to its query by the
 * question (RFC 1035 section 7.3), and re-encoding a decoded name can change it (bytes
 * that are not UTF-8 decode to U+FFFD). `reply` as it is when either cannot be measured.
 */
function withQueryQuestion(reply: Buffer, query: Buffer): Buffer {
  const asked = questionLength(query);
  const encoded = questionLength(reply);
  if (asked === undefined || encoded === undefined) return reply;
  return Buffer.concat([reply.subarray(0, 12), query.subarray(12, 12 + asked), reply.subarray(12 + encoded)]);
}

/**
 * `message` with the 2-byte length prefix of DNS over TCP (RFC 1035 section 4.2.2).
 * @throws RangeError when `message` is longer than 65,535 bytes (answers are bounded well below, MAX_ANSWER_RECORDS)
 */
export function frameTcp(message: Buffer): Buffer {
  const prefix = Buffer.alloc(2);
  prefix.writeUInt16BE(message.length, 0);
  return Buffer.concat([prefix, message]);
}

/**
 * Splits a DNS-over-TCP byte stream into messages (RFC 1035 section 4.2.2: each message
 * after a 2-byte big-endian length), whatever the reads' boundaries. Holds at most one
 * incomplete frame: a frame announcing more than `maxMessageBytes` is reported (its first
 * bytes) instead of buffered, and the framer takes nothing more.
 */
export class DnsTcpFramer {
  readonly #max: number;
  #buffered: Buffer = Buffer.alloc(0);
  #failed = false;

  constructor(maxMessageBytes: number) {
    this.#max = maxMessageBytes;
  }

  /**
   * Appends `chunk`.
   * @returns the messages completed by it, in order (without their prefix), and, when a
   *   frame is over the limit, `oversized`: the bytes of that frame received so far (at most 12)
   */
  push(chunk: Buffer): { messages: Buffer[]; oversized?: Buffer } {
    const messages: Buffer[] = [];
    if (this.#failed) return { messages };
    this.#buffered = this.#buffered.length ? Buffer.concat([this.#buffered, chunk]) : chunk;
    while (this.#buffered.length >= 2) {
      const length = this.#buffered.readUInt16BE(0);
      if (length > this.#max) {
        this.#failed = true;
        const oversized = Buffer.from(this.#buffered.subarray(2, 14));
        this.#buffered = Buffer.alloc(0);
        return { messages, oversized };
      }
      if (this.#buffered.length < 2 + length) break;
      messages.push(Buffer.from(this.#buffered.subarray(2, 2 + length)));
      this.#buffered = this.#buffered.subarray(2 + length);
    }
    return { messages };
  }
}

/** What the DNS listener writes to (the proxy's log, metrics and audit trail), whom it asks, and its bounds (defaults DEFAULT_DNS_LIMITS). */
export interface DnsServerOptions {
  log: Logger;
  metrics: ProxyMetrics;
  auditor: Auditor;
  upstream: Upstream;
  limits?: Partial<DnsLimits>;
}

/** The answer to one message: the bytes to send (undefined: send nothing). */
export interface DnsReply {
  bytes: Buffer | undefined;
}

/** The DNS listener: {@link DnsServer.answer} decides, `listen` serves UDP and TCP. */
export class DnsServer {
  readonly #opts: DnsServerOptions;
  readonly #limits: DnsLimits;
  #policy: DnsPolicy | undefined;
  #inFlight = 0;
  readonly #audited = new Map<string, number>();
  /** Audit lines written in the current second, the second, and denials not written since the last summary. */
  #auditBudget = { second: 0, written: 0, suppressed: 0 };
  #internalLoggedAt = -Infinity;
  readonly #loggedInput = new Set<InputReason>();
  readonly #udp: dgram.Socket[] = [];
  readonly #tcp: net.Server[] = [];
  readonly #sockets = new Set<net.Socket>();

  constructor(opts: DnsServerOptions) {
    this.#opts = opts;
    this.#limits = { ...DEFAULT_DNS_LIMITS, ...opts.limits };
  }

  /** Sets the policy (when the contract is loaded); until then every query gets SERVFAIL (`not_ready`). */
  setPolicy(policy: DnsPolicy | undefined): void {
    this.#policy = policy;
  }

  #count(decision: 'allow' | 'deny' | 'error', reason: string): void {
    this.#opts.metrics.dnsQueries.inc({ decision, reason });
  }

  /** Counts bad input, logs its first occurrence per kind (never the bytes), and answers `rcode` when the header is readable. */
  #refuseInput(query: Buffer, reason: InputReason, rcode: Rcode | undefined, transport: 'udp' | 'tcp', detail?: string): DnsReply {
    this.#count('error', reason);
    if (!this.#loggedInput.has(reason)) {
      this.#loggedInput.add(reason);
      this.#opts.log.warn({ reason, transport, bytes: query.length, ...(detail ? { detail: detail.slice(0, 200) } : {}) }, 'dns: refused a query message (logged once per kind; counted in agentsmith_proxy_dns_queries_total)');
    }
    return { bytes: rcode && query.length >= 12 ? headerOnly(query, rcode) : undefined };
  }

  /** Writes the audit line of a denied name unless one for the same meant name was written within AUDIT_WINDOW_MS. */
  #audit(verdict: Extract<DnsVerdict, { action: 'nxdomain' }>, qname: string, qtype: string): void {
    const now = Date.now();
    const last = this.#audited.get(verdict.meant);
    if (last !== undefined && now - last < AUDIT_WINDOW_MS) return;
    if (this.#audited.size >= AUDIT_MEMORY) {
      for (const [k, t] of this.#audited) if (now - t >= AUDIT_WINDOW_MS) this.#audited.delete(k);
      if (this.#audited.size >= AUDIT_MEMORY) this.#audited.clear();
    }
    this.#audited.set(verdict.meant, now);
    const second = Math.floor(now / 1000);
    const budget = this.#auditBudget;
    if (budget.second !== second) {
      if (budget.suppressed) this.#opts.log.warn({ suppressed: budget.suppressed, limit: AUDIT_LINES_PER_SECOND }, 'dns: audit lines of denied names suppressed (more distinct names per second than the limit); each is counted in agentsmith_proxy_dns_queries_total');
      this.#auditBudget = { second, written: 0, suppressed: 0 };
    }
    if (this.#auditBudget.written >= AUDIT_LINES_PER_SECOND) {
      this.#auditBudget.suppressed++;
      return;
    }
    this.#auditBudget.written++;
    this.#opts.auditor.write({
      mode: 'dns',
      conn: 0,
      host: verdict.meant,
      qname,
      qtype,
      decision: 'deny',
      reason: verdict.reason,
      message: verdict.reason === 'bad_name' ? 'not a host name: answered NXDOMAIN' : 'neither in egress.allow nor a declared in-cluster Service: answered NXDOMAIN, not asked upstream',
    });
  }

  /**
   * The reply to one query message (without the TCP length prefix). Never throws.
   * @param transport `udp` truncates answers over the client's size limit.
   */
  async answer(query: Buffer, transport: 'udp' | 'tcp'): Promise<DnsReply> {
    try {
      return await this.#answer(query, transport);
    } catch (err) {
      // Not the client's input (that is refused inside #answer): a bug, or an upstream that broke its contract.
      this.#count('error', 'internal');
      const now = Date.now();
      if (now - this.#internalLoggedAt >= INTERNAL_LOG_INTERVAL_MS) {
        this.#internalLoggedAt = now;
        this.#opts.log.error({ transport, err: String((err as Error).message ?? err).slice(0, 200) }, 'dns: internal error answering a query: SERVFAIL (logged at most once a minute; counted as reason internal)');
      }
      return { bytes: query.length >= 12 ? headerOnly(query, 'SERVFAIL') : undefined };
    }
  }

  async #answer(query: Buffer, transport: 'udp' | 'tcp'): Promise<DnsReply> {
    if (query.length > this.#limits.maxQueryBytes) return this.#refuseInput(query, 'oversized', 'FORMERR', transport);
    if (query.length < 12) return this.#refuseInput(query, 'malformed', undefined, transport, 'shorter than a header');
    const flags = query.readUInt16BE(2);
    // A response is never answered: two resolvers must not be able to loop through us.
    if (flags & 0x8000) return this.#refuseInput(query, 'response', undefined, transport);
    if ((flags >> 11) & 0xf) return this.#refuseInput(query, 'not_query', 'NOTIMP', transport);
    // Checked on the header before decoding: a message claiming several questions is not parsed
    // (its other sections are, within maxQueryBytes).
    if (query.readUInt16BE(4) !== 1) return this.#refuseInput(query, 'questions', 'FORMERR', transport, `${query.readUInt16BE(4)} questions`);
    let packet: dnsPacket.DecodedPacket;
    try {
      packet = dnsPacket.decode(query);
    } catch (err) {
      return this.#refuseInput(query, 'malformed', 'FORMERR', transport, (err as Error).message);
    }
    const question = packet.questions?.[0];
    if (!question || typeof question.name !== 'string') return this.#refuseInput(query, 'malformed', 'FORMERR', transport, 'no question');
    if (question.class !== 'IN') return this.#refuseInput(query, 'bad_class', 'REFUSED', transport, String(question.class));
    const opt = packet.additionals?.find((a) => a.type === 'OPT');
    const reply = (rcode: Rcode, answers: dnsPacket.Answer[] = []): DnsReply => this.#encode(query, packet, question, rcode, answers, { opt, transport });

    const policy = this.#policy;
    if (!policy) {
      this.#count('error', 'not_ready');
      return reply('SERVFAIL');
    }
    const verdict = decideName(question.name, policy);
    if (verdict.action === 'nxdomain') {
      this.#count('deny', verdict.reason);
      if (verdict.reason !== 'search_expansion') this.#audit(verdict, question.name, String(question.type));
      return reply('NXDOMAIN');
    }
    if (question.type !== 'A' && question.type !== 'AAAA') {
      // Allowed or declared, but only addresses are answered: HTTPS/SVCB, MX, TXT... get no records.
      this.#count('allow', verdict.reason);
      return reply('NOERROR');
    }
    if (this.#inFlight >= this.#limits.maxInFlight) {
      this.#count('error', 'busy');
      return reply('SERVFAIL');
    }
    // Counted until the upstream query itself settles, not the client's timeout: a timed-out
    // query still occupies the resolver, so maxInFlight bounds what is really outstanding.
    this.#inFlight++;
    const upstream = this.#opts.upstream(verdict.name, question.type);
    const settled = () => void this.#inFlight--;
    upstream.then(settled, settled);
    let result: UpstreamAnswer;
    let timer: NodeJS.Timeout | undefined;
    try {
      result = await Promise.race([
        upstream,
        new Promise<UpstreamAnswer>((resolve) => {
          timer = setTimeout(() => resolve({ rcode: 'SERVFAIL', addresses: [] }), this.#limits.upstreamTimeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
    if (result.rcode === 'SERVFAIL') {
      this.#count('error', 'upstream_error');
      this.#opts.log.debug({ name: verdict.name, type: question.type }, 'dns: upstream failed or timed out');
      return reply('SERVFAIL');
    }
    this.#count('allow', verdict.reason);
    const type = question.type;
    const answers: dnsPacket.Answer[] = result.addresses
      .filter((a) => net.isIP(a.address) === (type === 'A' ? 4 : 6))
      .slice(0, MAX_ANSWER_RECORDS)
      .map((a) => ({ type, class: 'IN', name: question.name, ttl: Math.max(0, Math.min(MAX_TTL, Math.floor(a.ttl))), data: a.address }));
    return reply(result.rcode, answers);
  }

  #encode(raw: Buffer, query: dnsPacket.DecodedPacket, question: dnsPacket.Question, rcode: Rcode, answers: dnsPacket.Answer[], { opt, transport }: { opt: dnsPacket.OptAnswer | undefined; transport: 'udp' | 'tcp' }): DnsReply {
    const flags = (query.flag_rd ? dnsPacket.RECURSION_DESIRED : 0) | dnsPacket.RECURSION_AVAILABLE | RCODE[rcode];
    const additionals: dnsPacket.Answer[] = opt ? [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: 0, options: [] } as unknown as dnsPacket.Answer] : [];
    const packet: dnsPacket.Packet = { type: 'response', id: query.id ?? 0, flags, questions: [question], answers, additionals };
    let bytes = withQueryQuestion(dnsPacket.encode(packet), raw);
    if (transport === 'udp') {
      const limit = Math.min(1232, Math.max(512, opt?.udpPayloadSize ?? 512));
      if (bytes.length > limit) bytes = withQueryQuestion(dnsPacket.encode({ ...packet, flags: flags | dnsPacket.TRUNCATED_RESPONSE, answers: [] }), raw);
    }
    return { bytes };
  }

  /**
   * Listens on UDP and TCP, on 127.0.0.1 and ::1 (::1 skipped with a warning where IPv6
   * is off), all on one port.
   * @param port 0 picks a free port
   * @returns the bound port
   * @throws when the port is taken
   */
  async listen(port: number): Promise<number> {
    for (let attempt = 0; ; attempt++) {
      const udp4 = await this.#bindUdp('127.0.0.1', port);
      const bound = udp4.address().port;
      const opened: Array<dgram.Socket | net.Server> = [udp4];
      try {
        opened.push(await this.#listenTcp('127.0.0.1', bound));
        try {
          opened.push(await this.#bindUdp('::1', bound));
          opened.push(await this.#listenTcp('::1', bound));
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code !== 'EADDRNOTAVAIL' && code !== 'EAFNOSUPPORT') throw err;
          this.#opts.log.warn({ code }, 'dns: ::1 is not available; listening on 127.0.0.1 only');
        }
      } catch (err) {
        await Promise.all(opened.map((s) => new Promise<void>((r) => s.close(() => r()))));
        if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE' && port === 0 && attempt < 5) continue;
        throw err;
      }
      for (const s of opened) {
        if (s instanceof net.Server) this.#tcp.push(s);
        else this.#udp.push(s);
      }
      return bound;
    }
  }

  #bindUdp(host: string, port: number): Promise<dgram.Socket> {
    const socket = dgram.createSocket({ type: host === '::1' ? 'udp6' : 'udp4', ipv6Only: host === '::1' });
    socket.on('message', (msg, rinfo) => {
      void this.answer(msg, 'udp').then(({ bytes }) => {
        if (!bytes) return;
        try {
          socket.send(bytes, rinfo.port, rinfo.address, () => undefined);
        } catch {
          // The socket closed while the answer was computed (shutdown): nothing to send on.
        }
      });
    });
    return new Promise((resolve, reject) => {
      socket.once('error', reject);
      socket.bind({ address: host, port, exclusive: true }, () => {
        socket.off('error', reject);
        socket.on('error', (err) => this.#opts.log.warn({ err: err.message }, 'dns: UDP socket error'));
        resolve(socket);
      });
    });
  }

  #listenTcp(host: string, port: number): Promise<net.Server> {
    const server = net.createServer({ noDelay: true }, (s) => this.#onTcp(s));
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port, ipv6Only: host === '::1', exclusive: true }, () => {
        server.off('error', reject);
        resolve(server);
      });
    });
  }

  /** One TCP connection: length-prefixed messages, answered in order (RFC 1035 section 4.2.2). */
  #onTcp(socket: net.Socket): void {
    socket.on('error', () => undefined);
    if (this.#sockets.size >= this.#limits.maxTcpConnections) {
      this.#count('error', 'tcp_limit');
      socket.destroy();
      return;
    }
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    socket.setTimeout(this.#limits.tcpIdleMs, () => socket.destroy());
    const lifetime = setTimeout(() => socket.destroy(), this.#limits.tcpMaxLifetimeMs);
    socket.once('close', () => clearTimeout(lifetime));
    const framer = new DnsTcpFramer(this.#limits.maxQueryBytes);
    let pending = 0;
    let chain: Promise<void> = Promise.resolve();
    socket.on('data', (chunk: Buffer) => {
      const { messages, oversized } = framer.push(chunk);
      for (const msg of messages) {
        if (++pending > this.#limits.maxTcpPending) {
          this.#count('error', 'tcp_limit');
          socket.destroy();
          return;
        }
        const replied = this.answer(msg, 'tcp');
        chain = chain
          .then(async () => {
            const { bytes } = await replied;
            pending--;
            if (bytes && !socket.destroyed) socket.write(frameTcp(bytes));
            if (socket.writableLength > this.#limits.maxTcpUnsentBytes) {
              // A client that sends queries but does not read its answers: its buffer is not ours to grow.
              this.#count('error', 'tcp_limit');
              socket.destroy();
            }
          })
          // Nothing may reject out of the chain (an unhandled rejection would end the proxy): the connection goes instead.
          .catch(() => void socket.destroy());
      }
      if (oversized) {
        // The message cannot be skipped without reading it: the connection goes.
        this.#refuseInput(oversized, 'oversized', undefined, 'tcp');
        socket.destroy();
      }
    });
  }

  /** Closes the listeners and every TCP connection. */
  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await Promise.all([
      ...this.#udp.map((s) => new Promise<void>((r) => s.close(() => r()))),
      ...this.#tcp.map((s) => new Promise<void>((r) => s.close(() => r()))),
    ]);
  }
}
