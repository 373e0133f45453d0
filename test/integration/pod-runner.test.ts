/**
 * The development pod runner (scripts/lib/pod-runner) against the real control plane:
 * it registers a Node, and the pods the scheduler binds there run as local processes with
 * their volumes laid out as the kubelet lays them out, their init containers in order, a
 * native sidecar kept running, readiness reported, crashes restarted, and nothing left
 * behind when the pod is deleted. Claim data outlives the pod.
 *
 * The containers use the runner's test image `agent-smith-dev/shell` (the host's sh and node).
 */
import { readFileSync } from 'node:fs';
import { lstat, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PatchStrategy, setHeaderOptions, type V1Pod } from '@kubernetes/client-node';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { PodRunner } from '../../scripts/lib/pod-runner/index.ts';
import { POD_RUNNER_LABEL } from '../../scripts/lib/pod-runner/node.ts';
import { findMarked } from '../../scripts/lib/pod-runner/process.ts';
import { stringify } from 'yaml';
import { kubectl, waitFor, type KubeClients } from '../support/kube.ts';
import { startRunnerFixture, type RunnerFixture } from '../support/pod-runner.ts';

const kubeconfig = inject('kubeconfig');
const NODE = 'local-test';
const SHELL = 'agent-smith-dev/shell:1';
const root = process.getuid?.() === 0;

let fixture: RunnerFixture | undefined;
let c: KubeClients;
let ns: { name: string; remove: () => Promise<void> };
let runner: PodRunner;

/** The main container: an HTTP server whose /ready answers 200 once scratch/ready exists and /live 503 while scratch/sick does; it records its env and identity first. */
const MAIN_JS = `
const fs = require('node:fs'); const http = require('node:http');
const r = process.env.AGENT_SMITH_ROOT;
fs.writeFileSync(r + '/scratch/main-' + process.pid + '.json', JSON.stringify({ uid: process.getuid(), gid: process.getgid(), groups: process.getgroups(), cwd: process.cwd(), env: process.env }));
http.createServer((q, s) => {
  const ok = q.url === '/live' ? !fs.existsSync(r + '/scratch/sick') : fs.existsSync(r + '/scratch/ready');
  s.statusCode = ok ? 200 : 503;
  s.end();
}).listen(Number(process.env.POD_RUNNER_PORT_8080), '127.0.0.1');
`;

