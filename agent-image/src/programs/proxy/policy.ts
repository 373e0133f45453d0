/**
 * The egress proxy's policy layer: which hosts a request may name, which addresses the
 * proxy may dial, which credential a host gets, and whether the names a request carries
 * agree. Pure except `resolveChecked`, which calls the injected resolver.
 *
 * Written against the ways an agent would try to get around it:
 *
 * - Hosts and host patterns follow the pod contract (contract/hosts.ts, shared with the
 *   operator and the GitHub plug-in): every host the proxy sees is canonicalised once, as
 *   the WHATWG URL host parser does it, and anything a parser would silently rewrite is
 *   refused; name patterns never match IP literals, and a `*.` wildcard never crosses
 *   into a different registrable domain. This module raises the contract's refusals as
 *   {@link PolicyError}s with the same reason.
 * - Names are resolved once, every answer is vetted (one bad answer refuses the name:
 *   DNS rebinding), and the vetted address is the one returned for dialing. The lookup is
 *   of the absolute name, so resolv.conf search domains (Kubernetes' ndots:5) cannot
 *   substitute an in-cluster name for a public one.
 * - Address classes from the IANA special-purpose registries (RFC 6890) are refused,
 *   including IPv4 carried inside IPv6; cloud metadata endpoints, link-local, multicast,
 *   broadcast and "this network" are refused even when `allowCidrs` covers them.
 */
import { promises as dns } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import * as hosts from '../../contract/hosts.ts';
import { allowlistMatch, CONTROL_OR_SPACE, HostError, mappedIpv4, MAX_INPUT, parseHostPattern, parseIpv6, quad, type CanonicalHost } from '../../contract/hosts.ts';
import { parseCidr, type Cidr } from '../../contract/net.ts';

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/** Why a request is refused; also the metrics label. */
export type DenyReason = 'bad_host' | 'not_allowed' | 'bad_port' | 'forbidden_address' | 'dns_failure' | 'host_mismatch' | 'policy_error';

/** The HTTP status the proxy answers each refusal with (421 Misdirected Request: RFC 9110 section 15.5.20). */
export const DENY_STATUS: Readonly<Record<DenyReason, number>> = Object.freeze({
  bad_host: 400,
  not_allowed: 403,
  bad_port: 403,
  forbidden_address: 403,
  dns_failure: 502,
  host_mismatch: 421,
  policy_error: 403,
});

/**
 * A refusal: `reason` is the metrics label, `status` the HTTP status the proxy answers
 * with (see {@link DENY_STATUS}). The message names the offending input (whole,
 * JSON-quoted so control characters are visible); whoever shows it redacts credential
 * values first, then shortens it.
 */
export class PolicyError extends Error {
  readonly reason: DenyReason;
  readonly status: number;

  constructor(reason: DenyReason, message: string) {
    super(message);
    this.name = 'PolicyError';
    this.reason = reason;
    this.status = DENY_STATUS[reason];
  }
}

/**
 * `value` quoted for a message: JSON escapes make CR, LF, NUL and invisible characters
 * visible. Whole, never cut here: this module does not know the credentials, and a value
 * cut before redaction would let a prefix of a secret through that no longer matches.
 * Whoever shows the message redacts it first and then shortens it (swap.ts
 * `CredentialSet.forAgent`, audit.ts `Auditor`). Inputs are bounded by the header limit.
 */
function show(value: unknown): string {
  return JSON.stringify(typeof value === 'string' ? value : String(value));
}

// ---------------------------------------------------------------------------
// Hosts (the rules are the contract's: contract/hosts.ts)
// ---------------------------------------------------------------------------

export type { CanonicalHost };

/** The contract's refusal as the proxy's: same reason, same message. */
function policyError(e: unknown): unknown {
  return e instanceof HostError ? new PolicyError(e.reason, e.message) : e;
}

function badHost(raw: unknown, why: string): PolicyError {
  return new PolicyError('bad_host', `host ${show(raw)}: ${why}`);
}

