/**
 * Review fan-out (DESIGN.md flow 4, issue 8 item 4): when an agent publishes `pr_opened`,
 * its teammates review the pull request.
 *
 * Two paths carry one review request, so it arrives when either Matrix or NATS is away:
 *
 * - **Matrix** (the author's supervisor): one `m.notice` in the team room (the first of
 *   `spec.matrix.rooms`) that mentions every reviewer with a Matrix id (intentional
 *   mentions, `m.mentions.user_ids`), carrying `dev.agentsmith.review_request:
 *   {event_id}`. A reviewer's bridge delivers it like any mention by an agent.
 * - **JetStream** (each reviewer's supervisor): a durable consumer of its team's
 *   `pr_opened` events puts the request into the reviewer's inbox.
 *
 * Both use the inbox id `review-request:<event id>` ({@link reviewRequestId}), so the
 * inbox (which de-duplicates by id) hands the request to the reviewer once.
 *
 * Who reviews: `data.reviewers` (Agent names) when the event names them, otherwise every
 * teammate of the roster (`/etc/agent-smith/team/roster.json`) but the author.
 */
import { readFile } from 'node:fs/promises';
import type { z } from 'zod';
import { PrOpened, type EventEnvelope } from '../../core/event-schema.ts';
import type { Logger } from '../../lib/log.ts';
import { MAX_META_VALUE_CHARS } from '../../core/inbox.ts';
import { reviewRequestId } from '../../core/review-request.ts';
import { parseRoster, type Teammate } from '../../contract/roster.ts';
import { escapeHtml } from '../../lib/html.ts';



/** A `pr_opened` event as the fan-out reads it (an EventEnvelope whose data passed the PrOpened schema). */
export interface PrOpenedEvent {
  /** The event id (JetStream Nats-Msg-Id). */
  id: string;
  type: string;
  /** The author agent's name. */
  agent: string;
  data: z.infer<typeof PrOpened>;
}

/**
 * The event as a `pr_opened` with valid data, or undefined (another type). A `pr_opened`
 * whose data does not pass the schema (written by something else than a supervisor) is
 * logged and skipped.
 */
export function asPrOpened(event: EventEnvelope, log: Logger): PrOpenedEvent | undefined {
  if (event.type !== 'pr_opened') return undefined;
  const data = PrOpened.safeParse(event.data);
  if (!data.success) {
    log.warn({ event: event.id, agent: event.agent, error: data.error.issues.map((i) => `data.${i.path.join('.')}: ${i.message}`).join('; ') }, 'malformed pr_opened event skipped');
    return undefined;
  }
  return { id: event.id, type: event.type, agent: event.agent, data: data.data };
}


/**
 * Reads roster.json. A missing or unreadable roster is an empty team (no reviewers), not
 * an error: an agent without a team has nobody to ask.
 */
export async function readTeammates(rosterFile: string): Promise<Teammate[]> {
  try {
    return parseRoster(await readFile(rosterFile, 'utf8'));
  } catch {
    return [];
  }
}

/** The reviewers of `event`: `data.reviewers` when given (teammates only), else every teammate but the author. */
export function reviewersOf(event: PrOpenedEvent, teammates: readonly Teammate[]): Teammate[] {
  const others = teammates.filter((t) => t.name !== event.agent);
  const asked = event.data.reviewers;
  return asked?.length ? others.filter((t) => asked.includes(t.name)) : others;
}

/** The text a reviewer finds in its inbox (and, with the mentions, in the room). */
export function reviewRequestText(event: PrOpenedEvent, reviewers: readonly Teammate[]): string {
  const names = reviewers.map((r) => r.name).join(', ');
  return (
    `Review request${names ? ` for ${names}` : ''}: ${event.agent} opened ${event.data.repo}#${event.data.number} "${event.data.title}" ${event.data.url}\n` +
    'Please review the pull request: read the diff, leave review comments on GitHub, and approve or request changes.'
  );
}

/** The Matrix side the fan-out needs (MatrixBridge.announceReviewRequest). */
export interface ReviewAnnouncer {
  announceReviewRequest(args: { eventId: string; text: string; html: string; mentions: string[] }): Promise<string | undefined>;
}

