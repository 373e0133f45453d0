/**
 * The PR rewake (DESIGN.md flow 3): when the CLI goes idle, ask the PR watcher what on
 * the agent's pull requests waits for an answer, and put one inbox message naming what
 * is new. The supervisor's ordinary inbox delivery then wakes the CLI.
 *
 * Two triggers, one path:
 * - Stop (harnesses with hooks, Claude Code): `agent-smith hook stop` is the Stop hook
 *   command. It reports idle (`POST /hooks/stop`), which runs a check here at once, then
 *   long-polls the inbox and exits 2 with the message on stderr; with `asyncRewake` that
 *   wakes the session with the list (code.claude.com/docs/en/hooks#stop). We chose this
 *   over a second, synchronous Stop hook that would query GitHub itself: one Stop hook
 *   stays the one delivery path (Matrix and PR messages queue in the same durable inbox,
 *   nothing is lost when the CLI restarts mid-check), the GitHub client and its caches
 *   live in one long-running process, and a stop is never slowed by the network.
 * - Poll (every harness; the only trigger for harnesses without hooks): every
 *   `watchPullRequests.intervalSeconds` while the CLI is idle, so a comment that arrives
 *   while the agent sleeps wakes it. Idle is the Stop hook's report for hook harnesses;
 *   for the others, pane 0's output unchanged since the previous poll, nothing in the inbox.
 *
 * Never twice: the keys of the comments a rewake named are kept on the home volume
 * (`<stateDir>/github/notified.json`), so they never rewake again, across restarts; the
 * inbox message id is derived from them as well (a retried put is a duplicate).
 *
 * Loop guard: Claude Code stops honouring Stop-hook blocks after several in a row
 * (CLAUDE_CODE_STOP_HOOK_BLOCK_CAP, 8 by default), and a bot that answers every reply
 * would otherwise keep the agent busy for ever. So PR rewakes in a row are counted; any
 * other input (an inbox message from another source, a prompt typed in the pane) or a
 * check that finds nothing unanswered resets the count; at `maxConsecutiveRewakes` the
 * rewake is withheld (logged once, counted) and its comments stay new for later.
 * `stop_hook_active` in the Stop input says Claude Code is continuing because of a Stop
 * hook; 2.1.330 sets it on the Stop that ends any turn our waiter started (exit 2), a
 * Matrix message's as much as a PR rewake's. When the turn was a PR rewake, the Stop gets
 * no immediate check (no back-to-back blocks): the next idle poll does it, an interval
 * later. After other turns the check runs at once, so a comment that came in while the
 * agent worked is named as soon as it stops.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { writeFileAtomic } from '../../lib/files.ts';
import type { Logger } from '../../lib/log.ts';
import { cutText } from '../../core/delivery.ts';
import { MAX_MESSAGE_CHARS, type Inbox, type InboxMessage } from '../../core/inbox.ts';
import type { GitHubMetrics } from './metrics.ts';
import { rewakeText, type UnansweredItem } from './unanswered.ts';
import type { CheckResult } from './watcher.ts';

/** Inbox `source` of PR rewakes. */
export const REWAKE_SOURCE = 'github';
/** How many comment keys notified.json remembers (oldest forgotten first). */
export const NOTIFIED_MEMORY = 20_000;
/** Most comments one rewake names (each line is at most ~400 characters; the inbox takes 64 KiB). */
export const MAX_ITEMS_PER_REWAKE = 25;
/** On Stop, how long to wait for the Stop hook's inbox waiter to arm before putting the message (ms). */
const ARM_WAIT_MS = 2000;

/** The comment keys that already caused a rewake, persisted on the home volume. */
export class NotifiedStore {
  private readonly file: string;
  private keys: string[] = [];
  private set = new Set<string>();

  constructor(file: string) {
    this.file = file;
  }

  /** Loads the file; a missing or unreadable file is an empty store. */
  async open(): Promise<void> {
    try {
      const data = JSON.parse(await readFile(this.file, 'utf8')) as { keys?: unknown };
      this.keys = Array.isArray(data.keys) ? data.keys.filter((k): k is string => typeof k === 'string') : [];
    } catch {
      this.keys = [];
    }
    this.set = new Set(this.keys);
  }

  has(key: string): boolean {
    return this.set.has(key);
  }

  /** Remembers `keys` and writes the file (atomically). */
  async add(keys: readonly string[]): Promise<void> {
    for (const k of keys) {
      if (this.set.has(k)) continue;
      this.set.add(k);
      this.keys.push(k);
    }
    if (this.keys.length > NOTIFIED_MEMORY) for (const old of this.keys.splice(0, this.keys.length - NOTIFIED_MEMORY)) this.set.delete(old);
    await writeFileAtomic(this.file, JSON.stringify({ keys: this.keys }) + '\n', 0o600);
  }
}

