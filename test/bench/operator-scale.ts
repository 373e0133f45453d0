/**
 * Benchmark: N Agents created at once on the local control plane (kwok nodes), the
 * operator against a floor and against kubernetes-sigs/agent-sandbox, all in one run.
 *
 *   node test/bench/operator-scale.ts [N ...] [--steady-seconds S] [--baseline-n M] [--sides floor,operator,sandbox,shards]
 *
 * Defaults: N = 1000 5000, S = 300, M = 200, every side. Needs the bootstrap's tools
 * (`source scripts/lib/tools.sh && bootstrap`); agent-sandbox's controller is built on
 * first use (`ensure_agent_sandbox`, pinned release, cached).
 *
 * Every side runs on a fresh local control plane started with its API rate limits lifted
 * (`startLocalCluster({ unthrottled: true })`: controller-manager, scheduler, apiserver
 * inflight limits, kwok and the dev PV provisioner), so the floor is not bound by them;
 * the floor is also run at M Agents on a default (throttled) control plane, to show what
 * lifting them changed. Sides (lib/sides.ts):
 * - floor: a plain client applies what the operator renders for N Agents, waits for the pods;
 * - operator: the operator as its image runs it (the Dockerfile ENTRYPOINT's Node flags
 *   and script, default flags) reconciles N Agents to Ready; at the largest N it then
 *   stays up S seconds with nothing changing (steady state: writes, requests, CPU);
 * - agent-sandbox: its controller makes N Sandboxes Ready (pod, two PVCs, headless Service);
 * - shards: two operators with disjoint --agent-selectors and their own Leases split N.
 * Reported per side: seconds to all Ready, units/s, Ready lag after the pod (from watch
 * events), API requests and writes per unit, the controller's peak RSS and CPU s, the
 * load average before and after. Appended to test/bench/results.md and printed.
 * Not a test: nothing here passes or fails on a number.
 */
import { appendFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startLocalCluster } from '../../scripts/lib/cluster.ts';
import { ROOT } from '../../scripts/lib/paths.ts';
import { loadAverage } from './lib/measure.ts';
import { buildOperator, floorSide, operatorCommand, operatorSide, sandboxSide, shardSide, type SideResult } from './lib/sides.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    'steady-seconds': { type: 'string', default: '300' },
    'baseline-n': { type: 'string', default: '200' },
    sides: { type: 'string', default: 'floor,operator,sandbox,shards' },
  },
});
const Ns = positionals.map(Number).filter((n) => n > 0);
const sizes = Ns.length ? Ns : [1000, 5000];
const steadySeconds = Number(values['steady-seconds']);
const baselineN = Number(values['baseline-n']);
const sides = new Set(values.sides.split(','));
const largest = Math.max(...sizes);

/** Runs `fn` on a fresh control plane with room for n pods (kwok nodes take 110 each). */
async function onCluster<T>(n: number, unthrottled: boolean, fn: (kubeconfig: string) => Promise<T>): Promise<T> {
  const cluster = await startLocalCluster({ nodes: Math.max(2, Math.ceil(n / 100) + 1), timeoutMs: 600_000, unthrottled });
  try {
    return await fn(cluster.kubeconfig);
  } finally {
    await cluster.stop();
  }
}

const f1 = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? '–' : x.toFixed(1));
const f0 = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? '–' : x.toFixed(0));

function row(r: SideResult, floor: SideResult | undefined): string {
  const lag = r.lag ? `${f0(r.lag.p50)} / ${f0(r.lag.p99)} / ${f0(r.lag.max)}` : '–';
  const vsFloor = floor && r !== floor ? `${(r.seconds / floor.seconds).toFixed(2)}x` : '';
  return `| ${r.n} | ${r.side} | ${f1(r.seconds)} | ${f1(r.n / r.seconds)} | ${vsFloor} | ${lag} | ${f1(r.requestsPerUnit)} | ${f1(r.writesPerUnit)} | ${f0(r.rssMb)} | ${f1(r.cpuSeconds)} | ${r.loadBefore.split(' ')[0]} → ${r.loadAfter.split(' ')[0]} |`;
}

const out: string[] = [];
const print = (line = '') => {
  console.log(line);
  out.push(line);
};

buildOperator();
const op = operatorCommand();
print(`\n## Scale, ${new Date().toISOString()} (${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}; load average at start ${loadAverage()})`);
print();
print(`Operator: \`node ${op.flags.join(' ')} ${op.main.slice(ROOT.length + 1)}\` (the image's ENTRYPOINT), default flags. Every side on a fresh local control plane with its limits lifted (\`localcluster up --unthrottled\`). Ready lag: the unit's Ready watch event minus its pod's, ms.`);

if (sides.has('floor') && baselineN > 0) {
  const throttled = await onCluster(baselineN, false, (kc) => floorSide(baselineN, kc));
  const lifted = await onCluster(baselineN, true, (kc) => floorSide(baselineN, kc));
  print();
  print(`Floor at N = ${baselineN} before and after lifting the limits: ${f1(throttled.n / throttled.seconds)} → ${f1(lifted.n / lifted.seconds)} Agents/s (${f1(throttled.seconds)} s → ${f1(lifted.seconds)} s).`);
}

print();
print('| N | side | all Ready s | units/s | vs floor | Ready lag p50 / p99 / max ms | requests/unit | writes/unit | peak RSS MB | CPU s | load 1m before → after |');
print('|---|---|---|---|---|---|---|---|---|---|---|');
const notes: string[] = [];
for (const n of sizes) {
  const floor = sides.has('floor') ? await onCluster(n, true, (kc) => floorSide(n, kc)) : undefined;
  if (floor) print(row(floor, floor));
  if (sides.has('operator')) {
    const o = await onCluster(n, true, (kc) => operatorSide(n, kc, n === largest ? steadySeconds : 0));
    print(row(o, floor));
    if (o.steady) notes.push(`Steady state, operator, N = ${n}: ${o.steady.seconds} s after all Ready, ${o.steady.writes} writes, ${o.steady.requests} requests, ${o.steady.cpuSeconds.toFixed(1)} CPU s (${((o.steady.cpuSeconds / o.steady.seconds) * 100).toFixed(1)}% of a core).`);
  }
  if (sides.has('sandbox')) print(row(await onCluster(n, true, (kc) => sandboxSide(n, kc)), floor));
  if (sides.has('shards') && n === largest) {
    const { result, shards } = await onCluster(n, true, (kc) => shardSide(n, kc));
    print(row(result, floor));
    for (const s of shards) notes.push(`Shard ${s.shard} (N = ${n}): ${s.ready} Agents Ready by its gauge, ${s.requests} requests (${s.writes} writes), peak RSS ${s.rssMb.toFixed(0)} MB, ${s.cpuSeconds.toFixed(1)} CPU s, Lease agent-smith-shard-${s.shard} held by ${s.lease}.`);
  }
}
print();
for (const note of notes) print(`- ${note}`);
print(`- Load average at the end: ${loadAverage()}.`);
print();
print('Work per unit: the floor and the operator make a CA Secret, ServiceAccount, ConfigMap, Service, NetworkPolicy and StatefulSet per Agent (and a roster ConfigMap per team); the StatefulSet controller then makes a ControllerRevision, two PVCs and the pod. agent-sandbox makes two PVCs, the pod (the same rendered pod spec) and a headless Service per Sandbox, and nothing else. The operator also writes the Agent status and Events; the floor writes no status.');
appendFileSync(join(ROOT, 'test/bench/results.md'), out.join('\n') + '\n');