/** The inbox side the fan-out needs (Inbox.put). */
export interface ReviewInbox {
  put(input: { id: string; source: string; text: string; meta?: Record<string, string> }): Promise<{ duplicate: boolean }>;
}

export interface ReviewFanoutOptions {
  /** This agent's name. */
  agentName: string;
  rosterFile: string;
  /** The Matrix bridge, when the agent has one. */
  announcer?: ReviewAnnouncer | undefined;
  inbox: ReviewInbox;
  log: Logger;
}

/** Both halves of the fan-out for one agent: announcing its own PRs, taking its teammates' requests. */
export class ReviewFanout {
  private readonly opts: ReviewFanoutOptions;

  constructor(opts: ReviewFanoutOptions) {
    this.opts = opts;
  }

  /**
   * The author's half: called after this agent published `event`. For `pr_opened`,
   * mentions the reviewers in the team room. Never throws (a homeserver outage is logged;
   * the JetStream path still reaches the reviewers).
   * @returns the reviewers' names (empty for another event type or an empty team)
   */
  async announce(published: EventEnvelope): Promise<string[]> {
    const event = published.agent === this.opts.agentName ? asPrOpened(published, this.opts.log) : undefined;
    if (!event) return [];
    const reviewers = reviewersOf(event, await readTeammates(this.opts.rosterFile));
    if (!reviewers.length) {
      this.opts.log.info({ event: event.id }, 'pr_opened: no teammates to ask for a review');
      return [];
    }
    const names = reviewers.map((r) => r.name);
    if (this.opts.announcer) {
      const mentions = reviewers.flatMap((r) => (r.matrix ? [r.matrix] : []));
      const pills = reviewers.map((r) => (r.matrix ? `<a href="https://matrix.to/#/${encodeURIComponent(r.matrix)}">${escapeHtml(r.name)}</a>` : escapeHtml(r.name)));
      const html =
        `Review request for ${pills.join(', ')}: ${escapeHtml(event.agent)} opened ` +
        `<a href="${escapeHtml(event.data.url)}">${escapeHtml(event.data.repo)}#${event.data.number}</a> “${escapeHtml(event.data.title)}”`;
      try {
        await this.opts.announcer.announceReviewRequest({ eventId: event.id, text: reviewRequestText(event, reviewers), html, mentions });
        this.opts.log.info({ event: event.id, reviewers: names }, 'review requested in the team room');
      } catch (err) {
        this.opts.log.warn({ event: event.id, error: (err as Error).message }, 'cannot announce the review request in Matrix; reviewers still get it from the event log');
      }
    }
    return names;
  }

  /**
   * The reviewer's half: called for each teammate's `pr_opened` from the event log.
   * Puts the review request into this agent's inbox when it is a reviewer. Throws when
   * the inbox cannot be written (the consumer redelivers).
   * @returns whether this agent is a reviewer of it
   */
  async receive(delivered: EventEnvelope): Promise<boolean> {
    const event = delivered.agent !== this.opts.agentName ? asPrOpened(delivered, this.opts.log) : undefined;
    if (!event) return false;
    const teammates = await readTeammates(this.opts.rosterFile);
    const reviewers = reviewersOf(event, teammates);
    if (!reviewers.some((r) => r.name === this.opts.agentName)) return false;
    const { duplicate } = await this.opts.inbox.put({
      id: reviewRequestId(event.id),
      source: 'review',
      text: reviewRequestText(event, reviewers),
      // The inbox takes context values up to MAX_META_VALUE_CHARS; the text has the whole URL.
      meta: { author: event.agent, repo: event.data.repo, number: String(event.data.number), url: event.data.url.slice(0, MAX_META_VALUE_CHARS) },
    });
    this.opts.log.info(
      { event: event.id, author: event.agent, pr: `${event.data.repo}#${event.data.number}`, duplicate },
      duplicate ? 'review request from the event log was in the inbox already (the room mention came first)' : 'review request put in the inbox',
    );
    return true;
  }
}