/** Whether a config value really is an array (not a type guard: `Array.isArray` would widen a readonly array to any[]). */
function isList(value: unknown): boolean {
  return Array.isArray(value);
}

/** contract/hosts.ts canonicalHost. @throws PolicyError `bad_host` */
export function canonicalHost(raw: string): CanonicalHost {
  try {
    return hosts.canonicalHost(raw);
  } catch (e) {
    throw policyError(e);
  }
}

/** contract/hosts.ts parsePort. @throws PolicyError `bad_port` */
export function parsePort(raw: string): number {
  try {
    return hosts.parsePort(raw);
  } catch (e) {
    throw policyError(e);
  }
}

/** contract/hosts.ts credentialFor (the credential a host gets). @throws PolicyError `policy_error` */
export function credentialFor<C extends { name: string; hosts: readonly string[] }>(credentials: readonly C[], host: CanonicalHost): C | undefined {
  try {
    return hosts.credentialFor(credentials, host);
  } catch (e) {
    throw policyError(e);
  }
}

/**
 * Parses an authority as in a CONNECT request-target (RFC 9110 section 9.3.6) or a Host
 * header (RFC 9110 section 7.2): `host:port`, `[v6]:port`, `host` or `[v6]`;
 * `defaultPort` when the port is absent. An IPv6 literal must be bracketed (`::1:443` is
 * ambiguous and refused), and an empty port (`host:`) is refused although RFC 3986 allows
 * it: no client sends one.
 * @throws PolicyError `bad_host` (anything {@link canonicalHost} refuses, unbalanced
 *   brackets, a bare IPv6 literal), `bad_port` (see {@link parsePort}), `policy_error`
 *   (a `defaultPort` outside 1-65535: the caller's bug)
 */
export function parseAuthority(authority: string, defaultPort: number): { host: CanonicalHost; port: number } {
  if (!Number.isInteger(defaultPort) || defaultPort < 1 || defaultPort > 65535) {
    throw new PolicyError('policy_error', `default port ${show(defaultPort)} is not 1-65535`);
  }
  if (typeof authority !== 'string' || authority === '') throw badHost(authority, 'empty authority');
  if (authority.length > MAX_INPUT) throw badHost(authority, 'too long for an authority');
  if (CONTROL_OR_SPACE.test(authority)) throw badHost(authority, 'control, space or invisible character');

  let hostPart: string;
  let portPart: string | undefined;
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close === -1) throw badHost(authority, 'unclosed "["');
    hostPart = authority.slice(0, close + 1);
    const rest = authority.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) throw badHost(authority, `${show(rest)} after "]"`);
      portPart = rest.slice(1);
    }
  } else {
    const colon = authority.indexOf(':');
    if (colon !== -1 && authority.indexOf(':', colon + 1) !== -1) {
      throw badHost(authority, 'more than one ":" (an IPv6 literal must be in brackets)');
    }
    hostPart = colon === -1 ? authority : authority.slice(0, colon);
    if (colon !== -1) portPart = authority.slice(colon + 1);
  }
  const host = canonicalHost(hostPart);
  const port = portPart === undefined ? defaultPort : parsePort(portPart);
  return { host, port };
}

/**
 * The authority for a canonical host, as a CONNECT target or Host header carries it:
 * IPv6 in brackets, `:port` left out when it equals `defaultPort` (RFC 9110 section 4.2).
 */
export function formatAuthority(host: CanonicalHost, port: number, defaultPort?: number): string {
  const h = host.kind === 'ipv6' ? `[${host.host}]` : host.host;
  return port === defaultPort ? h : `${h}:${port}`;
}

// ---------------------------------------------------------------------------
// The allowlist
// ---------------------------------------------------------------------------

/** The compiled allowlist (default deny). */
export interface Allowlist {
  /**
   * The first entry that allows `host` on `port`, as `{ rule }` (its canonical spelling),
   * or undefined. IP literals never match; a host that is not in canonical form never
   * matches (fail closed for a caller that built one by hand).
   */
  match(host: CanonicalHost, port: number): { rule: string } | undefined;
  /** The entries in canonical spelling (punycode, lower case), in the order given. */
  readonly entries: readonly string[];
}

