/**
 * The sides of the scale benchmark, each run on its own fresh control plane: the floor
 * (a plain client applying what the operator renders), the operator (as its image runs
 * it), agent-sandbox's controller, and two operator shards. Each returns the same figures
 * (SideResult) so the table compares like with like.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CoreV1Api, CustomObjectsApi, KubeConfig, KubernetesObjectApi, PatchStrategy, type KubernetesObject } from '@kubernetes/client-node';
import { Agent } from '../../../operator/src/api/agent.ts';
import { LABEL_INSTANCE } from '../../../operator/src/api/constants.ts';
import { DEFAULT_SHARED_DIR, loadSharedRules } from '../../../operator/src/config.ts';
import { generateEgressCa } from '../../../operator/src/pki/egress-ca.ts';
import { allowlistHash } from '../../../operator/src/reconcile/egress-ca.ts';
import { renderEgressCaSecret } from '../../../operator/src/render/egress-ca-secret.ts';
import { renderAll } from '../../../operator/src/render/index.ts';
import { CACHE_BIN } from '../../../scripts/lib/cluster.ts';
import { ROOT } from '../../../scripts/lib/paths.ts';
import { ensureAgentSandbox, sandboxObject, startAgentSandbox } from './agent-sandbox.ts';
import { isWrite, scrape, sumCounter } from '../../support/metrics.ts';
import { loadAverage, pool, procStats, sleep } from './measure.ts';
import { percentile, ReadinessTracker, readyLag, type TrackedResource } from './readiness.ts';

export const NS = 'bench';
/** Agents per team in the benchmark (ten teams): the roster of a team lists its members. */
export const TEAMS = 10;
const CREATE_WIDTH = 16;
const WRITE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** One side's figures for N units (Agents or Sandboxes). */
export interface SideResult {
  side: string;
  n: number;
  /** Seconds from the first create to the last unit seen Ready. */
  seconds: number;
  /** API requests (all verbs, watches and lists included) and writes, per unit. */
  requestsPerUnit: number;
  writesPerUnit: number;
  /** Unit Ready minus pod Ready, ms (p50, p99, max); absent for the floor (it has no unit status). */
  lag?: { p50: number; p99: number; max: number };
  /** The controller process's peak RSS (MB) and CPU seconds; absent for the floor (the benchmark process). */
  rssMb?: number;
  cpuSeconds?: number;
  loadBefore: string;
  loadAfter: string;
  note?: string;
}

/** Clients of one control plane. */
export function clients(kubeconfig: string) {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  return { kc, core: kc.makeApiClient(CoreV1Api), custom: kc.makeApiClient(CustomObjectsApi), objects: KubernetesObjectApi.makeApiClient(kc) };
}
type Clients = ReturnType<typeof clients>;

/** The benchmark Agent `bench-<i>`: team t<i % 10>, a persona, one repo, two egress hosts (the same spec on every side). */
export function agentObject(i: number, labels?: Record<string, string>): Agent {
  return Agent.parse({
    apiVersion: 'agentsmith.dev/v1alpha1',
    kind: 'Agent',
    metadata: { name: `bench-${i}`, namespace: NS, uid: `00000000-0000-0000-0000-${String(i).padStart(12, '0')}`, generation: 1, ...(labels ? { labels } : {}) },
    spec: { team: `t${i % TEAMS}`, persona: { instructions: `You are bench-${i}.` }, repos: [{ name: 'acme/app' }], egress: { allow: ['github.com', 'api.github.com'] } },
  });
}

/** Runs a command, throwing with its output when it fails. */
function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: ROOT });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/**
 * Applies a CRD with the cache's kubectl and waits (up to a minute) until `resource` (its
 * plural.group) can be listed: Established, and past the 429s its new watch cache answers
 * while it initialises, which would otherwise put the controller's first list into backoff.
 */
