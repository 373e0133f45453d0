/**
 * The decision for one HTTP request the proxy has parsed: which host it goes to, whether
 * policy allows it, and the exact header section sent upstream. Pure (no I/O): the
 * caller dials.
 *
 * One canonical host drives everything (DESIGN.md flow 5): the connection's identity
 * (CONNECT target, or SNI for transparent TLS), the absolute-form URL authority and the
 * Host header must all name it (policy.ts `assertSameHost`, 421 otherwise: RFC 9110
 * sections 7.4 and 15.5.20), and that host is what the allowlist, the credential scope,
 * the dialed address, the upstream SNI and the certificate check see. Host is rebuilt
 * from it, never copied.
 */
import { checkRequestHeaders, field, forwardable, pairs, HeaderError } from './headers.ts';
import { assertSameHost, formatAuthority, parseAuthority, PolicyError, type Allowlist, type CanonicalHost } from './policy.ts';
import type { CredentialSet, SwapDenyReason } from './swap.ts';

export interface Target {
  host: CanonicalHost;
  port: number;
}

/** A refusal the proxy answers itself: status, reason (audit, metrics, X-Agent-Smith-Deny), message without values. */
export class Refusal extends Error {
  override name = 'Refusal';
  readonly status: number;
  readonly reason: string;
  readonly credential: string | undefined;
  readonly location: string | undefined;
  /** The request's host, when the refusal came after it was known (for the audit line). */
  target: Target | undefined;
  rule: string | undefined;
  constructor(status: number, reason: string, message: string, extra: { credential?: string; location?: string } = {}) {
    super(message);
    this.status = status;
    this.reason = reason;
    this.credential = extra.credential;
    this.location = extra.location;
  }
}

/** Maps any error thrown while deciding to a refusal: unknown errors deny (`policy_error`, 403). */
export function asRefusal(err: unknown): Refusal {
  if (err instanceof Refusal) return err;
  if (err instanceof PolicyError) return new Refusal(err.status, err.reason, err.message);
  if (err instanceof HeaderError) return new Refusal(err.status, err.reason, err.message);
  return new Refusal(403, 'policy_error', 'the request could not be checked and is refused');
}

/** What is known about the connection a request arrived on. */
export interface ConnectionFacts {
  /** The agent's connection is TLS (intercepted): the upstream is TLS too. */
  tls: boolean;
  /** CONNECT target or (transparent TLS) SNI host with port 443. */
  bound?: Target;
  /** The SNI the agent's TLS client sent, if any. */
  sni?: CanonicalHost;
}

/** The request as parsed by Node. */
export interface RequestFacts {
  method: string;
  /** Request target as received (origin-form or absolute-form). */
  url: string;
  httpVersion: string;
  rawHeaders: readonly string[];
  /** A WebSocket upgrade (Upgrade: websocket): the upgrade fields are re-added; refused to a credential host without allowWebSocket. */
  upgrade?: boolean;
}

export interface Decided {
  target: Target;
  /** Explicit (absolute-form on a plain connection) or Host-routed / bound. */
  absoluteForm: boolean;
  /** Allowlist entry that allowed it. */
  rule: string;
  /** Path and query sent upstream (origin-form). */
  path: string;
  /** Flat [name, value, ...] header list for the upstream request. */
  headers: string[];
  /** The request carries a body (Content-Length > 0 or chunked). */
  hasBody: boolean;
  /** The body has a Content-Encoding other than identity (not scanned). */
  encodedBody: boolean;
  /** A credential is scoped to this host: responses are scrubbed and must not be compressed. */
  scoped: boolean;
  credential?: string;
  swapped?: { credential: string; location: string };
}

const ABSOLUTE = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)(.*)$/s;

/** Refuses `.` and `..` path segments, also percent-encoded or with `\` as a separator (iron-proxy does the same): upstream normalisation must not move a request. */
function checkPath(path: string): void {
  const q = path.indexOf('?');
  const p = (q >= 0 ? path.slice(0, q) : path).replace(/%2e/gi, '.').replace(/%2f|%5c|\\/gi, '/');
  if (p.split('/').some((seg) => seg === '.' || seg === '..')) throw new Refusal(400, 'bad_path', 'dot segments ("." or "..") in the request path are refused');
  if (path.includes('#')) throw new Refusal(400, 'bad_path', 'a fragment does not belong in a request target');
}

/**
 * Decides one request. @throws Refusal | PolicyError | HeaderError (map with
 * {@link asRefusal}); never dials.
 */
