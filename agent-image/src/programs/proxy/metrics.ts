import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The egress proxy's Prometheus metrics, served on /metrics of the health port (15021).
 * Labels are bounded: decisions by reason (a fixed set), swaps by credential name (at
 * most 16 per contract), never a host name or a path.
 */
export class ProxyMetrics {
  readonly registry = new Registry();
  readonly ready = new Gauge({ name: 'agentsmith_proxy_ready', help: '1 once config, CA and every credential file are loaded', registers: [this.registry] });
  readonly decisions = new Counter({
    name: 'agentsmith_proxy_decisions_total',
    help: 'requests, CONNECTs and TLS handshakes by decision (allow, deny) and reason',
    labelNames: ['decision', 'reason', 'mode'] as const,
    registers: [this.registry],
  });
  readonly swaps = new Counter({
    name: 'agentsmith_proxy_swaps_total',
    help: 'stubs swapped for the real value, by credential and location',
    labelNames: ['credential', 'location'] as const,
    registers: [this.registry],
  });
  readonly scrubbed = new Counter({
    name: 'agentsmith_proxy_scrubbed_total',
    help: 'real credential values replaced by their stub in responses, by credential',
    labelNames: ['credential'] as const,
    registers: [this.registry],
  });
  readonly upstreamErrors = new Counter({
    name: 'agentsmith_proxy_upstream_errors_total',
    help: 'upstream failures by kind (connect, tls, timeout, protocol, reset)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly latency = new Histogram({
    name: 'agentsmith_proxy_request_duration_seconds',
    help: 'time from request head to the end of the response, by decision',
    labelNames: ['decision'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });
  readonly dnsQueries = new Counter({
    name: 'agentsmith_proxy_dns_queries_total',
    help: 'DNS queries answered by the proxy (iptables mode), by decision (allow, deny, error) and reason (allowed, in_cluster, not_allowed, search_expansion, bad_name, not_ready, busy, upstream_error, internal, oversized, malformed, questions, not_query, bad_class, response, tcp_limit)',
    labelNames: ['decision', 'reason'] as const,
    registers: [this.registry],
  });
  readonly certCache = new Counter({
    name: 'agentsmith_proxy_cert_cache_total',
    help: 'leaf certificate lookups by result (hit, miss)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly certCacheSize = new Gauge({ name: 'agentsmith_proxy_cert_cache_size', help: 'leaf certificates cached', registers: [this.registry] });
  readonly connections = new Gauge({ name: 'agentsmith_proxy_connections', help: 'client connections open', registers: [this.registry] });
  readonly connectionsRefused = new Counter({
    name: 'agentsmith_proxy_connections_refused_total',
    help: 'client connections closed at accept, by reason (limit, not_ready)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly connectionsClosed = new Counter({
    name: 'agentsmith_proxy_connections_closed_total',
    help: 'client connections the proxy closed itself, by reason (handshake_timeout, headers_timeout, keep_alive_timeout, idle_timeout, evicted at the connection limit)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'agentsmith_proxy_' });
  }
}
