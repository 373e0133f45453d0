import { describe, expect, it } from 'vitest';
import {
  assertSameHost,
  canonicalHost,
  checkAddress,
  compileAllowlist,
  credentialFor,
  DENY_STATUS,
  formatAuthority,
  parseAuthority,
  PolicyError,
  resolveChecked,
  validateAllowCidrs,
  type CanonicalHost,
  type DenyReason,
  type Lookup,
} from './policy.ts';

/** The PolicyError `f` throws (fails the test if it throws nothing or something else). */
function refusal(f: () => unknown): PolicyError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(PolicyError);
    return e as PolicyError;
  }
  throw new Error('expected a PolicyError, nothing was thrown');
}

async function asyncRefusal(p: Promise<unknown>): Promise<PolicyError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(PolicyError);
    return e as PolicyError;
  }
  throw new Error('expected a PolicyError, the promise resolved');
}

const dns = (host: string): CanonicalHost => ({ host, kind: 'dns' });

describe('PolicyError', () => {
  it.each<[DenyReason, number]>([
    ['bad_host', 400],
    ['not_allowed', 403],
    ['bad_port', 403],
    ['forbidden_address', 403],
    ['dns_failure', 502],
    ['host_mismatch', 421],
    ['policy_error', 403],
  ])('%s answers %i', (reason, status) => {
    const e = new PolicyError(reason, 'x');
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('PolicyError');
    expect([e.reason, e.status, DENY_STATUS[reason]]).toEqual([reason, status, status]);
  });
});

