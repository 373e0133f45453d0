/**
 * Benchmark: the operator's memory, as the image runs it, on the local control plane
 * (kwok nodes): peak RSS (VmHWM) once its caches have synced with no Agent, then after N
 * Agents are Ready, and the V8 heap in use (prom-client's nodejs_heap_size_used_bytes)
 * at both points, giving a per-Agent cost.
 *
 *   npm run build:operator
 *   node test/bench/operator-memory.ts [--n 300] [--entry operator/dist/operator/src/main.js] [--flag=--x ...]
 *
 * `--entry` is the operator's main, compiled (default) or `operator/src/main.ts` (type
 * stripping); the Node flags are the Dockerfile's operator ENTRYPOINT's unless `--flag`s
 * are given (`--flag=` alone: none). Not a test: prints one JSON line.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { startLocalCluster, CACHE_BIN } from '../../scripts/lib/cluster.ts';
import { ROOT } from '../../scripts/lib/paths.ts';

const { values } = parseArgs({ options: { n: { type: 'string', default: '300' }, entry: { type: 'string', default: 'operator/dist/operator/src/main.js' }, flag: { type: 'string', multiple: true } } });
const N = Number(values.n);
const NS = 'bench';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The Node flags of the Dockerfile's operator ENTRYPOINT (between `node` and the script). */
function imageNodeFlags(): string[] {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const stage = dockerfile.split(/^FROM\s/m).find((s) => /^\S+\s+AS\s+operator\s*$/im.test(s.split('\n')[0] ?? ''));
  const entry = /^ENTRYPOINT\s+(\[.*\])\s*$/m.exec(stage ?? '')?.[1];
  if (!entry) throw new Error("no ENTRYPOINT in the Dockerfile's operator stage");
  return (JSON.parse(entry) as string[]).slice(1, -1);
}
const flags = values.flag ? values.flag.filter((f) => f !== '') : imageNodeFlags();

/** Peak and current RSS in MB (/proc/<pid>/status) and CPU seconds so far (user + system, /proc/<pid>/stat, 100 ticks a second). */
function vm(pid: number): { hwmMb: number; rssMb: number; cpuSeconds: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  const stat = (readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1] ?? '').split(' ');
  return { hwmMb: kb('VmHWM') / 1024, rssMb: kb('VmRSS') / 1024, cpuSeconds: (Number(stat[11]) + Number(stat[12])) / 100 };
}

/** The V8 heap in use and committed, and memory outside it (buffers), in MB, from the operator's /metrics (prom-client's process metrics). */
async function heap(port: number): Promise<{ heapMb: number; heapTotalMb: number; externalMb: number }> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const mb = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN) / 2 ** 20;
  return { heapMb: mb('nodejs_heap_size_used_bytes'), heapTotalMb: mb('nodejs_heap_size_total_bytes'), externalMb: mb('nodejs_external_memory_bytes') };
}

const cluster = await startLocalCluster({ nodes: Math.max(2, Math.ceil(N / 100) + 1), timeoutMs: 300_000 });
let op: ReturnType<typeof spawn> | undefined;
try {
  const kc = new KubeConfig();
  kc.loadFromFile(cluster.kubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  await core.createNamespace({ body: { metadata: { name: NS } } });
  await new Promise<void>((resolve, reject) =>
    spawn(join(CACHE_BIN, 'kubectl'), ['--kubeconfig', cluster.kubeconfig, 'apply', '--server-side', '-f', join(ROOT, 'crds/agents.agentsmith.dev.yaml')], { stdio: 'ignore' }).once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error('CRD apply failed')),
    ),
  );
  await sleep(2000);
  const port = 18000 + Math.floor(Math.random() * 1000);
  op = spawn(process.execPath, [...flags, join(ROOT, values.entry), '--kubeconfig', cluster.kubeconfig, '--metrics-port', String(port), '--metrics-host', '127.0.0.1', '--workers', '4'], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, LOG_LEVEL: 'warn' },
  });
  const pid = op.pid!;
  while (!(await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.ok, () => false))) await sleep(200);
  await sleep(3000);
  const idle = { ...vm(pid), ...(await heap(port)) };
  const started = Date.now();
  let next = 0;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next < N) {
      const i = next++;
      const spec = { team: `t${i % 10}`, persona: { instructions: `You are bench-${i}.` }, repos: [{ name: 'acme/app' }], egress: { allow: ['github.com', 'api.github.com'] } };
      await custom.createNamespacedCustomObject({ group: 'agentsmith.dev', version: 'v1alpha1', namespace: NS, plural: 'agents', body: { apiVersion: 'agentsmith.dev/v1alpha1', kind: 'Agent', metadata: { name: `bench-${i}` }, spec } });
    }
  }));
  for (;;) {
    const list = (await custom.listNamespacedCustomObject({ group: 'agentsmith.dev', version: 'v1alpha1', namespace: NS, plural: 'agents' })) as { items: { status?: { conditions?: { type: string; status: string }[] } }[] };
    if (list.items.filter((a) => a.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True')).length >= N) break;
    if (Date.now() - started > 900_000) throw new Error('Agents not Ready within 15 min');
    await sleep(1000);
  }
  const readySeconds = (Date.now() - started) / 1000;
  await sleep(10_000);
  const loaded = { ...vm(pid), ...(await heap(port)) };
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const requests: Record<string, number> = {};
  for (const m of metrics.matchAll(/^agentsmith_api_requests_total\{([^}]*)\} (\S+)$/gm)) {
    const verb = /verb="([^"]*)"/.exec(m[1] ?? '')?.[1] ?? '?';
    requests[verb] = (requests[verb] ?? 0) + Number(m[2]) / Math.max(N, 1);
  }
  console.log(JSON.stringify({
    n: N,
    entry: values.entry,
    flags,
    readySeconds,
    requestsPerAgent: requests,
    idle,
    loaded,
    perAgentKb: { hwm: ((loaded.hwmMb - idle.hwmMb) * 1024) / N, heap: ((loaded.heapMb - idle.heapMb) * 1024) / N },
  }));
} finally {
  op?.kill('SIGTERM');
  await cluster.stop();
}
