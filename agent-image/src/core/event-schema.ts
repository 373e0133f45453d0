/**
 * The typed events of the team's event log (DESIGN.md flow 4): what an agent publishes
 * through the supervisor's MCP tool `publish_event` (`pr_opened`, `pr_merged`,
 * `review_requested`, `incident`, `task_done`) and what the supervisor records about
 * itself (lifecycle: `agent_started`, `cli_restarted`, `crash_loop`, `message_received`,
 * `rewake`, and the others in LIFECYCLE_EVENT_TYPES).
 *
 * Every event travels in one envelope, `{id, type, time, agent, team?, data}`, as the
 * JSON body of one JetStream message on `<prefix>.<team>.<agent>.<type>` (subject.ts).
 * The schemas here validate what an agent sends (strict: an unknown field is refused, so
 * a typo such as `pr_number` does not pass silently); readers of the stream parse the
 * envelope leniently (EventEnvelope), so an older reader accepts a newer writer's data.
 */
import { z } from 'zod';

// Messages a person can act on: zod's defaults ("Too small: expected number to be >0")
// name the check, these name what the field must be.
const positiveInt = z
  .number({ error: 'expected a positive integer' })
  .int({ error: 'expected a positive integer' })
  .positive({ error: 'expected a positive integer' });
const text = (max: number) => z.string({ error: 'expected a string' }).trim().min(1, { error: 'expected a non-empty string' }).max(max, { error: `expected at most ${max} characters` });
const url = z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' }).max(2048, { error: 'expected at most 2048 characters' });
const repo = z
  .string({ error: 'expected "owner/name"' })
  .regex(/^[A-Za-z0-9_.-]{1,100}\/[A-Za-z0-9_.-]{1,100}$/, { error: 'expected "owner/name"' });
/** An agent's name as in its Agent resource (a DNS label, which is what StatefulSet pods need). */
const agentName = z
  .string({ error: 'expected an agent name' })
  .regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, { error: 'expected an agent name (lower-case letters, digits and dashes)' });

/** A pull request the agent opened; `reviewers` are agents of its team asked to review it. */
export const PrOpened = z.strictObject({
  repo,
  number: positiveInt,
  url,
  title: text(512),
  reviewers: z.array(agentName, { error: 'expected a list of agent names' }).max(16, { error: 'expected at most 16 reviewers' }).optional(),
});
/** A pull request of the agent's that was merged. */
export const PrMerged = z.strictObject({ repo, number: positiveInt, url, title: text(512).optional() });
/** The agent asks `reviewer` (an agent of its team) to review a pull request. */
export const ReviewRequested = z.strictObject({ repo, number: positiveInt, url, reviewer: agentName, title: text(512).optional() });
/** Something is broken and people should know; `severity` orders the urgency. */
export const Incident = z.strictObject({
  severity: z.enum(['low', 'medium', 'high', 'critical'], { error: 'expected one of low, medium, high, critical' }),
  summary: text(2000),
  url: url.optional(),
});
/** A task is finished; `url` points at the result (a PR, a comment, a document). */
export const TaskDone = z.strictObject({ summary: text(2000), url: url.optional() });

/** The events an agent may publish through `publish_event`, with the shape of their `data`. */
export const AGENT_EVENTS = {
  pr_opened: PrOpened,
  pr_merged: PrMerged,
  review_requested: ReviewRequested,
  incident: Incident,
  task_done: TaskDone,
} as const;
export type AgentEventType = keyof typeof AGENT_EVENTS;
export const AGENT_EVENT_TYPES = Object.keys(AGENT_EVENTS) as AgentEventType[];

/**
 * Events the supervisor records about the agent. Their data is what the supervisor knows
 * at the time (e.g. `cli_restarted`: exit status or signal, attempt, delayMs; `crash_loop`:
 * restarts, windowSeconds, lastExit; `message_received`: source, room, event, sender;
 * `rewake`: source and what woke the agent; `matrix_encrypted_room`: room, noticeSent); the shape is the supervisor's, not an agent's
 * promise, so it is not validated (EventEnvelope's `data` is any object). Named here so
 * that publish_event can tell an agent that these are the supervisor's.
 */
