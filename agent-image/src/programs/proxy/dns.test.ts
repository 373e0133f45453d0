import net from 'node:net';
import * as dnsPacket from 'dns-packet';
import { describe, expect, it } from 'vitest';
import type { Logger } from '../../lib/log.ts';
import { Auditor } from './audit.ts';
import { AUDIT_LINES_PER_SECOND, DnsServer, DnsTcpFramer, frameTcp, MAX_ANSWER_RECORDS, usableNameservers, type Upstream, type UpstreamAnswer } from './dns.ts';
import { compileDnsPolicy } from './dns-policy.ts';
import { ProxyMetrics } from './metrics.ts';

const SEARCH = ['agents.svc.cluster.local', 'svc.cluster.local', 'cluster.local'];

/** A logger that keeps what it is given: `lines` of [level, fields, msg]. */
function captureLogger(): { log: Logger; lines: Array<{ level: string; fields: Record<string, unknown>; msg: string }> } {
  const lines: Array<{ level: string; fields: Record<string, unknown>; msg: string }> = [];
  const at = (level: string) => (fields: Record<string, unknown>, msg: string) => void lines.push({ level, fields, msg });
  return { log: { info: at('info'), warn: at('warn'), debug: at('debug'), error: at('error') } as unknown as Logger, lines };
}

/** A DNS server with a fake upstream that records every name it is asked. */
function world(answers: Record<string, UpstreamAnswer> = {}, opts: { ready?: boolean; limits?: ConstructorParameters<typeof DnsServer>[0]['limits']; upstream?: Upstream } = {}) {
  const asked: string[] = [];
  const upstream: Upstream =
    opts.upstream ??
    (async (name, type) => {
      asked.push(`${name} ${type}`);
      return answers[`${name} ${type}`] ?? { rcode: 'NXDOMAIN', addresses: [] };
    });
  const metrics = new ProxyMetrics();
  const audit = captureLogger();
  const log = captureLogger();
  const server = new DnsServer({ log: log.log, metrics, auditor: new Auditor(audit.log), upstream, ...(opts.limits ? { limits: opts.limits } : {}) });
  if (opts.ready !== false) server.setPolicy(compileDnsPolicy(['api.github.com'], ['nats.infra.svc'], SEARCH));
  const count = async (reason: string) => (await metrics.dnsQueries.get()).values.filter((v) => v.labels.reason === reason).reduce((n, v) => n + v.value, 0);
  return { server, asked, audits: audit.lines, logs: log.lines, count };
}

function query(name: string, type: dnsPacket.RecordType = 'A', extra: Partial<dnsPacket.Packet> = {}): Buffer {
  return dnsPacket.encode({ type: 'query', id: 4242, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }], ...extra });
}

async function ask(server: DnsServer, msg: Buffer, transport: 'udp' | 'tcp' = 'udp'): Promise<dnsPacket.DecodedPacket & { rcode?: string }> {
  const { bytes } = await server.answer(msg, transport);
  if (!bytes) throw new Error('no reply');
  return dnsPacket.decode(bytes);
}

const GITHUB: UpstreamAnswer = { rcode: 'NOERROR', addresses: [{ address: '140.82.121.6', ttl: 60 }] };