/**
 * Compiles allowlist entries (default deny), each as contract/hosts.ts parseHostPattern
 * reads it (`example.com`, `*.example.com`, optional `:port`; without a port an entry
 * matches ports 443 and 80 only: allowlistMatch).
 *
 * @throws PolicyError `policy_error` naming the bad entry: `*`, `*.com`, `*.co.uk`,
 *   `*.github.io`, `foo.*`, `a.*.b.com`, IP literals (`1.2.3.4`, `127.1`, `[::1]`),
 *   a bad port, a trailing dot, anything {@link canonicalHost} refuses.
 */
export function compileAllowlist(entries: readonly string[]): Allowlist {
  if (!isList(entries)) throw new PolicyError('policy_error', 'allowlist: not an array of entries');
  const patterns = entries.map((entry, i) => {
    try {
      return parseHostPattern(entry);
    } catch (e) {
      throw new PolicyError('policy_error', `allowlist entry ${i}: ${(e as Error).message}`);
    }
  });
  const canonical = Object.freeze(patterns.map((p) => p.entry));
  return Object.freeze({
    entries: canonical,
    match(host: CanonicalHost, port: number): { rule: string } | undefined {
      const p = allowlistMatch(patterns, host, port);
      return p ? { rule: p.entry } : undefined;
    },
  });
}

// ---------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------

/** What {@link checkAddress} decides; `why` names the address class and its source, for logs. */
export type AddressVerdict = { ok: true } | { ok: false; why: string };

interface Range {
  list: BlockList;
  why: string;
}

function ranges(family: 'ipv4' | 'ipv6', table: ReadonlyArray<readonly [string, string]>): Range[] {
  return table.map(([cidr, why]) => {
    const [address = '', bits = ''] = cidr.split('/');
    const list = new BlockList();
    list.addSubnet(address, Number(bits), family);
    return { list, why: `in ${cidr}, ${why},` };
  });
}

/**
 * Never dialed, whatever `allowCidrs` says: nothing legitimate is reached through an
 * egress proxy there, and a broad `allowCidrs` entry (`169.254.0.0/16`, `100.64.0.0/10`,
 * `fd00::/8`) must not switch the metadata protection off by accident.
 */
const V4_NEVER = ranges('ipv4', [
  ['0.0.0.0/8', '"this network" (RFC 791, RFC 6890; 0.0.0.0 reaches the local host)'],
  ['169.254.0.0/16', 'link-local (RFC 3927; cloud instance metadata 169.254.169.254, ECS 169.254.170.2)'],
  ['224.0.0.0/4', 'multicast (RFC 5771)'],
  ['255.255.255.255/32', 'limited broadcast (RFC 919, RFC 6890)'],
  ['168.63.129.16/32', 'Azure platform endpoint (WireServer)'],
  ['100.100.100.200/32', 'Alibaba Cloud instance metadata'],
  ['192.0.0.192/32', 'Oracle Cloud instance metadata'],
]);

/** Refused unless inside `allowCidrs` (IANA IPv4 special-purpose registry, RFC 6890). */
const V4_DENY = ranges('ipv4', [
  ['127.0.0.0/8', 'loopback (RFC 1122)'],
  ['10.0.0.0/8', 'private-use (RFC 1918)'],
  ['172.16.0.0/12', 'private-use (RFC 1918)'],
  ['192.168.0.0/16', 'private-use (RFC 1918)'],
  ['100.64.0.0/10', 'shared address space, CGNAT (RFC 6598)'],
  ['192.0.0.0/24', 'IETF protocol assignments (RFC 6890)'],
  ['192.0.2.0/24', 'documentation TEST-NET-1 (RFC 5737)'],
  ['198.51.100.0/24', 'documentation TEST-NET-2 (RFC 5737)'],
  ['203.0.113.0/24', 'documentation TEST-NET-3 (RFC 5737)'],
  ['192.88.99.0/24', 'deprecated 6to4 relay anycast (RFC 7526)'],
  ['198.18.0.0/15', 'benchmarking (RFC 2544)'],
  ['240.0.0.0/4', 'reserved (RFC 1112)'],
]);

