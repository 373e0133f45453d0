/**
 * The egress firewall of an agent pod in transparent mode (`egress.enforcement:
 * iptables`), as `iptables-restore` / `ip6tables-restore` documents. Pure: no I/O.
 *
 * What the documents do, in the pod's network namespace, per family:
 *
 * - nat OUTPUT: every new outbound TCP connection is REDIRECTed to the egress proxy's port
 *   on loopback unless it goes out on `lo`, goes to one of `egress.allowCidrs` (in-cluster
 *   services, reached directly), or belongs to a socket of the proxy's UID (`-m owner !
 *   --uid-owner`), whose connections are the one way out. The proxy must therefore accept
 *   on 127.0.0.1 and on ::1 (or on `::` dual-stack).
 * - filter OUTPUT, policy DROP: accepted are loopback, packets of connections already
 *   established (replies to inbound probes, the redirected connections), the first packet
 *   of each redirected connection (conntrack state DNAT, to the proxy port on loopback:
 *   filter OUTPUT still sees the interface of the route before the rewrite, so `-o lo`
 *   misses it), the proxy UID's TCP and its DNS over UDP port 53 (the proxy resolves names
 *   itself), and any protocol to `egress.allowCidrs`. Everything else is dropped: UDP (DNS
 *   included) and ICMP of every other UID, and ICMP and UDP other than DNS of the proxy's
 *   UID. An agent therefore has no DNS unless the resolver's address is in
 *   `egress.allowCidrs` (which also opens DNS as a channel out).
 * - IPv6 the same, so an IPv6 route is no way around the proxy; plus the ICMPv6 that the
 *   kernel itself sends and a link needs (neighbour discovery at hop limit 255, MLD
 *   reports at hop limit 1), which no socket of any UID owns.
 *
 * Each document replaces the whole `filter` and `nat` tables (no `--noflush`), so applying
 * it twice gives the same firewall. `iptables-restore` commits table by table; `filter`
 * comes first so that a failure between the two leaves a pod that drops rather than one
 * that leaks.
 *
 * Sources: iptables-extensions(8): "owner" (`--uid-owner` matches the owner of the
 * packet's socket "if it has one", valid in OUTPUT and POSTROUTING only), "REDIRECT" (nat
 * table OUTPUT; locally generated packets are sent to the local host address, 127.0.0.1 or
 * ::1 for IPv6; `--to-ports` needs `-p tcp`), "conntrack" (`--ctstate`, the virtual state
 * DNAT: the original destination differs from the reply source), "hl"; iptables-restore(8)
 * (file format, `COMMIT` per table); RFC 4861 §7.1 (neighbour discovery messages carry hop
 * limit 255); RFC 3810 §5 and RFC 2710 §3 (MLD reports carry hop limit 1). The `-o lo`
 * behaviour after a REDIRECT was observed on Linux 6.18 with both iptables variants
 * (test/runtime/egress-init.test.ts fails without the DNAT rule).
 *
 * Rules are written the way `iptables-save` prints them (option order, `/32` on hosts,
 * compressed IPv6), so that init.ts can verify what the kernel holds line by line.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { ContractError } from '../../contract/load.ts';

/** The filter chain holding the egress allowlist; OUTPUT jumps to it and drops what it does not accept. */
export const EGRESS_CHAIN = 'AGENT_SMITH_EGRESS';
/** The nat chain that redirects outbound TCP to the proxy. */
export const REDIRECT_CHAIN = 'AGENT_SMITH_REDIRECT';

/** Narrowest prefix accepted in allowCidrs, as the operator's validation (spec.egress.allowCidrs) requires. */
export const MIN_ALLOW_PREFIX = 8;

export interface RulesInput {
  /** UID of the egress proxy: the only UID whose connections leave the pod directly. 1..4294967294. */
  proxyUid: number;
  /** TCP port the proxy accepts redirected connections on, on 127.0.0.1 and ::1. 1..65535. */
  proxyPort: number;
  /** `egress.allowCidrs` of the contract, both families; the document takes those of `family`. */
  allowCidrs: readonly string[];
  family: 4 | 6;
}