describe('DnsServer.answer: the decision', () => {
  it('resolves an allowed name through the upstream, as asked (case kept), with its TTL', async () => {
    const w = world({ 'api.github.com A': GITHUB });
    const r = await ask(w.server, query('API.github.com'));
    expect(r).toMatchObject({ id: 4242, type: 'response', rcode: 'NOERROR', flag_rd: true, flag_ra: true });
    expect(r.answers).toEqual([expect.objectContaining({ type: 'A', name: 'API.github.com', data: '140.82.121.6', ttl: 60 })]);
    expect(w.asked).toEqual(['api.github.com A']);
    expect(await w.count('allowed')).toBe(1);
    expect(w.audits).toEqual([]);
  });

  it('resolves a declared in-cluster Service (AAAA too) and caps TTLs at 300 s', async () => {
    const w = world({ 'nats.infra.svc.cluster.local AAAA': { rcode: 'NOERROR', addresses: [{ address: 'fd00::42', ttl: 86400 }] } });
    const r = await ask(w.server, query('nats.infra.svc.cluster.local', 'AAAA'));
    expect(r.answers).toEqual([expect.objectContaining({ type: 'AAAA', data: 'fd00::42', ttl: 300 })]);
    expect(await w.count('in_cluster')).toBe(1);
  });

  it('answers a non-allowed name NXDOMAIN, never asks upstream, and audits it once per meant name', async () => {
    const w = world();
    for (const name of ['c2VjcmV0.evil.example.agents.svc.cluster.local', 'c2VjcmV0.evil.example.svc.cluster.local', 'c2VjcmV0.evil.example.cluster.local', 'c2VjcmV0.evil.example']) {
      for (const type of ['A', 'AAAA', 'TXT'] as const) expect((await ask(w.server, query(name, type))).rcode).toBe('NXDOMAIN');
    }
    expect(w.asked).toEqual([]);
    expect(w.audits).toHaveLength(1);
    expect(w.audits[0]).toMatchObject({
      level: 'warn',
      msg: 'egress denied',
      fields: { audit: true, mode: 'dns', host: 'c2vjcmv0.evil.example', qname: 'c2VjcmV0.evil.example.agents.svc.cluster.local', qtype: 'A', decision: 'deny', reason: 'not_allowed' },
    });
    expect(await w.count('not_allowed')).toBe(12);
    // Another name gets its own line.
    await ask(w.server, query('other.example'));
    expect(w.audits.map((a) => a.fields.host)).toEqual(['c2vjcmv0.evil.example', 'other.example']);
  });

  it('answers the search expansions of an allowed name NXDOMAIN at once: no upstream query, no audit line', async () => {
    const w = world({ 'api.github.com A': GITHUB });
    for (const s of SEARCH) expect((await ask(w.server, query(`api.github.com.${s}`))).rcode).toBe('NXDOMAIN');
    expect(w.asked).toEqual([]);
    expect(w.audits).toEqual([]);
    expect(await w.count('search_expansion')).toBe(3);
  });

  it('answers other record types of an allowed name with no records, without asking upstream', async () => {
    const w = world();
    for (const type of ['UNKNOWN_65' /* HTTPS (RFC 9460) */, 'TXT', 'MX', 'SRV'] as dnsPacket.RecordType[]) {
      const r = await ask(w.server, query('api.github.com', type));
      expect(r.rcode, type).toBe('NOERROR');
      expect(r.answers).toEqual([]);
    }
    expect(w.asked).toEqual([]);
  });

  it('answers SERVFAIL before the contract is loaded, when the upstream fails, and when it is slower than the timeout', async () => {
    expect((await ask(world({}, { ready: false }).server, query('api.github.com'))).rcode).toBe('SERVFAIL');
    const failing = world({ 'api.github.com A': { rcode: 'SERVFAIL', addresses: [] } });
    expect((await ask(failing.server, query('api.github.com'))).rcode).toBe('SERVFAIL');
    expect(await failing.count('upstream_error')).toBe(1);
    const slow = world({}, { limits: { upstreamTimeoutMs: 50 }, upstream: () => new Promise(() => undefined) });
    const started = Date.now();
    expect((await ask(slow.server, query('api.github.com'))).rcode).toBe('SERVFAIL');
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('answers SERVFAIL (busy) beyond the upstream queries in flight', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const w = world({}, { limits: { maxInFlight: 2 }, upstream: async () => (await gate, GITHUB) });
    const first = [ask(w.server, query('api.github.com')), ask(w.server, query('api.github.com'))];
    expect((await ask(w.server, query('api.github.com'))).rcode).toBe('SERVFAIL');
    expect(await w.count('busy')).toBe(1);
    release();
    expect((await Promise.all(first)).map((r) => r.rcode)).toEqual(['NOERROR', 'NOERROR']);
  });
});

describe('DnsServer.answer: a hostile or broken upstream, a flood of names', () => {
  it('counts an upstream query in flight until it settles, not until the client timed out', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const w = world({}, { limits: { maxInFlight: 1, upstreamTimeoutMs: 20 }, upstream: async () => (await gate, GITHUB) });
    expect((await ask(w.server, query('api.github.com'))).rcode).toBe('SERVFAIL');
    // The first query timed out for its client but still occupies the resolver.
    expect((await ask(w.server, query('api.github.com'))).rcode).toBe('SERVFAIL');
    expect(await w.count('busy')).toBe(1);
    release();
    await gate;
    await new Promise((r) => setTimeout(r, 0));
    expect((await ask(w.server, query('nats.infra.svc'))).rcode).not.toBe('SERVFAIL');
  });

  it(`cuts an upstream's long answer to ${MAX_ANSWER_RECORDS} records, so a TCP answer always fits its 2-byte length`, async () => {
    const name = `${'a'.repeat(60)}.api.github.com`;
    const huge: UpstreamAnswer = { rcode: 'NOERROR', addresses: Array.from({ length: 1000 }, (_, i) => ({ address: `10.${i >> 8}.${i & 255}.1`, ttl: 30 })) };
    const w = world({}, { upstream: async () => huge });
    w.server.setPolicy(compileDnsPolicy(['*.api.github.com'], [], SEARCH));
    const { bytes } = await w.server.answer(query(name), 'tcp');
    expect(() => frameTcp(bytes!)).not.toThrow();
    expect(dnsPacket.decode(bytes!).answers).toHaveLength(MAX_ANSWER_RECORDS);
  });

  it('answers SERVFAIL (reason internal, logged at most once a minute) when the upstream breaks its contract and rejects', async () => {
    const w = world({}, { upstream: () => Promise.reject(new Error('boom')) });
    for (let i = 0; i < 3; i++) expect((await ask(w.server, query('api.github.com'))).rcode).toBe('SERVFAIL');
    expect(await w.count('internal')).toBe(3);
    expect(await w.count('malformed')).toBe(0);
    expect(w.logs.filter((l) => l.level === 'error')).toHaveLength(1);
  });

  it('echoes the question byte for byte, also a name that is not UTF-8 (re-encoding it would change it)', async () => {
    const w = world();
    const msg = query('x.example');
    // Replace the label "x" (0x01 'x') by one byte 0xff: not a host name, and not UTF-8.
    const raw = Buffer.from(msg);
    raw[13] = 0xff;
    const { bytes } = await w.server.answer(raw, 'udp');
    expect(bytes!.subarray(12, msg.length)).toEqual(raw.subarray(12));
    expect((bytes![3]! & 0x0f)).toBe(3); // NXDOMAIN
    expect(await w.count('bad_name')).toBe(1);
  });

  it(`writes at most ${AUDIT_LINES_PER_SECOND} audit lines a second for distinct denied names, then one line saying how many were suppressed`, async () => {
    const w = world();
    for (let i = 0; i < AUDIT_LINES_PER_SECOND + 30; i++) await ask(w.server, query(`n${i}.evil.example`));
    expect(w.audits.length).toBeLessThanOrEqual(AUDIT_LINES_PER_SECOND * 2);
    expect(await w.count('not_allowed')).toBe(AUDIT_LINES_PER_SECOND + 30);
    await new Promise((r) => setTimeout(r, 1100));
    await ask(w.server, query('later.evil.example'));
    expect(w.logs.some((l) => l.msg.startsWith('dns: audit lines of denied names suppressed') && Number(l.fields.suppressed) > 0)).toBe(true);
  });
});