/** Never dialed (see {@link V4_NEVER}); provider metadata addresses as sandbox-runtime lists them. */
const V6_NEVER = ranges('ipv6', [
  ['::/128', 'unspecified (RFC 4291)'],
  ['fe80::/10', 'link-local (RFC 4291)'],
  ['ff00::/8', 'multicast (RFC 4291)'],
  ['fd00:ec2::/32', 'AWS service block with instance metadata fd00:ec2::254'],
  ['fd20:ce::254/128', 'Google Cloud instance metadata'],
  ['fd00:c1::a9fe:a9fe/128', 'Oracle Cloud instance metadata'],
  ['fd00:42::42/128', 'Scaleway instance metadata'],
  ['fd00:a9fe:a9fe::1/128', 'Akamai/Linode instance metadata'],
  ['fd00:100::100:200/128', 'Alibaba Cloud instance metadata'],
]);

/**
 * Refused unless inside `allowCidrs` (IANA IPv6 special-purpose registry, RFC 6890), most
 * specific first so the reason names the narrowest class. The IPv4-embedding forms are
 * here as whole ranges (smokescreen refuses them outright); when one is allowed, the IPv4
 * it carries is still judged on its own.
 */
const V6_DENY = ranges('ipv6', [
  ['::1/128', 'loopback (RFC 4291)'],
  ['::/96', 'deprecated IPv4-compatible (RFC 4291 section 2.5.5.1)'],
  ['::ffff:0:0:0/96', 'IPv4-translated (RFC 2765)'],
  ['64:ff9b::/96', 'NAT64 well-known prefix (RFC 6052)'],
  ['64:ff9b:1::/48', 'NAT64 local-use prefix (RFC 8215)'],
  ['100::/64', 'discard-only (RFC 6666)'],
  ['2001::/32', 'Teredo (RFC 4380)'],
  ['2001:db8::/32', 'documentation (RFC 3849)'],
  ['2001::/23', 'IETF protocol assignments (RFC 2928)'],
  ['2002::/16', '6to4 (RFC 3056)'],
  ['3fff::/20', 'documentation (RFC 9637)'],
  ['5f00::/16', 'SRv6 SIDs (RFC 9602)'],
  ['fec0::/10', 'deprecated site-local (RFC 3879)'],
  ['fc00::/7', 'unique local (RFC 4193)'],
]);

/** Only 2000::/3 is allocated for global unicast (RFC 4291 section 2.4, IANA IPv6 address space). */
const V6_GLOBAL = ranges('ipv6', [['2000::/3', 'global unicast']])[0]?.list ?? new BlockList();

/**
 * The IPv4 addresses an IPv6 address carries in a form the network delivers to that IPv4
 * host: IPv4-compatible (::a.b.c.d, RFC 4291; except :: and ::1, which are judged as
 * themselves: ::1 carries 0.0.0.1 and must stay liftable as loopback),
 * IPv4-translated (RFC 2765), NAT64 well-known prefix /96 (RFC 6052 section 2.2), 6to4
 * (RFC 3056 section 2: bits 16-47), Teredo (RFC 4380 section 4: server in bits 32-63,
 * client as the bitwise complement of the last 32 bits). IPv4-mapped is handled before.
 * The local-use NAT64 prefix's layout cannot be told from the address (RFC 6052 allows
 * /32 to /96), so it is refused as a whole range instead.
 */
