/**
 * Hands inbox messages to the CLI, one at a time, for the supervisor (supervisor.ts):
 * through the Stop hook's armed waiter, or typed into pane 0. A bad message never blocks
 * the ones behind it: an attempt fails when the paste is refused, when the CLI does not
 * take it in time (the supervisor's tick), or when the CLI exits while taking it; after
 * MAX_DELIVERY_ATTEMPTS failures (retried after RETRY_DELAYS_MS) it is set aside
 * (Inbox.deadLetter), logged once, counted, and `onDeadLetter` tells whoever sent it.
 * Failures of the environment (tmux session or pane 0 gone) do not count against the message.
 */
import type { Logger } from '../../lib/log.ts';
import { deliveryText } from '../../core/delivery.ts';
import type { InboxMessage } from '../../core/inbox.ts';
import type { TaskOrigin } from '../../core/approval.ts';
import { alive, sleep } from './proc.ts';
import type { CliState, SupervisorDeps } from './supervisor.ts';
import { CLI_PANE } from './tmux.ts';

/**
 * A hook-less harness took a typed message if it is still running this long after (ms).
 * Every typed message waits this long before the next one, so it bounds a hook-less
 * harness's intake (about 2 messages/s with the paste's own 150 ms): 1 s halved the rate
 * of a burst and left half of a 100-message burst undelivered a minute later. A CLI that
 * dies on a message does so as it reads the line; one that dies later is a plain crash.
 */
const HOOKLESS_CONFIRM_MS = 300;
/** Failed attempts to hand over one message before it is set aside. */
export const MAX_DELIVERY_ATTEMPTS = 3;
/** Wait before attempt 2, 3, ... of a message whose paste failed (ms). */
const RETRY_DELAYS_MS = [1000, 4000];
/** Failed attempts in a row (several messages' worth) after which the supervisor is not ready. */
export const NOT_READY_AFTER_FAILURES = 2 * MAX_DELIVERY_ATTEMPTS;
/** Longest reason text kept and logged for a failed attempt (characters). */
const MAX_REASON_CHARS = 200;

/** Why an attempt to hand a message over failed (metric label). */
export type DeliveryFailure = 'paste_failed' | 'not_acknowledged' | 'cli_exited' | 'render_failed';

/** What a Stop hook's inbox waiter is handed: the message and the text for the CLI (delivery.ts). */
export interface Handout {
  message: InboxMessage;
  text: string;
}

interface Waiter {
  generation: number;
  settle: (m: Handout | 'stale' | 'timeout') => void;
}

/** Failed attempts to hand over one message. */
interface Attempts {
  failures: number;
  reason: string;
  /** Not before this time (epoch ms). */
  retryAt: number;
}

/** What the courier reads of the supervisor's CLI. */
export interface CliView {
  readonly state: CliState;
  /** Bumped on every CLI (re)start: a waiter of an older CLI is stale. */
  readonly generation: number;
  readonly cliPid: number | undefined;
  /** Epoch ms from which pane 0 takes typed input (infinite until a hook harness's SessionStart). */
  readonly inputReadyAt: number;
}

/** The message handover of one supervisor (see the module comment). */
export class Courier {
  private readonly deps: SupervisorDeps;
  private readonly cli: CliView;
  private readonly log: Logger;
  private waiters: Waiter[] = [];
  /** The message handed over and not yet acknowledged, its route and when (epoch ms). */
  inFlight: { id: string; route: 'hook' | 'tmux'; at: number } | undefined;
  private readonly attempts = new Map<string, Attempts>();
  /** Failed attempts in a row since the CLI last took a message. */
  failuresInARow = 0;
  /** The last failed attempt's reason (bounded). */
  lastFailure: string | undefined;
  /** A handover or a set-aside is under way. */
  pumping = false;
  /**
   * Where the current task came from, for approvals (asked in its thread): the room, event
   * and answer thread of the last message the CLI took when that message came from Matrix;
   * undefined when the last message taken came from elsewhere (a PR comment, a rewake, a
   * review request: approvals go to spec.matrix.approvals.room, else rooms[0], top level)
   * or nothing was taken yet.
   */
  lastMatrixTask: TaskOrigin | undefined;

  constructor(deps: SupervisorDeps, cli: CliView) {
    this.deps = deps;
    this.cli = cli;
    this.log = deps.log;
  }