describe('DnsServer over TCP: slow clients', () => {
  it('closes a connection at its lifetime cap even while the client keeps trickling bytes', async () => {
    const w = world({}, { limits: { tcpMaxLifetimeMs: 300, tcpIdleMs: 10_000 } });
    const port = await w.server.listen(0);
    try {
      const socket = net.connect(port, '127.0.0.1');
      socket.on('error', () => undefined);
      const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now())));
      const started = Date.now();
      const msg = frameTcp(query('api.github.com'));
      let i = 0;
      const trickle = setInterval(() => i < msg.length && socket.write(msg.subarray(i, ++i)), 50);
      const at = await closed;
      clearInterval(trickle);
      expect(at - started).toBeLessThan(2000);
    } finally {
      await w.server.close();
    }
  });
});

describe('usableNameservers', () => {
  it('keeps IP addresses with or without a port and refuses names and garbage (Resolver.setServers would throw)', () => {
    expect(usableNameservers(['10.0.0.10', '127.0.0.1:5353', '[fd00::1]:53', 'fd00::a', 'not-an-ip', 'dns.example:53', ''])).toEqual({
      servers: ['10.0.0.10', '127.0.0.1:5353', '[fd00::1]:53', 'fd00::a'],
      refused: ['not-an-ip', 'dns.example:53', ''],
    });
  });
});