function testPod(name: string): V1Pod {
  const append = (what: string) => `echo ${what} >> "$AGENT_SMITH_ROOT/scratch/order"`;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: ns.name, labels: { app: 'pod-runner-test' } },
    spec: {
      nodeSelector: { [POD_RUNNER_LABEL]: NODE },
      tolerations: [{ key: POD_RUNNER_LABEL, operator: 'Exists', effect: 'NoSchedule' }],
      automountServiceAccountToken: false,
      terminationGracePeriodSeconds: 5,
      securityContext: { runAsUser: 1000, runAsGroup: 1000, fsGroup: 2000 },
      initContainers: [
        { name: 'first', image: SHELL, command: ['sh', '-c', `${append('first')}; echo run >> "$AGENT_SMITH_ROOT/data/runs"`], volumeMounts: [{ name: 'scratch', mountPath: '/scratch' }, { name: 'data', mountPath: '/data' }] },
        {
          name: 'sidecar',
          image: SHELL,
          restartPolicy: 'Always',
          command: ['sh', '-c', `${append('sidecar')}; exec sleep 3600`],
          startupProbe: { exec: { command: ['sh', '-c', 'grep -q sidecar "$AGENT_SMITH_ROOT/scratch/order"'] }, periodSeconds: 1, failureThreshold: 30 },
          volumeMounts: [{ name: 'scratch', mountPath: '/scratch' }],
        },
        { name: 'second', image: SHELL, command: ['sh', '-c', append('second')], volumeMounts: [{ name: 'scratch', mountPath: '/scratch' }] },
      ],
      containers: [
        {
          name: 'main',
          image: SHELL,
          command: ['node', '-e', MAIN_JS],
          workingDir: '/data',
          ports: [{ name: 'http', containerPort: 8080 }],
          readinessProbe: { httpGet: { path: '/ready', port: 'http' }, periodSeconds: 1, failureThreshold: 1 },
          livenessProbe: { httpGet: { path: '/live', port: 8080 }, periodSeconds: 1, failureThreshold: 2 },
          env: [
            { name: 'FROM_CM', valueFrom: { configMapKeyRef: { name: 'settings', key: 'plain' } } },
            { name: 'FROM_SECRET', valueFrom: { secretKeyRef: { name: 'creds', key: 'token' } } },
            { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
            { name: 'GREETING', value: 'hello $(POD_NAME) $$(POD_NAME)' },
            { name: 'SETTINGS_FILE', value: '/etc/config/nested/settings.json' },
            { name: 'UPSTREAM', value: 'http://127.0.0.1:8080/x' },
          ],
          envFrom: [{ prefix: 'CM_', configMapRef: { name: 'settings' } }],
          volumeMounts: [
            { name: 'scratch', mountPath: '/scratch' },
            { name: 'data', mountPath: '/data' },
            { name: 'config', mountPath: '/etc/config', readOnly: true },
            { name: 'secret', mountPath: '/etc/secret', readOnly: true },
          ],
        },
      ],
      volumes: [
        { name: 'scratch', emptyDir: {} },
        { name: 'data', persistentVolumeClaim: { claimName: 'data' } },
        {
          name: 'config',
          configMap: {
            name: 'settings',
            defaultMode: 0o444,
            items: [
              { key: 'settings', path: 'nested/settings.json', mode: 0o400 },
              { key: 'plain', path: 'plain.txt' },
            ],
          },
        },
        { name: 'secret', secret: { secretName: 'creds', defaultMode: 0o440 } },
      ],
    },
  };
}

async function readPod(name: string): Promise<V1Pod> {
  return c.core.readNamespacedPod({ name, namespace: ns.name });
}

const condition = (p: V1Pod, type: string) => p.status?.conditions?.find((x) => x.type === type)?.status;
const pidOf = (containerID: string | undefined) => Number(containerID?.replace('pod-runner://', '') ?? 0);
/** Whether `pid` is a live process (a zombie waiting for its reaper, PID 1 here, counts as gone). */
const alive = (pid: number) => {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

beforeAll(async () => {
  fixture = await startRunnerFixture(kubeconfig, NODE, 'pod-runner', { backoff: { initialMs: 1000, maxMs: 2000 }, resyncMs: 1000 });
  ({ c, ns, runner } = fixture);
  await c.core.createNamespacedConfigMap({ namespace: ns.name, body: { metadata: { name: 'settings' }, data: { settings: '{"a":1}', plain: 'plain text', other: 'not projected' } } });
  await c.core.createNamespacedSecret({ namespace: ns.name, body: { metadata: { name: 'creds' }, stringData: { token: 's3cr3t-value', 'ca.crt': 'PEM' } } });
  await c.core.createNamespacedPersistentVolumeClaim({
    namespace: ns.name,
    body: { metadata: { name: 'data' }, spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } } },
  });
});

let failed = false;
afterEach((ctx) => {
  if (ctx.task.result?.state === 'fail') failed = true;
});

afterAll(async () => {
  // Kept after a failure: the runner's log and the containers' logs say what happened.
  await fixture?.close(failed);
});

