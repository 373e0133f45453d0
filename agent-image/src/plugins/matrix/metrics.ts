import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** The Matrix bridge's Prometheus metrics, on the supervisor's registry (/metrics of the pod's `http` port). */
export class MatrixMetrics {
  readonly received: Counter<'type'>;
  readonly delivered: Counter<'reason'>;
  readonly ignored: Counter<'reason'>;
  readonly repliesSent: Counter;
  readonly reactionsSent: Counter;
  readonly syncErrors: Counter<'kind'>;
  readonly eventsFailed: Counter<'reason'>;
  readonly batchFailures: Counter;
  readonly encryptedRooms: Counter;
  readonly connected: Gauge;
  readonly deliverySeconds: Histogram;

  constructor(registry: Registry) {
    const registers = [registry];
    this.received = new Counter({
      name: 'agentsmith_supervisor_matrix_events_received_total',
      help: 'room events the bridge received through /sync (messages, redactions, encrypted), by type',
      labelNames: ['type'] as const,
      registers,
    });
    this.delivered = new Counter({
      name: 'agentsmith_supervisor_matrix_events_delivered_total',
      help: 'room messages put in the inbox for the agent, by trigger (mention, allowlist, thread)',
      labelNames: ['reason'] as const,
      registers,
    });
    this.ignored = new Counter({
      name: 'agentsmith_supervisor_matrix_events_ignored_total',
      help: 'room events not delivered, by reason (own, history, edit, redaction, agent_not_named, loop_guard, not_triggered, ...)',
      labelNames: ['reason'] as const,
      registers,
    });
    this.repliesSent = new Counter({ name: 'agentsmith_supervisor_matrix_replies_sent_total', help: 'messages the agent sent with matrix_reply', registers });
    this.reactionsSent = new Counter({ name: 'agentsmith_supervisor_matrix_reactions_sent_total', help: 'reactions sent (the 👀 acknowledgements and matrix_react)', registers });
    this.syncErrors = new Counter({
      name: 'agentsmith_supervisor_matrix_sync_errors_total',
      help: 'failed /sync requests, by kind (unreachable, rate_limited, unauthorized, server, client)',
      labelNames: ['kind'] as const,
      registers,
    });
    this.eventsFailed = new Counter({
      name: 'agentsmith_supervisor_matrix_events_failed_total',
      help: 'room events skipped because they cannot be handled on their own content, by reason (invalid_id, invalid_relation, invalid_content, too_large, unavailable, error)',
      labelNames: ['reason'] as const,
      registers,
    });
    this.batchFailures = new Counter({
      name: 'agentsmith_supervisor_matrix_batch_failures_total',
      help: 'attempts at handling a /sync batch that failed after /sync itself succeeded (the batch is retried with backoff)',
      registers,
    });
    this.encryptedRooms = new Counter({
      name: 'agentsmith_supervisor_matrix_encrypted_rooms_total',
      help: 'encrypted rooms the agent is in and told, once each, that it cannot read encrypted messages',
      registers,
    });
    this.connected = new Gauge({ name: 'agentsmith_supervisor_matrix_connected', help: '1 while the last /sync succeeded', registers });
    this.deliverySeconds = new Histogram({
      name: 'agentsmith_supervisor_matrix_delivery_seconds',
      help: "from a message's origin_server_ts to its arrival in the inbox (homeserver and bridge clocks)",
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
  }
}