export async function applyCrd(kubeconfig: string, file: string, resource: string): Promise<void> {
  const kubectl = join(CACHE_BIN, 'kubectl');
  run(kubectl, ['--kubeconfig', kubeconfig, 'apply', '--server-side', '-f', file]);
  for (let i = 0; ; i++) {
    const r = spawnSync(kubectl, ['--kubeconfig', kubeconfig, 'get', resource, '-A'], { encoding: 'utf8' });
    if (r.status === 0) return;
    if (i >= 60) throw new Error(`${resource} cannot be listed a minute after applying its CRD: ${r.stderr}`);
    await sleep(1000);
  }
}

/** Pods are grouped by their instance label (operator and floor) or named after their Sandbox. */
function tracker(c: Clients, res: Omit<TrackedResource, 'namespace'>): ReadinessTracker {
  return new ReadinessTracker(c.kc, { ...res, namespace: NS });
}
const podsByInstance = (c: Clients) =>
  tracker(c, { path: `/api/v1/namespaces/${NS}/pods`, apiVersion: 'v1', kind: 'Pod', unitOf: (o) => o.metadata?.labels?.[LABEL_INSTANCE] });

/**
 * The floor: a plain client server-side-applies, CREATE_WIDTH Agents at a time, exactly
 * the children the operator renders for each Agent (CA Secret, ServiceAccount, ConfigMap,
 * Service, NetworkPolicy, StatefulSet; each team's roster once, as it knows every member
 * up front), and waits for every pod to be Ready. No Agent, no watch, no status, no
 * checks: the least work that gets these N pods. Owner references are dropped (their
 * Agents do not exist here; the garbage collector would delete the children).
 */
export async function floorSide(n: number, kubeconfig: string): Promise<SideResult> {
  const c = clients(kubeconfig);
  await c.core.createNamespace({ body: { metadata: { name: NS } } });
  const shared = loadSharedRules(DEFAULT_SHARED_DIR);
  let requests = 0;
  const apply = async (o: KubernetesObject) => {
    requests++;
    delete o.metadata?.ownerReferences;
    await c.objects.patch(o, undefined, undefined, 'bench-floor', true, PatchStrategy.ServerSideApply);
  };
  const all = Array.from({ length: n }, (_, i) => agentObject(i));
  const rostersDone = new Set<string>();
  const pods = podsByInstance(c);
  const { seconds, loadBefore, loadAfter } = await timedBurst(n, pods, pods, () =>
    pool(all, CREATE_WIDTH, async (agent) => {
      const ca = await generateEgressCa({ agent: agent.metadata.name, allow: agent.spec.egress.allow, now: new Date(), validityDays: 365 });
      await apply(renderEgressCaSecret(agent, ca, allowlistHash(agent)));
      const d = renderAll(agent, { image: 'bench/agent:1', shared, persona: { claudeMd: agent.spec.persona.instructions ?? '', subagents: {} }, egressCaCertPem: ca.certPem, egressCaKeyPem: ca.keyPem, namespaceAgents: all });
      const team = agent.spec.team ?? '';
      const roster = rostersDone.has(team) ? undefined : d.roster;
      rostersDone.add(team);
      for (const o of [d.serviceAccount, d.configMap, roster, d.service, d.networkPolicy, d.statefulSet]) if (o) await apply(o);
    }),
  );
  return { side: 'floor', n, seconds, requestsPerUnit: requests / n, writesPerUnit: requests / n, loadBefore, loadAfter };
}

