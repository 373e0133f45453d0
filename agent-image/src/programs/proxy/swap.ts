/**
 * The credential swap: where a stub the agent holds becomes the real value, where a stub
 * or a real value is refused, and what is scrubbed from responses. Pure: no I/O; the
 * credential scope is decided by the function passed in (policy.ts `credentialFor`).
 *
 * Rules (DESIGN.md flow 5):
 * - Only the configured header of the credential scoped to the request's host is
 *   swapped. For `bearer` and `basic` credentials alike: `Bearer <stub>` ->
 *   `Bearer <real>`, GitHub's `token <stub>` -> `token <real>` (Octokit's token auth,
 *   `gh`; RFC 9110 section 11.1: the scheme name is case-insensitive), and
 *   `Basic base64(user:stub)` decoded,
 *   swapped, re-encoded (git's `x-access-token:<stub>`; a stub as the user name too);
 *   raw `<stub>` -> `<real>`. A stub in the URL, another header or the body is never
 *   swapped: it goes out as the stub.
 * - A stub outside its credential's hosts (in any header, the request target or the
 *   body) is refused: `stub_out_of_scope`, 403. This is a tripwire, not the boundary:
 *   the stub is worthless elsewhere, but an agent that sends one to a foreign host is
 *   being steered to exfiltrate.
 * - A real value anywhere in a request is refused (`real_credential`, 403) for every
 *   host: the agent is never given one, so it can only have come from a leak.
 * - `require: true`: a request to the credential's hosts whose header does not carry the
 *   stub in the configured scheme is refused (`missing_stub`, 403).
 * - Responses: every real value, in the forms of match.ts `secretForms`, is replaced by
 *   the stub in the same form. The outbound guard and the log redactor use the same
 *   forms, so what is caught coming in is caught going out and in a log line.
 */
import { Matcher, needlesFor, type Needle } from './match.ts';

/** A credential with its real value loaded (config.ts). */
export interface Credential {
  name: string;
  /** Host patterns the real value may be sent to (policy.ts `credentialFor` matches them). */
  hosts: readonly string[];
  scheme: 'bearer' | 'basic' | 'raw';
  /** Header the stub is swapped in, as configured (e.g. `Authorization`). */
  header: string;
  stub: string;
  require: boolean;
  /** The real value. Never logged. */
  real: string;
  /**
   * WebSocket upgrades to this credential's hosts are forwarded (frames are then NOT
   * scanned: a real value an upstream puts in a frame reaches the agent). Off: refused.
   */
  allowWebSocket?: boolean;
}

/** What a needle stands for: whose value, and whether it is the stub or the real one. */
export interface SecretTag {
  credential: string;
  kind: 'stub' | 'real';
}

export type SwapDenyReason = 'stub_out_of_scope' | 'missing_stub' | 'real_credential' | 'bad_basic' | 'duplicate_header';

/** A refused request: status, reason (audit and metrics), and a message without values. */
export interface SwapDeny {
  ok: false;
  status: 400 | 403;
  reason: SwapDenyReason;
  message: string;
  credential?: string;
  /** Where the offending value was: `host`, `header:<name>`, `target`, `body`. */
  location?: string;
}

export interface SwapPlan {
  ok: true;
  /** The forwarded headers, the credential header swapped when it carried the stub. */
  headers: Array<[string, string]>;
  /** The credential whose scope covers the host (whether or not it was swapped). */
  credential?: Credential;
  swapped?: { credential: string; location: string };
}

const BASIC = /^basic[ ]+([A-Za-z0-9+/]+={0,2})[ \t]*$/i;
/** `Bearer <token>` (RFC 6750 section 2.1) or GitHub's `token <token>`; the scheme in any case. */
const BEARER = /^(bearer|token)[ ]+([^ \t]+)[ \t]*$/i;

/** Longest message the proxy writes in an error body or a log field, after redaction (characters). */
export const MAX_MESSAGE = 1024;

/** `text` cut to `max` characters (an ellipsis marks a cut); never splits a surrogate pair. */
export function shorten(text: string, max: number): string {
  if (text.length <= max) return text;
  const cut = /[\ud800-\udbff]/.test(text.charAt(max - 1)) ? max - 1 : max;
  return `${text.slice(0, cut)}...`;
}

/** A host as the policy module sees it (only `host` is read here). */
export interface HostLike {
  host: string;
}

/**
 * The loaded credentials and everything derived from them: which one a host gets, the
 * request guard per host, the response scrubber and the log redactor.
 */
export class CredentialSet<H extends HostLike = HostLike> {
  readonly credentials: readonly Credential[];
  readonly #pick: (credentials: readonly Credential[], host: H) => Credential | undefined;
  /** Real values -> stubs, for responses and logs. */
  readonly responseScrubber: Matcher<SecretTag>;
  /** Every stub and real value -> `[redacted]`, for log fields. */
  readonly #logScrubber: Matcher<SecretTag>;
  /** Every stub and real value: the table the request guards share. */
  readonly #guardBase: Matcher<SecretTag>;
  /** Request guards by the names of the credentials in scope (newline-joined). */
  readonly #guards = new Map<string, Matcher<SecretTag>>();
  /** Host name -> its key in #guards. */
  readonly #scopeKeys = new Map<string, string>();

