/**
 * `agent-smith proxy` fails closed: until the contract, the egress CA and every
 * credential file are loaded it answers 503 to every request and CONNECT, closes TLS,
 * and /readyz names what is missing (the file, never a value); it becomes ready on its
 * own once the file appears.
 */
import { writeFile } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { startHttpsUpstream, type HttpsUpstream } from '../fakes/https-upstream.ts';
import { connect, dial, startProxy, startTls, viaConnect, viaPlain, type ProxyFixture } from './proxy-harness.ts';

const REAL = 'ghp_NotReadyYetRealValue0123456789abcdef';
const STUB = 'agent-smith-stub-NNNNrrrrNNNNrrrrNNNNrrrrNNNNrrrrNNNNrrrr0000';
const OTHER_REAL = 'other-real-value-0123456789abcdef0123456789';
const OTHER_STUB = 'agent-smith-stub-OOOOooooOOOOooooOOOOooooOOOOooooOOOOoooo1111';

describe('agent-smith proxy before it is ready', () => {
  let up: HttpsUpstream | undefined;
  let fx: ProxyFixture | undefined;

  afterEach(async () => {
    await fx?.stop();
    await up?.close();
    fx = undefined;
    up = undefined;
  });

  it('answers 503 until every credential file is there, names the file, then serves', async () => {
    up = await startHttpsUpstream({ names: ['api.test', 'other.test'] });
    const ports = { '443': up.httpsPort, '80': up.httpPort };
    fx = await startProxy({
      allow: ['api.test', 'other.test'],
      allowCidrs: ['127.0.0.0/8'],
      credentials: [
        { name: 'github', hosts: ['api.test'], scheme: 'bearer', header: 'Authorization', stub: STUB, require: false, real: REAL },
        { name: 'other', hosts: ['other.test'], scheme: 'raw', header: 'X-Key', stub: OTHER_STUB, require: false, real: OTHER_REAL },
      ],
      hosts: { 'api.test': { addresses: ['127.0.0.1'], ports }, 'other.test': { addresses: ['127.0.0.1'], ports } },
      upstreamCa: [up.caPem],
      withoutFiles: ['github'],
      waitReady: false,
    });
    // The proxy names the file at its in-pod path; the test writes it through the pod root.
    const file = '/etc/agent-smith/credentials/github';
    const notReady = await fx.waitForLog((l) => l.msg === 'egress proxy not ready');
    expect(notReady.reason).toContain(file);

    const plain = await viaPlain(fx, 'GET http://other.test/echo HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n');
    expect(plain.status).toBe(503);
    expect(plain.headers['x-agent-smith-deny']).toEqual(['not_ready']);
    const tunnel = await connect(fx.port, 'other.test:443');
    tunnel.socket.destroy();
    expect(tunnel.res.status).toBe(503);
    await expect(startTls(await dial(fx.port), { servername: 'other.test', caPem: fx.caPem })).rejects.toThrow();
    const ready = await fx.health('/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body).toContain(file);
    expect(up.received).toEqual([]);

    // The Secret key appears (a projected volume update): ready without a restart.
    await writeFile(fx.pod.path(file), `${REAL}\n`);
    await fx.waitForLog((l) => l.msg === 'egress proxy ready', 10_000);
    expect((await fx.health('/readyz')).status).toBe(200);
    const res = await viaConnect(fx, 'api.test:443', `GET /echo HTTP/1.1\r\nHost: api.test\r\nAuthorization: Bearer ${STUB}\r\nConnection: close\r\n\r\n`);
    expect(res.status).toBe(200);
    // One trailing newline of the file is not part of the value.
    expect(up.requests[0]?.rawHeaders).toContain(`Bearer ${REAL}`);
    expect(fx.output()).not.toContain(REAL);
    expect(fx.output()).not.toContain(OTHER_REAL);
  });

  it('refuses a credential file that is not a header value, naming the file only', async () => {
    up = await startHttpsUpstream({ names: ['api.test'] });
    fx = await startProxy({
      allow: ['api.test'],
      allowCidrs: ['127.0.0.0/8'],
      credentials: [{ name: 'github', hosts: ['api.test'], scheme: 'bearer', header: 'Authorization', stub: STUB, require: false, real: `${REAL}\r\nX-Injected: 1` }],
      hosts: {},
      upstreamCa: [up.caPem],
      waitReady: false,
    });
    const line = await fx.waitForLog((l) => l.msg === 'egress proxy not ready');
    expect(line.reason).toMatch(/credentials\/github: the value of credential github has characters a header cannot carry/);
    expect(fx.output()).not.toContain(REAL);
  });
});