function embeddedIpv4(g: readonly number[]): Array<{ v4: string; form: string }> {
  const at = (i: number) => g[i] ?? 0;
  const zero = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  const out: Array<{ v4: string; form: string }> = [];
  if (zero(0, 6) && (at(6) !== 0 || at(7) > 1)) out.push({ v4: quad(at(6), at(7)), form: 'IPv4-compatible' });
  if (zero(0, 4) && at(4) === 0xffff && at(5) === 0) out.push({ v4: quad(at(6), at(7)), form: 'IPv4-translated' });
  if (at(0) === 0x64 && at(1) === 0xff9b && zero(2, 6)) out.push({ v4: quad(at(6), at(7)), form: 'NAT64' });
  if (at(0) === 0x2002) out.push({ v4: quad(at(1), at(2)), form: '6to4' });
  if (at(0) === 0x2001 && at(1) === 0) {
    out.push({ v4: quad(at(2), at(3)), form: 'Teredo server' });
    out.push({ v4: quad(at(6) ^ 0xffff, at(7) ^ 0xffff), form: 'Teredo client' });
  }
  return out;
}

interface CompiledCidrs {
  v4: BlockList;
  v6: BlockList;
}

const cidrCache = new Map<string, CompiledCidrs>();

/** Parses `allowCidrs` into one BlockList per family; cached by content. */
function compileCidrs(cidrs: readonly string[]): CompiledCidrs {
  if (!isList(cidrs)) throw new PolicyError('policy_error', 'allowCidrs: not an array');
  const key = JSON.stringify(cidrs);
  const cached = cidrCache.get(key);
  if (cached) return cached;
  const compiled: CompiledCidrs = { v4: new BlockList(), v6: new BlockList() };
  cidrs.forEach((cidr, i) => {
    let c: Cidr;
    try {
      c = parseCidr(cidr, `egress.allowCidrs[${i}]`);
    } catch (e) {
      throw new PolicyError('policy_error', (e as Error).message);
    }
    (c.family === 4 ? compiled.v4 : compiled.v6).addSubnet(c.address, c.prefix, c.family === 4 ? 'ipv4' : 'ipv6');
  });
  if (cidrCache.size >= 64) cidrCache.clear();
  cidrCache.set(key, compiled);
  return compiled;
}

/**
 * Checks `allowCidrs` once (at startup) so a bad entry fails the proxy rather than every
 * request. The grammar is the contract's (contract/net.ts parseCidr), the one the operator
 * and egress-init apply.
 * @throws PolicyError `policy_error` naming the entry
 */
export function validateAllowCidrs(allowCidrs: readonly string[]): void {
  compileCidrs(allowCidrs);
}

function judgeV4(ip: string, allow: CompiledCidrs): AddressVerdict {
  const never = V4_NEVER.find((r) => r.list.check(ip, 'ipv4'));
  if (never) return { ok: false, why: `${ip} is ${never.why} never allowed (allowCidrs notwithstanding)` };
  if (allow.v4.check(ip, 'ipv4')) return { ok: true };
  const denied = V4_DENY.find((r) => r.list.check(ip, 'ipv4'));
  return denied ? { ok: false, why: `${ip} is ${denied.why} and not in allowCidrs` } : { ok: true };
}

/**
 * Whether an IP may be dialed. Refused, unless inside one of `allowCidrs`: loopback,
 * RFC 1918, CGNAT 100.64/10, 192.0.0/24, documentation and benchmarking ranges, 240/4,
 * the deprecated 6to4 relay anycast, ::1, ULA fc00::/7, site-local fec0::/10, IPv6
 * outside 2000::/3, and the IPv4-embedding IPv6 ranges. Refused always, `allowCidrs`
 * notwithstanding: 0.0.0.0/8 and ::, link-local (169.254/16, fe80::/10), multicast,
 * 255.255.255.255, and cloud metadata addresses (169.254.169.254, 168.63.129.16,
 * 100.100.100.200, 192.0.0.192, fd00:ec2::/32, ...). Sources: RFC 6890 and the IANA
 * special-purpose registries; each `why` names the range and its RFC.
 *
 * IPv4 carried in IPv6: IPv4-mapped (::ffff:a.b.c.d) is judged exactly as that IPv4
 * address. IPv4-compatible, IPv4-translated, NAT64 64:ff9b::/96 (RFC 6052), 6to4
 * 2002::/16 (RFC 3056) and Teredo 2001::/32 (RFC 4380) are refused as ranges unless an
 * IPv6 `allowCidrs` entry covers them (a DNS64 network adds 64:ff9b::/96), and even
 * then the IPv4 they carry must pass on its own: an IPv6 entry never lifts an IPv4 denial.
 *
 * `ip` must be a plain literal: dotted-quad IPv4 or IPv6 without zone id or brackets;
 * anything else (`127.1`, `fe80::1%eth0`) is refused.
 * @throws PolicyError `policy_error` when `allowCidrs` is malformed (see {@link validateAllowCidrs})
 */
