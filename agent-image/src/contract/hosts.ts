/**
 * Host names and host patterns as the egress proxy applies them, shared with the operator
 * (spec.egress.allow and spec.egress.credentials[].hosts, SpecValid) and the GitHub
 * plug-in (which stub to send): the canonical form of a host, the grammar and meaning of
 * an allowlist entry or credential host (`name`, `*.name`, optional `:port`), and which
 * credential a host gets. A pattern the operator accepts is one the proxy accepts, and a
 * host the operator calls allowed is one the proxy lets through. Pure.
 *
 * Written against the ways an agent would try to get around the proxy:
 *
 * - Every host is canonicalised once, the way the WHATWG URL host parser does it
 *   (https://url.spec.whatwg.org/#host-parsing: IPv4 in inet_aton forms, IPv6
 *   compression, UTS #46 IDN to punycode), so a string compare can never disagree with
 *   what is dialed. Anything a parser would silently rewrite (percent escapes, tabs,
 *   `user@`, soft hyphens, full-width dots and digits, a trailing dot) is refused
 *   instead of repaired: the input must already mean exactly one host.
 * - Name patterns never match IP literals, and a `*.` wildcard never crosses into a
 *   different registrable domain (Public Suffix List, private section included), so
 *   `*.amazonaws.com` does not reach `attacker.s3.amazonaws.com`.
 */
import { isIP } from 'node:net';
import { domainToASCII, domainToUnicode } from 'node:url';
import { getDomain } from 'tldts';

/** Why a host, port or pattern is refused: the proxy's refusal reason (its metrics label) for each. */
export type HostErrorReason = 'bad_host' | 'bad_port' | 'policy_error';

/**
 * A refused host (`bad_host`), port (`bad_port`) or host pattern (`policy_error`). The
 * message names the input, whole and JSON-quoted (see `show`); the proxy maps it to its
 * PolicyError with the same reason and message.
 */
export class HostError extends Error {
  override name = 'HostError';
  readonly reason: HostErrorReason;
  /**
   * For a refused pattern: what is wrong with it, phrased to follow the quoted pattern
   * (`covers a whole public suffix: ...`), so the operator can name its own field
   * (`spec.egress.allow[0]: "*.com" covers a whole public suffix: ...`). Else the message.
   */
  readonly detail: string;
  constructor(reason: HostErrorReason, message: string, detail = message) {
    super(message);
    this.reason = reason;
    this.detail = detail;
  }
}

/**
 * `value` quoted for a message: JSON escapes make CR, LF, NUL and invisible characters
 * visible. Whole, never cut here: this module does not know the credentials, and a value
 * cut before redaction would let a prefix of a secret through that no longer matches.
 * Whoever shows the message redacts it first and then shortens it (the proxy's swap.ts
 * `CredentialSet.forAgent`, audit.ts `Auditor`).
 */
function show(value: unknown): string {
  return JSON.stringify(typeof value === 'string' ? value : String(value));
}

// ---------------------------------------------------------------------------
// Hosts
// ---------------------------------------------------------------------------

/** A host as the policy compares it: lower-case ASCII (punycode), no trailing dot; IPv6 without brackets. */
export interface CanonicalHost {
  host: string;
  kind: 'dns' | 'ipv4' | 'ipv6';
}

/** Longest input looked at; anything longer cannot be a host (253 octets, RFC 1035 section 2.3.4) even as Unicode. */
export const MAX_INPUT = 1024;
const MAX_NAME = 253;
const MAX_LABEL = 63;
/** Letters, digits, hyphen (not at either end: RFC 952/1123) and underscore (found in real DNS names). */
const LABEL = /^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?$/;
/** The ASCII characters a host name may contain; everything else is a delimiter or a trick. */
const NAME_ASCII = /^[A-Za-z0-9._-]*$/;
const IPV6_CHARS = /^[0-9A-Fa-f:.]+$/;
/** C0 and C1 controls, space, DEL, and the Unicode spaces and invisible format characters. */
export const CONTROL_OR_SPACE = /[\u0000-\u0020\u007f-\u00a0\u00ad\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\ufeff]/;

function badHost(raw: unknown, why: string): HostError {
  return new HostError('bad_host', `host ${show(raw)}: ${why}`);
}

