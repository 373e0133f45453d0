/**
 * Benchmark: N Agents created at once on the local control plane (kwok nodes), the
 * operator against a floor measured in the same run.
 *
 *   node test/bench/operator-scale.ts [N ...]        (default: 100 500 1000)
 *
 * For each N, on a fresh control plane each time:
 * - floor: a plain client server-side-applies the very child objects the operator would
 *   render (same renderers, CA included) for N agents, 8 at a time, and waits for every
 *   pod to be Ready. No watch, no status, no checks: the least work that gets N pods.
 * - operator: the operator process (4 workers, started with the Node flags of the
 *   Dockerfile's operator ENTRYPOINT, as the image runs it) reconciles N applied Agents;
 *   we wait for every Agent's Ready=True (which needs its pod Ready).
 * Reported: seconds until all Ready, API requests per Agent (the operator's own metric;
 * the floor counts its calls), the operator's peak RSS (VmHWM) and CPU seconds; and the
 * operator/floor time ratio. Results go to test/bench/results.md (appended) and stdout.
 * Not a test: nothing here passes or fails on a number.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AppsV1Api, CoreV1Api, CustomObjectsApi, KubeConfig, KubernetesObjectApi, PatchStrategy, type KubernetesObject } from '@kubernetes/client-node';
import { Agent } from '../../operator/src/api/agent.ts';
import { loadSharedRules, DEFAULT_SHARED_DIR } from '../../operator/src/config.ts';
import { generateEgressCa } from '../../operator/src/pki/egress-ca.ts';
import { renderEgressCaSecret } from '../../operator/src/render/egress-ca-secret.ts';
import { renderAll } from '../../operator/src/render/index.ts';
import { allowlistHash } from '../../operator/src/reconcile/egress-ca.ts';
import { startLocalCluster } from '../../scripts/lib/cluster.ts';
import { ROOT } from '../../scripts/lib/paths.ts';

const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
const Ns = sizes.length ? sizes : [100, 500, 1000];
const NS = 'bench';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function clients(kubeconfig: string) {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  return { kc, core: kc.makeApiClient(CoreV1Api), apps: kc.makeApiClient(AppsV1Api), custom: kc.makeApiClient(CustomObjectsApi), objects: KubernetesObjectApi.makeApiClient(kc) };
}

function agentObject(i: number, uid = `00000000-0000-0000-0000-${String(i).padStart(12, '0')}`): Agent {
  return Agent.parse({
    apiVersion: 'agentsmith.dev/v1alpha1',
    kind: 'Agent',
    metadata: { name: `bench-${i}`, namespace: NS, uid, generation: 1 },
    spec: { team: `t${i % 10}`, persona: { instructions: `You are bench-${i}.` }, repos: [{ name: 'acme/app' }], egress: { allow: ['github.com', 'api.github.com'] } },
  });
}

async function countReadyPods(c: ReturnType<typeof clients>): Promise<number> {
  const pods = await c.core.listNamespacedPod({ namespace: NS });
  return pods.items.filter((p) => p.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True')).length;
}

async function pool<T>(items: T[], width: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

async function floor(n: number, kubeconfig: string): Promise<{ seconds: number; requestsPerAgent: number }> {
  const c = clients(kubeconfig);
  await c.core.createNamespace({ body: { metadata: { name: NS } } });
  const shared = loadSharedRules(DEFAULT_SHARED_DIR);
  const started = Date.now();
  let requests = 0;
  const apply = async (o: KubernetesObject) => {
    requests++;
    await c.objects.patch(o, undefined, undefined, 'bench-floor', true, PatchStrategy.ServerSideApply);
  };
  const all = Array.from({ length: n }, (_, i) => agentObject(i));
  await pool(all, 8, async (agent) => {
    const ca = await generateEgressCa({ agent: agent.metadata.name, allow: agent.spec.egress.allow, now: new Date(), validityDays: 365 });
    await apply(renderEgressCaSecret(agent, ca, allowlistHash(agent)));
    const d = renderAll(agent, { image: 'bench/agent:1', shared, persona: { claudeMd: agent.spec.persona.instructions ?? '', subagents: {} }, egressCaCertPem: ca.certPem, egressCaKeyPem: ca.keyPem, namespaceAgents: all });
    // Owner references point at Agents that do not exist here; drop them (GC would delete the children).
    for (const o of [d.serviceAccount, d.configMap, d.roster, d.service, d.networkPolicy, d.statefulSet]) {
      if (!o) continue;
      delete o.metadata?.ownerReferences;
      await apply(o);
    }
  });
  while ((await countReadyPods(c)) < n) await sleep(500);
  return { seconds: (Date.now() - started) / 1000, requestsPerAgent: requests / n };
}

/** The Node flags the operator image starts with: its ENTRYPOINT minus `node` and the script. */
function imageNodeFlags(): string[] {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const stage = dockerfile.split(/^FROM\s/m).find((s) => /^\S+\s+AS\s+operator\s*$/im.test(s.split('\n')[0] ?? ''));
  const entry = /^ENTRYPOINT\s+(\[.*\])\s*$/m.exec(stage ?? '')?.[1];
  if (!entry) throw new Error('no ENTRYPOINT in the Dockerfile\'s operator stage');
  const argv = JSON.parse(entry) as string[];
  return argv.slice(1, -1);
}

