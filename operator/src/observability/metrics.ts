import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The operator's Prometheus metrics, named after controller-runtime's so existing
 * dashboards apply: `controller_runtime_reconcile_total{controller,result}`,
 * `controller_runtime_reconcile_time_seconds`, `workqueue_depth`, `workqueue_retries_total`.
 */
export class OperatorMetrics {
  readonly registry = new Registry();
  readonly reconcileTotal = new Counter({
    name: 'controller_runtime_reconcile_total',
    help: 'Reconciles by controller and result (success, error, requeue_after, terminal).',
    labelNames: ['controller', 'result'] as const,
    registers: [this.registry],
  });
  readonly reconcileTime = new Histogram({
    name: 'controller_runtime_reconcile_time_seconds',
    help: 'Time of one reconcile, in seconds.',
    labelNames: ['controller'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly queueDepth = new Gauge({
    name: 'workqueue_depth',
    help: 'Keys waiting in the work queue.',
    labelNames: ['name'] as const,
    registers: [this.registry],
  });
  readonly queueWait = new Histogram({
    name: 'workqueue_queue_duration_seconds',
    help: 'How long a key waits in the work queue before a worker takes it, in seconds.',
    labelNames: ['name'] as const,
    buckets: [0.001, 0.01, 0.1, 0.5, 1, 5, 10, 60],
    registers: [this.registry],
  });
  readonly queueRetries = new Counter({
    name: 'workqueue_retries_total',
    help: 'Keys re-queued after a failed reconcile.',
    labelNames: ['name'] as const,
    registers: [this.registry],
  });
  readonly agentsByPhase = new Gauge({
    name: 'agentsmith_agents',
    help: 'Agents by phase, as last reconciled.',
    labelNames: ['phase'] as const,
    registers: [this.registry],
  });

  readonly referenceReconciles = new Counter({
    name: 'agentsmith_reference_reconciles_total',
    help: 'Agents queued for a reconcile because a Secret or ConfigMap they reference was created, changed or deleted, by kind of that object.',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  readonly apiRequests = new Counter({
    name: 'agentsmith_api_requests_total',
    help: 'Requests sent to the Kubernetes API server, by verb (get, list, watch, create, update, patch, delete) and resource.',
    labelNames: ['verb', 'resource'] as const,
    registers: [this.registry],
  });
  readonly leader = new Gauge({
    name: 'agentsmith_leader',
    help: '1 while this replica holds the leader lease (or runs without leader election).',
    registers: [this.registry],
  });

  /** Sizes of the informer caches, read at scrape time from what `observeInformers` was given. */
  private informerSizes: () => Iterable<[string, number]> = () => [];
  readonly informerObjects = new Gauge({
    name: 'agentsmith_informer_objects',
    help: 'Objects held in each informer cache (a sharded operator holds only its shard\'s children).',
    labelNames: ['informer'] as const,
    registers: [this.registry],
    collect: () => {
      for (const [informer, n] of this.informerSizes()) this.informerObjects.set({ informer }, n);
    },
  });

  /** Reports `sizes()` (informer name → cached objects) as agentsmith_informer_objects at each scrape. */
  observeInformers(sizes: () => Iterable<[string, number]>): void {
    this.informerSizes = sizes;
  }

  constructor(withProcessMetrics = true) {
    if (withProcessMetrics) collectDefaultMetrics({ register: this.registry });
  }
}