describe('the development pod runner', () => {
  it('registers a Ready node with its label and taint, left alone by kwok', async () => {
    const node = await waitFor('the Ready node', async () => {
      const n = await c.core.readNode({ name: NODE });
      return n.status?.conditions?.find((x) => x.type === 'Ready')?.status === 'True' && n;
    });
    expect(node.metadata?.labels?.[POD_RUNNER_LABEL]).toBe(NODE);
    expect(node.spec?.taints).toContainEqual(expect.objectContaining({ key: POD_RUNNER_LABEL, effect: 'NoSchedule' }));
    expect(node.metadata?.annotations?.['kwok.x-k8s.io/node']).toBeUndefined();
    const lease = await c.kc.makeApiClient((await import('@kubernetes/client-node')).CoordinationV1Api).readNamespacedLease({ name: NODE, namespace: 'kube-node-lease' });
    expect(Date.now() - new Date(lease.spec?.renewTime ?? 0).getTime()).toBeLessThan(30_000);
  });

  it('runs a pod: volumes as the kubelet lays them out (and refreshes them), init order, a running sidecar, readiness, restarts after a kill and a failed liveness probe, and deletion that leaves nothing', async () => {
    await c.core.createNamespacedPod({ namespace: ns.name, body: testPod('app') });

    // Init containers ran in order; the sidecar started (its startup probe passed) before `second`.
    const running = await waitFor('the main container running', async () => {
      const p = await readPod('app');
      return p.status?.containerStatuses?.[0]?.state?.running && p;
    });
    expect(running.spec?.nodeName).toBe(NODE);
    const where = runner.describe(ns.name, 'app');
    if (!where) throw new Error('the runner does not know pod app');
    const mainRoot = where.containers.main?.rootfs ?? '';
    // Tools in other processes find the same in pod.json.
    expect(JSON.parse(await readFile(join(where.podDir, 'pod.json'), 'utf8'))).toMatchObject({ name: 'app', namespace: ns.name, ports: where.ports });
    expect((await readFile(join(mainRoot, 'scratch/order'), 'utf8')).split('\n').filter(Boolean)).toEqual(['first', 'sidecar', 'second']);
    const init = Object.fromEntries((running.status?.initContainerStatuses ?? []).map((s) => [s.name, s]));
    expect(init.first?.state?.terminated).toMatchObject({ exitCode: 0, reason: 'Completed' });
    expect(init.second?.state?.terminated).toMatchObject({ exitCode: 0, reason: 'Completed' });
    expect(init.sidecar?.state?.running).toBeDefined();
    expect(init.sidecar?.started).toBe(true);
    expect(running.status?.podIP).toBe('127.0.0.1');
    expect(running.status?.phase).toBe('Running');
    expect(condition(running, 'Initialized')).toBe('True');

    // Not ready until its readiness probe passes; then Ready=True in the API.
    expect(condition(running, 'Ready')).toBe('False');
    await writeFile(join(mainRoot, 'scratch/ready'), '');
    const ready = await waitFor('Ready=True', async () => {
      const p = await readPod('app');
      return condition(p, 'Ready') === 'True' && p;
    });
    expect(ready.status?.containerStatuses?.[0]?.ready).toBe(true);
    expect(condition(ready, 'ContainersReady')).toBe('True');

    // ConfigMap with items: only the listed keys, at their paths, through ..data, with their modes.
    const config = join(mainRoot, 'etc/config');
    expect(await readFile(join(config, 'nested/settings.json'), 'utf8')).toBe('{"a":1}');
    expect(await readFile(join(config, 'plain.txt'), 'utf8')).toBe('plain text');
    await expect(stat(join(config, 'other'))).rejects.toThrow();
    expect(await readlink(join(config, 'nested'))).toBe('..data/nested');
    expect(await readlink(join(config, 'plain.txt'))).toBe('..data/plain.txt');
    expect(await readlink(join(config, '..data'))).toMatch(/^\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.\d+$/);
    // The kubelet's fsGroup handling of a read-only volume: group fsGroup, mode |= 0440.
    const settings = await stat(join(config, 'nested/settings.json'));
    expect(settings.mode & 0o7777).toBe(root ? 0o440 : 0o400);
    expect((await stat(join(config, 'plain.txt'))).mode & 0o7777).toBe(0o444);
    // Secret without items: every key, defaultMode.
    const secret = join(mainRoot, 'etc/secret');
    expect(await readFile(join(secret, 'token'), 'utf8')).toBe('s3cr3t-value');
    expect(await readFile(join(secret, 'ca.crt'), 'utf8')).toBe('PEM');
    expect((await stat(join(secret, 'token'))).mode & 0o7777).toBe(0o440);
    if (root) {
      expect(settings.gid).toBe(2000);
      expect((await stat(join(secret, 'token'))).gid).toBe(2000);
    }

    // The process: env from valueFrom/envFrom/fieldRef with $(VAR) expansion, in-pod paths and
    // loopback ports rewritten, working dir, and the pod's UID with fsGroup as a group.
    const mainPid = pidOf(ready.status?.containerStatuses?.[0]?.containerID);
    const seen = JSON.parse(await readFile(join(mainRoot, `scratch/main-${mainPid}.json`), 'utf8')) as { uid: number; gid: number; groups: number[]; cwd: string; env: Record<string, string> };
    expect(seen.env).toMatchObject({ FROM_CM: 'plain text', FROM_SECRET: 's3cr3t-value', POD_NAME: 'app', GREETING: 'hello app $(POD_NAME)', CM_plain: 'plain text', CM_other: 'not projected' });
    expect(seen.env.SETTINGS_FILE).toBe(join(mainRoot, 'etc/config/nested/settings.json'));
    expect(seen.env.UPSTREAM).toBe(`http://127.0.0.1:${where.ports['8080']}/x`);
    expect(where.ports['8080']).not.toBe(8080);
    if (root) {
      expect(seen).toMatchObject({ uid: 1000, gid: 1000 });
      expect(seen.groups).toContain(2000);
    }

    // A changed ConfigMap reaches the running pod's files (the kubelet's periodic sync), through a new ..data.
    const dataBefore = await readlink(join(config, '..data'));
    await c.core.patchNamespacedConfigMap(
      { name: 'settings', namespace: ns.name, body: { data: { plain: 'changed' } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    await waitFor('the changed file', async () => (await readFile(join(config, 'plain.txt'), 'utf8')) === 'changed', 30_000);
    expect(await readlink(join(config, '..data'))).not.toBe(dataBefore);

    // Kill the main process: the pod's restart count grows, and it runs again.
    process.kill(mainPid, 'SIGKILL');
    const restarted = await waitFor('a restart', async () => {
      const p = await readPod('app');
      const s = p.status?.containerStatuses?.[0];
      return s && s.restartCount >= 1 && s.state?.running && pidOf(s.containerID) !== mainPid && p;
    });
    const after = restarted.status?.containerStatuses?.[0];
    expect(after?.lastState?.terminated).toMatchObject({ exitCode: 137, reason: 'Error' });
    // The sidecar was left running through it.
    const sidecarPid = pidOf(restarted.status?.initContainerStatuses?.find((s) => s.name === 'sidecar')?.containerID);
    expect(alive(sidecarPid)).toBe(true);

    // A failing liveness probe kills the container (SIGTERM: 143) and it is restarted.
    await writeFile(join(mainRoot, 'scratch/sick'), '');
    const unhealthy = await waitFor('a liveness restart', async () => {
      const s = (await readPod('app')).status?.containerStatuses?.[0];
      return s && s.restartCount >= 2 && s.lastState?.terminated?.exitCode === 143 && s;
    }, 30_000);
    await rm(join(mainRoot, 'scratch/sick'));
    const healthy = await waitFor('running again', async () => {
      const s = (await readPod('app')).status?.containerStatuses?.[0];
      return s?.state?.running && s.ready && s;
    }, 30_000);
    expect(healthy.restartCount).toBeGreaterThanOrEqual(unhealthy.restartCount);

    // Delete: every process of the pod ends, and the runner removes the pod object (grace 0).
    const uid = restarted.metadata?.uid ?? '';
    const marked = await findMarked('');
    const podProcs = (await Promise.all(marked.map(async (pid) => ((await readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '')).includes(`:${uid}:`) ? pid : 0)))).filter(Boolean);
    expect(podProcs.length).toBeGreaterThanOrEqual(2);
    await c.core.deleteNamespacedPod({ name: 'app', namespace: ns.name });
    await waitFor('the pod object gone', async () => {
      try {
        await readPod('app');
        return false;
      } catch {
        return true;
      }
    }, 30_000);
    for (const pid of [...podProcs, sidecarPid, pidOf(healthy.containerID)]) expect(alive(pid), `pid ${pid}`).toBe(false);
    await expect(lstat(mainRoot)).rejects.toThrow();
  });

  it('keeps claim data across a re-created pod', async () => {
    await c.core.createNamespacedPod({ namespace: ns.name, body: testPod('app') });
    await waitFor('the re-created pod running', async () => (await readPod('app')).status?.containerStatuses?.[0]?.state?.running);
    // `first` appended a line on each run: the one of the deleted pod is still there.
    const mainRoot = runner.describe(ns.name, 'app')?.containers.main?.rootfs ?? '';
    expect(await readFile(join(mainRoot, 'data/runs'), 'utf8')).toBe('run\nrun\n');
    await c.core.deleteNamespacedPod({ name: 'app', namespace: ns.name, gracePeriodSeconds: 1 });
  });

  it('refuses an image it cannot run, saying so in the container status', async () => {
    const pod = testPod('foreign');
    pod.spec = { ...pod.spec, initContainers: [], volumes: [], containers: [{ name: 'web', image: 'nginx:1.27' }] };
    await c.core.createNamespacedPod({ namespace: ns.name, body: pod });
    const waiting = await waitFor('ErrImagePull', async () => (await readPod('foreign')).status?.containerStatuses?.[0]?.state?.waiting);
    expect(waiting.reason).toBe('ErrImagePull');
    expect(waiting.message).toContain('pod-runner (development) cannot run image "nginx:1.27"');
  });
});

describe('an Agent scheduled on the runner', () => {
  interface AgentObject {
    status?: { conditions?: { type: string; status: string; reason: string; message: string }[] };
  }
  const readAgent = async () =>
    (await c.custom.getNamespacedCustomObject({ group: 'agentsmith.dev', version: 'v1alpha1', namespace: ns.name, plural: 'agents', name: 'podbot' })) as AgentObject;

  it('runs the operator\'s own pod (egress-init skipped, the proxy sidecar, setup, supervise with a custom harness) to Ready=True, and deleting the Agent stops every process', async () => {
    const agent = {
      apiVersion: 'agentsmith.dev/v1alpha1',
      kind: 'Agent',
      metadata: { name: 'podbot', namespace: ns.name },
      spec: {
        harness: { kind: 'custom', command: ['sh', '-c', 'echo custom harness up; exec sleep 86400'] },
        persona: { instructions: 'You are podbot.' },
        egress: { allow: ['github.com'] },
        storage: { retainOnDelete: false },
        pod: { nodeSelector: { [POD_RUNNER_LABEL]: NODE }, tolerations: [{ key: POD_RUNNER_LABEL, operator: 'Exists', effect: 'NoSchedule' }] },
      },
    };
    const applied = await kubectl(kubeconfig, ['apply', '-f', '-'], stringify(agent));
    expect(applied.stderr).toBe('');
    const ready = await waitFor(
      'Agent Ready=True',
      async () => (await readAgent()).status?.conditions?.find((x) => x.type === 'Ready' && x.status === 'True'),
      120_000,
      1000,
    );
    expect(ready.status).toBe('True');

    const pod = await readPod('podbot-0');
    expect(pod.spec?.nodeName).toBe(NODE);
    const init = Object.fromEntries((pod.status?.initContainerStatuses ?? []).map((s) => [s.name, s]));
    expect(init['egress-init']?.state?.terminated?.message).toContain('egress-init skipped');
    expect(init['egress-proxy']).toMatchObject({ ready: true, started: true });
    expect(init['egress-proxy']?.state?.running).toBeDefined();
    expect(init.setup?.state?.terminated).toMatchObject({ exitCode: 0, reason: 'Completed' });
    expect(pod.status?.containerStatuses?.[0]).toMatchObject({ name: 'agent', ready: true });
    // The supervisor answers on its remapped port, and runs the harness in tmux as UID 1000.
    const where = runner.describe(ns.name, 'podbot-0');
    const health = await fetch(`http://127.0.0.1:${where?.ports['8080']}/readyz`);
    expect(health.status).toBe(200);
    const uid = pod.metadata?.uid ?? '';
    const procs = await waitFor('the harness in tmux', async () => {
      const found: { pid: number; uid: number; cmd: string }[] = [];
      for (const pid of await findMarked('')) {
        const environ = await readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '');
        if (!environ.includes(`:${uid}:agent`)) continue;
        const cmd = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).replaceAll('\0', ' ');
        const st = await stat(`/proc/${pid}`).catch(() => undefined);
        found.push({ pid, uid: st?.uid ?? -1, cmd });
      }
      return found.some((p) => p.cmd.startsWith('sleep 86400')) && found;
    });
    if (root) for (const p of procs) expect(p.uid, p.cmd).toBe(1000);
    expect(procs.some((p) => p.cmd.startsWith('tmux'))).toBe(true);

    await kubectl(kubeconfig, ['delete', 'agent', 'podbot', '-n', ns.name, '--wait=false']);
    await waitFor('the pod gone', async () => {
      try {
        await readPod('podbot-0');
        return false;
      } catch {
        return true;
      }
    }, 90_000, 500);
    for (const p of procs) expect(alive(p.pid), p.cmd).toBe(false);
    const left = (await Promise.all((await findMarked('')).map(async (pid) => ((await readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '')).includes(`:${uid}:`) ? pid : 0)))).filter(Boolean);
    expect(left).toEqual([]);
    // The supervisor waits stopGraceSeconds (45 s) for the interactive shell of pane 1,
    // which ignores SIGTERM: the deletion alone takes most of a minute.
  }, 180_000);
});