export function checkAddress(ip: string, allowCidrs: readonly string[]): AddressVerdict {
  const allow = compileCidrs(allowCidrs);
  if (typeof ip === 'string' && isIP(ip) === 4) return judgeV4(ip, allow);
  const v6 = typeof ip === 'string' ? parseIpv6(ip) : undefined;
  if (!v6) return { ok: false, why: `${show(ip)} is not an IP address (dotted-quad IPv4, or IPv6 without zone id)` };
  const mapped = mappedIpv4(v6.groups);
  if (mapped !== undefined) {
    const verdict = judgeV4(mapped, allow);
    return verdict.ok ? verdict : { ok: false, why: `${v6.text} is IPv4-mapped: ${verdict.why}` };
  }
  const never = V6_NEVER.find((r) => r.list.check(v6.text, 'ipv6'));
  if (never) return { ok: false, why: `${v6.text} is ${never.why} never allowed (allowCidrs notwithstanding)` };
  if (!allow.v6.check(v6.text, 'ipv6')) {
    const denied = V6_DENY.find((r) => r.list.check(v6.text, 'ipv6'));
    if (denied) return { ok: false, why: `${v6.text} is ${denied.why} and not in allowCidrs` };
    if (!V6_GLOBAL.check(v6.text, 'ipv6')) return { ok: false, why: `${v6.text} is outside global unicast 2000::/3 (RFC 4291) and not in allowCidrs` };
  }
  for (const { v4, form } of embeddedIpv4(v6.groups)) {
    const verdict = judgeV4(v4, allow);
    if (!verdict.ok) return { ok: false, why: `${v6.text} carries IPv4 ${v4} (${form}): ${verdict.why}` };
  }
  return { ok: true };
}

// ---------------------------------------------------------------------------
// Resolution
// ---------------------------------------------------------------------------

/** A resolver: every A and AAAA address of `host`, in the order to try them. */
export type Lookup = (host: string) => Promise<Array<{ address: string; family: number }>>;

/** The system resolver (getaddrinfo through `dns.promises.lookup`, all addresses, resolver order). */
export const systemLookup: Lookup = (host) => dns.lookup(host, { all: true, order: 'verbatim' });

/**
 * Resolves once and vets. An IP literal is checked directly (no lookup). A name is
 * looked up as an absolute name (`"api.example.com."`: resolv.conf search domains, such
 * as Kubernetes' `<ns>.svc.cluster.local` with ndots:5, are not tried first, so a
 * Service called `example` in a namespace called `com` cannot answer for `example.com`;
 * a consequence: glibc does not match an absolute name against /etc/hosts, so pod
 * `hostAliases` do not apply to the proxy's lookups);
 * EVERY returned address must pass {@link checkAddress}, so a name that resolves to one
 * public and one private address is refused (DNS rebinding, RFC 6890 ranges behind a
 * public name). Returns the first address in resolver order, IPv4-mapped answers as
 * IPv4: the caller must dial exactly this address, never the name again.
 *
 * `lookup` defaults to {@link systemLookup}; its `family` field is not trusted (the
 * address text decides).
 * @throws PolicyError `dns_failure` (lookup failed, no addresses, a non-address
 *   answer), `forbidden_address` (an address refused, naming why), `policy_error`
 *   (malformed `allowCidrs`, or a `host` not in canonical form)
 */
