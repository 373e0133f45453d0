/**
 * `localcluster up --real-node`: a real kubelet Node "local" runs a pod from an image
 * imported with ctr; kubectl logs and exec work; the pod resolves cluster names and the
 * names of the DNS hosts file and nothing else; it reaches the API server through the
 * `kubernetes` Service and a host-side server through a selector-less Service, and
 * nothing outside the machine; stop leaves the host as it was, and so does the run after
 * one killed with SIGKILL.
 *
 * Needs root and a machine that can run containers (scripts/lib/tools.sh
 * ensure_real_node); otherwise `up` fails with the one-line reason, and so does this test.
 */
import { createServer, type Server } from 'node:http';
import { appendFileSync, existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kubectl, waitFor } from '../support/kube.ts';
import { BUSYBOX_IMAGE, hostLeftovers, importBusybox, readSysctls, startRealNode, type RealNodeCluster } from '../support/real-node.ts';

const NS = 'default';

function podManifest(name: string, script: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: NS },
    spec: {
      terminationGracePeriodSeconds: 1,
      containers: [{ name: 'main', image: BUSYBOX_IMAGE, imagePullPolicy: 'Never', command: ['/bin/busybox', 'sh', '-c', script], ...extra }],
      ...(extra.volumeMounts ? { volumes: [{ name: 'data', persistentVolumeClaim: { claimName: 'data' } }] } : {}),
    },
  });
}

