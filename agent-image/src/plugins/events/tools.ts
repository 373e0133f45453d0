/**
 * The event-log tools on the supervisor's MCP server (`mcp__agent-smith__publish_event`,
 * `mcp__agent-smith__events`). The agent publishes what it did (a PR opened, a task done,
 * an incident) and reads what its team did.
 */
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import type { EventsConfig } from '../../contract/contract.ts';
import type { ToolCallMetrics, ToolRegistrar } from '../../core/tools.ts';
import type { EventLog } from './log.ts';
import { publishAgentEvent } from './publish.ts';
import type { EventOutbox } from '../../core/outbox.ts';
import type { EventEnvelope } from '../../core/event-schema.ts';
import { parseSince } from './subject.ts';

type ToolResult = { content: Array<{ type: 'text'; text: string }>; isError?: boolean; structuredContent?: Record<string, unknown> };

const refuse = (text: string): ToolResult => ({ content: [{ type: 'text', text }], isError: true });

/** Maximum `limit` of the `events` tool: an answer the model can read. */
const EVENTS_TOOL_MAX_LIMIT = 500;

export interface EventToolDeps {
  outbox: EventOutbox;
  /** The event log; undefined when the contract has no `events` (publish_event then records locally only, `events` is not offered). */
  eventLog?: Pick<EventLog, 'query'> | undefined;
  config?: Pick<EventsConfig, 'subjectPrefix'> | undefined;
  metrics: ToolCallMetrics;
  /**
   * Told of each event the agent published, after it is in the outbox (e.g. the review
   * fan-out announcing a `pr_opened`). Not awaited by the tool; a rejection is the
   * callee's to log.
   */
  onPublished?: ((event: EventEnvelope) => void) | undefined;
}

/** Registers `publish_event` (always) and `events` (when an event log is configured). */
export function eventTools(deps: EventToolDeps): ToolRegistrar {
  return (server: McpServer) => {
    server.registerTool(
      'publish_event',
      {
        description: [
          "Publish an event to the team's event log (who did what, queryable by every agent and person). Types and their data:",
          'pr_opened {repo: "owner/name", number, url, title, reviewers?: [agent names of your team to review it]};',
          'pr_merged {repo, number, url, title?}; review_requested {repo, number, url, reviewer: agent name, title?};',
          'incident {severity: low|medium|high|critical, summary, url?}; task_done {summary, url?}.',
          'Your name, team, time and an id are added for you. Unknown fields are refused.',
        ].join(' '),
        inputSchema: {
          type: z.string().describe('pr_opened, pr_merged, review_requested, incident or task_done'),
          data: z.record(z.string(), z.unknown()).describe('The fields of that type, e.g. {"summary": "fixed the flaky test", "url": "https://..."}'),
        },
      },
      async ({ type, data }) => {
        deps.metrics.toolCalls.inc({ tool: 'publish_event' });
        const r = await publishAgentEvent(deps.outbox, deps.config, type, data);
        if (!r.ok) return refuse(`refused: ${r.error}`);
        deps.onPublished?.(r.event);
        const body = { id: r.id, ...(r.subject ? { subject: r.subject } : {}) };
        const where = r.subject ? `on ${r.subject}` : 'recorded locally (no event log is configured for this agent)';
        return { content: [{ type: 'text', text: `published ${r.id} ${where}` }], structuredContent: body };
      },
    );
    const eventLog = deps.eventLog;
    if (!eventLog) return;
    server.registerTool(
      'events',
      {
        description: "Read the team's event log, oldest first: the newest `limit` events matching agent, type and since.",
        inputSchema: {
          agent: z.string().min(1).max(253).optional().describe('Only events of this agent'),
          team: z.string().min(1).max(63).optional().describe('Only events of this team (default: every team)'),
          type: z.string().min(1).max(64).optional().describe('Only this event type, e.g. pr_opened, task_done, agent_started'),
          since: z.string().min(1).max(64).optional().describe('A duration back from now (30m, 1h, 2d) or an RFC 3339 time'),
          limit: z.number().int().min(1).max(EVENTS_TOOL_MAX_LIMIT).default(50).describe('At most this many events (the newest)'),
        },
      },
      async ({ agent, team, type, since, limit }) => {
        deps.metrics.toolCalls.inc({ tool: 'events' });
        let sinceDate: Date | undefined;
        try {
          sinceDate = since ? parseSince(since) : undefined;
        } catch (err) {
          return refuse((err as Error).message);
        }
        try {
          const events = await eventLog.query({ agent, team, type, since: sinceDate, limit });
          const text = events.length ? events.map((e) => JSON.stringify(e)).join('\n') : 'no matching events';
          return { content: [{ type: 'text', text }], structuredContent: { events } };
        } catch (err) {
          return refuse(`the event log cannot be read now: ${(err as Error).message}`);
        }
      },
    );
  };
}
