/**
 * agent-smith operator entry point: wiring only (flags, client, operator, health and
 * metrics, signals). `node operator/src/main.ts --help` lists the flags.
 */
import { Command, InvalidArgumentError } from 'commander';
import { CoordinationV1Api } from '@kubernetes/client-node';
import { makeClients } from './kube/clients.ts';
import { LeaderElector } from './runtime/leader.ts';
import { DEFAULT_AGENT_IMAGE, DEFAULT_SHARED_DIR, loadSharedRules } from './config.ts';
import { countApiRequests } from './observability/api-metrics.ts';
import { serveHealthAndMetrics } from './observability/http.ts';
import { makeLogger } from './observability/logger.ts';
import { OperatorMetrics } from './observability/metrics.ts';
import { AgentOperator } from './operator.ts';

function positiveInt(name: string) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer`);
    return n;
  };
}

const program = new Command('agent-smith-operator')
  .description('Reconciles agentsmith.dev/v1alpha1 Agents into agent pods.')
  .option('--kubeconfig <path>', 'kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)')
  .option('--agent-image <image>', 'default agent image', process.env.AGENT_SMITH_AGENT_IMAGE ?? DEFAULT_AGENT_IMAGE)
  .option('--shared-dir <dir>', 'folder with the shared CLAUDE.md and settings.json every agent inherits', DEFAULT_SHARED_DIR)
  .option('--workers <n>', "concurrent reconciles (a pod's or StatefulSet's status change is served first)", positiveInt('--workers'), 8)
  .option('--resync-seconds <s>', 'reconcile every Agent at least this often', positiveInt('--resync-seconds'), 600)
  .option('--metrics-port <port>', 'port of /healthz, /readyz and /metrics (0: any free port)', positiveInt('--metrics-port'), 8080)
  .option('--metrics-host <host>', 'address to bind /healthz, /readyz and /metrics', '0.0.0.0')
  .option('--agent-selector <selector>', 'reconcile only the Agents matching this label selector (e.g. shard=a, or !canary)', process.env.AGENT_SMITH_AGENT_SELECTOR ?? '')
  .option('--leader-elect', 'run leader election on a Lease; only the leader reconciles (use with several replicas)', false)
  .option('--leader-election-namespace <ns>', 'namespace of the leader Lease', process.env.POD_NAMESPACE ?? 'default')
  .option('--leader-election-id <name>', 'name of the leader Lease', 'agent-smith-operator');

program.parse();
const opts = program.opts<{
  kubeconfig?: string;
  agentImage: string;
  sharedDir: string;
  workers: number;
  resyncSeconds: number;
  metricsPort: number;
  metricsHost: string;
  agentSelector: string;
  leaderElect: boolean;
  leaderElectionNamespace: string;
  leaderElectionId: string;
}>();

const log = makeLogger();
const metrics = new OperatorMetrics();
const shared = loadSharedRules(opts.sharedDir);
const clients = makeClients(opts.kubeconfig);
countApiRequests(clients.kc.getCurrentCluster()?.server ?? 'https://kubernetes.default.svc', metrics.apiRequests);
const operator = new AgentOperator({
  clients,
  log,
  metrics,
  image: opts.agentImage,
  shared,
  workers: Math.max(1, opts.workers),
  resyncMs: opts.resyncSeconds * 1000,
  agentSelector: opts.agentSelector,
});

const server = await serveHealthAndMetrics(opts.metricsPort, opts.metricsHost, { healthy: () => true, ready: () => operator.isReady() }, metrics.registry);
const address = server.address();
log.info({ server: clients.kc.getCurrentCluster()?.server, metrics: typeof address === 'object' && address ? address.port : address, image: opts.agentImage }, 'agent-smith operator starting');

const elector = opts.leaderElect
  ? new LeaderElector({ api: clients.kc.makeApiClient(CoordinationV1Api), namespace: opts.leaderElectionNamespace, name: opts.leaderElectionId, log })
  : undefined;

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, 'stopping');
  const force = setTimeout(() => process.exit(1), 20_000);
  force.unref();
  await operator.stop();
  // After the workers stopped: the next leader must not overlap with our last reconcile.
  await elector?.release();
  metrics.leader.set(0);
  server.close();
  log.info('stopped');
  process.exit(0);
}
process.on('SIGINT', () => void shutdown('SIGINT'));
process.on('SIGTERM', () => void shutdown('SIGTERM'));

await operator.startInformers();
log.info('caches synced');
if (elector) {
  log.info({ identity: elector.identity, lease: `${opts.leaderElectionNamespace}/${opts.leaderElectionId}` }, 'waiting to become leader');
  elector.run({
    onStartedLeading: () => {
      metrics.leader.set(1);
      void operator.startWorkers().then(() => log.info('operator ready (leader)'));
    },
    onStoppedLeading: () => {
      // Another replica may already reconcile: stop at once rather than race it.
      metrics.leader.set(0);
      log.error('lost the leader lease; exiting so a fresh start can rejoin the election');
      process.exit(1);
    },
  });
} else {
  metrics.leader.set(1);
  await operator.startWorkers();
  log.info('operator ready');
}