describe('canonicalHost', () => {
  it.each<[string, string, CanonicalHost['kind']]>([
    // Case and plain names.
    ['example.com', 'example.com', 'dns'],
    ['ExAmple.COM', 'example.com', 'dns'],
    ['API.GITHUB.COM', 'api.github.com', 'dns'],
    ['localhost', 'localhost', 'dns'],
    ['a_b.example.com', 'a_b.example.com', 'dns'],
    ['r3---sn-abc.googlevideo.com', 'r3---sn-abc.googlevideo.com', 'dns'],
    // inet_aton forms become the dotted quad the OS would dial (WHATWG IPv4 parser).
    ['127.0.0.1', '127.0.0.1', 'ipv4'],
    ['0x7f.1', '127.0.0.1', 'ipv4'],
    ['2130706433', '127.0.0.1', 'ipv4'],
    ['127.1', '127.0.0.1', 'ipv4'],
    ['0177.0.0.1', '127.0.0.1', 'ipv4'],
    ['0x7f000001', '127.0.0.1', 'ipv4'],
    ['017700000001', '127.0.0.1', 'ipv4'],
    ['0X7F.0.0.1', '127.0.0.1', 'ipv4'],
    ['192.168.1', '192.168.0.1', 'ipv4'],
    ['0', '0.0.0.0', 'ipv4'],
    ['169.254.43518', '169.254.169.254', 'ipv4'],
    // IPv6: compressed, bracketed or not; IPv4-mapped is the IPv4 address it reaches.
    ['[::1]', '::1', 'ipv6'],
    ['::1', '::1', 'ipv6'],
    ['[0:0:0:0:0:0:0:1]', '::1', 'ipv6'],
    ['[0000:0000:0000:0000:0000:0000:0000:0001]', '::1', 'ipv6'],
    ['[2001:DB8:0:0:0:0:0:1]', '2001:db8::1', 'ipv6'],
    ['[::ffff:127.0.0.1]', '127.0.0.1', 'ipv4'],
    ['[::ffff:7f00:1]', '127.0.0.1', 'ipv4'],
    ['[0:0:0:0:0:ffff:a9fe:a9fe]', '169.254.169.254', 'ipv4'],
    ['[::127.0.0.1]', '::7f00:1', 'ipv6'],
    ['[64:ff9b::10.0.0.1]', '64:ff9b::a00:1', 'ipv6'],
    // IDN to punycode (UTS #46); a homograph becomes a different name.
    ['例え.jp', 'xn--r8jz45g.jp', 'dns'],
    ['bücher.example', 'xn--bcher-kva.example', 'dns'],
    ['BÜCHER.example', 'xn--bcher-kva.example', 'dns'],
    ['xn--bcher-kva.example', 'xn--bcher-kva.example', 'dns'],
    ['аpple.com', 'xn--pple-43d.com', 'dns'],
    // Limits: 63-octet labels and a 253-octet name are fine.
    [`${'a'.repeat(63)}.com`, `${'a'.repeat(63)}.com`, 'dns'],
    [`${'a'.repeat(61)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(63)}`, `${'a'.repeat(61)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(63)}`, 'dns'],
  ])('%j -> %s (%s)', (raw, host, kind) => {
    expect(canonicalHost(raw)).toEqual({ host, kind });
  });

  it('never canonicalises a Cyrillic homograph onto the Latin name', () => {
    expect(canonicalHost('аpple.com').host).not.toBe('apple.com');
  });

  it.each<[string, RegExp]>([
    ['', /empty/],
    [' example.com', /space/],
    ['example.com ', /space/],
    ['exa mple.com', /space/],
    ['example.com\r\nX-Injected: 1', /control/],
    ['example.com\n', /control/],
    ['example.com\u0000.evil.com', /control/],
    ['exa\tmple.com', /control/], // WHATWG would silently drop the tab
    ['example.com\u200b', /invisible/],
    ['exa\u00admple.com', /invisible/], // soft hyphen: UTS #46 ignores it
    ['example.com\u00a0', /space/],
    ['example.com.', /trailing dot/],
    ['example.com..', /trailing dot/],
    ['.example.com', /empty label/],
    ['a..b.com', /empty label/],
    ['a@b.com', /"@"/],
    ['user:pass@example.com', /IPv6/],
    ['example.com:443', /IPv6 literal/],
    ['example.com/path', /"\/"/],
    ['example.com\\x', /"\\\\"/],
    ['example.com?x', /"\?"/],
    ['example.com#x', /"#"/],
    ['exa%6dple.com', /percent/], // WHATWG would decode it to example.com
    ['*.example.com', /wildcard/],
    ['*', /wildcard/],
    ['a*b.com', /wildcard/],
    ['exa<mple.com', /"<"/],
    ['[fe80::1%eth0]', /zone/],
    ['fe80::1%25eth0', /zone/],
    ['[::1', /IPv6/],
    ['::1]', /IPv6/],
    ['[example.com]', /IPv6/],
    ['[1.2.3.4]', /IPv6/],
    ['[::1]:443', /IPv6/],
    ['1::2::3', /IPv6/],
    ['256.0.0.1', /not a valid host/],
    ['1.2.3.4.5', /not a valid host/],
    ['0x100000000', /not a valid host/],
    ['09.1.1.1', /not a valid host/],
    ['example.123', /not a valid host/],
    [`${'a'.repeat(64)}.com`, /longer than 63/],
    [`${'a'.repeat(62)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(63)}`, /longer than 253/],
    ['a'.repeat(2000), /too long/],
    ['-example.com', /at either end/],
    ['example-.com', /at either end/],
    ['xn--zz.com', /punycode/],
    ['ｅxample.com', /UTS #46/], // full-width letter
    ['example\u3002com', /UTS #46/], // ideographic full stop
    ['１２７.0.0.1', /UTS #46/], // full-width digits spelling an IPv4 address
  ])('refuses %j (bad_host)', (raw, why) => {
    const e = refusal(() => canonicalHost(raw));
    expect([e.reason, e.status]).toEqual(['bad_host', 400]);
    expect(e.message).toMatch(why);
  });

  it('shows control characters escaped in the message, never raw', () => {
    expect(refusal(() => canonicalHost('a\r\nb')).message).toContain('"a\\r\\nb"');
  });
});

describe('parseAuthority', () => {
  it.each<[string, number, string, CanonicalHost['kind'], number]>([
    ['example.com:443', 443, 'example.com', 'dns', 443],
    ['example.com', 443, 'example.com', 'dns', 443],
    ['example.com', 80, 'example.com', 'dns', 80],
    ['EXAMPLE.COM:8443', 443, 'example.com', 'dns', 8443],
    ['example.com:1', 443, 'example.com', 'dns', 1],
    ['example.com:65535', 443, 'example.com', 'dns', 65535],
    ['[::1]:8080', 443, '::1', 'ipv6', 8080],
    ['[::1]', 443, '::1', 'ipv6', 443],
    ['[2001:DB8::1]:443', 80, '2001:db8::1', 'ipv6', 443],
    ['0x7f.1:80', 443, '127.0.0.1', 'ipv4', 80],
    ['[::ffff:10.0.0.1]:443', 443, '10.0.0.1', 'ipv4', 443],
    ['bücher.example:443', 443, 'xn--bcher-kva.example', 'dns', 443],
  ])('%j (default %i) -> %s %s :%i', (authority, defaultPort, host, kind, port) => {
    expect(parseAuthority(authority, defaultPort)).toEqual({ host: { host, kind }, port });
  });

  // Ports are decimal 1-65535 without sign or leading zero: "0443" is refused, not read as 443 (or as octal).
  it.each(['example.com:0', 'example.com:65536', 'example.com:99999', 'example.com:+443', 'example.com:0443', 'example.com:-1', 'example.com:', 'example.com:0x1bb', 'example.com:443abc', 'example.com:١٢٣', 'example.com:443/path', '[::1]:', '[::1]:0', 'example.com:123456'])(
    'refuses %j (bad_port)',
    (authority) => {
      const e = refusal(() => parseAuthority(authority, 443));
      expect([e.reason, e.status]).toEqual(['bad_port', 403]);
    },
  );

  it.each(['', ':443', '::1:443', '::1', 'a:b:c', '[::1]x', '[::1]x:443', '[]:443', '[::1:443', 'user@example.com:443', 'example.com.:443', 'example.com:443\r\n', 'example.com :443', '[fe80::1%25eth0]:443', '*.example.com:443'])(
    'refuses %j (bad_host)',
    (authority) => {
      expect(refusal(() => parseAuthority(authority, 443)).reason).toBe('bad_host');
    },
  );

  it('refuses a default port outside 1-65535 as the caller’s bug', () => {
    expect(refusal(() => parseAuthority('example.com', 0)).reason).toBe('policy_error');
  });
});

describe('formatAuthority', () => {
  it('brackets IPv6 and leaves out the default port', () => {
    expect(formatAuthority(canonicalHost('::1'), 443)).toBe('[::1]:443');
    expect(formatAuthority(canonicalHost('Example.com'), 443, 443)).toBe('example.com');
    expect(formatAuthority(canonicalHost('example.com'), 8443, 443)).toBe('example.com:8443');
  });
});

describe('compileAllowlist', () => {
  const allow = compileAllowlist(['api.github.com', '*.example.com', 'git.example.org:8443', '*.internal.example.net:9000', 'Bücher.example', '*.amazonaws.com', '*.foo.github.io']);
  const m = (host: string, port = 443) => allow.match(canonicalHost(host), port)?.rule;

  it('keeps the entries in canonical spelling', () => {
    expect(allow.entries).toEqual(['api.github.com', '*.example.com', 'git.example.org:8443', '*.internal.example.net:9000', 'xn--bcher-kva.example', '*.amazonaws.com', '*.foo.github.io']);
  });

  it.each<[string, number, string | undefined]>([
    // Exact entries: that name, ports 443 and 80 only.
    ['api.github.com', 443, 'api.github.com'],
    ['api.github.com', 80, 'api.github.com'],
    ['API.GitHub.com', 443, 'api.github.com'],
    ['api.github.com', 8443, undefined],
    ['api.github.com', 22, undefined],
    ['github.com', 443, undefined],
    ['x.api.github.com', 443, undefined],
    // Suffix tricks.
    ['evilgithub.com', 443, undefined],
    ['api.github.com.evil.com', 443, undefined],
    ['xapi.github.com', 443, undefined],
    ['evilexample.com', 443, undefined],
    ['example.com.evil.com', 443, undefined],
    ['аpi.github.com', 443, undefined], // Cyrillic а: a different name
    // Wildcards: strict subdomains at any depth, never the bare domain.
    ['a.example.com', 443, '*.example.com'],
    ['a.b.c.example.com', 80, '*.example.com'],
    ['example.com', 443, undefined],
    ['a.example.com', 8080, undefined],
    // Ports on entries.
    ['git.example.org', 8443, 'git.example.org:8443'],
    ['git.example.org', 443, undefined],
    ['git.example.org', 80, undefined],
    ['x.internal.example.net', 9000, '*.internal.example.net:9000'],
    ['x.internal.example.net', 443, undefined],
    // IDN entries match the punycode and the Unicode spelling alike.
    ['xn--bcher-kva.example', 443, 'xn--bcher-kva.example'],
    ['bücher.example', 443, 'xn--bcher-kva.example'],
    // A wildcard never crosses into another registrable domain (PSL private section).
    ['sts.amazonaws.com', 443, '*.amazonaws.com'],
    ['attacker-bucket.s3.amazonaws.com', 443, undefined],
    ['ec2-1-2-3-4.compute-1.amazonaws.com', 443, undefined],
    ['s3.amazonaws.com', 443, undefined],
    ['x.foo.github.io', 443, '*.foo.github.io'],
    ['foo.github.io', 443, undefined],
    ['bar.github.io', 443, undefined],
  ])('%s:%i -> %s', (host, port, rule) => {
    expect(m(host, port)).toBe(rule);
  });

  it.each(['127.0.0.1', '0x7f.1', '[::1]', '8.8.8.8', '2130706433'])('never matches the IP literal %s by name', (host) => {
    const all = compileAllowlist(['*.example.com', 'example.com']);
    expect(all.match(canonicalHost(host), 443)).toBeUndefined();
  });

  it('fails closed for a host that was not canonicalised', () => {
    expect(allow.match(dns('evil.com#.example.com'), 443)).toBeUndefined();
    expect(allow.match(dns('A.EXAMPLE.COM'), 443)).toBeUndefined();
    expect(allow.match(dns('a.example.com'), 0)).toBeUndefined();
    expect(compileAllowlist(['example.com']).match(dns('93.184.216.34'), 443)).toBeUndefined();
  });

  it('denies everything when empty', () => {
    expect(compileAllowlist([]).match(canonicalHost('example.com'), 443)).toBeUndefined();
  });

  it.each<[string, RegExp]>([
    ['*', /every host/],
    ['*.', /every host/],
    ['*:443', /every host/],
    ['*.com', /public suffix/],
    ['*.co.uk', /public suffix/],
    ['*.github.io', /private section/],
    ['*.githubusercontent.com', /private section/],
    ['*.s3.amazonaws.com', /private section/],
    ['*.localhost', /public suffix/],
    ['*.internal', /public suffix/],
    ['foo.*', /first label/],
    ['*.*.example.com', /first label/],
    ['a.*.example.com', /first label/],
    ['**.example.com', /first label/],
    ['*example.com', /first label/],
    ['1.2.3.4', /IP address/],
    ['127.1', /IP address/],
    ['*.1.2.3', /IP address/],
    ['[::1]', /IPv6 literal/],
    ['::1', /IPv6 literal/],
    ['[::1]:443', /IPv6 literal/],
    ['example.com:0', /port/],
    ['example.com:65536', /port/],
    ['example.com:', /port/],
    ['example.com:0443', /port/],
    ['example.com.', /trailing dot/],
    ['http://example.com', /URL/],
    ['example.com/path', /URL or path/],
    ['', /empty/],
    [' example.com', /space/],
    ['user@example.com', /"@"/],
  ])('refuses the entry %j, naming it', (entry, why) => {
    const e = refusal(() => compileAllowlist(['ok.example.com', entry]));
    expect(e.reason).toBe('policy_error');
    expect(e.message).toContain('allowlist entry 1');
    expect(e.message).toContain(JSON.stringify(entry));
    expect(e.message).toMatch(why);
  });
});

describe('checkAddress', () => {
  it.each([
    '8.8.8.8',
    '1.1.1.1',
    '140.82.112.3',
    '172.32.0.1', // just past 172.16/12
    '172.15.255.255',
    '100.128.0.1', // just past 100.64/10
    '192.169.0.1',
    '198.20.0.1', // just past 198.18/15
    '11.0.0.1',
    '223.255.255.255',
    '2606:4700:4700::1111',
    '2a00:1450:4001:82a::200e',
    '::ffff:8.8.8.8', // IPv4-mapped public
  ])('allows %s', (ip) => {
    expect(checkAddress(ip, [])).toEqual({ ok: true });
  });

  it.each<[string, RegExp]>([
    ['127.0.0.1', /loopback/],
    ['127.255.255.254', /loopback/],
    ['0.0.0.0', /this network/],
    ['0.1.2.3', /this network/],
    ['10.1.2.3', /RFC 1918/],
    ['172.16.0.1', /RFC 1918/],
    ['172.31.255.255', /RFC 1918/],
    ['192.168.1.1', /RFC 1918/],
    ['100.64.0.1', /CGNAT/],
    ['100.127.255.255', /CGNAT/],
    ['169.254.169.254', /link-local/],
    ['169.254.170.2', /link-local/],
    ['168.63.129.16', /Azure/],
    ['100.100.100.200', /Alibaba/],
    ['192.0.0.192', /Oracle/],
    ['192.0.0.8', /IETF protocol assignments/],
    ['192.0.2.1', /TEST-NET-1/],
    ['198.51.100.7', /TEST-NET-2/],
    ['203.0.113.9', /TEST-NET-3/],
    ['198.18.0.1', /benchmarking/],
    ['198.19.255.255', /benchmarking/],
    ['192.88.99.1', /6to4 relay/],
    ['224.0.0.1', /multicast/],
    ['239.255.255.250', /multicast/],
    ['240.0.0.1', /reserved/],
    ['255.255.255.255', /broadcast/],
    ['::1', /loopback/],
    ['::', /unspecified/],
    ['fe80::1', /link-local/],
    ['ff02::1', /multicast/],
    ['fc00::1', /unique local/],
    ['fd12:3456::1', /unique local/],
    ['fec0::1', /site-local/],
    ['fd00:ec2::254', /AWS/],
    ['fd00:ec2::23', /AWS/],
    ['fd20:ce::254', /Google/],
    ['2001:db8::1', /documentation/],
    ['3fff::1', /documentation/],
    ['100::1', /discard/],
    ['5f00::1', /SRv6/],
    ['2001:2::1', /IETF protocol assignments/],
    ['4000::1', /outside global unicast/],
    ['::ffff:127.0.0.1', /IPv4-mapped.*loopback/],
    ['::ffff:7f00:1', /IPv4-mapped.*loopback/],
    ['0:0:0:0:0:ffff:a9fe:a9fe', /IPv4-mapped.*link-local/],
    ['::127.0.0.1', /IPv4-compatible/],
    ['::8.8.8.8', /IPv4-compatible/],
    ['::ffff:0:a00:1', /IPv4-translated/],
    ['64:ff9b::10.0.0.1', /NAT64/],
    ['64:ff9b::8.8.8.8', /NAT64/],
    ['64:ff9b:1::a00:1', /NAT64 local-use/],
    ['2002:7f00:1::1', /6to4/],
    ['2002:808:808::1', /6to4/],
    ['2001:0:4136:e378:8000:63bf:3fff:fdd2', /Teredo/],
  ])('refuses %s', (ip, why) => {
    const verdict = checkAddress(ip, []);
    expect(verdict.ok).toBe(false);
    if (!verdict.ok) expect(verdict.why).toMatch(why);
  });

  it.each(['127.1', '0x7f.0.0.1', '2130706433', '0127.0.0.1', 'example.com', '', '1.2.3.4 ', '[::1]', 'fe80::1%eth0', '::1%lo', '::ffff:1.2.3.4%x.allowed.com'])(
    'refuses %j, which is not a plain IP literal',
    (ip) => {
      const verdict = checkAddress(ip, []);
      expect(verdict).toEqual({ ok: false, why: expect.stringMatching(/not an IP address/) as unknown });
    },
  );

  it.each<[string, string[], boolean]>([
    // allowCidrs lift the private ranges they cover, and nothing else.
    ['10.1.2.3', ['10.0.0.0/8'], true],
    ['10.1.2.3', ['10.1.0.0/16'], true],
    ['10.2.0.1', ['10.1.0.0/16'], false],
    ['::ffff:10.1.2.3', ['10.0.0.0/8'], true],
    ['127.0.0.1', ['127.0.0.0/8'], true],
    ['fd12::1', ['fd00::/8'], true],
    ['::1', ['::1/128'], true],
    // Never lifted: metadata, link-local, "this network", multicast, broadcast.
    ['169.254.169.254', ['169.254.0.0/16'], false],
    ['100.100.100.200', ['100.64.0.0/10'], false],
    ['fd00:ec2::254', ['fd00::/8'], false],
    ['0.0.0.0', ['0.0.0.0/8'], false],
    ['fe80::1', ['fe80::/10'], false],
    ['224.0.0.1', ['224.0.0.0/8'], false],
    // An IPv6 entry lifts the embedding range, never the IPv4 it carries.
    ['64:ff9b::8.8.8.8', ['64:ff9b::/96'], true],
    ['64:ff9b::10.0.0.1', ['64:ff9b::/96'], false],
    ['64:ff9b::10.0.0.1', ['64:ff9b::/96', '10.0.0.0/8'], true],
    ['64:ff9b::169.254.169.254', ['64:ff9b::/96', '169.254.0.0/16'], false],
    ['2002:a00:1::1', ['2002::/16'], false],
    ['2002:808:808::1', ['2002::/16'], true],
    ['2001:0:4136:e378:8000:63bf:3fff:fdd2', ['2001::/32'], false], // Teredo client 192.0.2.45
    ['2001:0:4136:e378:8000:63bf:f7f7:f7f7', ['2001::/32'], true], // Teredo client 8.8.8.8
    ['::10.0.0.1', ['::/96'], false],
    ['::5', ['::/96'], false], // IPv4-compatible 0.0.0.5
  ])('%s with allowCidrs %j -> %s', (ip, allowCidrs, ok) => {
    expect(checkAddress(ip, allowCidrs).ok).toBe(ok);
  });

  it.each([['10.0.0.0'], ['10.0.0.0/33'], ['0.0.0.0/0'], ['10.0.0.0/7'], ['::/0'], ['::ffff:10.0.0.0/104'], ['fe80::%eth0/64'], ['10.0.0.0/08'], ['10.0.0/8'], ['example.com/8'], [' 10.0.0.0/8'], ['[fd00::]/8']])(
    'refuses the malformed allowCidrs entry %j (policy_error)',
    (cidr) => {
      const e = refusal(() => checkAddress('8.8.8.8', ['10.0.0.0/8', cidr]));
      expect(e.reason).toBe('policy_error');
      expect(e.message).toContain('allowCidrs[1]');
      expect(refusal(() => validateAllowCidrs([cidr])).reason).toBe('policy_error');
    },
  );
});

describe('resolveChecked', () => {
  /** A fake resolver answering from `table` by the name it is asked; records the names. */
  function fake(table: Record<string, string[]>): Lookup & { asked: string[] } {
    const asked: string[] = [];
    const lookup = async (host: string) => {
      asked.push(host);
      const answers = table[host];
      if (!answers) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
      return answers.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
    };
    return Object.assign(lookup, { asked });
  }

  it('returns the first vetted address, looking up the absolute name once', async () => {
    const lookup = fake({ 'api.example.com.': ['93.184.216.34', '2606:2800:220:1::1'] });
    await expect(resolveChecked(canonicalHost('API.example.com'), [], lookup)).resolves.toEqual({ address: '93.184.216.34', family: 4 });
    expect(lookup.asked).toEqual(['api.example.com.']);
  });

  it('returns IPv6 compressed and IPv4-mapped answers as IPv4', async () => {
    await expect(resolveChecked(dns('a.example.com'), [], fake({ 'a.example.com.': ['2606:2800:0220:0001:0:0:0:1'] }))).resolves.toEqual({ address: '2606:2800:220:1::1', family: 6 });
    await expect(resolveChecked(dns('a.example.com'), [], fake({ 'a.example.com.': ['::ffff:8.8.8.8'] }))).resolves.toEqual({ address: '8.8.8.8', family: 4 });
  });

  it.each<[string, string[]]>([
    ['public then loopback', ['93.184.216.34', '127.0.0.1']],
    ['private then public', ['10.0.0.1', '8.8.8.8']],
    ['public then metadata', ['8.8.8.8', '169.254.169.254']],
    ['public v6 then mapped metadata', ['2606:4700::1111', '::ffff:169.254.169.254']],
    ['public then NAT64 of private', ['8.8.8.8', '64:ff9b::a00:1']],
    ['link-local with a zone id', ['8.8.8.8', 'fe80::1%eth0']],
  ])('refuses a name resolving to %s (rebinding)', async (_label, answers) => {
    const e = await asyncRefusal(resolveChecked(dns('rebind.example.com'), [], fake({ 'rebind.example.com.': answers })));
    expect([e.reason, e.status]).toEqual(['forbidden_address', 403]);
    expect(e.message).toContain('rebind.example.com');
  });

  it('judges the address, not the family the resolver claims', async () => {
    const lying: Lookup = async () => [{ address: '127.0.0.1', family: 6 }];
    expect((await asyncRefusal(resolveChecked(dns('a.example.com'), [], lying))).reason).toBe('forbidden_address');
  });

  it('lets allowCidrs lift private answers', async () => {
    const lookup = fake({ 'git.corp.example.com.': ['10.1.2.3', '10.1.2.4'] });
    await expect(resolveChecked(dns('git.corp.example.com'), ['10.1.0.0/16'], lookup)).resolves.toEqual({ address: '10.1.2.3', family: 4 });
    expect((await asyncRefusal(resolveChecked(dns('git.corp.example.com'), ['10.2.0.0/16'], lookup))).reason).toBe('forbidden_address');
  });

  it.each<[string, Lookup]>([
    ['a resolver error', fake({})],
    ['no addresses', async () => []],
    ['a non-address answer', async () => [{ address: 'not-an-ip', family: 4 }]],
    ['a non-array answer', (async () => null) as unknown as Lookup],
  ])('answers dns_failure (502) on %s', async (_label, lookup) => {
    const e = await asyncRefusal(resolveChecked(dns('a.example.com'), [], lookup));
    expect([e.reason, e.status]).toEqual(['dns_failure', 502]);
  });

  it('checks IP literals directly, without a lookup', async () => {
    const lookup = fake({});
    await expect(resolveChecked(canonicalHost('8.8.8.8'), [], lookup)).resolves.toEqual({ address: '8.8.8.8', family: 4 });
    await expect(resolveChecked(canonicalHost('[2606:4700::1111]'), [], lookup)).resolves.toEqual({ address: '2606:4700::1111', family: 6 });
    expect((await asyncRefusal(resolveChecked(canonicalHost('0x7f.1'), [], lookup))).reason).toBe('forbidden_address');
    expect((await asyncRefusal(resolveChecked(canonicalHost('[::ffff:169.254.169.254]'), ['169.254.0.0/16'], lookup))).reason).toBe('forbidden_address');
    expect(lookup.asked).toEqual([]);
  });

  it('refuses a host that is not in canonical form (policy_error)', async () => {
    for (const host of [dns('Example.com'), dns('example.com.'), dns('a@b'), { host: '127.0.0.1', kind: 'dns' } as CanonicalHost]) {
      expect((await asyncRefusal(resolveChecked(host, [], fake({})))).reason).toBe('policy_error');
    }
  });

  it('refuses malformed allowCidrs before resolving', async () => {
    const lookup = fake({ 'a.example.com.': ['8.8.8.8'] });
    expect((await asyncRefusal(resolveChecked(dns('a.example.com'), ['0.0.0.0/0'], lookup))).reason).toBe('policy_error');
    expect(lookup.asked).toEqual([]);
  });
});

describe('credentialFor', () => {
  const github = { name: 'github', hosts: ['api.github.com', 'uploads.github.com'] };
  const npm = { name: 'npm', hosts: ['registry.npmjs.org'] };
  const example = { name: 'example', hosts: ['*.example.com:8443'] };
  const creds = [github, npm, example];

  it.each<[string, string | undefined]>([
    ['api.github.com', 'github'],
    ['API.GITHUB.COM', 'github'],
    ['uploads.github.com', 'github'],
    ['github.com', undefined],
    ['evilgithub.com', undefined],
    ['api.github.com.evil.com', undefined],
    ['registry.npmjs.org', 'npm'],
    ['a.example.com', 'example'], // the pattern's port is ignored
    ['example.com', undefined],
    ['93.184.216.34', undefined],
    ['[::1]', undefined],
  ])('%s -> %s', (host, name) => {
    expect(credentialFor(creds, canonicalHost(host))?.name).toBe(name);
  });

  it('refuses a host two credentials match (policy_error), naming both', () => {
    const both = [{ name: 'wide', hosts: ['*.example.com'] }, { name: 'narrow', hosts: ['api.example.com'] }];
    const e = refusal(() => credentialFor(both, canonicalHost('api.example.com')));
    expect(e.reason).toBe('policy_error');
    expect(e.message).toMatch(/"wide" and "narrow" both match api\.example\.com/);
    expect(credentialFor(both, canonicalHost('other.example.com'))?.name).toBe('wide');
  });

  it('does not call one credential matched by two of its own patterns ambiguous', () => {
    expect(credentialFor([{ name: 'one', hosts: ['*.example.com', 'api.example.com'] }], canonicalHost('api.example.com'))?.name).toBe('one');
  });

  it('refuses an invalid pattern, naming the credential', () => {
    const e = refusal(() => credentialFor([{ name: 'bad', hosts: ['*.com'] }], canonicalHost('x.com')));
    expect(e.reason).toBe('policy_error');
    expect(e.message).toMatch(/credential "bad".*"\*\.com".*public suffix/);
  });

  it('fails closed for a host that was not canonicalised', () => {
    expect(credentialFor(creds, dns('API.GITHUB.COM'))).toBeUndefined();
  });
});

describe('assertSameHost', () => {
  const auth = (a: string) => parseAuthority(a, 443);

  it.each<[string, Array<{ host: CanonicalHost; port?: number } | undefined>]>([
    ['CONNECT, SNI and Host agree', [auth('example.com:443'), { host: canonicalHost('example.com') }, auth('example.com')]],
    ['case differs before canonicalisation', [auth('EXAMPLE.com:443'), { host: canonicalHost('Example.COM') }]],
    ['IDN and punycode', [auth('bücher.example:443'), { host: canonicalHost('xn--bcher-kva.example') }]],
    ['inet_aton and dotted quad', [parseAuthority('0x7f.1:80', 80), parseAuthority('127.0.0.1:80', 80)]],
    ['IPv4-mapped and IPv4', [auth('[::ffff:1.2.3.4]:443'), auth('1.2.3.4:443')]],
    ['absent values are skipped', [undefined, auth('example.com:443'), undefined]],
    ['nothing present', [undefined, undefined]],
  ])('accepts: %s', (_label, hosts) => {
    expect(() => assertSameHost(...hosts)).not.toThrow();
  });

  it.each<[string, Array<{ host: CanonicalHost; port?: number } | undefined>]>([
    ['different names', [auth('a.example.com:443'), { host: canonicalHost('b.example.com') }]],
    ['SNI for another host', [auth('api.github.com:443'), { host: canonicalHost('evil.com') }, auth('api.github.com')]],
    ['different ports', [auth('example.com:443'), auth('example.com:8443')]],
    ['an explicit port against the CONNECT port', [auth('example.com:8443'), auth('example.com:443')]],
    ['a hand-built non-canonical host', [auth('example.com:443'), { host: dns('EXAMPLE.COM') }]],
    ['a name against an IP', [auth('example.com:443'), auth('93.184.216.34:443')]],
    ['same text, different kind', [{ host: { host: '1.2.3.4', kind: 'dns' } }, { host: canonicalHost('1.2.3.4') }]],
    ['subdomain', [auth('example.com:443'), { host: canonicalHost('www.example.com') }]],
  ])('refuses (421): %s', (_label, hosts) => {
    const e = refusal(() => assertSameHost(...hosts));
    expect([e.reason, e.status]).toEqual(['host_mismatch', 421]);
  });
});
