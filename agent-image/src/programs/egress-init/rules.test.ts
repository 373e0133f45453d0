import { describe, expect, it } from 'vitest';
import { ContractError } from '../../contract/load.ts';
import { diffRules, parseAllowCidrs, renderRules } from './rules.ts';

const base = { proxyUid: 1337, proxyPort: 15001, dnsPort: 15053 };

/** The IPv4 document, as iptables-save prints it back (test/runtime/egress-init.test.ts applies it for real). */
const V4 = `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT DROP [0:0]
:AGENT_SMITH_EGRESS - [0:0]
-A OUTPUT -j AGENT_SMITH_EGRESS
-A AGENT_SMITH_EGRESS -o lo -j ACCEPT
-A AGENT_SMITH_EGRESS -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A AGENT_SMITH_EGRESS -d 127.0.0.1/32 -p tcp -m conntrack --ctstate DNAT -m tcp --dport 15001 -j ACCEPT
-A AGENT_SMITH_EGRESS -d 127.0.0.1/32 -p udp -m conntrack --ctstate DNAT -m udp --dport 15053 -j ACCEPT
-A AGENT_SMITH_EGRESS -d 127.0.0.1/32 -p tcp -m conntrack --ctstate DNAT -m tcp --dport 15053 -j ACCEPT
-A AGENT_SMITH_EGRESS -p tcp -m owner --uid-owner 1337 -j ACCEPT
-A AGENT_SMITH_EGRESS -p udp -m owner --uid-owner 1337 -m udp --dport 53 -j ACCEPT
-A AGENT_SMITH_EGRESS -d 10.96.0.0/12 -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:AGENT_SMITH_REDIRECT - [0:0]
-A OUTPUT -p tcp -j AGENT_SMITH_REDIRECT
-A OUTPUT -p udp -m udp --dport 53 -j AGENT_SMITH_REDIRECT
-A AGENT_SMITH_REDIRECT -p udp -m owner ! --uid-owner 1337 -m udp --dport 53 -j REDIRECT --to-ports 15053
-A AGENT_SMITH_REDIRECT -p tcp -m owner ! --uid-owner 1337 -m tcp --dport 53 -j REDIRECT --to-ports 15053
-A AGENT_SMITH_REDIRECT -o lo -j RETURN
-A AGENT_SMITH_REDIRECT -d 10.96.0.0/12 -j RETURN
-A AGENT_SMITH_REDIRECT -p tcp -m owner ! --uid-owner 1337 -j REDIRECT --to-ports 15001
COMMIT
`;

