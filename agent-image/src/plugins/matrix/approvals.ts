/**
 * Approvals over chat (the core/approval.ts port, for the Matrix bridge): a tool call the
 * CLI must not run unasked is posted in the room and thread the current task came from
 * (else `spec.matrix.approvals.room`, else the first of `spec.matrix.rooms`), and the
 * first answer of an approver (spec.matrix.allowedUsers) decides it: a ✅/👍 or ❌/👎
 * reaction to the request, or a message replying to it (explicitly, or by the thread's reply
 * fallback) saying approve or deny (approval-rules.ts). Nobody answers within `timeoutSeconds` → denied, with a
 * follow-up in the thread. Each step is an event: `approval_requested` {id, tool, room}
 * (not the summary: the event log is read more widely than the room), `approval_granted` / `approval_denied` {id, by, always},
 * `approval_expired` {id, after}.
 *
 * The sync loop (batch.ts) hands every live room event to `take` first: an answer to a
 * request (from anyone: a non-approver's is counted and logged once per request at info,
 * and does nothing) is consumed and not delivered to the agent. Answers to a finished
 * request do nothing (counted, logged at debug only); to an unknown event, they are not answers. "Always" rules live in memory for the CLI session (session id) until the
 * supervisor restarts.
 */
import { randomUUID } from 'node:crypto';
import { Counter, Gauge, type Registry } from 'prom-client';
import { escapeHtml } from '../../lib/html.ts';
import type { Logger } from '../../lib/log.ts';
import type { ApprovalDecision, ApprovalRequest, Approver, TaskOrigin } from '../../core/approval.ts';
import type { EventOutbox } from '../../core/outbox.ts';
import { withRetry, type MatrixClient, type MatrixEvent } from './client.ts';
import { cut, MAX_PENDING, MAX_RULES, MAX_TOOL_CHARS, mayAnswer, parseAnswer, reactionVerdict, ruleKey, summary as summarizeCall, type Answer, type Summary } from './approval-rules.ts';
import { relationOf } from './triggers.ts';
import { clip, isEventId } from './validate.ts';

/** Content key marking the supervisor's approval posts and follow-ups (`{id}`); the loop guard does not count them. */
export const APPROVAL_KEY = 'dev.agentsmith.approval';
/** Finished requests remembered, so a late answer to one does nothing (and is not delivered to the agent). */
const FINISHED_MEMORY = 200;
/** Approvers mentioned (pinged) in a request. */
const MAX_MENTIONS = 20;

/** The approvals' Prometheus metrics. */
export class ApprovalMetrics {
  readonly outcomes: Counter<'outcome'>;
  readonly ignored: Counter<'reason'>;
  readonly pending: Gauge;

  constructor(registry: Registry) {
    const registers = [registry];
    this.outcomes = new Counter({
      name: 'agentsmith_supervisor_approvals_total',
      help: 'approval requests by outcome (granted, denied, expired, withdrawn, remembered: an "always" rule, refused: not asked, e.g. no spec.matrix, too many pending, the post failed)',
      labelNames: ['outcome'] as const,
      registers,
    });
    this.ignored = new Counter({
      name: 'agentsmith_supervisor_approval_answers_ignored_total',
      help: 'answers to approval requests that did nothing, by reason (not_approver, finished: the request was already decided or expired)',
      labelNames: ['reason'] as const,
      registers,
    });
    this.pending = new Gauge({ name: 'agentsmith_supervisor_approvals_pending', help: 'approval requests waiting for an answer', registers });
  }
}

export interface ApprovalOptions {
  client: MatrixClient;
  /** The bridge's stop. */
  signal: AbortSignal;
  agentName: string;
  /** The agent's own user id (never an answer). */
  self: string;
  /** spec.matrix.allowedUsers. */
  approvers: ReadonlySet<string>;
  /** How long a request waits for an answer before it is denied (seconds; spec.matrix.approvals.timeoutSeconds). */
  timeoutSeconds: number;
  /** Whether the agent is in `room` (the task's room must be joined to post there). */
  joined: (room: string) => boolean;
  /** The room id of spec.matrix.approvals.room, else of spec.matrix.rooms[0], once joined. */
  fallbackRoom: () => string | undefined;
  outbox?: Pick<EventOutbox, 'emit'> | undefined;
  metrics: ApprovalMetrics;
  log: Logger;
}