function procStats(pid: number): { rssMb: number; cpuSeconds: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const hwm = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const ticks = Number(stat[11]) + Number(stat[12]);
  return { rssMb: hwm / 1024, cpuSeconds: ticks / 100 };
}

async function operator(n: number, kubeconfig: string): Promise<{ seconds: number; requestsPerAgent: number; rssMb: number; cpuSeconds: number }> {
  const c = clients(kubeconfig);
  await c.core.createNamespace({ body: { metadata: { name: NS } } });
  const crd = join(ROOT, 'crds/agents.agentsmith.dev.yaml');
  await new Promise<void>((resolve, reject) =>
    spawn(join(process.env.AGENT_SMITH_CACHE ?? join(process.env.HOME ?? '', '.cache/agent-smith'), 'bin/kubectl'), ['--kubeconfig', kubeconfig, 'apply', '--server-side', '-f', crd], { stdio: 'ignore' }).once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error('CRD apply failed')),
    ),
  );
  await sleep(2000);
  const port = 18000 + Math.floor(Math.random() * 1000);
  const op = spawn(process.execPath, [...imageNodeFlags(), join(ROOT, 'operator/src/main.ts'), '--kubeconfig', kubeconfig, '--metrics-port', String(port), '--metrics-host', '127.0.0.1', '--workers', '4'], { stdio: 'ignore', env: { ...process.env, LOG_LEVEL: 'warn' } });
  try {
    while (!(await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.ok, () => false))) await sleep(200);
    const started = Date.now();
    await pool(Array.from({ length: n }, (_, i) => i), 8, async (i) => {
      const a = agentObject(i);
      await c.custom.createNamespacedCustomObject({ group: 'agentsmith.dev', version: 'v1alpha1', namespace: NS, plural: 'agents', body: { apiVersion: a.apiVersion, kind: a.kind, metadata: { name: a.metadata.name }, spec: a.spec } });
    });
    for (;;) {
      const list = (await c.custom.listNamespacedCustomObject({ group: 'agentsmith.dev', version: 'v1alpha1', namespace: NS, plural: 'agents' })) as { items: { status?: { conditions?: { type: string; status: string }[] } }[] };
      if (list.items.filter((a) => a.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True')).length >= n) break;
      await sleep(500);
    }
    const seconds = (Date.now() - started) / 1000;
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    let requests = 0;
    for (const m of metrics.matchAll(/^agentsmith_api_requests_total\{[^}]*\} (\S+)$/gm)) requests += Number(m[1]);
    return { seconds, requestsPerAgent: requests / n, ...procStats(op.pid!) };
  } finally {
    op.kill('SIGTERM');
  }
}

const rows: string[] = [];
for (const n of Ns) {
  const nodes = Math.max(2, Math.ceil(n / 100) + 1); // kwok nodes take 110 pods each
  let cluster = await startLocalCluster({ nodes, timeoutMs: 300_000 });
  const f = await floor(n, cluster.kubeconfig).finally(() => cluster.stop());
  cluster = await startLocalCluster({ nodes, timeoutMs: 300_000 });
  const o = await operator(n, cluster.kubeconfig).finally(() => cluster.stop());
  const row = `| ${n} | ${f.seconds.toFixed(1)} | ${o.seconds.toFixed(1)} | ${(o.seconds / f.seconds).toFixed(2)}x | ${f.requestsPerAgent.toFixed(1)} | ${o.requestsPerAgent.toFixed(1)} | ${o.rssMb.toFixed(0)} | ${o.cpuSeconds.toFixed(1)} |`;
  console.log(row);
  rows.push(row);
}
const header = `\n## ${new Date().toISOString()} (${process.env.HOSTNAME ?? 'local'}, ${(await import('node:os')).cpus().length} cores; operator: node ${imageNodeFlags().join(' ')})\n\n| N | floor s | operator s | ratio | floor req/agent | operator req/agent | operator peak RSS MB | operator CPU s |\n|---|---|---|---|---|---|---|---|\n`;
appendFileSync(join(ROOT, 'test/bench/results.md'), header + rows.join('\n') + '\n');
console.log(header + rows.join('\n'));