  /**
   * Long poll of the Stop hook's inbox waiter: resolves with the next message, 'stale' when
   * the waiter's CLI is not the current one (or a newer waiter replaced it), or 'timeout'.
   */
  waitForMessage(generation: number, timeoutMs: number): Promise<Handout | 'stale' | 'timeout'> {
    if (generation !== this.cli.generation || this.cli.state === 'stopping') return Promise.resolve('stale');
    // One armed waiter at a time: the newest wins, older ones exit quietly.
    this.cancelWaiters();
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish('timeout'), timeoutMs);
      const waiter: Waiter = { generation, settle: (m) => finish(m) };
      const finish = (m: Handout | 'stale' | 'timeout') => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve(m);
      };
      this.waiters.push(waiter);
      this.pump();
    });
  }

  /** Called when a waiter's connection closed before it got anything. */
  dropWaiter(generation: number): void {
    this.waiters = this.waiters.filter((w) => w.generation !== generation);
  }

  get hookArmed(): boolean {
    return this.waiters.some((w) => w.generation === this.cli.generation);
  }

  /** Every armed waiter gets 'stale' (its CLI is gone or restarting). */
  cancelWaiters(): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w.settle('stale');
  }

  /** The CLI took a message (the hook printed it, or UserPromptSubmit echoed its id). */
  async ack(id: string, route: 'hook' | 'tmux'): Promise<boolean> {
    const taken = this.deps.inbox.findPending((m) => m.id === id);
    const ok = await this.deps.inbox.ack(id);
    const { room, event, thread } = taken?.meta ?? {};
    // A task from elsewhere ends the Matrix one: its approvals must not go to the old thread.
    if (ok && taken) this.lastMatrixTask = taken.source === 'matrix' && room && event ? { room, event, thread } : undefined;
    if (this.inFlight?.id === id) this.inFlight = undefined;
    this.attempts.delete(id);
    if (ok) {
      this.failuresInARow = 0;
      this.deps.metrics.inboxDeliveryFailing.set(0);
      this.deps.metrics.inboxDelivered.inc({ route });
      this.deps.metrics.inboxDepth.set(this.deps.inbox.size);
      this.log.info({ id, route }, 'message delivered to the CLI');
    }
    this.pump();
    return ok;
  }

  /** Hands the oldest pending message to the CLI when it can take one, or sets it aside after MAX_DELIVERY_ATTEMPTS failures. */
  pump(): void {
    this.deps.metrics.inboxDepth.set(this.deps.inbox.size);
    if (this.pumping || this.inFlight || this.cli.state === 'stopping' || this.cli.state === 'stopped' || this.cli.state === 'exited') return;
    const m = this.deps.inbox.peek();
    if (!m) return;
    const tried = this.attempts.get(m.id);
    if (tried && Date.now() < tried.retryAt) return;
    if (tried && tried.failures >= MAX_DELIVERY_ATTEMPTS) return this.setAside(m, tried);
    const waiter = this.waiters.findLast((w) => w.generation === this.cli.generation);
    if (!waiter && (!this.cli.cliPid || Date.now() < this.cli.inputReadyAt)) return;
    const route = waiter ? 'hook' : 'tmux';
    this.pumping = true;
    this.inFlight = { id: m.id, route, at: Date.now() };
    const generation = this.cli.generation;
    this.handOver(m, route, waiter)
      .catch((err: unknown) => {
        if (this.inFlight?.id === m.id) this.inFlight = undefined;
        return this.failed(m, route, err instanceof RenderError ? 'render_failed' : 'paste_failed', errorText(err), generation);
      })
      .catch((err: unknown) => this.log.error({ err, id: m.id }, 'delivery step failed'))
      .finally(() => {
        this.pumping = false;
        // Next message (or the next attempt, once its wait is over: the tick pumps).
        if (!this.inFlight) setImmediate(() => this.pump());
      });
  }

  /** One attempt: the delivery text (delivery.ts), then the armed waiter gets it, or it is typed into pane 0. */
  private async handOver(m: InboxMessage, route: 'hook' | 'tmux', waiter: Waiter | undefined): Promise<void> {
    const d = await deliveryText(m, this.deps.inbox.largeDir).catch((err: unknown) => {
      throw new RenderError(errorText(err));
    });
    if (d.file) {
      this.deps.metrics.inboxLarge.inc();
      this.log.info({ id: m.id, bytes: d.bytes, file: d.file }, 'message too long to hand over whole: the CLI gets its start and the file with the full text');
    }
    if (waiter) {
      if (!this.waiters.includes(waiter)) {
        // The waiter went (its CLI restarted, or its connection closed) while the text was made: no attempt.
        if (this.inFlight?.id === m.id) this.inFlight = undefined;
        return;
      }
      waiter.settle({ message: m, text: d.text });
      return;
    }
    await this.deps.tmux.paste(CLI_PANE, d.text);
    this.log.info({ id: m.id, source: m.source, route }, 'message typed into pane 0');
    if (this.deps.adapter.hasHooks) return; // UserPromptSubmit echoes its id: that is the ack
    // Without hooks nothing will confirm it: typing it is delivery, once the CLI is seen
    // to survive it (a CLI that exits on a message fails the attempt, see onExit).
    await sleep(HOOKLESS_CONFIRM_MS);
    if (this.inFlight?.id === m.id && this.cli.cliPid && alive(this.cli.cliPid)) await this.ack(m.id, 'tmux');
  }

  /** The in-flight message's attempt failed (ack timeout, CLI exit or restart). */
  failInFlight(reason: DeliveryFailure, detail: string): void {
    const f = this.inFlight;
    if (!f) return;
    this.inFlight = undefined;
    const m = this.deps.inbox.peek();
    if (m?.id !== f.id) return;
    // The CLI is already gone or going: no need to ask tmux whether the session is.
    this.record(m, f.route, reason, detail, 0);
  }

  /**
   * A paste or render failure of `m`. A paste failure while the tmux session or pane 0 is
   * gone is the environment's, not the message's: it waits for the session check to
   * recreate it and does not count.
   */
  private async failed(m: InboxMessage, route: 'hook' | 'tmux', reason: DeliveryFailure, detail: string, generation: number): Promise<void> {
    if (reason === 'paste_failed') {
      const pane = (await this.deps.tmux.panes())?.[0];
      if (!pane || pane.dead || generation !== this.cli.generation) {
        const prev = this.attempts.get(m.id);
        this.attempts.set(m.id, { failures: prev?.failures ?? 0, reason: prev?.reason ?? '', retryAt: Date.now() + 1000 });
        this.log.debug({ id: m.id, error: detail }, 'cannot type the message into pane 0 while the CLI is not there; trying again when it is');
        return;
      }
    }
    const tried = this.attempts.get(m.id)?.failures ?? 0;
    this.record(m, route, reason, detail, RETRY_DELAYS_MS[Math.min(tried, RETRY_DELAYS_MS.length - 1)]!);
  }

  private record(m: InboxMessage, route: 'hook' | 'tmux', reason: DeliveryFailure, detail: string, delayMs: number): void {
    const text = `${reason}: ${detail}`.slice(0, MAX_REASON_CHARS);
    const failures = (this.attempts.get(m.id)?.failures ?? 0) + 1;
    this.attempts.set(m.id, { failures, reason: text, retryAt: Date.now() + delayMs });
    this.failuresInARow++;
    this.lastFailure = text;
    this.deps.metrics.inboxDeliveryFailures.inc({ route, reason });
    this.deps.metrics.inboxDeliveryFailing.set(this.failuresInARow);
    // One line per failed attempt at debug; the message's fate is logged once (setAside).
    this.log.debug({ id: m.id, route, attempt: failures, reason: text }, 'delivery attempt failed');
  }

  /** Moves `m` to the dead letters, logs it once, counts it, tells its sender; then the next message goes. */
  private setAside(m: InboxMessage, tried: Attempts): void {
    this.pumping = true;
    this.deps.inbox
      .deadLetter(m.id, tried.reason, tried.failures)
      .then((file) => {
        this.attempts.delete(m.id);
        if (!file) return;
        this.deps.metrics.inboxDeadLettered.inc({ source: m.source });
        this.deps.metrics.inboxDeadLetters.set(this.deps.inbox.deadLetters);
        this.deps.metrics.inboxDepth.set(this.deps.inbox.size);
        this.log.warn(
          { id: m.id.slice(0, 256), source: m.source, attempts: tried.failures, reason: tried.reason, file },
          `message set aside after ${tried.failures} failed attempts to hand it to the CLI; the messages behind it go on`,
        );
        void this.deps.outbox.emit('message_dead_lettered', { id: m.id, source: m.source, attempts: tried.failures, reason: tried.reason });
        try {
          this.deps.onDeadLetter?.(m, tried.reason, file);
        } catch (err) {
          this.log.warn({ err, id: m.id }, 'cannot tell the sender that the message was set aside');
        }
      })
      .catch((err: unknown) => {
        // The disk refuses: try again later rather than in a tight loop.
        tried.retryAt = Date.now() + 30_000;
        this.log.error({ err, id: m.id }, 'cannot set the message aside; trying again in 30 s');
      })
      .finally(() => {
        this.pumping = false;
        setImmediate(() => this.pump());
      });
  }
}

/** A message's delivery text could not be made (its large-message file not written). */
class RenderError extends Error {
  override name = 'RenderError';
}


/** An error as one bounded line (tmux's stderr never holds the message: it goes on stdin). */
function errorText(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ').slice(0, MAX_REASON_CHARS);
}