interface Pending {
  id: string;
  tool: string;
  room: string;
  /** The request's own event id. */
  event: string;
  /** The thread it was posted in (undefined: top level, its own thread is rooted at it). */
  thread: string | undefined;
  key: string;
  /** Whether the room was shown the call cut (then "always" approves this once only). */
  cut: boolean;
  /** Whether a non-approver's answer to this request was already logged at info. */
  ignoredLogged: boolean;
  finish: (outcome: Outcome) => void;
}

type Outcome = { kind: 'answer'; by: string; answer: Answer } | { kind: 'expired' } | { kind: 'withdrawn' };

/** The Matrix approver: posts requests, reads answers (`take`), decides. */
export class MatrixApprovals implements Approver {
  private readonly o: ApprovalOptions;
  private readonly pending = new Map<string, Pending>();
  /** Finished requests: event id → room id (insertion order, bounded). */
  private readonly finished = new Map<string, string>();
  /** Requests whose post is under way (they count against MAX_PENDING). */
  private posting = 0;
  /** Follow-up event id → its request's event id (bounded like `finished`): a reply to a follow-up is a (late) answer to its request. */
  private readonly followUps = new Map<string, string>();
  /** "Always" rules: ruleKey → the approver who gave it. */
  private readonly rules = new Map<string, string>();

  constructor(o: ApprovalOptions) {
    this.o = o;
  }

  /** Requests waiting for an answer. */
  get size(): number {
    return this.pending.size;
  }

  private deny(outcome: string, message: string): ApprovalDecision {
    this.o.metrics.outcomes.inc({ outcome });
    return { behavior: 'deny', message };
  }

  /**
   * Asks the room whether `req` may run (core/approval.ts Approver). Never throws: every
   * failure is a deny whose message the model sees. Allowed at once, unasked: the same call
   * approved "always" in this CLI session. Denied at once ("refused", nothing posted): a
   * tool input that cannot be summarised, MAX_PENDING requests already pending or being
   * posted, no room to ask in (the task's room not joined and no approvals.room /
   * rooms[0] joined), a post the homeserver refuses. Otherwise posted (in `origin`'s
   * thread, else at the top level of the fallback room) and resolved by the first
   * approver's answer, after `timeoutSeconds` seconds (a deny), or when `signal` aborts (a
   * "withdrawn" deny).
   */
  async request(req: ApprovalRequest, origin: TaskOrigin | undefined, signal: AbortSignal): Promise<ApprovalDecision> {
    const { o } = this;
    const tool = cut(req.tool, MAX_TOOL_CHARS);
    const id = randomUUID();
    let key: string;
    let summary: Summary;
    try {
      key = ruleKey(req.sessionId, tool, req.input);
      summary = summarizeCall(tool, req.input);
    } catch (err) {
      // E.g. an input nested thousands deep: a RangeError of the recursive canonical JSON.
      o.log.warn({ tool, error: clip((err as Error).message, 200) }, 'approval refused: the tool input cannot be summarised');
      return this.deny('refused', `Denied: this ${tool} call's input cannot be summarised for the approvers in Matrix (${clip((err as Error).message, 120)}), so nobody was asked. Call the tool with a simpler input.`);
    }
    const by = this.rules.get(key);
    if (by) {
      o.metrics.outcomes.inc({ outcome: 'remembered' });
      o.log.info({ id, tool, by }, 'approval: the same call was approved "always" in this session; allowed without asking');
      void o.outbox?.emit('approval_granted', { id, by, always: true, remembered: true });
      return { behavior: 'allow' };
    }
    // A request being posted holds its slot: concurrent requests cannot all pass the check before any is pending.
    const waiting = this.pending.size + this.posting;
    if (waiting >= MAX_PENDING) {
      o.log.warn({ tool, pending: waiting }, 'approval refused: too many requests pending');
      return this.deny('refused', `Denied: ${waiting} approval requests are already waiting for an answer in Matrix (at most ${MAX_PENDING}). Wait for those answers before asking again.`);
    }
    const inOrigin = origin !== undefined && o.joined(origin.room);
    const room = inOrigin ? origin.room : o.fallbackRoom();
    if (!room) return this.deny('refused', 'Denied: there is no Matrix room to ask for approval in yet (the task did not come from Matrix and spec.matrix.approvals.room / spec.matrix.rooms is not joined).');
    const thread = inOrigin ? origin.thread : undefined;
    let event: string;
    this.posting++;
    try {
      event = await this.post(id, room, tool, summary, inOrigin ? origin : undefined);
    } catch (err) {
      o.log.warn({ id, room, error: clip((err as Error).message, 200) }, 'approval refused: cannot post the request in Matrix');
      return this.deny('refused', `Denied: the approval request could not be posted in Matrix (${clip((err as Error).message, 120)}).`);
    } finally {
      this.posting--;
    }
    // No summary: the event log reaches more people than the room, and redaction knows only URL credentials.
    void o.outbox?.emit('approval_requested', { id, tool, room });
    o.log.info({ id, tool, room, event, ...(thread ? { thread } : {}) }, 'approval requested in Matrix');
    return this.wait({ id, tool, room, event, thread, key, cut: summary.hidden > 0 }, signal);
  }