/** The operator's command line as the image runs it: the Dockerfile's operator ENTRYPOINT, `/app/` mapped to this checkout. */
export function operatorCommand(): { flags: string[]; main: string } {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const stage = dockerfile.split(/^FROM\s/m).find((s) => /^\S+\s+AS\s+operator\s*$/im.test(s.split('\n')[0] ?? ''));
  const entry = /^ENTRYPOINT\s+(\[.*\])\s*$/m.exec(stage ?? '')?.[1];
  if (!entry) throw new Error("no ENTRYPOINT in the Dockerfile's operator stage");
  const argv = JSON.parse(entry) as string[];
  const main = join(ROOT, argv.at(-1)!.replace(/^\/app\//, ''));
  return { flags: argv.slice(1, -1), main };
}

/** Builds the compiled operator when the image runs compiled JavaScript (npm run build:operator). */
export function buildOperator(): void {
  const { main } = operatorCommand();
  if (!main.endsWith('.js')) return;
  run('npm', ['run', '--silent', 'build:operator']);
  if (!existsSync(main)) throw new Error(`npm run build:operator did not produce ${main}`);
}

/** A running operator process with its metrics endpoint. */
export interface RunningController {
  proc: ChildProcess;
  metricsUrl: string;
  stop(): void;
}

/**
 * Starts the operator as the image does (or with `as.flags` / `as.main` instead of the
 * ENTRYPOINT's Node flags and script), with `args`, and waits for /readyz.
 */
export async function startOperator(kubeconfig: string, args: string[] = [], as: { flags?: string[]; main?: string } = {}): Promise<RunningController> {
  const image = operatorCommand();
  const flags = as.flags ?? image.flags;
  const main = as.main ?? image.main;
  const port = 18000 + Math.floor(Math.random() * 2000);
  const proc = spawn(process.execPath, [...flags, main, '--kubeconfig', kubeconfig, '--metrics-port', String(port), '--metrics-host', '127.0.0.1', ...args], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, LOG_LEVEL: 'warn' } });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; !(await fetch(`${base}/readyz`).then((r) => r.ok, () => false)); i++) {
    if (proc.exitCode !== null || i > 600) throw new Error(`operator did not become ready (exit ${proc.exitCode})`);
    await sleep(200);
  }
  return { proc, metricsUrl: `${base}/metrics`, stop: () => void proc.kill('SIGTERM') };
}

/** Requests and writes from the operator's own counter (agentsmith_api_requests_total{verb}). */
export async function operatorRequests(metricsUrl: string): Promise<{ requests: number; writes: number }> {
  return requestsIn(await scrape(metricsUrl));
}

/** The operator's API requests and writes so far, from its /metrics text. */
function requestsIn(text: string): { requests: number; writes: number } {
  return { requests: sumCounter(text, 'agentsmith_api_requests_total'), writes: sumCounter(text, 'agentsmith_api_requests_total', isWrite) };
}

/** Creates N Agents (CREATE_WIDTH at a time), each with the labels `labelsOf(i)` gives. */
export async function createAgents(c: Clients, n: number, labelsOf: (i: number) => Record<string, string> | undefined = () => undefined): Promise<void> {
  await pool(Array.from({ length: n }, (_, i) => i), CREATE_WIDTH, async (i) => {
    const a = agentObject(i, labelsOf(i));
    await c.custom.createNamespacedCustomObject({ group: 'agentsmith.dev', version: 'v1alpha1', namespace: NS, plural: 'agents', body: { apiVersion: a.apiVersion, kind: a.kind, metadata: { name: a.metadata.name, ...(a.metadata.labels ? { labels: a.metadata.labels } : {}) }, spec: a.spec } });
  });
}

const agentsTracker = (c: Clients) =>
  tracker(c, { path: `/apis/agentsmith.dev/v1alpha1/namespaces/${NS}/agents`, apiVersion: 'agentsmith.dev/v1alpha1', kind: 'Agent', unitOf: (o) => o.metadata?.name });

/**
 * Times one burst: starts the watches, runs `create`, waits (up to an hour) until `n`
 * units are seen Ready, stops the watches. `units` may be `pods` itself (the floor has no
 * unit status; its lag is then meaningless and left out by the caller).
 */
