import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import * as x509 from '@peculiar/x509';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PooledKubeConfig } from './kubeconfig.ts';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

/** A self-signed ECDSA certificate for 127.0.0.1, PEM. */
async function serverCert(): Promise<{ cert: string; key: string }> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: 'CN=127.0.0.1',
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 3_600_000),
    signingAlgorithm: alg,
    keys,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'ip', value: '127.0.0.1' }])],
  });
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { cert: cert.toString('pem'), key: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY') };
}

function load(kc: KubeConfig, server: string, caPem: string, token: string): KubeConfig {
  kc.loadFromOptions({
    clusters: [{ name: 'c', server, caData: Buffer.from(caPem).toString('base64'), skipTLSVerify: false }],
    users: [{ name: 'u', token }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return kc;
}

describe('PooledKubeConfig', () => {
  let server: Server;
  let url = '';
  let ca = '';
  let tlsConnections = 0;
  const tokens: string[] = [];

  beforeAll(async () => {
    const { cert, key } = await serverCert();
    ca = cert;
    server = createServer({ cert, key }, (req, res) => {
      tokens.push(req.headers.authorization ?? '');
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x', namespace: 'default' } }));
    });
    server.on('secureConnection', () => tlsConnections++);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => {
    server.closeAllConnections();
    server.close();
  });

  it('sends successive requests over a few kept-alive TLS connections, with the credentials of each', async () => {
    const kc = load(new PooledKubeConfig(), url, ca, 'one');
    const core = kc.makeApiClient(CoreV1Api);
    tlsConnections = 0;
    tokens.length = 0;
    for (let i = 0; i < 20; i++) {
      const cm = await core.readNamespacedConfigMap({ name: 'x', namespace: 'default' });
      expect(cm.metadata?.name).toBe('x');
    }
    // client-node's own KubeConfig opens 20 here, one per request.
    expect(tlsConnections).toBeLessThanOrEqual(2);
    expect(tokens).toEqual(Array(20).fill('Bearer one'));
  });

  it('applies changed TLS options (a rotated CA) to the next request', async () => {
    const kc = load(new PooledKubeConfig(), url, ca, 'two');
    const core = kc.makeApiClient(CoreV1Api);
    await core.readNamespacedConfigMap({ name: 'x', namespace: 'default' });
    const cluster = kc.getCurrentCluster()!;
    const other = await serverCert();
    Object.assign(cluster, { caData: Buffer.from(other.cert).toString('base64') });
    await expect(core.readNamespacedConfigMap({ name: 'x', namespace: 'default' })).rejects.toThrow();
    Object.assign(cluster, { caData: Buffer.from(ca).toString('base64') });
    const cm = await core.readNamespacedConfigMap({ name: 'x', namespace: 'default' });
    expect(cm.metadata?.name).toBe('x');
  });
});