describe('DnsServer.answer: bad input', () => {
  it('drops a message shorter than a header, and a response (no reflection loops), logging each kind once', async () => {
    const w = world();
    expect((await w.server.answer(Buffer.from([1, 2, 3]), 'udp')).bytes).toBeUndefined();
    expect((await w.server.answer(Buffer.alloc(0), 'udp')).bytes).toBeUndefined();
    const response = dnsPacket.encode({ type: 'response', id: 1, questions: [{ type: 'A', name: 'api.github.com' }] });
    expect((await w.server.answer(response, 'udp')).bytes).toBeUndefined();
    expect(await w.count('malformed')).toBe(2);
    expect(await w.count('response')).toBe(1);
    expect(w.logs.filter((l) => l.level === 'warn').map((l) => l.fields.reason)).toEqual(['malformed', 'response']);
  });

  it('answers FORMERR to a message that does not decode, keeping its ID, and never throws', async () => {
    const w = world();
    const good = query('api.github.com');
    // The name's length byte claims more than there is.
    const broken = Buffer.from(good.subarray(0, 20));
    broken[12] = 60;
    const r = await ask(w.server, broken);
    expect(r).toMatchObject({ id: 4242, rcode: 'FORMERR' });
    // Random bytes with a query header: never a throw, always a header-only answer or nothing.
    for (let i = 0; i < 300; i++) {
      const junk = Buffer.concat([Buffer.from([0, i & 0xff, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), Buffer.from(Array.from({ length: i % 40 }, (_, j) => (i * 31 + j * 7) & 0xff))]);
      const { bytes } = await w.server.answer(junk, 'udp');
      if (bytes) expect(['FORMERR', 'NXDOMAIN', 'NOERROR', 'REFUSED', 'SERVFAIL']).toContain((dnsPacket.decode(bytes) as { rcode?: string }).rcode);
    }
    expect(w.logs.filter((l) => l.fields.reason === 'malformed')).toHaveLength(1);
  });

  it('answers FORMERR to an oversized message without decoding it', async () => {
    const w = world();
    const big = query('api.github.com', 'A', { additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096, options: [{ code: 12, data: Buffer.alloc(600) }] } as unknown as dnsPacket.Answer] });
    expect(big.length).toBeGreaterThan(512);
    expect((await ask(w.server, big)).rcode).toBe('FORMERR');
    expect(await w.count('oversized')).toBe(1);
    expect(w.asked).toEqual([]);
  });

  it('answers FORMERR to more (or fewer) than one question, without asking upstream for any of them', async () => {
    const w = world({ 'api.github.com A': GITHUB });
    const two = dnsPacket.encode({ type: 'query', id: 9, questions: [{ type: 'A', name: 'api.github.com' }, { type: 'A', name: 'x.evil.example' }] });
    const none = dnsPacket.encode({ type: 'query', id: 10, questions: [] });
    expect((await ask(w.server, two)).rcode).toBe('FORMERR');
    expect((await ask(w.server, none)).rcode).toBe('FORMERR');
    expect(w.asked).toEqual([]);
    expect(await w.count('questions')).toBe(2);
  });

  it('answers NOTIMP to opcodes other than QUERY and REFUSED to classes other than IN', async () => {
    const w = world();
    const update = query('api.github.com');
    update.writeUInt16BE(update.readUInt16BE(2) | (5 << 11), 2);
    expect((await ask(w.server, update)).rcode).toBe('NOTIMP');
    const chaos = dnsPacket.encode({ type: 'query', id: 3, questions: [{ type: 'TXT', name: 'version.bind', class: 'CH' }] });
    expect((await ask(w.server, chaos)).rcode).toBe('REFUSED');
  });
});