/** A parsed CIDR, host bits cleared, formatted as iptables-save prints it. */
export interface Cidr {
  family: 4 | 6;
  /** Network address bytes (4 or 16). */
  bytes: Uint8Array;
  prefix: number;
  /** e.g. `10.96.0.0/12`, `fd00::/8`, `10.0.0.1/32`. */
  text: string;
}

/**
 * Parses one `egress.allowCidrs` entry (`address/prefix`; a bare address is a host:
 * /32 or /128). Host bits are cleared, as iptables does. Refused: anything that is not an
 * IPv4 or IPv6 address, zone ids, IPv4-mapped IPv6 (`::ffff:a.b.c.d`: Linux sends those
 * as IPv4, write the IPv4 form), and prefixes shorter than /8 (they would switch the
 * proxy off for most of the address space; use `enforcement: proxy-env` for that).
 *
 * @param field the contract field, e.g. `egress.allowCidrs[2]`, named in the error.
 * @throws ContractError naming `field`.
 */
export function parseCidr(entry: string, field: string): Cidr {
  const bad = (why: string) => new ContractError(`${field}: "${entry}" ${why}`);
  const slash = entry.indexOf('/');
  const addr = slash < 0 ? entry : entry.slice(0, slash);
  const family: 4 | 6 | 0 = isIPv4(addr) ? 4 : isIPv6(addr) && !addr.includes('%') ? 6 : 0;
  if (family === 0) throw bad('is not a CIDR: no IPv4 or IPv6 address before the "/"; write it as 10.96.0.0/12 or fd00::/8');
  const max = family === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const bits = entry.slice(slash + 1);
    if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) throw bad(`is not a CIDR: the prefix length after the "/" must be 0..${max}; write it as 10.96.0.0/12 or fd00::/8`);
    prefix = Number(bits);
  }
  if (prefix < MIN_ALLOW_PREFIX) throw bad(`opens /${prefix}, which would let most of the address space bypass the egress proxy; allow the narrow ranges the agent needs`);
  const bytes = family === 4 ? ipv4Bytes(addr) : ipv6Bytes(addr);
  if (family === 6 && bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) {
    throw bad('is an IPv4-mapped IPv6 range, whose traffic Linux sends as IPv4; write the IPv4 form (e.g. 10.96.0.0/12)');
  }
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    bytes[i] = (bytes[i] ?? 0) & ((0xff << (8 - keep)) & 0xff);
  }
  return { family, bytes, prefix, text: `${family === 4 ? [...bytes].join('.') : formatIPv6(bytes)}/${prefix}` };
}

/**
 * Parses every `egress.allowCidrs` entry (errors name `egress.allowCidrs[i]`) and splits
 * them by family, duplicates removed, order kept.
 *
 * @throws ContractError naming the first bad entry.
 */
export function parseAllowCidrs(allowCidrs: readonly string[]): { 4: Cidr[]; 6: Cidr[] } {
  const out: { 4: Cidr[]; 6: Cidr[] } = { 4: [], 6: [] };
  allowCidrs.forEach((entry, i) => {
    const c = parseCidr(entry, `egress.allowCidrs[${i}]`);
    if (!out[c.family].some((x) => x.text === c.text)) out[c.family].push(c);
  });
  return out;
}

/** Whether `ip` (an IPv4 or IPv6 address, no prefix) lies in one of `cidrs`. False for anything that is not an address. */
export function coveredBy(ip: string, cidrs: readonly Cidr[]): boolean {
  const family = isIPv4(ip) ? 4 : isIPv6(ip) && !ip.includes('%') ? 6 : 0;
  if (family === 0) return false;
  const bytes = family === 4 ? ipv4Bytes(ip) : ipv6Bytes(ip);
  return cidrs.some((c) => {
    if (c.family !== family) return false;
    for (let i = 0; i < bytes.length; i++) {
      const keep = Math.max(0, Math.min(8, c.prefix - i * 8));
      const mask = (0xff << (8 - keep)) & 0xff;
      if (((bytes[i] ?? 0) & mask) !== c.bytes[i]) return false;
    }
    return true;
  });
}

/**
 * The `iptables-restore` (family 4) or `ip6tables-restore` (family 6) document for the
 * pod's egress firewall: tables `filter` then `nat`, each replaced whole. See the module
 * comment for what it does and the sources of each fact.
 *
 * @returns the document, lines ending in "\n", last line `COMMIT`.
 * @throws ContractError when an allowCidrs entry is bad (names `egress.allowCidrs[i]`);
 *   RangeError when proxyUid or proxyPort is out of range (UID 0 is refused: every root
 *   process would bypass the proxy).
 */
