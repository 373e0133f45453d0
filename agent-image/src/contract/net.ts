/**
 * The grammar of `egress.allowCidrs` entries: one parser for the operator
 * (spec.egress.allowCidrs, SpecValid), egress-init (the iptables rules) and the egress
 * proxy (the address guard), so an entry the operator accepts is one every container of
 * the pod accepts, and one the pod refuses is refused before the pod is rolled. Pure.
 *
 * An entry is `address/prefix`:
 *
 * - the address is a dotted-quad IPv4 address (`isIPv4`: no leading zeros, no short
 *   forms such as `10.1`) or an IPv6 address (`isIPv6`) without a zone id; not an
 *   IPv4-mapped IPv6 range (`::ffff:a.b.c.d/n`: Linux sends that traffic as IPv4, so an
 *   ip6tables rule for it would never match; write the IPv4 form);
 * - the prefix is a decimal number without leading zeros, /8 to /32 (IPv4) or /8 to
 *   /128 (IPv6): a wider range would let most of the address space bypass the egress
 *   proxy and switch the proxy's private-address protection off;
 * - host bits may be set; they are cleared (as iptables and `BlockList` do).
 *
 * Sources: iptables-extensions(8) and ip6tables-save (the printed form, see {@link Cidr}),
 * Node's `net.isIPv4`/`isIPv6` (inet_pton), RFC 4291 section 2.5.5.2 (IPv4-mapped).
 */
import { isIPv4, isIPv6 } from 'node:net';
import { ContractError } from './load.ts';

/** Narrowest prefix length accepted in allowCidrs, both families. */
const MIN_ALLOW_PREFIX = 8;

/** A parsed allowCidrs entry, host bits cleared. */
export interface Cidr {
  family: 4 | 6;
  /** Network address bytes (4 or 16). */
  bytes: Uint8Array;
  prefix: number;
  /** The network address as iptables-save prints it, e.g. `10.96.0.0`, `fd00::`. */
  address: string;
  /** `address/prefix`, e.g. `10.96.0.0/12`, `fd00::/8`, `10.0.0.1/32`. */
  text: string;
}

/**
 * Parses one allowCidrs entry (grammar: module comment).
 *
 * @param field the field the entry came from, named first in the error, e.g.
 *   `spec.egress.allowCidrs[2]` (operator) or `egress.allowCidrs[2]` (pod contract).
 * @throws ContractError `<field>: "<entry>" <what is wrong; how to write it>`.
 */
export function parseCidr(entry: string, field: string): Cidr {
  const bad = (why: string) => new ContractError(`${field}: ${JSON.stringify(entry)} ${why}`);
  if (typeof entry !== 'string') throw new ContractError(`${field}: must be a string such as 10.96.0.0/12 or fd00::/8`);
  const slash = entry.indexOf('/');
  if (slash < 0) throw bad('has no prefix length; write the range as address/prefix, e.g. 10.96.0.0/12, or 10.0.0.1/32 for one address');
  const addr = entry.slice(0, slash);
  const family: 4 | 6 | 0 = isIPv4(addr) ? 4 : isIPv6(addr) && !addr.includes('%') ? 6 : 0;
  if (family === 0) throw bad('is not a valid CIDR: no IPv4 or IPv6 address before the "/"; write it as 10.96.0.0/12 or fd00::/8');
  const max = family === 4 ? 32 : 128;
  const bits = entry.slice(slash + 1);
  if (!/^(0|[1-9][0-9]{0,2})$/.test(bits) || Number(bits) > max) {
    throw bad(`is not a valid CIDR: the prefix length after the "/" must be 0..${max}, in decimal without leading zeros; write it as 10.96.0.0/12 or fd00::/8`);
  }
  const prefix = Number(bits);
  if (prefix < MIN_ALLOW_PREFIX) throw bad(`opens /${prefix}, which would let most of the address space bypass the egress proxy; allow the narrow ranges the agent needs`);
  const bytes = family === 4 ? ipv4Bytes(addr) : ipv6Bytes(addr);
  if (family === 6 && bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) {
    throw bad('is an IPv4-mapped IPv6 range, whose traffic Linux sends as IPv4; write the IPv4 form (e.g. 10.96.0.0/12)');
  }
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    bytes[i] = (bytes[i] ?? 0) & ((0xff << (8 - keep)) & 0xff);
  }
  const address = family === 4 ? [...bytes].join('.') : formatIPv6(bytes);
  return { family, bytes, prefix, address, text: `${address}/${prefix}` };
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