  /** Waits for the answer of a posted request (or its timeout, or the CLI giving up). */
  private wait(p: Omit<Pending, 'finish' | 'ignoredLogged'>, signal: AbortSignal): Promise<ApprovalDecision> {
    const { o } = this;
    const after = o.timeoutSeconds;
    return new Promise((resolve) => {
      const finish = (outcome: Outcome) => {
        if (!this.pending.delete(p.event)) return;
        clearTimeout(timer);
        signal.removeEventListener('abort', withdraw);
        this.finished.set(p.event, p.room);
        if (this.finished.size > FINISHED_MEMORY) this.finished.delete(this.finished.keys().next().value!);
        o.metrics.pending.set(this.pending.size);
        resolve(this.decided(p, outcome, after));
      };
      const timer = setTimeout(() => finish({ kind: 'expired' }), after * 1000);
      const withdraw = () => finish({ kind: 'withdrawn' });
      this.pending.set(p.event, { ...p, ignoredLogged: false, finish });
      o.metrics.pending.set(this.pending.size);
      signal.addEventListener('abort', withdraw, { once: true });
      if (signal.aborted) withdraw();
    });
  }

  /** The decision of a finished request: its event, metric, log line and follow-up in the thread. */
  private decided(p: Omit<Pending, 'finish' | 'ignoredLogged'>, outcome: Outcome, after: number): ApprovalDecision {
    const { o } = this;
    let decision: ApprovalDecision;
    let note: string;
    if (outcome.kind === 'answer') {
      const { by, answer } = outcome;
      // A call the room saw cut is approved once: "always" would approve what nobody read.
      const onceOnly = answer.verdict === 'approve' && answer.always && p.cut;
      const always = answer.verdict === 'approve' && answer.always && !p.cut;
      if (always) {
        this.rules.set(p.key, by);
        if (this.rules.size > MAX_RULES) this.rules.delete(this.rules.keys().next().value!);
      }
      o.metrics.outcomes.inc({ outcome: answer.verdict === 'approve' ? 'granted' : 'denied' });
      void o.outbox?.emit(answer.verdict === 'approve' ? 'approval_granted' : 'approval_denied', { id: p.id, by, always });
      o.log.info({ id: p.id, tool: p.tool, by, verdict: answer.verdict, always }, 'approval answered');
      decision = answer.verdict === 'approve' ? { behavior: 'allow' } : { behavior: 'deny', message: `Denied by ${by} in Matrix. Do not try the same call again; ask in the room or do it another way.` };
      note = answer.verdict === 'approve' ? `✅ Approved by ${by}${always ? ' (always: the same call runs without asking for the rest of this session)' : onceOnly ? ' (once only: the call was shown cut, so "always" is not remembered for it)' : ''}.` : `❌ Denied by ${by}.`;
    } else if (outcome.kind === 'expired') {
      o.metrics.outcomes.inc({ outcome: 'expired' });
      void o.outbox?.emit('approval_expired', { id: p.id, after });
      o.log.info({ id: p.id, tool: p.tool, after }, 'approval expired: nobody answered');
      decision = { behavior: 'deny', message: `No approver answered within ${after} s; the request was denied. Do not retry it at once: ask in the room, or do it another way.` };
      note = `⌛ No approver answered within ${after} s; the request was denied.`;
    } else {
      o.metrics.outcomes.inc({ outcome: 'withdrawn' });
      void o.outbox?.emit('approval_denied', { id: p.id, by: null, always: false, reason: 'withdrawn' });
      o.log.info({ id: p.id, tool: p.tool }, 'approval withdrawn: the CLI stopped waiting');
      decision = { behavior: 'deny', message: 'The approval request was withdrawn.' };
      note = '↩️ Withdrawn: the agent stopped waiting for this answer.';
    }
    this.followUp(p, note);
    return decision;
  }