export async function resolveChecked(host: CanonicalHost, allowCidrs: readonly string[], lookup: Lookup = systemLookup): Promise<{ address: string; family: 4 | 6 }> {
  compileCidrs(allowCidrs);
  let again: CanonicalHost | undefined;
  try {
    again = canonicalHost(host?.host);
  } catch {
    again = undefined;
  }
  if (!again || again.host !== host.host || again.kind !== host.kind) {
    throw new PolicyError('policy_error', `host ${show(host?.host)} is not in canonical form; pass what canonicalHost returned`);
  }
  if (host.kind !== 'dns') {
    const verdict = checkAddress(host.host, allowCidrs);
    if (!verdict.ok) throw new PolicyError('forbidden_address', `address ${host.host} refused: ${verdict.why}`);
    return { address: host.host, family: host.kind === 'ipv4' ? 4 : 6 };
  }

  let answers: Array<{ address: string; family: number }>;
  try {
    answers = await lookup(`${host.host}.`);
  } catch (e) {
    const code = (e as { code?: unknown } | null)?.code;
    throw new PolicyError('dns_failure', `${host.host} did not resolve${typeof code === 'string' ? ` (${code})` : ''}`);
  }
  if (!Array.isArray(answers) || answers.length === 0) throw new PolicyError('dns_failure', `${host.host} resolved to no addresses`);

  let first: { address: string; family: 4 | 6 } | undefined;
  for (const answer of answers) {
    const address: unknown = (answer as { address?: unknown } | null)?.address;
    if (typeof address !== 'string' || isIP(address) === 0) {
      throw new PolicyError('dns_failure', `${host.host} resolved to ${show(address)}, which is not an IP address`);
    }
    // A zone id (fe80::1%eth0) passes isIP and is refused here as forbidden.
    const verdict = checkAddress(address, allowCidrs);
    if (!verdict.ok) throw new PolicyError('forbidden_address', `${host.host} resolves to a refused address: ${verdict.why}`);
    if (!first) {
      const v6 = isIP(address) === 6 ? parseIpv6(address) : undefined;
      const mapped = v6 ? mappedIpv4(v6.groups) : undefined;
      first = v6 && mapped === undefined ? { address: v6.text, family: 6 } : { address: mapped ?? address, family: 4 };
    }
  }
  if (!first) throw new PolicyError('dns_failure', `${host.host} resolved to no addresses`);
  return first;
}

// ---------------------------------------------------------------------------
// Host agreement
// ---------------------------------------------------------------------------

/**
 * Host agreement: every present value (CONNECT target, TLS SNI, Host header,
 * absolute-form URL host), already canonicalised, must name the same host (equal `host`
 * and `kind`: the canonical forms compare as strings, so `EXAMPLE.com` and `example.com`
 * agree once canonicalised, and a value not in canonical form disagrees), and every
 * port that is given must be equal. Undefined values are skipped. RFC 9110 section
 * 7.4 and 15.5.20: a request for another origin on this connection is answered 421.
 * @throws PolicyError `host_mismatch`
 */
export function assertSameHost(...hosts: Array<{ host: CanonicalHost; port?: number } | undefined>): void {
  const present = hosts.filter((h): h is { host: CanonicalHost; port?: number } => h !== undefined);
  const first = present[0];
  if (!first) return;
  const firstPort = present.find((h) => h.port !== undefined);
  for (const h of present) {
    if (h.host?.host !== first.host?.host || h.host?.kind !== first.host?.kind) {
      throw new PolicyError('host_mismatch', `${show(first.host?.host)} and ${show(h.host?.host)} name different hosts`);
    }
    if (h.port !== undefined && firstPort && h.port !== firstPort.port) {
      throw new PolicyError('host_mismatch', `${first.host.host}: port ${firstPort.port} and port ${h.port} disagree`);
    }
  }
}
