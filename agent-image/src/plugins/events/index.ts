/**
 * The team's event log (DESIGN.md flow 4), on NATS JetStream.
 *
 * - schema.ts: the typed events and their envelope; validateAgentEvent.
 * - subject.ts: `<prefix>.<team>.<agent>.<type>` subjects and filters; parseSince.
 * - outbox.ts: the on-disk outbox on the home volume (EventOutbox.emit for lifecycle events).
 * - log.ts: EventLog, the supervisor's connection: stream created when missing, the outbox
 *   drained with Nats-Msg-Id de-duplication, query(), consume(), publish().
 * - query.ts / consume.ts: reading the stream (ordered consumer) and acting on it (durable consumer).
 * - tools.ts: the MCP tools `publish_event` and `events`; cli.ts: `agent-smith events`.
 *
 * Only log.ts, query.ts and consume.ts load the NATS client (~18 MB of RSS): the
 * supervisor imports them only when the contract has `events`; import the other files
 * directly rather than this index where that matters.
 *
 * For a component that acts on events (e.g. the review fan-out), in the supervisor:
 *   const c = eventLog.consume({ durable: `review-fanout-${agent}`, filterSubject: filterSubject(prefix, { team, type: 'pr_opened' }) }, async (event) => {...});
 * and to publish one as the agent would: `await eventLog.publish('review_requested', {...})`
 * (validated), or `outbox.emit(type, data)` for a supervisor (lifecycle) event.
 */
export { EventLog, ensureStream, streamConfig, connectOnce, type EventLogOptions, type PublishResult } from './log.ts';
export { publishAgentEvent } from './publish.ts';
export { consumeEvents, type ConsumeOptions, type Consumption, type DeliveryMeta, type EventHandler } from './consume.ts';
export { queryEvents, type EventQuery } from './query.ts';
export { EventOutbox, OUTBOX_MAX_EVENTS, type OutboxOptions } from '../../core/outbox.ts';
export { EventMetrics } from './metrics.ts';
export { eventTools, type EventToolDeps } from './tools.ts';
export * from '../../core/event-schema.ts';
export { NO_TEAM, eventSubject, filterSubject, parseSince, streamSubjects, token } from './subject.ts';