/** Counts PR rewakes in a row; pure. */
export class RewakeGate {
  readonly limit: number;
  consecutive = 0;

  constructor(limit: number) {
    this.limit = limit;
  }

  /** Whether another rewake may go now. */
  get open(): boolean {
    return this.consecutive < this.limit;
  }

  delivered(): void {
    this.consecutive++;
  }

  /** Other input reached the agent, or nothing is unanswered: the run of rewakes ended. */
  reset(): void {
    this.consecutive = 0;
  }
}

/** The inbox message id of a rewake naming `items`: stable for the same set of comments. */
export function rewakeId(items: readonly UnansweredItem[]): string {
  const keys = items.map((i) => i.key).sort();
  return `github-${createHash('sha256').update(keys.join(',')).digest('hex').slice(0, 24)}`;
}

/** What the rewake needs to know of the supervisor. */
export interface IdleProbe {
  /** Whether the harness reports idle through hooks (Claude Code). */
  readonly hasHooks: boolean;
  /** The supervisor's view (state, inboxPending, hookArmed, cliPid, uptimeSeconds). */
  status(): { state: string; inboxPending: number; hookArmed: boolean; cliPid?: number | undefined; uptimeSeconds?: number | undefined };
  /** Pane 0's visible text (hook-less idle detection); rejects when tmux cannot answer. */
  capturePane(): Promise<string>;
}

export interface PrRewakeOptions {
  watcher: { check(): Promise<CheckResult> };
  inbox: Inbox;
  probe: IdleProbe;
  login: string;
  intervalSeconds: number;
  maxConsecutiveRewakes: number;
  stateDir: string;
  metrics: GitHubMetrics;
  log: Logger;
  /** The event outbox (`rewake` events). */
  emit: (type: string, data: Record<string, unknown>) => Promise<void>;
}

export type RewakeTrigger = 'stop' | 'poll';

/**
 * The rewake of one agent (see the module comment): `start()` loads the notified keys and
 * starts the idle poll, `onHook()` takes the CLI's hook calls, `runCheck()` runs one
 * check, `stop()` ends the poll. Checks never throw; failures are logged.
 */
export class PrRewake {
  private readonly opts: PrRewakeOptions;
  private readonly notified: NotifiedStore;
  readonly gate: RewakeGate;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private lastPane: string | undefined;
  private limitLogged = false;
  /** Whether the running CLI has reported a Stop yet. */
  private sawStop = false;

  constructor(opts: PrRewakeOptions) {
    this.opts = opts;
    this.notified = new NotifiedStore(path.join(opts.stateDir, 'github', 'notified.json'));
    this.gate = new RewakeGate(opts.maxConsecutiveRewakes);
  }

  /** Loads the notified keys, listens for other input, starts the idle poll. */
  async start(): Promise<void> {
    await this.notified.open();
    this.opts.inbox.on('message', (m: InboxMessage) => {
      if (m.source !== REWAKE_SOURCE) this.otherInput(`inbox message from ${m.source}`);
    });
    this.timer = setInterval(() => void this.poll(), this.opts.intervalSeconds * 1000);
    this.timer.unref();
    this.opts.log.info({ intervalSeconds: this.opts.intervalSeconds, maxConsecutiveRewakes: this.opts.maxConsecutiveRewakes }, 'PR rewake watching the agent\'s pull requests');
  }

  /** Ends the idle poll; a check already running finishes. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /**
   * A hook call of the CLI (after the supervisor handled it). `stop` runs a check unless
   * `stop_hook_active`; a `prompt-submit` that is not a PR rewake is other input.
   */
  onHook(event: string, input: Record<string, unknown>): void {
    if (event === 'prompt-submit') {
      const prompt = typeof input.prompt === 'string' ? input.prompt : '';
      if (!prompt.includes(`source="${REWAKE_SOURCE}"`)) this.otherInput('prompt');
      return;
    }
    if (event === 'session-start') this.sawStop = false;
    if (event !== 'stop') return;
    this.sawStop = true;
    this.opts.log.debug({ stopHookActive: input.stop_hook_active === true }, 'Stop reported');
    if (input.stop_hook_active === true && this.gate.consecutive > 0) {
      this.opts.log.info({ consecutive: this.gate.consecutive }, 'Stop after a PR rewake (stop_hook_active): no PR check now; the idle poll checks an interval later');
      return;
    }
    void this.runCheck('stop');
  }

  private otherInput(what: string): void {
    if (this.gate.consecutive > 0) this.opts.log.debug({ what, after: this.gate.consecutive }, 'other input: the run of PR rewakes ended');
    this.gate.reset();
    this.limitLogged = false;
  }

