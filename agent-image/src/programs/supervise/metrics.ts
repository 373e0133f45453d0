import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

/** The supervisor's Prometheus metrics (served on /metrics of the pod's `http` port). */
export class SupervisorMetrics {
  readonly registry = new Registry();
  readonly cliUp = new Gauge({ name: 'agentsmith_supervisor_cli_up', help: '1 while the harness CLI process is alive', registers: [this.registry] });
  readonly cliRestarts = new Counter({
    name: 'agentsmith_supervisor_cli_restarts_total',
    help: 'CLI restarts by reason (exit, signal, tmux_lost; unknown when tmux never reported how it ended)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly crashLoop = new Gauge({ name: 'agentsmith_supervisor_crash_loop', help: '1 while the CLI is in a crash loop', registers: [this.registry] });
  readonly inboxDepth = new Gauge({ name: 'agentsmith_supervisor_inbox_pending', help: 'messages waiting in the inbox', registers: [this.registry] });
  readonly inboxReceived = new Counter({ name: 'agentsmith_supervisor_inbox_received_total', help: 'messages put in the inbox, by source', labelNames: ['source'] as const, registers: [this.registry] });
  readonly inboxDelivered = new Counter({
    name: 'agentsmith_supervisor_inbox_delivered_total',
    help: 'messages delivered to the harness, by route (hook, tmux)',
    labelNames: ['route'] as const,
    registers: [this.registry],
  });
  readonly inboxDeliveryFailures = new Counter({
    name: 'agentsmith_supervisor_inbox_delivery_failures_total',
    help: 'failed attempts to hand a message to the harness, by route (hook, tmux) and reason (paste_failed, not_acknowledged, cli_exited, render_failed)',
    labelNames: ['route', 'reason'] as const,
    registers: [this.registry],
  });
  readonly inboxDeliveryFailing = new Gauge({
    name: 'agentsmith_supervisor_inbox_delivery_failing',
    help: 'failed delivery attempts in a row since the last message the harness took (0 while delivery works)',
    registers: [this.registry],
  });
  readonly inboxDeadLettered = new Counter({
    name: 'agentsmith_supervisor_inbox_dead_letters_total',
    help: 'messages set aside (kept in the inbox dead/ folder) after failed delivery attempts, by source',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });
  readonly inboxDeadLetters = new Gauge({ name: 'agentsmith_supervisor_inbox_dead_letters', help: 'dead letters kept in the inbox dead/ folder', registers: [this.registry] });
  readonly inboxLarge = new Counter({
    name: 'agentsmith_supervisor_inbox_large_total',
    help: 'messages handed to the harness cut, with a pointer to their full text in a file (longer than the inline limit)',
    registers: [this.registry],
  });
  readonly hookEvents = new Counter({ name: 'agentsmith_supervisor_hook_events_total', help: 'harness hook calls, by event', labelNames: ['event'] as const, registers: [this.registry] });
  readonly toolCalls = new Counter({ name: 'agentsmith_supervisor_mcp_tool_calls_total', help: 'MCP tool calls, by tool', labelNames: ['tool'] as const, registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'agentsmith_supervisor_' });
  }
}
