import { Counter, Gauge, type Registry } from 'prom-client';

/** The event log's Prometheus metrics, on the supervisor's registry (its /metrics). */
export class EventMetrics {
  readonly published: Counter<'type'>;
  readonly duplicates: Counter;
  readonly publishErrors: Counter;
  readonly outboxPending: Gauge;
  readonly outboxDropped: Counter;
  readonly connected: Gauge;

  constructor(registry: Registry) {
    const registers = [registry];
    this.published = new Counter({ name: 'agentsmith_events_published_total', help: 'events stored by the JetStream stream, by type', labelNames: ['type'] as const, registers });
    this.duplicates = new Counter({
      name: 'agentsmith_events_duplicates_total',
      help: 'events the stream reported as duplicates (a re-send of an event already stored, dropped by its Nats-Msg-Id)',
      registers,
    });
    this.publishErrors = new Counter({ name: 'agentsmith_events_publish_errors_total', help: 'failed publish attempts (NATS unreachable, no stream, timeout)', registers });
    this.outboxPending = new Gauge({ name: 'agentsmith_events_outbox_pending', help: 'events in the on-disk outbox not yet stored by the stream', registers });
    this.outboxDropped = new Counter({ name: 'agentsmith_events_outbox_dropped_total', help: 'oldest events dropped unpublished because the outbox was full', registers });
    this.connected = new Gauge({ name: 'agentsmith_events_nats_connected', help: '1 while the supervisor is connected to NATS', registers });
  }
}