export function decideRequest(conn: ConnectionFacts, req: RequestFacts, policy: { allowlist: Allowlist; credentials: CredentialSet<CanonicalHost> }): Decided {
  // RFC 9110 section 9.3.8: TRACE reflects the request, Authorization included, back to
  // the client; nothing an agent needs, so it never reaches an upstream.
  if (req.method.toUpperCase() === 'TRACE') throw new Refusal(405, 'bad_method', 'TRACE is refused (it echoes request headers, credentials included)');
  const headers = pairs(req.rawHeaders);
  checkRequestHeaders(
    headers,
    policy.credentials.credentials.map((c) => c.header),
  );

  let urlTarget: Target | undefined;
  let path: string;
  const abs = ABSOLUTE.exec(req.url);
  const scheme = conn.tls ? 'https' : 'http';
  if (abs) {
    const urlScheme = (abs[1] ?? '').toLowerCase();
    const authority = abs[2] ?? '';
    // Quoted as sent (whoever shows the message redacts it), not lower-cased.
    if (urlScheme !== 'http' && urlScheme !== 'https') throw new Refusal(400, 'bad_request', `scheme ${JSON.stringify(abs[1] ?? '')}: only http and https`);
    if (authority.includes('@')) throw new Refusal(400, 'bad_request', 'userinfo in the request target is refused (send credentials in a header)');
    if (urlScheme !== scheme) {
      throw new Refusal(
        400,
        'bad_request',
        scheme === 'http' ? 'an https:// request target on a plain proxy connection: use CONNECT (HTTPS_PROXY)' : `an ${urlScheme}:// request target inside a TLS connection`,
      );
    }
    urlTarget = parseAuthority(authority, urlScheme === 'https' ? 443 : 80);
    const rest = abs[3] ?? '';
    path = rest === '' ? '/' : rest.startsWith('?') ? `/${rest}` : rest;
  } else if (req.url.startsWith('/')) {
    path = req.url;
  } else {
    throw new Refusal(400, 'bad_request', 'only origin-form and absolute-form request targets are accepted (RFC 9112 section 3.2)');
  }
  if (!path.startsWith('/')) throw new Refusal(400, 'bad_request', 'malformed request target');
  checkPath(path);

  const defaultPort = conn.tls ? 443 : 80;
  const hostHeader = field(headers, 'host');
  let hostTarget: Target | undefined;
  if (hostHeader !== undefined) {
    hostTarget = parseAuthority(hostHeader, defaultPort);
  } else if (req.httpVersion !== '1.0' || !urlTarget) {
    // RFC 9112 section 3.2: a server MUST respond 400 to an HTTP/1.1 request without Host.
    throw new Refusal(400, 'bad_request', 'no Host header (RFC 9112 section 3.2)');
  }

  const target = conn.bound ?? urlTarget ?? hostTarget;
  if (!target) throw new Refusal(400, 'bad_request', 'no target host');
  try {
    return decideFor(target, conn, req, policy, headers, path, urlTarget, hostTarget);
  } catch (err) {
    const r = asRefusal(err);
    r.target ??= target;
    throw r;
  }
}

function decideFor(
  target: Target,
  conn: ConnectionFacts,
  req: RequestFacts,
  policy: { allowlist: Allowlist; credentials: CredentialSet<CanonicalHost> },
  headers: ReadonlyArray<readonly [string, string]>,
  path: string,
  urlTarget: Target | undefined,
  hostTarget: Target | undefined,
): Decided {
  const defaultPort = conn.tls ? 443 : 80;
  assertSameHost(conn.bound, conn.sni ? { host: conn.sni } : undefined, urlTarget, hostTarget);

  const match = policy.allowlist.match(target.host, target.port);
  if (!match) {
    const otherPort = target.port !== 443 && target.port !== 80 && (policy.allowlist.match(target.host, 443) ?? policy.allowlist.match(target.host, 80));
    throw new PolicyError(
      otherPort ? 'bad_port' : 'not_allowed',
      otherPort ? `port ${target.port} of ${target.host.host} is not allowed (spec.egress.allow names ports other than 80 and 443 explicitly)` : `${target.host.host} is not in the egress allowlist (spec.egress.allow)`,
    );
  }

  const plan = policy.credentials.planRequest(target.host, forwardable(headers, ['host']), path);
  if (!plan.ok) {
    const r = new Refusal(plan.status, plan.reason satisfies SwapDenyReason, plan.message, { credential: plan.credential, location: plan.location });
    r.rule = match.rule;
    throw r;
  }
  // WebSocket frames are not scanned (forward.ts): no upgrade to a host a real value is
  // sent to, unless its credential opts in to unscanned frames.
  if (req.upgrade && plan.credential && !plan.credential.allowWebSocket) {
    const name = plan.credential.name;
    const r = new Refusal(
      403,
      'websocket_unscanned',
      `WebSocket upgrades to ${target.host.host} are refused: credential ${name} is sent there and the proxy does not scan WebSocket frames, so it could not keep the real value out of them. ` +
        `To allow them anyway (frames unscanned), set spec.egress.credentials[${name}].allowWebSocket: true`,
      { credential: name },
    );
    r.rule = match.rule;
    throw r;
  }
  if (plan.swapped && !conn.tls) {
    throw new Refusal(403, 'plaintext_credential', `credential ${plan.swapped.credential} is never sent over plain HTTP; use https://${target.host.host}`, plan.swapped);
  }

  const scoped = plan.credential !== undefined;
  const out: string[] = ['Host', formatAuthority(target.host, target.port, defaultPort)];
  for (const [n, v] of plan.headers) {
    // Identity only where a secret may have gone: a compressed body cannot be scrubbed.
    if (scoped && n.toLowerCase() === 'accept-encoding') continue;
    out.push(n, v);
  }
  if (scoped) out.push('Accept-Encoding', 'identity');
  const contentLength = field(headers, 'content-length');
  const chunked = field(headers, 'transfer-encoding') !== undefined;
  // Framing is re-derived, never copied (RFC 9112 section 6.3): a body without either
  // field does not exist, whatever bytes follow.
  if (contentLength !== undefined) out.push('Content-Length', contentLength);
  else if (chunked) out.push('Transfer-Encoding', 'chunked');
  if (req.upgrade) out.push('Connection', 'Upgrade', 'Upgrade', 'websocket');

  const encoding = field(headers, 'content-encoding');
  return {
    target,
    absoluteForm: urlTarget !== undefined,
    rule: match.rule,
    path,
    headers: out,
    hasBody: contentLength !== undefined ? Number(contentLength) > 0 : chunked,
    encodedBody: encoding !== undefined && encoding.trim().toLowerCase() !== 'identity',
    scoped,
    ...(plan.credential ? { credential: plan.credential.name } : {}),
    ...(plan.swapped ? { swapped: plan.swapped } : {}),
  };
}