  /** Posts `note` under the request (in its thread), best effort. */
  private followUp(p: { id: string; room: string; event: string; thread: string | undefined }, note: string): void {
    const content = {
      msgtype: 'm.notice',
      body: note,
      'm.mentions': {},
      [APPROVAL_KEY]: { id: p.id },
      'm.relates_to': { rel_type: 'm.thread', event_id: p.thread ?? p.event, is_falling_back: false, 'm.in_reply_to': { event_id: p.event } },
    };
    withRetry(() => this.o.client.send(p.room, 'm.room.message', content, `approval-done-${p.id}`, this.o.signal), { attempts: 3, signal: this.o.signal }).then(
      (event) => {
        this.followUps.set(event, p.event);
        if (this.followUps.size > FINISHED_MEMORY) this.followUps.delete(this.followUps.keys().next().value!);
      },
      (err: unknown) => this.o.log.warn({ id: p.id, room: p.room, error: clip((err as Error).message, 200) }, 'cannot post the approval follow-up'),
    );
  }

  /** Posts the request: in the task's thread (replying to the task's message) when `origin`, else at the top level. @returns its event id */
  private async post(id: string, room: string, tool: string, summary: Summary, origin: TaskOrigin | undefined): Promise<string> {
    const { o } = this;
    const approvers = [...o.approvers].filter((u) => u !== o.self);
    const deadline = new Date(Date.now() + o.timeoutSeconds * 1000).toISOString().slice(11, 19);
    const who = approvers.length ? `Only ${approvers.slice(0, MAX_MENTIONS).join(', ')}${approvers.length > MAX_MENTIONS ? ' …' : ''} can answer.` : 'Nobody is in spec.matrix.allowedUsers, so nobody can answer.';
    const how = `Approve: react ✅ or reply "approve" ("approve always": the same call runs without asking for the rest of this session). Deny: react ❌ or reply "deny".`;
    const end = `Denied at ${deadline} UTC (in ${o.timeoutSeconds} s) if nobody answers.`;
    const hidden = summary.hidden ? ` (${summary.hidden} more characters not shown; "approve always" approves it once only)` : '';
    const body = `🔐 ${o.agentName} asks to run ${tool}:\n${summary.text}${hidden}\n${how} ${who} ${end}`;
    const html = `🔐 <b>${escapeHtml(o.agentName)}</b> asks to run <b>${escapeHtml(tool)}</b>:<pre><code>${escapeHtml(summary.text)}</code></pre>${hidden ? `${escapeHtml(hidden.trim())}<br>` : ''}${escapeHtml(how)} ${escapeHtml(who)} ${escapeHtml(end)}`;
    const relates = origin?.thread
      ? { 'm.relates_to': { rel_type: 'm.thread', event_id: origin.thread, is_falling_back: false, 'm.in_reply_to': { event_id: origin.event } } }
      : origin
        ? { 'm.relates_to': { 'm.in_reply_to': { event_id: origin.event } } }
        : {};
    const content = {
      msgtype: 'm.notice',
      body,
      format: 'org.matrix.custom.html',
      formatted_body: html,
      'm.mentions': { user_ids: approvers.slice(0, MAX_MENTIONS) },
      [APPROVAL_KEY]: { id },
      ...relates,
    };
    return withRetry(() => o.client.send(room, 'm.room.message', content, `approval-${id}`, o.signal), { attempts: 3, signal: o.signal });
  }

