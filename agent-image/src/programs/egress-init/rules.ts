/**
 * The egress firewall of an agent pod in transparent mode (`egress.enforcement:
 * iptables`), as `iptables-restore` / `ip6tables-restore` documents. Pure: no I/O.
 *
 * What the documents do, in the pod's network namespace, per family:
 *
 * - nat OUTPUT: DNS (UDP and TCP to port 53) of every UID but the proxy's is REDIRECTed to the
 *   proxy's DNS port on loopback, whatever its destination (an `egress.allowCidrs` address
 *   and loopback included), so the pod's DNS is always the proxy's: it answers allowed and
 *   declared names and NXDOMAIN for the rest (programs/proxy/dns.ts). Then every new
 *   outbound TCP connection is REDIRECTed to the egress proxy's port on loopback unless it
 *   goes out on `lo`, goes to one of `egress.allowCidrs` (in-cluster services, reached
 *   directly), or belongs to a socket of the proxy's UID (`-m owner ! --uid-owner`), whose
 *   connections are the one way out. The proxy must therefore accept on 127.0.0.1 and on
 *   ::1 (or on `::` dual-stack), for its proxy port (TCP) and its DNS port (UDP and TCP).
 * - filter OUTPUT, policy DROP: accepted are loopback, packets of connections already
 *   established (replies to inbound probes, the redirected connections), the first packet
 *   of each redirected connection or DNS query (conntrack state DNAT, to the proxy port or
 *   the DNS port on loopback: filter OUTPUT still sees the interface of the route before
 *   the rewrite, so `-o lo` misses it), the proxy UID's TCP and its DNS over UDP port 53
 *   (the proxy resolves names itself), and any protocol to `egress.allowCidrs` (DNS
 *   excepted: nat already sent it to the proxy). Everything else is dropped: UDP other
 *   than DNS and ICMP of every other UID, and ICMP and UDP other than DNS of the proxy's
 *   UID. An agent's DNS on port 53 therefore reaches the proxy and nothing else, even when
 *   the resolver's address is in `egress.allowCidrs` (other ports to an allowCidrs address,
 *   DNS over TLS on 853 for one, go there directly like any traffic to it).
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
/** The allowCidrs grammar is the contract's (contract/net.ts), shared with the operator and the proxy. */
import { parseCidr, type Cidr } from '../../contract/net.ts';

/** The filter chain holding the egress allowlist; OUTPUT jumps to it and drops what it does not accept. */
export const EGRESS_CHAIN = 'AGENT_SMITH_EGRESS';
/** The nat chain that redirects outbound TCP to the proxy. */
export const REDIRECT_CHAIN = 'AGENT_SMITH_REDIRECT';

export interface RulesInput {
  /** UID of the egress proxy: the only UID whose connections leave the pod directly. 1..4294967294. */
  proxyUid: number;
  /** TCP port the proxy accepts redirected connections on, on 127.0.0.1 and ::1. 1..65535. */
  proxyPort: number;
  /** UDP and TCP port of the proxy's DNS listener, on 127.0.0.1 and ::1, where port 53 goes. 1..65535, not proxyPort. */
  dnsPort: number;
  /** `egress.allowCidrs` of the contract, both families; the document takes those of `family`. */
  allowCidrs: readonly string[];
  family: 4 | 6;
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

/**
 * The `iptables-restore` (family 4) or `ip6tables-restore` (family 6) document for the
 * pod's egress firewall: tables `filter` then `nat`, each replaced whole. See the module
 * comment for what it does and the sources of each fact.
 *
 * @returns the document, lines ending in "\n", last line `COMMIT`.
 * @throws ContractError when an allowCidrs entry is bad (names `egress.allowCidrs[i]`);
 *   RangeError when proxyUid, proxyPort or dnsPort is out of range (UID 0 is refused: every
 *   root process would bypass the proxy), or dnsPort equals proxyPort.
 */
export function renderRules(input: RulesInput): string {
  const { proxyUid, proxyPort, dnsPort, family } = input;
  if (!Number.isInteger(proxyUid) || proxyUid < 1 || proxyUid > 4294967294) {
    throw new RangeError(`proxy UID ${proxyUid} is out of range 1..4294967294 (UID 0 would let every root process bypass the proxy)`);
  }
  if (!Number.isInteger(proxyPort) || proxyPort < 1 || proxyPort > 65535) throw new RangeError(`proxy port ${proxyPort} is out of range 1..65535`);
  if (!Number.isInteger(dnsPort) || dnsPort < 1 || dnsPort > 65535 || dnsPort === proxyPort) {
    throw new RangeError(`proxy DNS port ${dnsPort} is out of range 1..65535 or equal to the proxy port ${proxyPort}`);
  }
  const cidrs = parseAllowCidrs(input.allowCidrs)[family];
  const uid = `-m owner --uid-owner ${proxyUid}`;
  const E = `-A ${EGRESS_CHAIN}`;
  const R = `-A ${REDIRECT_CHAIN}`;
  const icmp6 = (type: number, hl: number) => `${E} -p ipv6-icmp -m icmp6 --icmpv6-type ${type} -m hl --hl-eq ${hl} -j ACCEPT`;
  const lo = family === 4 ? '127.0.0.1/32' : '::1/128';
  const dnat = (proto: 'tcp' | 'udp', port: number) => `${E} -d ${lo} -p ${proto} -m conntrack --ctstate DNAT -m ${proto} --dport ${port} -j ACCEPT`;
  const dns = (proto: 'tcp' | 'udp') => `${R} -p ${proto} -m owner ! --uid-owner ${proxyUid} -m ${proto} --dport 53 -j REDIRECT --to-ports ${dnsPort}`;
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
    dnat('tcp', proxyPort),
    // The same for a DNS query sent to the proxy's DNS listener (nat below).
    dnat('udp', dnsPort),
    dnat('tcp', dnsPort),
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
    `-A OUTPUT -p udp -m udp --dport 53 -j ${REDIRECT_CHAIN}`,
    // DNS first: before the loopback and allowCidrs exemptions, so no destination escapes it.
    dns('udp'),
    dns('tcp'),
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
