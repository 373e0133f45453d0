import { describe, expect, it } from 'vitest';
import { ContractError } from './load.ts';
import { coveredBy, parseCidr } from './net.ts';

describe('parseCidr (the allowCidrs grammar of the operator, egress-init and the proxy)', () => {
  it.each([
    ['10.96.0.0/12', '10.96.0.0/12'],
    ['10.96.1.7/12', '10.96.0.0/12'],
    ['10.0.0.1/32', '10.0.0.1/32'],
    ['FD00:0:0::/8', 'fd00::/8'],
    ['fd42:231::101/120', 'fd42:231::100/120'],
    ['2001:db8:0:0:1:0:0:1/128', '2001:db8::1:0:0:1/128'],
    ['2001:0:0:1::/64', '2001:0:0:1::/64'],
    ['2001:db8:0:1:0:0:0:0/64', '2001:db8:0:1::/64'],
    ['::1.2.3.0/120', '::1.2.3.0/120'],
    ['1:2:3:4:5:6:1.2.3.4/128', '1:2:3:4:5:6:102:304/128'],
  ])('%s is written %s, as iptables-save prints it', (entry, text) => {
    expect(parseCidr(entry, 'egress.allowCidrs[0]').text).toBe(text);
  });

  it.each([
    ['10.0.0.300/8', /is not a valid CIDR: no IPv4 or IPv6 address/],
    ['010.0.0.1/8', /is not a valid CIDR: no IPv4 or IPv6 address/],
    ['10.0/8', /is not a valid CIDR: no IPv4 or IPv6 address/],
    ['example.com/24', /is not a valid CIDR: no IPv4 or IPv6 address/],
    ['fe80::1%eth0/64', /is not a valid CIDR: no IPv4 or IPv6 address/],
    ['fd00:::/8', /is not a valid CIDR: no IPv4 or IPv6 address/],
    ['[fd00::]/8', /is not a valid CIDR: no IPv4 or IPv6 address/],
    [' 10.0.0.0/8', /is not a valid CIDR: no IPv4 or IPv6 address/],
    ['10.0.0.1', /has no prefix length; write the range as address\/prefix/],
    ['10.0.0.0/33', /the prefix length after the "\/" must be 0\.\.32/],
    ['10.0.0.0/', /the prefix length/],
    ['10.0.0.0/08', /without leading zeros/],
    ['fd00::/129', /must be 0\.\.128/],
    ['10.0.0.0/x', /the prefix length/],
    ['0.0.0.0/0', /opens \/0, which would let most of the address space bypass the egress proxy/],
    ['::/0', /opens \/0/],
    ['10.0.0.0/7', /opens \/7/],
    ['::ffff:10.0.0.0/104', /IPv4-mapped IPv6 range, whose traffic Linux sends as IPv4/],
  ])('refuses %s with the field named', (entry, why) => {
    let err: unknown;
    try {
      parseCidr(entry, 'egress.allowCidrs[3]');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ContractError);
    expect((err as Error).message.startsWith(`egress.allowCidrs[3]: "${entry}" `)).toBe(true);
    expect((err as Error).message).toMatch(why);
  });

  it('tells whether an address lies in a range', () => {
    const all = [parseCidr('10.96.0.0/12', 'a'), parseCidr('fd00:10::/64', 'b')];
    expect(coveredBy('10.96.0.10', all)).toBe(true);
    expect(coveredBy('10.111.255.255', all)).toBe(true);
    expect(coveredBy('10.112.0.0', all)).toBe(false);
    expect(coveredBy('fd00:10::a', all)).toBe(true);
    expect(coveredBy('fd00:11::a', all)).toBe(false);
    expect(coveredBy('not-an-ip', all)).toBe(false);
  });
});
