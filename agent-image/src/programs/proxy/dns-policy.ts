/**
 * Which DNS names the proxy's DNS listener (dns.ts) resolves for the pod, and which it
 * answers NXDOMAIN without asking anyone. Pure: no I/O.
 *
 * A name resolves when it is allowed by `egress.allow` (the host-pattern matching of
 * contract/hosts.ts, ports ignored: DNS has none) or is one of the in-cluster Service
 * names the Agent declares (contract `egress.inClusterHosts`, with their `.svc` and
 * `.svc.<cluster domain>` forms). Everything else is NXDOMAIN, and is never sent upstream:
 * a query name is data the agent chose, so forwarding it would be a channel out
 * (`<secret>.attacker.example` reaches the attacker's name server through any recursive
 * resolver).
 *
 * Search-list expansion: a Kubernetes pod has `search <ns>.svc.cluster.local
 * svc.cluster.local cluster.local` and `options ndots:5` (resolv.conf(5)), so a stub resolver
 * asks `api.github.com.<ns>.svc.cluster.local` and the other expansions before the name it
 * was given. Each expansion is answered NXDOMAIN at once (no upstream query), and its
 * verdict names the name the client meant (`meant`: the query with the search suffix
 * removed), so the audit trail can say one line per meant name rather than one per
 * expansion.
 */
import { allowlistNameMatch, canonicalHost, parseHostPattern, type HostPattern } from '../../contract/hosts.ts';

/** The compiled inputs of {@link decideName}. */
export interface DnsPolicy {
  /** `egress.allow`, parsed. */
  readonly allow: readonly HostPattern[];
  /** Every accepted spelling of every declared in-cluster Service name (canonical, no trailing dot). */
  readonly inCluster: ReadonlySet<string>;
  /** The resolver's search list (canonical, no trailing dot), longest first. */
  readonly search: readonly string[];
}

/** Why a name resolves or does not: the `reason` label of the proxy's DNS metric and audit lines. */
export type DnsNameReason = 'allowed' | 'in_cluster' | 'not_allowed' | 'search_expansion' | 'bad_name';

/**
 * What to answer for a name. `resolve`: ask the upstream resolver for exactly `name`
 * (canonical, absolute); `nxdomain`: answer NXDOMAIN, ask no one. `meant`: the name the
 * client meant (the query without a search suffix), for one audit line per meant name.
 */
export type DnsVerdict =
  | { action: 'resolve'; reason: 'allowed' | 'in_cluster'; name: string; rule?: string }
  | { action: 'nxdomain'; reason: 'not_allowed' | 'search_expansion' | 'bad_name'; meant: string };

/** Longest query name looked at (RFC 1035 section 2.3.4: 255 octets on the wire, 253 as text). */
const MAX_NAME_TEXT = 253;

/**
 * The canonical form of a name as a DNS query or a resolv.conf line carries it, lower case
 * and without the trailing dot, or undefined when it is not a host name in canonical ASCII
 * form (IP literals, Unicode labels, escapes, empty labels, over-long names: a stub
 * resolver sends punycode, so anything else is not a name the pod has a use for).
 */
export function canonicalQueryName(raw: string): string | undefined {
  if (typeof raw !== 'string' || raw.length === 0 || raw.length > MAX_NAME_TEXT + 1) return undefined;
  const name = (raw.endsWith('.') ? raw.slice(0, -1) : raw).toLowerCase();
  if (!/^[a-z0-9._-]+$/.test(name)) return undefined;
  try {
    const c = canonicalHost(name);
    return c.kind === 'dns' && c.host === name ? name : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Compiles the policy. `allow`: `egress.allow` (invalid entries throw, as the proxy's
 * allowlist does: main.ts compiles that first and refuses the config); `inClusterHosts`:
 * the contract's `egress.inClusterHosts` (a name that is not a host is skipped); `search`:
 * the resolver's search list (resolv.conf `search`, entries that are not names skipped).
 *
 * A declared `<svc>.<ns>.svc` or `<svc>.<ns>.svc.<domain>` also accepts `<svc>.<ns>.svc`,
 * `<svc>.<ns>.svc.cluster.local` and `<svc>.<ns>.svc.<d>` for every search entry
 * `svc.<d>` (the cluster domain as the pod's resolver names it).
 *
 * @throws HostError `policy_error` for a bad `allow` entry.
 */
export function compileDnsPolicy(allow: readonly string[], inClusterHosts: readonly string[], search: readonly string[]): DnsPolicy {
  const patterns = allow.map((entry) => parseHostPattern(entry));
  const searchList = [...new Set(search.map(canonicalQueryName).filter((s): s is string => s !== undefined))].sort((a, b) => b.length - a.length);
  const domains = new Set(['cluster.local', ...searchList.filter((s) => s.startsWith('svc.')).map((s) => s.slice(4))]);
  const inCluster = new Set<string>();
  for (const raw of inClusterHosts) {
    const host = canonicalQueryName(raw);
    if (!host) continue;
    inCluster.add(host);
    const m = /^(.+\.svc)(?:\.(.+))?$/.exec(host);
    if (!m?.[1]) continue;
    inCluster.add(m[1]);
    for (const d of domains) inCluster.add(`${m[1]}.${d}`);
  }
  return Object.freeze({ allow: Object.freeze(patterns), inCluster, search: Object.freeze(searchList) });
}

/** `resolve` for an allowed or declared name, else undefined. */
function resolvable(policy: DnsPolicy, name: string): Extract<DnsVerdict, { action: 'resolve' }> | undefined {
  if (policy.inCluster.has(name)) return { action: 'resolve', reason: 'in_cluster', name };
  const p = allowlistNameMatch(policy.allow, name);
  return p ? { action: 'resolve', reason: 'allowed', name, rule: p.entry } : undefined;
}

/**
 * The verdict for one query name (as the query carries it: any case, trailing dot or
 * not). In order: a name that is not a canonical host name is `bad_name`; an allowed or
 * declared name resolves; a name that is an allowed or declared name plus a search suffix
 * is `search_expansion` (the client will ask the bare name next); anything else is
 * `not_allowed`, with `meant` the name minus the longest search suffix it ends with.
 * Never `resolve` for a name that is neither allowed nor declared.
 */
export function decideName(qname: string, policy: DnsPolicy): DnsVerdict {
  const name = canonicalQueryName(qname);
  if (name === undefined) return { action: 'nxdomain', reason: 'bad_name', meant: typeof qname === 'string' ? qname : '' };
  const direct = resolvable(policy, name);
  if (direct) return direct;
  for (const s of policy.search) {
    if (!name.endsWith(`.${s}`)) continue;
    const base = name.slice(0, -(s.length + 1));
    if (resolvable(policy, base)) return { action: 'nxdomain', reason: 'search_expansion', meant: base };
  }
  const suffix = policy.search.find((s) => name.endsWith(`.${s}`));
  return { action: 'nxdomain', reason: 'not_allowed', meant: suffix ? name.slice(0, -(suffix.length + 1)) : name };
}

/**
 * The `nameserver` and `search` lines of a resolv.conf(5) text: the last `search` (or
 * `domain`) line wins, as in glibc; comments (`#`, `;`) ignored.
 */
export function parseResolvConf(text: string): { nameservers: string[]; search: string[] } {
  const nameservers: string[] = [];
  let search: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const [key, ...rest] = line.split(/\s+/);
    if (key === 'nameserver' && rest[0]) nameservers.push(rest[0]);
    else if (key === 'search' || key === 'domain') search = rest.filter(Boolean);
  }
  return { nameservers, search };
}