  /**
   * A live room event from the sync loop: when it answers a request (a reaction to it, an
   * approve/deny message replying to it or to its follow-up), it is consumed and true is
   * returned (the agent does not get it). An approver's answer decides the request; anyone
   * else's does nothing (counted; logged at info once per request, else at debug).
   */
  take(roomId: string, ev: MatrixEvent): boolean {
    if (ev.sender === this.o.self) return false;
    if (ev.type === 'm.reaction') return this.takeReaction(roomId, ev);
    if (ev.type !== 'm.room.message' || typeof ev.content.body !== 'string') return false;
    const target = this.target(roomId, ev.content);
    if (!target) return false;
    const answer = parseAnswer(ev.content.body);
    if (!answer) return false;
    return this.answer(target, ev.sender, answer);
  }

  private takeReaction(roomId: string, ev: MatrixEvent): boolean {
    const rel = ev.content['m.relates_to'] as Record<string, unknown> | undefined;
    const target = typeof rel?.event_id === 'string' ? rel.event_id : undefined;
    if (!target || rel?.rel_type !== 'm.annotation' || !this.known(roomId, target)) return false;
    const verdict = typeof rel.key === 'string' ? reactionVerdict(rel.key) : undefined;
    if (!verdict) return true; // another emoji on a request: nothing
    return this.answer(target, ev.sender, { verdict, always: false });
  }

  /**
   * The request a message answers: the one whose event (or follow-up) its
   * `m.in_reply_to.event_id` names, an explicit reply or a thread's reply fallback alike
   * (Element's thread composer sets the fallback to the thread's latest event, so a plain
   * message right under a request answers it). A message replying to anything else answers
   * nothing, even with one request pending in its thread; so does one from another room.
   */
  private target(roomId: string, content: Record<string, unknown>): string | undefined {
    const to = relationOf(content).inReplyTo;
    if (to === undefined || !isEventId(to)) return undefined;
    const request = this.followUps.get(to) ?? to;
    return this.known(roomId, request) ? request : undefined;
  }

  /** Whether `event` is a pending or finished request posted in `roomId` (an answer counts only in the request's own room). */
  private known(roomId: string, event: string): boolean {
    return (this.pending.get(event)?.room ?? this.finished.get(event)) === roomId;
  }

  private answer(target: string, sender: string, answer: Answer): boolean {
    const p = this.pending.get(target);
    if (!p) {
      // Anyone may react to any of the FINISHED_MEMORY finished requests: counted, and only at debug.
      this.o.metrics.ignored.inc({ reason: 'finished' });
      this.o.log.debug({ event: target, sender: clip(sender) }, 'answer to an approval request that is already decided or expired: nothing done');
      return true;
    }
    if (!mayAnswer(sender, this.o.approvers, this.o.self)) {
      this.o.metrics.ignored.inc({ reason: 'not_approver' });
      // Once per request at info (the first such sender); every further one at debug.
      const first = !p.ignoredLogged;
      p.ignoredLogged = true;
      this.o.log[first ? 'info' : 'debug']({ id: p.id, sender: clip(sender) }, 'answer to an approval request from a user not in spec.matrix.allowedUsers: nothing done');
      return true;
    }
    p.finish({ kind: 'answer', by: sender, answer });
    return true;
  }
}