  /**
   * @param pick the credential scoped to `host` among `credentials` (policy.ts
   *   `credentialFor`, which throws when two match: the request is then refused).
   */
  constructor(credentials: readonly Credential[], pick: (credentials: readonly Credential[], host: H) => Credential | undefined) {
    this.credentials = credentials;
    this.#pick = pick;
    this.responseScrubber = new Matcher(credentials.flatMap((c) => needlesFor<SecretTag>(c.real, c.stub, { credential: c.name, kind: 'real' })));
    this.#guardBase = new Matcher(
      credentials.flatMap((c) => [
        ...needlesFor<SecretTag>(c.stub, c.stub, { credential: c.name, kind: 'stub' }),
        ...needlesFor<SecretTag>(c.real, c.stub, { credential: c.name, kind: 'real' }),
      ]),
    );
    // Every form, upper-case spellings included, becomes the one marker.
    const marked = (n: Needle<SecretTag>, marker: string): Needle<SecretTag> => ({ ...n, replacement: Buffer.from(marker), ...(n.caseless ? { replacementUpper: Buffer.from(marker) } : {}) });
    this.#logScrubber = new Matcher(
      credentials.flatMap((c) => [
        ...needlesFor<SecretTag>(c.real, c.stub, { credential: c.name, kind: 'real' }).map((n) => marked(n, `[redacted:${c.name}]`)),
        ...needlesFor<SecretTag>(c.stub, c.stub, { credential: c.name, kind: 'stub' }).map((n) => marked(n, `[stub:${c.name}]`)),
      ]),
    );
  }

  /** The credential whose hosts cover `host` (the operator allows at most one). */
  forHost(host: H): Credential | undefined {
    return this.#pick(this.credentials, host);
  }

  #inScope(cred: Credential, host: H): boolean {
    return this.#pick([cred], host) !== undefined;
  }

  /** Whether some credential may be sent to `host`: its responses are then scrubbed and must not be compressed. */
  hasScope(host: H): boolean {
    return this.forHost(host) !== undefined;
  }

  /**
   * What a request to `host` must not carry: the stubs of the credentials not scoped to
   * it, and every real value. Cached per set of credentials in scope.
   */
  requestGuard(host: H): Matcher<SecretTag> {
    // One guard per set of credentials in scope (a host has at most one), not per host,
    // and all of them views of one table: an agent can name thousands of hosts.
    let key = this.#scopeKeys.get(host.host);
    if (key === undefined) {
      key = this.credentials
        .filter((c) => this.#inScope(c, host))
        .map((c) => c.name)
        .join('\n');
      // Short strings, bounded; past the bound the scope is worked out per request.
      if (this.#scopeKeys.size < 4096) this.#scopeKeys.set(host.host, key);
    }
    let m = this.#guards.get(key);
    if (!m) {
      // The one table of every stub and real value, minus the stubs allowed here.
      const inScope = new Set(key.split('\n'));
      m = new Matcher(this.#guardBase, (n) => n.tag.kind === 'stub' && inScope.has(n.tag.credential));
      if (this.#guards.size < 64) this.#guards.set(key, m);
    }
    return m;
  }

  /** `text` with every stub and real value (any form) replaced by a marker: for log fields. */
  redact(text: string): string {
    return this.#logScrubber.replace(text).text;
  }

  /** Header value with real values replaced by stubs (response headers). */
  scrubValue(text: string): string {
    return this.responseScrubber.replace(text).text;
  }

  /**
   * A message for the agent (an error body) that may quote values a client or upstream
   * sent, whole: every real value in it (any form) becomes its stub FIRST, then it is cut
   * to {@link MAX_MESSAGE} characters. Cutting first would let a prefix of a value
   * through, which no longer matches any form. (Log text: {@link redact}, then cut.)
   */
  forAgent(message: string): string {
    return shorten(this.scrubValue(message), MAX_MESSAGE);
  }

  /**
   * Decides a request's credential handling. `headers` are the forwardable request
   * headers (hop-by-hop already removed, duplicates of sensitive names already refused by
   * headers.ts); `target` is the request target (path and query) as received.
   */
  planRequest(host: H, headers: ReadonlyArray<readonly [string, string]>, target: string): SwapPlan | SwapDeny {
    const guard = this.requestGuard(host);
    const refuse = (tag: SecretTag, location: string): SwapDeny =>
      tag.kind === 'stub'
        ? {
            ok: false,
            status: 403,
            reason: 'stub_out_of_scope',
            credential: tag.credential,
            location,
            message: `the stub of credential ${tag.credential} may only be sent to its hosts (spec.egress.credentials[${tag.credential}].hosts), not to ${host.host}`,
          }
        : {
            ok: false,
            status: 403,
            reason: 'real_credential',
            credential: tag.credential,
            location,
            message: `the request carries the real value of credential ${tag.credential}; send the stub from the agent's environment instead`,
          };

    // The host name itself (a stub spelled into a name under an allowed wildcard would
    // go out in DNS and SNI); it is canonical, so lower-case: the forms match any case.
    const hostHit = guard.first(host.host);
    if (hostHit) return refuse(hostHit.needle.tag, 'host');
    for (const form of [target, safeDecode(target)]) {
      const hit = guard.first(form);
      if (hit) return refuse(hit.needle.tag, 'target');
    }
    for (const [name, value] of headers) {
      // As sent, inside a Basic value, and percent-decoded (a partly escaped value, as
      // the request target is checked too).
      for (const form of [`${name}: ${value}`, decodeBasic(value) ?? '', value.includes('%') ? safeDecode(value) : '']) {
        const hit = form && guard.first(form);
        if (hit) return refuse(hit.needle.tag, `header:${name.toLowerCase()}`);
      }
    }

    const cred = this.forHost(host);
    if (!cred) return { ok: true, headers: headers.map(([n, v]) => [n, v]) };
    const wanted = cred.header.toLowerCase();
    const at = headers.map(([n]) => n.toLowerCase()).reduce<number[]>((acc, n, i) => (n === wanted ? [...acc, i] : acc), []);
    if (at.length > 1) {
      return { ok: false, status: 400, reason: 'duplicate_header', credential: cred.name, location: `header:${wanted}`, message: `more than one ${cred.header} header` };
    }
    const out = headers.map(([n, v]): [string, string] => [n, v]);
    const missing = (): SwapPlan | SwapDeny =>
      cred.require
        ? {
            ok: false,
            status: 403,
            reason: 'missing_stub',
            credential: cred.name,
            location: `header:${wanted}`,
            message: `requests to ${host.host} must carry the stub of credential ${cred.name} in ${cred.header} (${cred.scheme}); it is required (spec.egress.credentials[${cred.name}].require)`,
          }
        : { ok: true, headers: out, credential: cred };
    const index = at[0];
    if (index === undefined) return missing();
    const [name, value] = out[index] as [string, string];
    const swapped = swapValue(cred, value);
    if (swapped === MALFORMED) {
      return { ok: false, status: 400, reason: 'bad_basic', credential: cred.name, location: `header:${wanted}`, message: `${cred.header}: malformed Basic credentials (RFC 7617: base64 of user-id ":" password)` };
    }
    if (swapped === undefined) return missing();
    out[index] = [name, swapped];
    return { ok: true, headers: out, credential: cred, swapped: { credential: cred.name, location: `header:${wanted}` } };
  }
}

/** {@link swapValue}'s answer for a Basic value that does not decode to `user:password`. */
export const MALFORMED: unique symbol = Symbol('malformed');

/**
 * The header value with the stub replaced by the real value: for `raw` the bare stub;
 * for `bearer` and `basic` a `Bearer`, `token` or `Basic` value (the scheme the client
 * chose is kept); `undefined` when the value does not carry the stub that way;
 * {@link MALFORMED} for a Basic value that does not decode to `user:password`.
 */
export function swapValue(cred: Credential, value: string): string | typeof MALFORMED | undefined {
  switch (cred.scheme) {
    case 'raw':
      return value.trim() === cred.stub ? cred.real : undefined;
    case 'bearer':
    case 'basic': {
      // An Authorization token in any of the schemes the same tools use for it: GitHub
      // takes Bearer, `token` (gh, Octokit) and Basic (git) alike, so a credential of
      // either scheme swaps all three, in the scheme the client chose.
      // RFC 9110 section 11.1: the auth-scheme is case-insensitive; 1*SP before the token.
      const m = BEARER.exec(value);
      if (m) return m[2] === cred.stub ? `${m[1]?.toLowerCase() === 'token' ? 'token' : 'Bearer'} ${cred.real}` : undefined;
      if (!/^basic(\s|$)/i.test(value)) return undefined;
      const decoded = decodeBasic(value);
      if (decoded === undefined) return MALFORMED;
      const colon = decoded.indexOf(':');
      const user = decoded.slice(0, colon);
      const password = decoded.slice(colon + 1);
      if (password === cred.stub) return `Basic ${Buffer.from(`${user}:${cred.real}`, 'utf8').toString('base64')}`;
      if (user === cred.stub) return `Basic ${Buffer.from(`${cred.real}:${password}`, 'utf8').toString('base64')}`;
      return undefined;
    }
  }
}

/**
 * The `user:password` of a Basic value (RFC 7617 section 2), or undefined when the value
 * is not Basic, the base64 is not canonical (RFC 4648 section 3.5: re-encoding must give
 * the same text, so two spellings cannot carry one secret past a check), the text is not
 * UTF-8, or there is no colon.
 */
export function decodeBasic(value: string): string | undefined {
  const m = BASIC.exec(value);
  if (!m?.[1]) return undefined;
  const bytes = Buffer.from(m[1], 'base64');
  if (bytes.toString('base64') !== m[1]) return undefined;
  const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  if (Buffer.from(text, 'utf8').compare(bytes) !== 0 || !text.includes(':')) return undefined;
  return text;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}