describe('renderRules', () => {
  it('IPv4: redirects DNS of every UID but the proxy to the DNS port and TCP to the proxy port, lets loopback and allowCidrs through, drops the rest', () => {
    expect(renderRules({ ...base, allowCidrs: ['10.96.0.0/12', 'fd00::/8'], family: 4 })).toBe(V4);
  });

  it('IPv6: the same firewall with ::1, the IPv6 ranges, and the neighbour discovery and MLD the kernel sends', () => {
    const doc = renderRules({ ...base, allowCidrs: ['10.96.0.0/12', 'fd00:10::/64'], family: 6 });
    expect(doc).toContain('-A AGENT_SMITH_EGRESS -d ::1/128 -p tcp -m conntrack --ctstate DNAT -m tcp --dport 15001 -j ACCEPT\n');
    expect(doc).toContain('-A AGENT_SMITH_EGRESS -d fd00:10::/64 -j ACCEPT\n');
    expect(doc).toContain('-A AGENT_SMITH_REDIRECT -d fd00:10::/64 -j RETURN\n');
    expect(doc).not.toContain('10.96.0.0');
    expect(doc).toContain('-A AGENT_SMITH_REDIRECT -p tcp -m owner ! --uid-owner 1337 -j REDIRECT --to-ports 15001\n');
    for (const type of [133, 135, 136]) expect(doc).toContain(`-p ipv6-icmp -m icmp6 --icmpv6-type ${type} -m hl --hl-eq 255 -j ACCEPT\n`);
    for (const type of [131, 132, 143]) expect(doc).toContain(`-p ipv6-icmp -m icmp6 --icmpv6-type ${type} -m hl --hl-eq 1 -j ACCEPT\n`);
    // No other ICMPv6 (echo requests included), and no UDP but DNS: the proxy's own, and everyone else's sent to the proxy.
    expect(doc.split('\n').filter((l) => l.includes('ipv6-icmp'))).toHaveLength(6);
    expect(doc.split('\n').filter((l) => l.includes('-p udp'))).toEqual([
      '-A AGENT_SMITH_EGRESS -d ::1/128 -p udp -m conntrack --ctstate DNAT -m udp --dport 15053 -j ACCEPT',
      '-A AGENT_SMITH_EGRESS -p udp -m owner --uid-owner 1337 -m udp --dport 53 -j ACCEPT',
      '-A OUTPUT -p udp -m udp --dport 53 -j AGENT_SMITH_REDIRECT',
      '-A AGENT_SMITH_REDIRECT -p udp -m owner ! --uid-owner 1337 -m udp --dport 53 -j REDIRECT --to-ports 15053',
    ]);
  });

  it('writes filter before nat, so a failure between the two commits drops instead of leaking', () => {
    for (const family of [4, 6] as const) {
      const doc = renderRules({ ...base, allowCidrs: [], family });
      expect(doc.indexOf('*filter')).toBeLessThan(doc.indexOf('*nat'));
      expect(doc.match(/^COMMIT$/gm)).toHaveLength(2);
    }
  });

  it('with no allowCidrs redirects everything off loopback', () => {
    const doc = renderRules({ ...base, allowCidrs: [], family: 4 });
    expect(doc).not.toMatch(/ -d (?!127\.0\.0\.1\/32)/);
    expect(doc).toContain('-A AGENT_SMITH_REDIRECT -o lo -j RETURN\n-A AGENT_SMITH_REDIRECT -p tcp -m owner ! --uid-owner 1337 -j REDIRECT');
  });

  it('uses the UID and port it is given', () => {
    const doc = renderRules({ proxyUid: 2000, proxyPort: 3128, dnsPort: 5300, allowCidrs: [], family: 4 });
    expect(doc).toContain('! --uid-owner 2000 -j REDIRECT --to-ports 3128');
    expect(doc).toContain('! --uid-owner 2000 -m udp --dport 53 -j REDIRECT --to-ports 5300');
    expect(doc).toContain('-p tcp -m owner --uid-owner 2000 -j ACCEPT');
    expect(doc).not.toContain('1337');
  });

  it('refuses UID 0 (every root process would bypass the proxy) and ports out of range', () => {
    expect(() => renderRules({ ...base, proxyUid: 0, allowCidrs: [], family: 4 })).toThrow(/UID 0 would let every root process bypass/);
    expect(() => renderRules({ ...base, proxyPort: 70000, allowCidrs: [], family: 4 })).toThrow(RangeError);
    expect(() => renderRules({ ...base, dnsPort: 0, allowCidrs: [], family: 4 })).toThrow(/DNS port 0/);
    expect(() => renderRules({ ...base, dnsPort: 15001, allowCidrs: [], family: 4 })).toThrow(/equal to the proxy port/);
  });

  it('names the contract field of a bad allowCidrs entry, whichever family is rendered', () => {
    const allowCidrs = ['10.96.0.0/12', 'fd00::/8', '10.0.0.300/8'];
    for (const family of [4, 6] as const) {
      expect(() => renderRules({ ...base, allowCidrs, family })).toThrow(ContractError);
      expect(() => renderRules({ ...base, allowCidrs, family })).toThrow(/^egress\.allowCidrs\[2\]: "10\.0\.0\.300\/8" is not a valid CIDR/);
    }
  });
});

describe('parseAllowCidrs', () => {
  it('splits by family and drops duplicates after normalising', () => {
    const c = parseAllowCidrs(['10.96.0.0/12', 'fd00::/8', '10.96.3.3/12', 'FD00::/8', '192.168.1.1/32']);
    expect(c[4].map((x) => x.text)).toEqual(['10.96.0.0/12', '192.168.1.1/32']);
    expect(c[6].map((x) => x.text)).toEqual(['fd00::/8']);
  });

});

describe('diffRules', () => {
  const saved = (doc: string) =>
    `# Generated by iptables-save v1.8.9 on Sun Nov 22 06:13:40 2026\n${doc
      .split('COMMIT\n')
      .filter(Boolean)
      .reverse()
      .map((t) => `${t.replace(/\[0:0\]/g, '[12:3456]')}COMMIT\n# Completed on Sun Nov 22 06:13:40 2026\n`)
      .join('')}`;

  it('finds nothing when the kernel lists what was applied (comments, counters and table order aside)', () => {
    expect(diffRules(V4, saved(V4))).toEqual([]);
  });

  it('reports a policy, a missing or changed rule, an extra chain and a missing table', () => {
    const tampered = saved(V4)
      .replace(':OUTPUT DROP', ':OUTPUT ACCEPT')
      .replace('-A AGENT_SMITH_EGRESS -d 10.96.0.0/12 -j ACCEPT\n', '')
      .replace('--to-ports 15001', '--to-ports 15002')
      .replace(':AGENT_SMITH_EGRESS - [12:3456]\n', ':AGENT_SMITH_EGRESS - [0:0]\n:OTHER - [0:0]\n');
    expect(diffRules(V4, tampered)).toEqual([
      'filter: chain OUTPUT policy is ACCEPT, expected DROP',
      'filter: unexpected chain OTHER',
      'filter: rule 9 is "(none)", expected "-A AGENT_SMITH_EGRESS -d 10.96.0.0/12 -j ACCEPT"',
      'nat: rule 7 is "-A AGENT_SMITH_REDIRECT -p tcp -m owner ! --uid-owner 1337 -j REDIRECT --to-ports 15002", expected "-A AGENT_SMITH_REDIRECT -p tcp -m owner ! --uid-owner 1337 -j REDIRECT --to-ports 15001"',
    ]);
    expect(diffRules(V4, saved(V4).split('*filter')[0] ?? '')).toEqual(['filter: table missing']);
  });
});