export const LIFECYCLE_EVENT_TYPES = [
  'agent_started',
  'agent_stopped',
  'cli_restarted',
  'crash_loop',
  'crash_loop_recovered',
  'session_reset',
  'message_received',
  'rewake',
  'notification',
  'matrix_room_joined',
  'matrix_encrypted_room',
  'message_dead_lettered',
  // Approvals over chat (plugins/matrix/approvals.ts): approval_requested {id, tool, room} (not
  // the command: the event log is read more widely than the room);
  // approval_granted {id, by (the approver's Matrix user id), always, remembered?: true (an
  // earlier "always" answer allowed it unasked)}; approval_denied {id, by, always: false}, or
  // {id, by: null, always: false, reason: 'withdrawn'} when the CLI stopped waiting;
  // approval_expired {id, after (seconds)}.
  'approval_requested',
  'approval_granted',
  'approval_denied',
  'approval_expired',
] as const;

/**
 * The envelope of every event, as stored in the outbox and in the stream.
 * `id` is unique (a UUID) and is the message's `Nats-Msg-Id`; `time` is RFC 3339 (UTC);
 * `team` is absent for an agent without a team. Parsed leniently: a reader accepts event
 * types and data fields it does not know.
 */
export const EventEnvelope = z.object({
  id: z.string().min(1),
  type: z.string().regex(/^[a-z][a-z0-9_]*$/),
  time: z.iso.datetime({ offset: true }),
  agent: z.string().min(1),
  team: z.string().min(1).optional(),
  data: z.record(z.string(), z.unknown()),
});
export type EventEnvelope = z.infer<typeof EventEnvelope>;

export type AgentEventInput = { [T in AgentEventType]: { type: T; data: z.infer<(typeof AGENT_EVENTS)[T]> } }[AgentEventType];

/** `data.reviewers[0]` from zod's path `['reviewers', 0]` under `data`. */
function fieldPath(prefix: string, path: readonly PropertyKey[]): string {
  let out = prefix;
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : `.${String(p)}`;
  return out;
}

/** The value at a zod issue's path in the input (zod 4 does not report it by default). */
function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let v = input;
  for (const p of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}

/**
 * Validates an event an agent wants to publish: `type` must be one of AGENT_EVENT_TYPES
 * (lifecycle events are the supervisor's) and `data` must match its schema.
 *
 * @returns `{ok: true, event}` with `data` normalised (strings trimmed), or `{ok: false,
 *   error}` where `error` names each bad field by its path, e.g.
 *   `data.number: expected a positive integer; data.url: expected an http(s) URL`.
 */
export function validateAgentEvent(type: unknown, data: unknown): { ok: true; event: AgentEventInput } | { ok: false; error: string } {
  if (typeof type !== 'string' || !(AGENT_EVENT_TYPES as string[]).includes(type)) {
    const lifecycle = typeof type === 'string' && (LIFECYCLE_EVENT_TYPES as readonly string[]).includes(type);
    return {
      ok: false,
      error: `type: expected one of ${AGENT_EVENT_TYPES.join(', ')}${lifecycle ? ` (${type} is recorded by the supervisor itself)` : ''}; got ${JSON.stringify(type)}`,
    };
  }
  const schema = AGENT_EVENTS[type as AgentEventType];
  if (data !== undefined && (data === null || typeof data !== 'object' || Array.isArray(data))) {
    return { ok: false, error: `data: expected an object, got ${Array.isArray(data) ? 'an array' : data === null ? 'null' : typeof data}` };
  }
  const parsed = schema.safeParse(data ?? {});
  if (!parsed.success) {
    const fields = parsed.error.issues.map((i) => {
      if (i.code === 'unrecognized_keys') return `${fieldPath('data', i.path)}: unknown field${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => JSON.stringify(k)).join(', ')}`;
      if (i.code === 'invalid_type' && valueAt(data, i.path) === undefined) return `${fieldPath('data', i.path)}: required, ${i.message}`;
      return `${fieldPath('data', i.path)}: ${i.message}`;
    });
    return { ok: false, error: fields.join('; ') };
  }
  return { ok: true, event: { type, data: parsed.data } as AgentEventInput };
}