export function renderRules(input: RulesInput): string {
  const { proxyUid, proxyPort, family } = input;
  if (!Number.isInteger(proxyUid) || proxyUid < 1 || proxyUid > 4294967294) {
    throw new RangeError(`proxy UID ${proxyUid} is out of range 1..4294967294 (UID 0 would let every root process bypass the proxy)`);
  }
  if (!Number.isInteger(proxyPort) || proxyPort < 1 || proxyPort > 65535) throw new RangeError(`proxy port ${proxyPort} is out of range 1..65535`);
  const cidrs = parseAllowCidrs(input.allowCidrs)[family];
  const uid = `-m owner --uid-owner ${proxyUid}`;
  const E = `-A ${EGRESS_CHAIN}`;
  const R = `-A ${REDIRECT_CHAIN}`;
  const icmp6 = (type: number, hl: number) => `${E} -p ipv6-icmp -m icmp6 --icmpv6-type ${type} -m hl --hl-eq ${hl} -j ACCEPT`;
  const lines = [
    '*filter',
    ':INPUT ACCEPT [0:0]',
    ':FORWARD ACCEPT [0:0]',
    ':OUTPUT DROP [0:0]',
    `:${EGRESS_CHAIN} - [0:0]`,
    `-A OUTPUT -j ${EGRESS_CHAIN}`,
    // Loopback: the pod's own services, on 127.0.0.1, ::1 or its own addresses.
    `${E} -o lo -j ACCEPT`,
    `${E} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
    // The first packet of a redirected connection: nat OUTPUT has rewritten its destination
    // to the proxy on loopback, but filter OUTPUT still sees the interface of the original
    // route (eth0), so `-o lo` does not match it.
    `${E} -d ${family === 4 ? '127.0.0.1/32' : '::1/128'} -p tcp -m conntrack --ctstate DNAT -m tcp --dport ${proxyPort} -j ACCEPT`,
    `${E} -p tcp ${uid} -j ACCEPT`,
    `${E} -p udp ${uid} -m udp --dport 53 -j ACCEPT`,
    ...(family === 6
      ? [
          // Router solicitation, neighbour solicitation and advertisement: sent by the kernel, owned by no UID.
          icmp6(133, 255),
          icmp6(135, 255),
          icmp6(136, 255),
          // MLDv1 report and done, MLDv2 report: the kernel joins solicited-node groups with them.
          icmp6(131, 1),
          icmp6(132, 1),
          icmp6(143, 1),
        ]
      : []),
    ...cidrs.map((c) => `${E} -d ${c.text} -j ACCEPT`),
    'COMMIT',
    '*nat',
    ':PREROUTING ACCEPT [0:0]',
    ':INPUT ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ':POSTROUTING ACCEPT [0:0]',
    `:${REDIRECT_CHAIN} - [0:0]`,
    `-A OUTPUT -p tcp -j ${REDIRECT_CHAIN}`,
    `${R} -o lo -j RETURN`,
    ...cidrs.map((c) => `${R} -d ${c.text} -j RETURN`),
    `${R} -p tcp -m owner ! --uid-owner ${proxyUid} -j REDIRECT --to-ports ${proxyPort}`,
    'COMMIT',
  ];
  return `${lines.join('\n')}\n`;
}

/** One table of an iptables-restore / iptables-save document: chain policies (`-` for user chains) and rule lines in order. */
export interface TableRules {
  chains: Map<string, string>;
  rules: string[];
}

/**
 * Parses an `iptables-save` / `iptables-restore` document into its tables. Comments,
 * counters and blank lines are ignored; whitespace inside a line is collapsed.
 */
export function parseRulesDocument(text: string): Map<string, TableRules> {
  const tables = new Map<string, TableRules>();
  let current: TableRules | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\[\d+:\d+\]/g, '').replace(/\s+/g, ' ').trim();
    if (!line || line.startsWith('#') || line === 'COMMIT') continue;
    if (line.startsWith('*')) {
      current = { chains: new Map(), rules: [] };
      tables.set(line.slice(1), current);
    } else if (line.startsWith(':') && current) {
      const [chain = '', policy = ''] = line.slice(1).split(' ');
      current.chains.set(chain, policy);
    } else if (current) {
      current.rules.push(line);
    }
  }
  return tables;
}

/**
 * Differences between the document applied (`expected`) and what `iptables-save` lists
 * (`actual`), for the tables of `expected` only; empty when the kernel holds exactly the
 * rules applied, in order, with the same chains and policies.
 *
 * @returns human-readable lines, e.g. `filter: chain OUTPUT policy is ACCEPT, expected DROP`.
 */
export function diffRules(expected: string, actual: string): string[] {
  const want = parseRulesDocument(expected);
  const have = parseRulesDocument(actual);
  const out: string[] = [];
  for (const [table, w] of want) {
    const h = have.get(table);
    if (!h) {
      out.push(`${table}: table missing`);
      continue;
    }
    for (const [chain, policy] of w.chains) {
      const got = h.chains.get(chain);
      if (got === undefined) out.push(`${table}: chain ${chain} missing`);
      else if (got !== policy) out.push(`${table}: chain ${chain} policy is ${got}, expected ${policy}`);
    }
    for (const chain of h.chains.keys()) if (!w.chains.has(chain)) out.push(`${table}: unexpected chain ${chain}`);
    const n = Math.max(w.rules.length, h.rules.length);
    for (let i = 0; i < n; i++) {
      if (w.rules[i] !== h.rules[i]) out.push(`${table}: rule ${i + 1} is ${JSON.stringify(h.rules[i] ?? '(none)')}, expected ${JSON.stringify(w.rules[i] ?? '(none)')}`);
    }
  }
  return out;
}

function ipv4Bytes(addr: string): Uint8Array {
  return Uint8Array.from(addr.split('.').map(Number));
}

/** Bytes of a valid IPv6 address (checked by isIPv6 first), including a dotted IPv4 tail. */
function ipv6Bytes(addr: string): Uint8Array {
  let text = addr;
  let v4tail: number[] = [];
  if (text.includes('.')) {
    const i = text.lastIndexOf(':');
    const [a = 0, b = 0, c = 0, d = 0] = ipv4Bytes(text.slice(i + 1));
    v4tail = [(a << 8) | b, (c << 8) | d];
    text = text.slice(0, i + 1);
    if (!text.endsWith('::')) text = text.slice(0, -1);
  }
  const parse = (s: string) => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
  const [head = '', rest] = text.split('::');
  const h = parse(head);
  let groups: number[];
  if (rest === undefined) groups = [...h, ...v4tail];
  else {
    const r = [...parse(rest), ...v4tail];
    groups = [...h, ...Array<number>(8 - h.length - r.length).fill(0), ...r];
  }
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    bytes[i * 2] = g >> 8;
    bytes[i * 2 + 1] = g & 0xff;
  });
  return bytes;
}

/**
 * IPv6 text as glibc's inet_ntop writes it (what ip6tables-save prints): lower-case hex,
 * the longest run of two or more zero groups (the first on a tie) as `::`, and the IPv4
 * tail forms `::a.b.c.d` and `::ffff:a.b.c.d`.
 */
function formatIPv6(bytes: Uint8Array): string {
  const words = Array.from({ length: 8 }, (_, i) => ((bytes[i * 2] ?? 0) << 8) | (bytes[i * 2 + 1] ?? 0));
  let best = { base: -1, len: 0 };
  let cur = { base: -1, len: 0 };
  words.forEach((w, i) => {
    if (w === 0) {
      cur = cur.base < 0 ? { base: i, len: 1 } : { base: cur.base, len: cur.len + 1 };
      if (cur.len > best.len) best = { ...cur };
    } else cur = { base: -1, len: 0 };
  });
  if (best.len < 2) best = { base: -1, len: 0 };
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (best.base >= 0 && i >= best.base && i < best.base + best.len) {
      if (i === best.base) out += ':';
      continue;
    }
    if (i > 0) out += ':';
    if (i === 6 && best.base === 0 && (best.len === 6 || (best.len === 5 && words[5] === 0xffff))) {
      out += `${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
      break;
    }
    out += (words[i] ?? 0).toString(16);
  }
  if (best.base >= 0 && best.base + best.len === 8) out += ':';
  return out;
}
