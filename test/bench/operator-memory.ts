/**
 * Benchmark: the operator's memory, as the image runs it, on the local control plane
 * (kwok nodes, `--unthrottled`): peak RSS (VmHWM) once its caches have synced with no Agent, then after N
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
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startLocalCluster } from '../../scripts/lib/cluster.ts';
import { ROOT } from '../../scripts/lib/paths.ts';
import { scrape, sumCounter } from '../support/metrics.ts';
import { procStats, sleep } from './lib/measure.ts';
import { applyCrd, clients, createAgents, NS, startOperator } from './lib/sides.ts';
import { ReadinessTracker } from './lib/readiness.ts';

const { values } = parseArgs({ options: { n: { type: 'string', default: '300' }, entry: { type: 'string', default: 'operator/dist/operator/src/main.js' }, flag: { type: 'string', multiple: true } } });
const N = Number(values.n);

/** The V8 heap in use and committed, and memory outside it (buffers), in MB, from the operator's /metrics (prom-client's process metrics). */
async function heap(metricsUrl: string): Promise<{ heapMb: number; heapTotalMb: number; externalMb: number }> {
  const text = await scrape(metricsUrl);
  const mb = (name: string) => sumCounter(text, name) / 2 ** 20;
  return { heapMb: mb('nodejs_heap_size_used_bytes'), heapTotalMb: mb('nodejs_heap_size_total_bytes'), externalMb: mb('nodejs_external_memory_bytes') };
}

// The control plane's rate limits lifted, as in operator-scale.ts: throttled, 1,000 Agents take ~8 minutes of its PV binder.
const cluster = await startLocalCluster({ nodes: Math.max(2, Math.ceil(N / 100) + 1), timeoutMs: 300_000, unthrottled: true });
try {
  const c = clients(cluster.kubeconfig);
  await c.core.createNamespace({ body: { metadata: { name: NS } } });
  await applyCrd(cluster.kubeconfig, join(ROOT, 'crds/agents.agentsmith.dev.yaml'), 'agents.agentsmith.dev');
  const op = await startOperator(cluster.kubeconfig, [], { main: join(ROOT, values.entry), ...(values.flag ? { flags: values.flag.filter((f) => f !== '') } : {}) });
  try {
    const pid = op.proc.pid!;
    await sleep(3000);
    const idle = { ...procStats(pid), ...(await heap(op.metricsUrl)) };
    const agents = new ReadinessTracker(c.kc, { path: `/apis/agentsmith.dev/v1alpha1/namespaces/${NS}/agents`, apiVersion: 'agentsmith.dev/v1alpha1', kind: 'Agent', namespace: NS, unitOf: (o) => o.metadata?.name });
    await agents.start();
    const started = Date.now();
    await createAgents(c, N);
    await agents.waitFor(N, 900_000);
    agents.stop();
    const readySeconds = (Date.now() - started) / 1000;
    await sleep(10_000);
    const loaded = { ...procStats(pid), ...(await heap(op.metricsUrl)) };
    const metrics = await scrape(op.metricsUrl);
    const requests: Record<string, number> = {};
    for (const verb of ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete']) requests[verb] = sumCounter(metrics, 'agentsmith_api_requests_total', (l) => l.verb === verb) / Math.max(N, 1);
    console.log(
      JSON.stringify({
        n: N,
        entry: values.entry,
        readySeconds,
        requestsPerAgent: requests,
        idle,
        loaded,
        perAgentKb: { hwm: ((loaded.rssMb - idle.rssMb) * 1024) / N, heap: ((loaded.heapMb - idle.heapMb) * 1024) / N },
      }),
    );
  } finally {
    op.stop();
  }
} finally {
  await cluster.stop();
}