async function timedBurst(n: number, pods: ReadinessTracker, units: ReadinessTracker, create: () => Promise<void>): Promise<{ seconds: number; lag: SideResult['lag']; loadBefore: string; loadAfter: string }> {
  const watches = [...new Set([pods, units])];
  await Promise.all(watches.map((w) => w.start()));
  const loadBefore = loadAverage();
  const started = performance.now();
  await create();
  await units.waitFor(n, 3_600_000);
  const seconds = (performance.now() - started) / 1000;
  const loadAfter = loadAverage();
  for (const w of watches) w.stop();
  return { seconds, lag: lagOf(pods, units), loadBefore, loadAfter };
}

/** Steady-state figures: what the controller did in a window with nothing changing. */
export interface SteadyState {
  seconds: number;
  writes: number;
  requests: number;
  cpuSeconds: number;
}

/**
 * The operator side: the operator (as the image runs it, default flags) reconciles N
 * Agents created CREATE_WIDTH at a time to Ready. With `steadySeconds`, it then stays up
 * that long with nothing changing and reports the writes, requests and CPU of that window.
 */
export async function operatorSide(n: number, kubeconfig: string, steadySeconds = 0): Promise<SideResult & { steady?: SteadyState }> {
  const c = clients(kubeconfig);
  await c.core.createNamespace({ body: { metadata: { name: NS } } });
  await applyCrd(kubeconfig, join(ROOT, 'crds/agents.agentsmith.dev.yaml'), 'agents.agentsmith.dev');
  const op = await startOperator(kubeconfig);
  try {
    const burst = await timedBurst(n, podsByInstance(c), agentsTracker(c), () => createAgents(c, n));
    const { requests, writes } = await operatorRequests(op.metricsUrl);
    const result: SideResult & { steady?: SteadyState } = { side: 'operator', n, requestsPerUnit: requests / n, writesPerUnit: writes / n, ...procStats(op.proc.pid!), ...burst };
    if (steadySeconds > 0) result.steady = await steady(op, steadySeconds);
    return result;
  } finally {
    op.stop();
  }
}

/** Requests, writes and CPU of a controller over `seconds` of nothing changing. */
async function steady(op: RunningController, seconds: number): Promise<SteadyState> {
  const before = { ...(await operatorRequests(op.metricsUrl)), cpu: procStats(op.proc.pid!).cpuSeconds };
  await sleep(seconds * 1000);
  const after = { ...(await operatorRequests(op.metricsUrl)), cpu: procStats(op.proc.pid!).cpuSeconds };
  return { seconds, writes: after.writes - before.writes, requests: after.requests - before.requests, cpuSeconds: after.cpu - before.cpu };
}

function lagOf(pods: ReadinessTracker, units: ReadinessTracker): SideResult['lag'] {
  const lags = readyLag(pods, units);
  return { p50: percentile(lags, 50), p99: percentile(lags, 99), max: percentile(lags, 100) };
}

/**
 * agent-sandbox's side: its controller (pinned release, out of cluster, its own default
 * workers) makes N Sandboxes Ready: per Sandbox a pod (our rendered pod spec, so both
 * sides store the same pod), two PVCs (home, workspace) and a headless Service.
 */