describe('localcluster up --real-node', () => {
  let cluster: RealNodeCluster;
  let sysctlsBefore: Record<string, string>;
  let hostServer: Server;
  const others: RealNodeCluster[] = []; // the runs of the kill -9 test, stopped at the end whatever happens
  const k = (args: string[], input?: string) => kubectl(cluster.kubeconfig, args, input);
  const exec = (script: string) => k(['exec', '-n', NS, 'probe', '--', '/bin/busybox', 'sh', '-c', script]);

  beforeAll(async () => {
    sysctlsBefore = readSysctls();
    const began = Date.now();
    cluster = await startRealNode();
    console.log(`[real-node] up ready in ${((Date.now() - began) / 1000).toFixed(1)} s: ${cluster.log.find((l) => l.includes('Ready')) ?? ''}`);
    await importBusybox(cluster.containerdAddress);
    const r = await k(['apply', '-f', '-'], podManifest('probe', 'echo hello-from-pod; exec /bin/busybox sleep 3600'));
    expect(r.stderr).toBe('');
    const w = await k(['wait', '-n', NS, '--for=condition=Ready', 'pod/probe', '--timeout=90s']);
    expect(w.code, `${w.stderr}\n${(await k(['describe', 'pod', '-n', NS, 'probe'])).stdout}`).toBe(0);
  });

  afterAll(async () => {
    hostServer?.close();
    await cluster?.stop();
    for (const c of others) await c.stop();
  });

  it('announces the node and its addresses, and the node is Ready', async () => {
    expect(cluster).toMatchObject({ name: 'local', podGateway: '10.89.0.1', clusterDNS: '10.0.0.10', nodes: [] });
    expect(cluster.containerdAddress).toMatch(/containerd\.sock$/);
    const r = await k(['get', 'node', 'local', '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}']);
    expect(r.stdout).toBe('True');
  });

  it('runs the pod: kubectl logs and kubectl exec work', async () => {
    expect((await k(['logs', '-n', NS, 'probe'])).stdout).toContain('hello-from-pod');
    const r = await exec('echo exec-$((40+2))');
    expect(r.stdout.trim()).toBe('exec-42');
  });

  it('resolves cluster names and hosts-file names, and nothing else', async () => {
    const svc = await exec('/bin/busybox nslookup kubernetes.default.svc.cluster.local');
    expect(svc.stdout).toContain('10.0.0.1');
    appendFileSync(cluster.dnsHostsFile, '10.0.0.77 github.com\n');
    await waitFor('github.com from the hosts file', async () => (await exec('/bin/busybox nslookup github.com')).stdout.includes('10.0.0.77'), 15_000);
    const other = await exec('/bin/busybox nslookup example.org');
    expect(other.code).not.toBe(0);
    expect(other.stdout + other.stderr).toContain('NXDOMAIN');
  });

  it('reaches the API server through the kubernetes Service IP', async () => {
    // busybox's TLS cannot agree on a cipher with the API server; plain HTTP to its TLS port
    // gets Go's "400 Bad Request" answer, which is the API server answering all the same.
    const r = await exec('/bin/busybox timeout 10 /bin/busybox wget -O - http://10.0.0.1:443/');
    expect(r.stdout + r.stderr).toContain('HTTP/1.0 400 Bad Request');
    const ep = await k(['get', 'endpointslices', '-n', 'default', '-l', 'kubernetes.io/service-name=kubernetes', '-o', 'jsonpath={.items[0].endpoints[0].addresses[0]}']);
    expect(ep.stdout).toBe(cluster.podGateway);
  });

  it('reaches a host-side server through a selector-less Service', async () => {
    hostServer = createServer((_req, res) => res.end('hello-from-host'));
    await new Promise<void>((resolve) => hostServer.listen(0, cluster.podGateway, resolve));
    const port = (hostServer.address() as AddressInfo).port;
    const objects = [
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 'host-web', namespace: NS }, spec: { ports: [{ name: 'http', port: 80, targetPort: port }] } },
      {
        apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
        metadata: { name: 'host-web-1', namespace: NS, labels: { 'kubernetes.io/service-name': 'host-web' } },
        addressType: 'IPv4', endpoints: [{ addresses: [cluster.podGateway] }], ports: [{ name: 'http', port, protocol: 'TCP' }],
      },
    ];
    const a = await k(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }));
    expect(a.code, a.stderr).toBe(0);
    await waitFor('the host server through its Service', async () => (await exec('/bin/busybox timeout 5 /bin/busybox wget -q -O - http://host-web.default.svc.cluster.local/')).stdout === 'hello-from-host', 20_000);
  });

  it('cannot reach anything outside the machine', async () => {
    for (const target of ['http://1.1.1.1/', 'http://8.8.8.8:53/']) {
      const r = await exec(`/bin/busybox timeout 10 /bin/busybox wget -O - ${target}`);
      expect(r.code).not.toBe(0);
      expect(r.stdout + r.stderr).toMatch(/Network (is )?unreachable/);
    }
  });

  it('gives a pod running as UID 1000 a writable volume', async () => {
    const pvc = { apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name: 'data', namespace: NS }, spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Mi' } } } };
    expect((await k(['apply', '-f', '-'], JSON.stringify(pvc))).code).toBe(0);
    const r = await k(['apply', '-f', '-'], podManifest('writer', 'echo written > /data/f && cat /data/f && exec /bin/busybox sleep 3600', {
      securityContext: { runAsUser: 1000, runAsGroup: 1000 },
      volumeMounts: [{ name: 'data', mountPath: '/data' }],
    }));
    expect(r.code, r.stderr).toBe(0);
    const w = await k(['wait', '-n', NS, '--for=condition=Ready', 'pod/writer', '--timeout=60s']);
    expect(w.code, w.stderr).toBe(0);
    expect((await k(['logs', '-n', NS, 'writer'])).stdout).toContain('written');
  });

  it('leaves the host clean on stop, and after a SIGKILL the next run cleans up', async () => {
    const first = { dir: cluster.dir, imageStore: cluster.imageStore, containerdAddress: cluster.containerdAddress };
    expect(await cluster.stop()).toBe(0);
    expect(await hostLeftovers(first, sysctlsBefore)).toEqual([]);

    // A run killed outright leaves its containers, shims, mounts, chains and bridge behind.
    const killed = await startRealNode();
    others.push(killed);
    const r = await kubectl(killed.kubeconfig, ['apply', '-f', '-'], podManifest('probe', 'exec /bin/busybox sleep 3600'));
    expect(r.code, r.stderr).toBe(0);
    const w = await kubectl(killed.kubeconfig, ['wait', '-n', NS, '--for=condition=Ready', 'pod/probe', '--timeout=60s']);
    expect(w.code, w.stderr).toBe(0);
    await killed.kill9();
    const left = await hostLeftovers(killed, sysctlsBefore);
    expect(left).toContain('bridge asbr0');
    expect(left.some((l) => l.startsWith('process ')), left.join('\n')).toBe(true); // the pod's shim

    // The next run undoes all that before it starts: while it runs, nothing of the killed
    // run's directory is mounted or running, and the directory is gone.
    const next = await startRealNode();
    others.push(next);
    expect(next.log.join('\n')).toContain(`cleaning up after the real-node cluster in ${killed.dir}`);
    expect((await hostLeftovers(killed, sysctlsBefore)).filter((l) => l.includes(killed.dir))).toEqual([]);
    expect(existsSync(killed.dir)).toBe(false);
    expect(await next.stop()).toBe(0);
    expect(await hostLeftovers(next, sysctlsBefore)).toEqual([]);
  });
});