describe('DnsServer.answer: sizes', () => {
  const many: UpstreamAnswer = { rcode: 'NOERROR', addresses: Array.from({ length: 60 }, (_, i) => ({ address: `10.0.${i}.1`, ttl: 30 })) };

  it('over UDP truncates an answer larger than 512 bytes (TC set, no records) so the client retries over TCP', async () => {
    const w = world({ 'api.github.com A': many });
    const r = await ask(w.server, query('api.github.com'));
    expect(r.flag_tc).toBe(true);
    expect(r.answers).toEqual([]);
    // Over TCP the whole answer goes.
    expect((await ask(w.server, query('api.github.com'), 'tcp')).answers).toHaveLength(60);
  });

  it('honours an EDNS client size up to 1232 bytes and answers with an OPT record', async () => {
    // dns-packet does not compress names: 30 records of api.github.com are ~900 bytes, over 512 and under 1232.
    const w = world({ 'api.github.com A': { rcode: 'NOERROR', addresses: many.addresses.slice(0, 30) } });
    const edns = query('api.github.com', 'A', { additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096 } as unknown as dnsPacket.Answer] });
    const r = await ask(w.server, edns);
    expect(r.flag_tc).toBe(false);
    expect(r.answers).toHaveLength(30);
    expect((await w.server.answer(edns, 'udp')).bytes!.length).toBeGreaterThan(512);
    expect(r.additionals?.[0]).toMatchObject({ type: 'OPT', udpPayloadSize: 1232 });
  });
});

describe('DnsTcpFramer: DNS over TCP framing (RFC 1035 section 4.2.2)', () => {
  const a = query('api.github.com', 'A');
  const b = query('evil.example', 'AAAA');

  it('splits two framed messages that arrive in one read', () => {
    const f = new DnsTcpFramer(512);
    expect(f.push(Buffer.concat([frameTcp(a), frameTcp(b)]))).toEqual({ messages: [a, b] });
  });

  it('reassembles messages that arrive a byte at a time, the length prefix split too', () => {
    const f = new DnsTcpFramer(512);
    const stream = Buffer.concat([frameTcp(a), frameTcp(b)]);
    const got: Buffer[] = [];
    for (const byte of stream) got.push(...f.push(Buffer.from([byte])).messages);
    expect(got).toEqual([a, b]);
  });

  it('keeps an incomplete frame until its end arrives', () => {
    const f = new DnsTcpFramer(512);
    const framed = frameTcp(a);
    expect(f.push(framed.subarray(0, 10)).messages).toEqual([]);
    expect(f.push(framed.subarray(10)).messages).toEqual([a]);
  });

  it('reports a frame over the limit at once, without buffering it, and takes nothing after it', () => {
    const f = new DnsTcpFramer(512);
    const r = f.push(Buffer.concat([frameTcp(a), Buffer.from([0xff, 0xff]), a.subarray(0, 20)]));
    expect(r.messages).toEqual([a]);
    expect(r.oversized).toEqual(a.subarray(0, 12));
    expect(f.push(frameTcp(b))).toEqual({ messages: [] });
  });

  it('passes an empty frame on as an empty message (answered as malformed: nothing sent back)', async () => {
    const f = new DnsTcpFramer(512);
    const [empty] = f.push(Buffer.from([0, 0])).messages;
    expect(empty).toEqual(Buffer.alloc(0));
    expect((await world().server.answer(empty!, 'tcp')).bytes).toBeUndefined();
  });
});
