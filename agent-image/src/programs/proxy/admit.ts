/**
 * What the listener (server.ts) checks before a connection may go anywhere: the target of
 * a CONNECT (RFC 9110 section 9.3.6) and the server_name of an intercepted TLS handshake
 * (RFC 6066 section 3), both against the allowlist before any address is resolved or any
 * leaf certificate is minted; and how a refusal, a parser error and a closed connection
 * are named for the audit line and the log.
 */
import type http from 'node:http';
import type tls from 'node:tls';
import type { AuditRecord } from './audit.ts';
import type { ProxyLimits } from './config.ts';
import { asRefusal, Refusal, type Target } from './decide.ts';
import { checkRequestHeaders, field, pairs } from './headers.ts';
import { assertSameHost, canonicalHost, parseAuthority, PolicyError, type CanonicalHost } from './policy.ts';
import type { ProxyRuntime } from './server.ts';
import type { CloseReason } from './timeouts.ts';

/** Maps a Node HTTP parser error to a status and a reason. */
export function parserError(err: NodeJS.ErrnoException): { status: number; reason: string } {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return { status: 431, reason: 'header_too_large' };
    case 'HPE_INVALID_TRANSFER_ENCODING':
    case 'HPE_UNEXPECTED_CONTENT_LENGTH':
    case 'HPE_INVALID_CONTENT_LENGTH':
    case 'HPE_INVALID_CHUNK_SIZE':
      return { status: 400, reason: 'smuggling' };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { status: 408, reason: 'request_timeout' };
    default:
      return { status: 400, reason: 'bad_request' };
  }
}


/** What a refusal knows for the audit line. */
export function refusalFields(r: Refusal): Partial<AuditRecord> {
  return {
    ...(r.target ? { host: r.target.host.host, port: r.target.port } : {}),
    ...(r.rule ? { rule: r.rule } : {}),
    ...(r.credential ? { credential: r.credential } : {}),
    ...(r.location ? { location: r.location } : {}),
  };
}


/** The limit (ms) a close reason stands for, for the log line. */
export function timeoutLimit(l: ProxyLimits, reason: CloseReason): number | undefined {
  switch (reason) {
    case 'handshake_timeout':
      return l.handshakeTimeoutMs;
    case 'headers_timeout':
      return l.headersTimeoutMs;
    case 'keep_alive_timeout':
      return l.keepAliveTimeoutMs;
    case 'idle_timeout':
      return l.idleTimeoutMs;
    case 'evicted':
      return undefined;
  }
}


/** What a connection has learnt of its target: the SNI of its handshake, the host it is bound to (CONNECT, or the SNI once allowed). */
export interface ConnTarget {
  sni?: CanonicalHost;
  bound?: Target;
}

/**
 * The SNICallback of an intercepted handshake. The name must be a DNS name (not an IP
 * literal); on a CONNECT tunnel it must be the CONNECT target's host, else (transparent)
 * the allowlist must allow it on 443, and the connection is bound to it. Only then is the
 * leaf asked for. `conn` learns the SNI and target; `onRefusal` gets the refusal that
 * fails the handshake (for the audit line).
 */
export function sniCheck(conn: ConnTarget, rt: Pick<ProxyRuntime, 'allowlist' | 'leaves'>, onRefusal: (r: Refusal) => void): (servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void) => void {
  return (servername, cb) => {
    try {
      const sni = canonicalHost(servername);
      // RFC 6066 section 3: "Literal IPv4 and IPv6 addresses are not permitted in HostName".
      if (sni.kind !== 'dns') throw new PolicyError('bad_host', `SNI ${sni.host} is an IP literal`);
      conn.sni = sni;
      if (conn.bound) {
        assertSameHost(conn.bound, { host: sni });
      } else {
        const port = 443;
        if (!rt.allowlist.match(sni, port)) throw new PolicyError('not_allowed', `${sni.host} is not in the egress allowlist (spec.egress.allow)`);
        conn.bound = { host: sni, port };
      }
      // Asked for now, not reused from before the ClientHello (a cache hit then): an
      // evicted context is closed soon after (ca.ts), and one must never reach a handshake.
      rt.leaves.context(conn.bound.host, conn.bound.port).then(
        (c) => cb(null, c),
        (e: Error) => {
          onRefusal(new Refusal(403, 'policy_error', e.message));
          cb(e);
        },
      );
    } catch (err) {
      const refusal = asRefusal(err);
      onRefusal(refusal);
      cb(refusal);
    }
  };
}

/**
 * Checks a CONNECT request: its headers, an authority-form target with a port (RFC 9110
 * section 9.3.6), a Host field naming the same host, the allowlist, and the target's name
 * itself against the credentials (a stub or real value spelled into a name under an
 * allowed wildcard must not leave in the DNS query).
 * @returns the target and the allowlist rule, or the refusal (with the target when it was parsed)
 */
export function checkConnect(req: http.IncomingMessage, rt: Pick<ProxyRuntime, 'allowlist' | 'credentials'>): { ok: true; target: Target; rule: string } | { ok: false; refusal: Refusal; target?: Target | undefined } {
  let target: Target | undefined;
  try {
    const headers = pairs(req.rawHeaders);
    checkRequestHeaders(headers);
    const authority = req.url ?? '';
    // RFC 9110 section 9.3.6: authority-form, host and port, both required.
    if (!/:[0-9]+$/.test(authority)) throw new PolicyError('bad_port', 'a CONNECT target is host:port (RFC 9110 section 9.3.6)');
    target = parseAuthority(authority, 443);
    const host = field(headers, 'host');
    if (host !== undefined) assertSameHost(target, parseAuthority(host, target.port));
    const match = rt.allowlist.match(target.host, target.port);
    if (!match) {
      const otherPort = rt.allowlist.match(target.host, 443) ?? rt.allowlist.match(target.host, 80);
      throw new PolicyError(otherPort ? 'bad_port' : 'not_allowed', otherPort ? `port ${target.port} of ${target.host.host} is not allowed` : `${target.host.host} is not in the egress allowlist (spec.egress.allow)`);
    }
    // The name itself is checked before it is resolved: a stub or real value spelled into
    // a name under an allowed wildcard would otherwise leave in the DNS query.
    // (Only the name's own verdict: what the request must carry is checked per request.)
    const plan = rt.credentials.planRequest(target.host, [], '/');
    if (!plan.ok && plan.location === 'host') throw new Refusal(plan.status, plan.reason, plan.message, { credential: plan.credential, location: plan.location });
    return { ok: true, target, rule: match.rule };
  } catch (err) {
    return { ok: false, refusal: asRefusal(err), target };
  }
}
