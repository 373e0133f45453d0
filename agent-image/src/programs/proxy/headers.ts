/**
 * Header hygiene for a proxy that forwards HTTP/1.1 (RFC 9110, RFC 9112). Pure.
 *
 * Node's parser (llhttp, strict mode) already refuses obs-fold (RFC 9112 section 5.2),
 * CR/LF/NUL in field values, whitespace before the colon, duplicate Content-Length, and
 * Transfer-Encoding together with Content-Length (RFC 9112 section 6.1); the runtime
 * tests assert it does. This module refuses what it accepts but a proxy must not pass on:
 * duplicated security-relevant fields (Node's `req.headers` silently keeps one), names
 * that differ from a sensitive one only by `_` or `.` (read as `-` by CGI-style servers),
 * Transfer-Encoding other than `chunked`, and it removes hop-by-hop fields.
 */

/** A request or response refused for its header section; status 400 unless said otherwise. */
export class HeaderError extends Error {
  override name = 'HeaderError';
  readonly reason: 'duplicate_header' | 'header_name_variant' | 'bad_header_value' | 'smuggling' | 'bad_transfer_encoding';
  readonly status: number;
  constructor(reason: HeaderError['reason'], message: string, status = 400) {
    super(message);
    this.reason = reason;
    this.status = status;
  }
}

/**
 * Hop-by-hop fields (RFC 9110 section 7.6.1: Connection and the fields it names,
 * Proxy-Connection, Keep-Alive, TE, Transfer-Encoding, Upgrade; Trailer, whose fields are
 * not forwarded) and the proxy's own authentication (section 11.7: Proxy-Authenticate,
 * Proxy-Authorization). Every `proxy-*` field is dropped too. Framing
 * (Content-Length / Transfer-Encoding) is re-derived by the forwarding code, never copied.
 */
export const HOP_BY_HOP = new Set(['connection', 'proxy-connection', 'keep-alive', 'te', 'transfer-encoding', 'upgrade', 'trailer', 'proxy-authenticate', 'proxy-authorization']);

/** Fields that must appear at most once in a request (RFC 9112 section 3.2 for Host; the others because a second copy is how a check is bypassed). */
export const SINGLE_REQUEST_FIELDS = ['host', 'authorization', 'proxy-authorization', 'content-length', 'transfer-encoding', 'upgrade'];

/** `X_Api-Key` and `x.api-key` fold to `x-api-key`. */
function fold(name: string): string {
  return name.toLowerCase().replace(/[_.]/g, '-');
}

/** Pairs `[name, value]` of a Node `rawHeaders` array, in order, names as received. */
export function pairs(rawHeaders: readonly string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) out.push([rawHeaders[i] as string, rawHeaders[i + 1] as string]);
  return out;
}

/** The sensitive names and their folded forms, built once per list of credential headers (the list is fixed while a configuration is loaded). */
let lastSensitive: { key: string; sensitive: ReadonlySet<string>; folded: ReadonlyMap<string, string> } | undefined;
function sensitiveNames(extraSensitive: readonly string[]): { sensitive: ReadonlySet<string>; folded: ReadonlyMap<string, string> } {
  const key = extraSensitive.join('\n');
  if (lastSensitive?.key !== key) {
    const sensitive = new Set([...SINGLE_REQUEST_FIELDS, ...extraSensitive.map((n) => n.toLowerCase())]);
    lastSensitive = { key, sensitive, folded: new Map([...sensitive].map((n) => [fold(n), n])) };
  }
  return lastSensitive;
}

/**
 * Refuses a request header section a proxy must not forward.
 * @param extraSensitive lower-case names of the credential headers (besides Authorization).
 * @throws HeaderError
 */
export function checkRequestHeaders(headers: ReadonlyArray<readonly [string, string]>, extraSensitive: readonly string[] = []): void {
  const { sensitive, folded } = sensitiveNames(extraSensitive);
  const seen = new Map<string, string>();
  for (const [name, value] of headers) {
    const lower = name.toLowerCase();
    // Node refuses these already; kept so this module does not depend on parser flags.
    if (/[\r\n\0]/.test(value)) throw new HeaderError('bad_header_value', `${name}: CR, LF or NUL in a field value (RFC 9110 section 5.5)`);
    const canonical = folded.get(fold(name));
    if (canonical && canonical !== lower) {
      throw new HeaderError('header_name_variant', `${name}: a field name that differs from ${canonical} only by "_" or "." is refused (servers that map "-" and "_" alike would read it as ${canonical})`);
    }
    if (sensitive.has(lower)) {
      const before = seen.get(lower);
      if (before !== undefined) {
        throw new HeaderError('duplicate_header', `${name}: more than one field named ${lower}${before !== name ? ` (as ${before} and ${name})` : ''} is refused`);
      }
      seen.set(lower, name);
    }
  }
  const te = headers.find(([n]) => n.toLowerCase() === 'transfer-encoding');
  const cl = headers.find(([n]) => n.toLowerCase() === 'content-length');
  if (te && cl) throw new HeaderError('smuggling', 'Transfer-Encoding together with Content-Length (RFC 9112 section 6.1)');
  if (te && te[1].trim().toLowerCase() !== 'chunked') {
    // RFC 9112 section 6.1: chunked must be the final coding; other codings are not
    // something a credential proxy re-encodes, so only plain chunked passes.
    // Quoted whole: whoever shows the message redacts credential values, then shortens it.
    throw new HeaderError('bad_transfer_encoding', `Transfer-Encoding ${JSON.stringify(te[1])}: only "chunked" is accepted`, 501);
  }
}

/**
 * The fields to forward: without hop-by-hop fields, those named by Connection, any
 * `proxy-*`, `expect` (this proxy answers 100-continue itself), and the fields
 * listed in `drop` (lower-case; e.g. `host`, which the caller rebuilds).
 */
export function forwardable(headers: ReadonlyArray<readonly [string, string]>, drop: readonly string[] = []): Array<[string, string]> {
  const named = new Set<string>(drop);
  for (const [n, v] of headers) {
    if (n.toLowerCase() === 'connection') for (const token of v.split(',')) named.add(token.trim().toLowerCase());
  }
  return headers
    .filter(([n]) => {
      const lower = n.toLowerCase();
      return !HOP_BY_HOP.has(lower) && !named.has(lower) && !lower.startsWith('proxy-') && lower !== 'expect' && lower !== 'content-length';
    })
    .map(([n, v]) => [n, v]);
}

/** The value of the single field `name` (lower-case), or undefined. */
export function field(headers: ReadonlyArray<readonly [string, string]>, name: string): string | undefined {
  return headers.find(([n]) => n.toLowerCase() === name)?.[1];
}

/**
 * Response fields to relay: without hop-by-hop fields, those named by Connection and any
 * `proxy-*`, and without `drop` (lower-case; `content-length` when the body is rewritten).
 */
export function responseFields(headers: ReadonlyArray<readonly [string, string]>, drop: readonly string[] = []): Array<[string, string]> {
  const named = new Set<string>(drop);
  for (const [n, v] of headers) {
    if (n.toLowerCase() === 'connection') for (const token of v.split(',')) named.add(token.trim().toLowerCase());
  }
  return headers.filter(([n]) => {
    const lower = n.toLowerCase();
    return !HOP_BY_HOP.has(lower) && !named.has(lower) && !lower.startsWith('proxy-');
  }).map(([n, v]) => [n, v]);
}