describe('stopping the runner', () => {
  it('stops every process of its pods (a daemon in its own session too), marks the pods Failed and the Node NotReady', async () => {
    const pod = testPod('daemon');
    pod.spec = {
      ...pod.spec,
      initContainers: [],
      volumes: [],
      securityContext: {},
      containers: [{ name: 'main', image: SHELL, command: ['sh', '-c', 'setsid sleep 1001 & exec sleep 1002'] }],
    };
    await c.core.createNamespacedPod({ namespace: ns.name, body: pod });
    const running = await waitFor('the pod running', async () => {
      const p = await readPod('daemon');
      return p.status?.containerStatuses?.[0]?.state?.running && p;
    });
    const uid = running.metadata?.uid ?? '';
    const procs = await waitFor('both sleeps', async () => {
      const found: number[] = [];
      for (const pid of await findMarked('')) if ((await readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '')).includes(`:${uid}:`)) found.push(pid);
      return found.length >= 2 && found;
    });

    await runner.stop();
    for (const pid of procs) expect(alive(pid), `pid ${pid}`).toBe(false);
    const after = await readPod('daemon');
    expect(after.status).toMatchObject({ phase: 'Failed', reason: 'PodRunnerStopped' });
    expect(condition(after, 'Ready')).toBe('False');
    const node = await c.core.readNode({ name: NODE });
    expect(node.status?.conditions?.find((x) => x.type === 'Ready')).toMatchObject({ status: 'False', reason: 'PodRunnerStopped' });
  });
});