export async function sandboxSide(n: number, kubeconfig: string): Promise<SideResult> {
  const c = clients(kubeconfig);
  await c.core.createNamespace({ body: { metadata: { name: NS } } });
  const { crd } = await ensureAgentSandbox();
  await applyCrd(kubeconfig, crd, 'sandboxes.agents.x-k8s.io');
  const controller = await startAgentSandbox(kubeconfig);
  try {
    const pods = tracker(c, { path: `/api/v1/namespaces/${NS}/pods`, apiVersion: 'v1', kind: 'Pod', unitOf: (o) => o.metadata?.name });
    const sandboxes = tracker(c, { path: `/apis/agents.x-k8s.io/v1beta1/namespaces/${NS}/sandboxes`, apiVersion: 'agents.x-k8s.io/v1beta1', kind: 'Sandbox', unitOf: (o) => o.metadata?.name });
    const shared = loadSharedRules(DEFAULT_SHARED_DIR);
    const sample = agentObject(0);
    const podSpec = renderAll(sample, { image: 'bench/agent:1', shared, persona: { claudeMd: '', subagents: {} }, egressCaCertPem: '', egressCaKeyPem: '', namespaceAgents: [sample] }).statefulSet.spec!.template.spec!;
    const burst = await timedBurst(n, pods, sandboxes, () =>
      pool(Array.from({ length: n }, (_, i) => i), CREATE_WIDTH, async (i) => {
        await c.objects.create(sandboxObject(i, NS, podSpec));
      }),
    );
    const text = await scrape(controller.metricsUrl);
    const requests = sumCounter(text, 'rest_client_requests_total');
    const writes = sumCounter(text, 'rest_client_requests_total', (l) => WRITE_METHODS.has((l.method ?? '').toUpperCase()));
    const result: SideResult = { side: 'agent-sandbox', n, requestsPerUnit: requests / n, writesPerUnit: writes / n, ...procStats(controller.pid), ...burst };
    return result;
  } finally {
    await controller.stop();
  }
}

/**
 * Sharding: two operators, `--agent-selector agentsmith.dev/shard=a` and `=b`, each with
 * its own Lease (`--leader-elect --leader-election-id agent-smith-shard-<s>`), split N
 * Agents labelled by team (even teams a, odd b: a team is never split, see
 * docs/operations.md). Reports the time to all Ready and, per shard, its requests, peak
 * RSS and CPU, and how many Agents each one reconciled to Ready (its agentsmith_agents
 * gauge), which must be exactly its half.
 */
export async function shardSide(n: number, kubeconfig: string): Promise<{ result: SideResult; shards: { shard: string; ready: number; requests: number; writes: number; rssMb: number; cpuSeconds: number; lease: string }[] }> {
  const c = clients(kubeconfig);
  await c.core.createNamespace({ body: { metadata: { name: NS } } });
  await applyCrd(kubeconfig, join(ROOT, 'crds/agents.agentsmith.dev.yaml'), 'agents.agentsmith.dev');
  const names = ['a', 'b'];
  const ops = await Promise.all(names.map((s) => startOperator(kubeconfig, ['--agent-selector', `agentsmith.dev/shard=${s}`, '--leader-elect', '--leader-election-namespace', 'default', '--leader-election-id', `agent-smith-shard-${s}`])));
  try {
    const burst = await timedBurst(n, podsByInstance(c), agentsTracker(c), () => createAgents(c, n, (i) => ({ 'agentsmith.dev/shard': names[(i % TEAMS) % 2]! })));
    const shards = await Promise.all(
      ops.map(async (op, k) => {
        const text = await scrape(op.metricsUrl);
        const { requests, writes } = requestsIn(text);
        const lease = await c.objects.read({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: `agent-smith-shard-${names[k]}`, namespace: 'default' } });
        return {
          shard: names[k]!,
          ready: sumCounter(text, 'agentsmith_agents', (l) => l.phase === 'Ready'),
          requests,
          writes,
          lease: String((lease as { spec?: { holderIdentity?: string } }).spec?.holderIdentity ?? 'none'),
          ...procStats(op.proc.pid!),
        };
      }),
    );
    const requests = shards.reduce((s, x) => s + x.requests, 0);
    const writes = shards.reduce((s, x) => s + x.writes, 0);
    const result: SideResult = { side: 'operator, 2 shards', n, requestsPerUnit: requests / n, writesPerUnit: writes / n, rssMb: Math.max(...shards.map((s) => s.rssMb)), cpuSeconds: shards.reduce((s, x) => s + x.cpuSeconds, 0), ...burst };
    return { result, shards };
  } finally {
    for (const op of ops) op.stop();
  }
}
