/**
 * spec.egress.upstreamCaConfigMapRef as the proxy sees it: the operator mounts the PEM
 * bundle into the egress-proxy container and names the file in AGENT_SMITH_UPSTREAM_CA
 * (operator/src/render/statefulset.ts). An upstream whose certificate is signed by that CA
 * is reached; without the field the same upstream is refused before any request byte is
 * sent; a bundle that is not PEM keeps the proxy not ready, and /readyz names the field.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startHttpsUpstream, type HttpsUpstream } from '../fakes/https-upstream.ts';
import { startProxy, viaConnect, type ProxyFixture } from './proxy-harness.ts';

describe('agent-smith proxy: extra upstream CAs', () => {
  let up: HttpsUpstream | undefined;
  let fx: ProxyFixture | undefined;

  afterEach(async () => {
    await fx?.stop();
    await up?.close();
    fx = undefined;
    up = undefined;
  });

  const proxyFor = (u: HttpsUpstream, upstreamCa: string[], extra: { upstreamCaText?: string; waitReady?: boolean } = {}) =>
    startProxy({
      allow: ['ghe.corp.test'],
      allowCidrs: ['127.0.0.0/8'],
      credentials: [],
      hosts: { 'ghe.corp.test': { addresses: ['127.0.0.1'], ports: { '443': u.httpsPort } } },
      upstreamCa,
      ...extra,
    });
  const get = (f: ProxyFixture) => viaConnect(f, 'ghe.corp.test:443', 'GET /api/v3/meta HTTP/1.1\r\nHost: ghe.corp.test\r\nConnection: close\r\n\r\n');

  it('reaches an upstream signed by the configured CA, and says at start which CAs it trusts', async () => {
    up = await startHttpsUpstream({ names: ['ghe.corp.test'] });
    fx = await proxyFor(up, [up.caPem]);
    const res = await get(fx);
    expect(res.status).toBe(200);
    expect(up.receivedFor('ghe.corp.test')).toContain('GET /api/v3/meta');
    const line = fx.logs().find((l) => l.msg === 'upstream TLS also trusts the CAs of spec.egress.upstreamCaConfigMapRef');
    expect(line?.subjects).toEqual([expect.any(String)]);
  });

  it('refuses the same upstream without the field: its certificate does not verify against the system roots', async () => {
    up = await startHttpsUpstream({ names: ['ghe.corp.test'] });
    fx = await proxyFor(up, []);
    const res = await get(fx);
    expect(res.status).toBe(502);
    expect(res.headers['x-agent-smith-deny']).toEqual(['upstream_tls']);
    expect(up.receivedFor('ghe.corp.test')).toBe('');
    expect(fx.output()).not.toContain('upstream TLS also trusts');
  });

  it('stays not ready with a bundle that is not PEM, and /readyz names the field', async () => {
    up = await startHttpsUpstream({ names: ['ghe.corp.test'] });
    fx = await proxyFor(up, [], { upstreamCaText: 'this is not a certificate\n', waitReady: false });
    const line = await fx.waitForLog((l) => l.msg === 'egress proxy not ready');
    expect(line.reason).toMatch(/spec\.egress\.upstreamCaConfigMapRef, AGENT_SMITH_UPSTREAM_CA\): no PEM certificate in it/);
    const ready = await fx.health('/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body).toContain('spec.egress.upstreamCaConfigMapRef');
    expect((await get(fx)).status).toBe(503);
  });
});