/** Eight 16-bit groups and the WHATWG serialisation (RFC 5952 compressed, lower case) of an IPv6 literal; undefined if it is not one. */
export function parseIpv6(addr: string): { text: string; groups: number[] } | undefined {
  // isIP accepts a zone id with almost any characters ("::1%x.allowed.com"): refuse it first.
  if (!IPV6_CHARS.test(addr) || isIP(addr) !== 6) return undefined;
  let text: string;
  try {
    text = new URL(`http://[${addr}]/`).hostname.slice(1, -1);
  } catch {
    return undefined;
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const lead = halves[0] ? halves[0].split(':') : [];
  const rest = halves[1] ? halves[1].split(':') : [];
  const fill = halves.length === 2 ? 8 - lead.length - rest.length : 0;
  const groups = [...lead, ...Array<string>(Math.max(fill, 0)).fill('0'), ...rest].map((g) => Number.parseInt(g, 16));
  if (groups.length !== 8 || groups.some((g) => !(g >= 0 && g <= 0xffff))) return undefined;
  return { text, groups };
}

/** Dotted quad of the IPv4 address held in two 16-bit groups. */
export function quad(hi: number, lo: number): string {
  return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
}

/** The IPv4 address of an IPv4-mapped IPv6 address (::ffff:0:0/96, RFC 4291 section 2.5.5.2), if it is one. */
export function mappedIpv4(groups: readonly number[]): string | undefined {
  return groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff ? quad(groups[6] ?? 0, groups[7] ?? 0) : undefined;
}

/** A DNS name already in canonical form (what {@link canonicalHost} returns for kind `dns`). */
function isCanonicalName(name: string): boolean {
  if (name.length === 0 || name.length > MAX_NAME || isIP(name) !== 0) return false;
  return name.split('.').every((l) => l.length <= MAX_LABEL && LABEL.test(l));
}

/**
 * Canonicalises a host name or IP literal as the WHATWG URL host parser does
 * (https://url.spec.whatwg.org/#concept-host-parser, via node:url `domainToASCII`):
 * inet_aton forms (`0x7f.1`, `2130706433`, `127.1`, `0177.0.0.1`, `0`) become a dotted
 * quad of kind `ipv4`; an IPv6 literal, bracketed or not, becomes its RFC 5952 text
 * without brackets, except IPv4-mapped IPv6 (`::ffff:a.b.c.d`), which is kind `ipv4`
 * because that is the address a dual-stack socket reaches; IDN becomes punycode (UTS #46).
 *
 * Refuses (HostError `bad_host`), rather than repairs: empty or over-long input; CR,
 * LF, NUL, tab, space, any control or invisible character; any ASCII character outside
 * letters, digits, `.`, `-`, `_` (so `%` escapes and zone ids, `@` userinfo, `:` ports,
 * `/?#\` delimiters and `*` anywhere); a trailing dot (`example.com.` is another name to
 * some resolvers); empty labels, labels over 63 or names over 253 octets (RFC 1035
 * section 2.3.4), a hyphen at either end of a label (RFC 952, RFC 1123 section 2.1);
 * `xn--` labels that are not valid punycode; and Unicode input not already in the form
 * it displays as (NFC, lower case, no characters UTS #46 maps or ignores: full-width
 * letters, digits and dots, soft hyphen, zero-width characters), since such a name
 * reads as one host and resolves as another.
 */
export function canonicalHost(raw: string): CanonicalHost {
  const hit = canonicalCache.get(raw);
  if (hit) return hit;
  const host = Object.freeze(canonicalHostUncached(raw));
  if (canonicalCache.size >= CANONICAL_CACHE_SIZE) canonicalCache.clear();
  canonicalCache.set(raw, host);
  return host;
}

/**
 * Hosts already canonicalised, by their raw text: every request of a keep-alive tunnel
 * carries the same Host, and UTS #46 processing is a measurable part of a request's cost.
 * Exact: {@link canonicalHost} is a pure function of its input; only accepted hosts are
 * kept (a refused one is refused again, with its reason), frozen, and the map is
 * emptied when full (bounded by entries of at most MAX_INPUT characters).
 */
const canonicalCache = new Map<string, CanonicalHost>();
const CANONICAL_CACHE_SIZE = 1024;

/**
 * Refuses (HostError `bad_host`, naming `raw`) an ASCII name over 253 octets, or with an
 * empty label, a label over 63 octets (RFC 1035 section 2.3.4), a character other than
 * letters, digits, `-` and `_`, a hyphen at either end (RFC 952, RFC 1123 section 2.1),
 * or an `xn--` label that is not valid punycode.
 */
function checkLabels(raw: string, ascii: string): void {
  if (ascii.length > MAX_NAME) throw badHost(raw, `name of ${ascii.length} octets is longer than 253`);
  for (const label of ascii.split('.')) {
    if (label === '') throw badHost(raw, 'empty label');
    if (label.length > MAX_LABEL) throw badHost(raw, `label of ${label.length} octets is longer than 63`);
    if (!LABEL.test(label)) throw badHost(raw, `label ${show(label)} is not letters, digits, "-" and "_" (no "-" at either end)`);
    if (label.startsWith('xn--')) {
      const unicode = domainToUnicode(label);
      if (unicode === label || domainToASCII(unicode) !== label) throw badHost(raw, `label ${show(label)} is not valid punycode`);
    }
  }
}

function canonicalHostUncached(raw: string): CanonicalHost {
  if (typeof raw !== 'string' || raw === '') throw badHost(raw, 'empty host');
  if (raw.length > MAX_INPUT) throw badHost(raw, `${raw.length} characters is too long for a host`);
  if (CONTROL_OR_SPACE.test(raw)) throw badHost(raw, 'control, space or invisible character');
  if (raw.includes('%')) throw badHost(raw, 'percent escapes and IPv6 zone ids are not allowed');

  if (raw.startsWith('[') || raw.endsWith(']') || raw.includes(':')) {
    const inner = raw.startsWith('[') && raw.endsWith(']') ? raw.slice(1, -1) : raw;
    const v6 = parseIpv6(inner);
    if (!v6) throw badHost(raw, 'not an IPv6 literal (a port or userinfo does not belong in a host)');
    const mapped = mappedIpv4(v6.groups);
    return mapped ? { host: mapped, kind: 'ipv4' } : { host: v6.text, kind: 'ipv6' };
  }

  const asciiPart = raw.replace(/[^\u0000-\u007f]/gu, '');
  if (!NAME_ASCII.test(asciiPart)) {
    const ch = [...asciiPart].find((c) => !NAME_ASCII.test(c)) ?? '';
    throw badHost(raw, ch === '*' ? 'wildcards are patterns, not hosts' : `character ${show(ch)} is not allowed in a host`);
  }
  if (raw.endsWith('.')) throw badHost(raw, 'trailing dot (send the name without it)');

  const ascii = domainToASCII(raw);
  if (ascii === '') throw badHost(raw, 'not a valid host (WHATWG URL host parser)');
  if (asciiPart.length !== raw.length && domainToUnicode(ascii) !== raw.normalize('NFC').toLowerCase()) {
    throw badHost(raw, `Unicode that maps to ${show(ascii)} only after UTS #46 mapping; send the punycode form`);
  }
  if (isIP(ascii) === 4) return { host: ascii, kind: 'ipv4' };

  checkLabels(raw, ascii);
  return { host: ascii, kind: 'dns' };
}

/**
 * Parses a port as RFC 3986 section 3.2.3 writes it, but strictly: 1-5 decimal digits,
 * no sign, no leading zero (`0443` is refused rather than guessed at), 1-65535.
 * @throws HostError `bad_port`
 */
export function parsePort(raw: string): number {
  if (typeof raw !== 'string' || !/^[1-9][0-9]{0,4}$/.test(raw) || Number(raw) > 65535) {
    throw new HostError('bad_port', `port ${show(raw)}: not a decimal port 1-65535 without leading zeros`);
  }
  return Number(raw);
}

// ---------------------------------------------------------------------------
// Name patterns: allowlist entries and credential hosts
// ---------------------------------------------------------------------------

const PSL = { allowPrivateDomains: true } as const;

/** A parsed allowlist entry or credential host ({@link parseHostPattern}). */
export interface HostPattern {
  /** Canonical spelling: `[*.]name[:port]`. */
  entry: string;
  wildcard: boolean;
  /** The name, or for `*.name` the part after `*.`. */
  base: string;
  /** For a wildcard: the registrable domain every matched name must share (PSL with private section). */
  registrable: string | undefined;
  /** The port the entry is limited to; undefined: ports 443 and 80 (allowlist), any (credential hosts). */
  port: number | undefined;
}

/** Compiled patterns by their source string; bounded so a config that churns cannot grow it. */
const patternCache = new Map<string, HostPattern>();

/**
 * Parses an allowlist entry or credential host. An entry is `example.com` (that name
 * exactly) or `*.example.com` (strict subdomains at any depth, never `example.com`
 * itself, and never a name in another registrable domain: {@link patternMatchesName}),
 * optionally with `:port` (decimal 1-65535, no leading zero). Names are canonicalised as
 * {@link canonicalHost} does (IDN to punycode, lower case).
 *
 * A wildcard whose base is a public suffix is refused: `*.com`, `*.co.uk`, and also the
 * private section of the Public Suffix List (https://publicsuffix.org/list/, via tldts):
 * `*.github.io`, `*.githubusercontent.com`, `*.s3.amazonaws.com`, whose subdomains belong
 * to different owners.
 *
 * @throws HostError `policy_error` naming the entry: `*`, `*.com`, `*.co.uk`,
 *   `*.github.io`, `foo.*`, `a.*.b.com`, IP literals (`1.2.3.4`, `127.1`, `[::1]`),
 *   a bad port (`:0`, `:0443`, `:65536`), a trailing dot, anything {@link canonicalHost} refuses.
 */
export function parseHostPattern(raw: string): HostPattern {
  const cached = typeof raw === 'string' ? patternCache.get(raw) : undefined;
  if (cached) return cached;
  const fail = (why: string) => new HostError('policy_error', `host pattern ${show(raw)} ${why}`, why);
  if (typeof raw !== 'string' || raw === '') throw fail('is empty');
  if (raw === '*' || raw === '*.' || raw.startsWith('*:')) throw fail('matches every host; name the domains the agent needs');
  if (raw.includes('/')) throw fail('is a URL or path; write the host name only (example.com, *.example.com, example.com:8443)');
  if (raw.startsWith('[') || (raw.match(/:/g) ?? []).length > 1) {
    throw fail('is an IPv6 literal or has more than one ":"; patterns are host names, and IP addresses are never matched by name');
  }
  let rest = raw;
  let port: number | undefined;
  const colon = raw.lastIndexOf(':');
  if (colon !== -1) {
    try {
      port = parsePort(raw.slice(colon + 1));
    } catch (e) {
      throw fail(`has a bad port: ${(e as Error).message}`);
    }
    rest = raw.slice(0, colon);
  }
  const wildcard = rest.startsWith('*.');
  const name = wildcard ? rest.slice(2) : rest;
  if (name.includes('*')) throw fail('has a "*" that is not the whole first label (write "*.example.com")');
  let host: CanonicalHost;
  try {
    host = canonicalHost(name);
  } catch (e) {
    throw fail(`is not a host name: ${(e as Error).message}`);
  }
  if (host.kind !== 'dns') throw fail(`is an IP address (${host.host}); patterns are host names, and IP addresses are never matched by name`);
  let registrable: string | undefined;
  if (wildcard) {
    registrable = getDomain(host.host, PSL) ?? undefined;
    if (registrable === undefined) {
      throw fail(
        getDomain(host.host) === null
          ? `covers a whole public suffix: "*.${host.host}" would match every domain registered under "${host.host}"; name the domains the agent needs (e.g. *.example.${host.host})`
          : `covers a whole public suffix: "${host.host}" is in the private section of the Public Suffix List (its subdomains belong to different owners); list the hosts the agent needs (e.g. name.${host.host})`,
      );
    }
  }
  const pattern: HostPattern = {
    entry: `${wildcard ? '*.' : ''}${host.host}${port === undefined ? '' : `:${port}`}`,
    wildcard,
    base: host.host,
    registrable,
    port,
  };
  if (patternCache.size >= 4096) patternCache.clear();
  patternCache.set(raw, pattern);
  return pattern;
}

/**
 * Whether `name` (canonical) is matched by `p`'s host part. `registrable` is computed at
 * most once per name. A wildcard matches strict subdomains only, and only those in the
 * same registrable domain as its base: under `*.amazonaws.com`, `sts.amazonaws.com`
 * matches, but `bucket.s3.amazonaws.com` and `ec2-1-2-3-4.compute-1.amazonaws.com` do
 * not (their own registrable domains, under private public suffixes, belong to anyone).
 */
export function patternMatchesName(p: HostPattern, name: string, registrable: () => string | null): boolean {
  if (!p.wildcard) return name === p.base;
  return name.endsWith(`.${p.base}`) && registrable() === p.registrable;
}

/** A lazily computed registrable domain of `name` (PSL, private section included). */
export function registrableOf(name: string): () => string | null {
  let value: string | null | undefined;
  return () => (value === undefined ? (value = getDomain(name, PSL)) : value);
}

/**
 * The credential whose `hosts` patterns match `host` (the pattern rules of
 * {@link parseHostPattern}; a `:port` on a pattern is validated and then ignored), if any.
 * IP literals match no credential.
 * @throws HostError `policy_error` when two credentials match the host (the operator
 *   refuses such a config; the proxy must not pick one), or when a pattern is invalid.
 */
export function credentialFor<C extends { name: string; hosts: readonly string[] }>(credentials: readonly C[], host: CanonicalHost): C | undefined {
  const name = host?.kind === 'dns' && isCanonicalName(host.host) ? host.host : undefined;
  const registrable = registrableOf(name ?? '');
  let found: C | undefined;
  for (const credential of credentials) {
    let hit = false;
    for (const raw of credential.hosts) {
      let p: HostPattern;
      try {
        p = parseHostPattern(raw);
      } catch (e) {
        throw new HostError('policy_error', `credential ${show(credential.name)}: ${(e as Error).message}`);
      }
      if (name !== undefined && patternMatchesName(p, name, registrable)) hit = true;
    }
    if (!hit) continue;
    if (found) {
      throw new HostError('policy_error', `credentials ${show(found.name)} and ${show(credential.name)} both match ${name}; scope them to different hosts`);
    }
    found = credential;
  }
  return found;
}

/**
 * The first of `patterns` (allowlist entries) that lets `host` through on `port`: an
 * entry without a port matches ports 443 and 80 only, one with a port that port only.
 * IP literals never match; a host that is not in canonical form never matches (fail
 * closed for a caller that built one by hand).
 */
export function allowlistMatch(patterns: readonly HostPattern[], host: CanonicalHost, port: number): HostPattern | undefined {
  if (host?.kind !== 'dns' || !isCanonicalName(host.host)) return undefined;
  if (!Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  const registrable = registrableOf(host.host);
  for (const p of patterns) {
    if (p.port === undefined ? port !== 443 && port !== 80 : port !== p.port) continue;
    if (patternMatchesName(p, host.host, registrable)) return p;
  }
  return undefined;
}

/**
 * The first of `patterns` that matches the canonical DNS name `name`, ports ignored (the
 * proxy's DNS listener: a name resolves when any entry allows it, on whatever port), or
 * undefined. A name not in canonical form never matches. The same matching as
 * {@link allowlistMatch}.
 */
export function allowlistNameMatch(patterns: readonly HostPattern[], name: string): HostPattern | undefined {
  if (!isCanonicalName(name)) return undefined;
  const registrable = registrableOf(name);
  return patterns.find((p) => patternMatchesName(p, name, registrable));
}

/**
 * Whether every name `inner` matches is matched by `outer` (ports ignored): the operator's
 * "a credential host must be allowed by spec.egress.allow". An exact name is covered by
 * the same name or by a wildcard that matches it; a wildcard only by a wildcard over the
 * same or a parent base, in the same registrable domain.
 */
export function patternCovers(outer: HostPattern, inner: HostPattern): boolean {
  if (!inner.wildcard) return patternMatchesName(outer, inner.base, registrableOf(inner.base));
  return outer.wildcard && (inner.base === outer.base || inner.base.endsWith(`.${outer.base}`)) && inner.registrable === outer.registrable;
}

/**
 * Whether some name is matched by both patterns (ports ignored): two credentials whose
 * hosts overlap would both match that name, which {@link credentialFor} refuses.
 */
export function patternsOverlap(a: HostPattern, b: HostPattern): boolean {
  if (!a.wildcard && !b.wildcard) return a.base === b.base;
  if (!a.wildcard) return patternMatchesName(b, a.base, registrableOf(a.base));
  if (!b.wildcard) return patternMatchesName(a, b.base, registrableOf(b.base));
  return patternCovers(a, b) || patternCovers(b, a);
}