  /** The poll tick: checks when the CLI is idle. */
  private async poll(): Promise<void> {
    if (this.running) return;
    if (await this.idle()) await this.runCheck('poll');
  }

  private async idle(): Promise<boolean> {
    const s = this.opts.probe.status();
    if (s.inboxPending > 0 || !s.cliPid) return false;
    // Hooks: idle since the Stop hook's report, with its inbox waiter armed; before the
    // CLI's first Stop, SessionStart's idle (the prompt box waits; delivery is typed).
    if (this.opts.probe.hasHooks) return s.state === 'idle' && (s.hookArmed || !this.sawStop);
    // No hooks: idle is the pane's output standing still for a whole interval.
    let pane: string;
    try {
      pane = await this.opts.probe.capturePane();
    } catch {
      return false;
    }
    const quiet = this.lastPane === pane;
    this.lastPane = pane;
    return quiet && (s.uptimeSeconds ?? 0) >= 3;
  }

  /** Runs one check and puts a rewake when something new waits; one check at a time. Never throws. */
  runCheck(trigger: RewakeTrigger): Promise<void> {
    if (this.running) return this.running;
    this.running = this.check(trigger)
      .catch((err: unknown) => this.opts.log.warn({ err, trigger }, 'PR check failed'))
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  private async check(trigger: RewakeTrigger): Promise<void> {
    const { log, metrics } = this.opts;
    const result = await this.opts.watcher.check();
    metrics.checks.inc({ trigger, result: result.complete ? 'ok' : 'incomplete' });
    if (result.skipped?.pullRequests) metrics.skipped.inc({ what: 'pull_request' }, result.skipped.pullRequests);
    if (result.skipped?.items) metrics.skipped.inc({ what: 'item' }, result.skipped.items);
    if (result.complete) metrics.unanswered.set(result.items.length);
    if (result.complete && result.items.length === 0) this.otherInput('nothing unanswered');
    const allFresh = result.items.filter((i) => !this.notified.has(i.key));
    // A bounded message (the inbox takes at most 64 KiB); the rest are new at the next check.
    const fresh = allFresh.slice(0, MAX_ITEMS_PER_REWAKE);
    log.debug({ trigger, pullRequests: result.pullRequests, unanswered: result.items.length, fresh: allFresh.length }, 'PR check');
    if (!fresh.length) return;
    if (!this.gate.open) {
      metrics.suppressed.inc({ reason: 'consecutive_limit' });
      if (!this.limitLogged) {
        this.limitLogged = true;
        log.warn(
          { consecutive: this.gate.consecutive, limit: this.gate.limit, waiting: fresh.map((i) => i.key) },
          `not rewaking for PR comments: ${this.gate.consecutive} PR rewakes in a row without other input (limit watchPullRequests.maxConsecutiveRewakes); they wait until someone else talks to the agent`,
        );
      }
      return;
    }
    if (trigger === 'stop' && this.opts.probe.hasHooks) {
      // The Stop hook reports idle before it starts waiting on the inbox: give the waiter a
      // moment to arm, so the message goes through it (exit 2) rather than typed into the pane.
      for (const until = Date.now() + ARM_WAIT_MS; !this.opts.probe.status().hookArmed && Date.now() < until; ) await sleep(50);
    }
    const id = rewakeId(fresh);
    const prs = [...new Set(fresh.map((i) => `${i.repo}#${i.number}`))];
    const keys = fresh.map((i) => i.key);
    // 25 items of at most a few KiB each (watcher.ts bounds every field) can still pass the
    // inbox's limit: a rewake cut short beats a rewake refused at every check.
    const text = rewakeText(fresh, this.opts.login, result.items.length - allFresh.length, allFresh.length - fresh.length);
    const { duplicate } = await this.opts.inbox.put({
      id,
      source: REWAKE_SOURCE,
      text: text.length > MAX_MESSAGE_CHARS ? `${cutText(text, MAX_MESSAGE_CHARS - 64)}\n[... cut: open the pull requests for the rest]` : text,
      meta: { pull_requests: prs.join(' ').slice(0, 1024), comments: keys.join(' ').slice(0, 1024) },
    });
    await this.notified.add(keys);
    if (duplicate) return;
    this.gate.delivered();
    metrics.rewakes.inc({ trigger });
    log.info({ trigger, id, pullRequests: prs, comments: keys, consecutive: this.gate.consecutive }, 'PR rewake: new unanswered comments put in the inbox');
    await this.opts.emit('rewake', { source: REWAKE_SOURCE, trigger, id, pullRequests: prs, comments: keys.length });
  }
}
