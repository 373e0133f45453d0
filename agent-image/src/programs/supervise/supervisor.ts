/**
 * The supervisor's core: keeps the harness CLI alive in tmux pane 0, restarts it with a
 * doubling delay, detects a crash loop, recreates the tmux session when the server dies,
 * keeps the session id for resumption, and delivers inbox messages to the CLI (through an
 * armed hook, or typed into pane 0: handover.ts). HTTP, MCP and signals are wired in main.ts.
 *
 * Liveness is watched cheaply: the CLI's pid is probed with signal 0 every TICK_MS; the
 * tmux session itself is listed every SESSION_CHECK_MS.
 *
 * Delivery (handover.ts) hands the messages over one at a time; a bad message never
 * blocks the ones behind it, and many failures in a row (delivery itself broken, not one
 * message) make the supervisor not ready.
 */
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { PodContract, SupervisorTuning } from '../../contract/contract.ts';
import type { HarnessAdapter, HarnessContext } from '../../plugins/harness/adapter.ts';
import { writeFileAtomic } from '../../lib/files.ts';
import type { Logger } from '../../lib/log.ts';
import type { EventOutbox } from '../../core/outbox.ts';
import { pasteSafe } from '../../core/delivery.ts';
import { attrValue, renderedMessageId, type Inbox, type InboxMessage } from '../../core/inbox.ts';
import { Courier, NOT_READY_AFTER_FAILURES, type Handout } from './handover.ts';
import type { SupervisorMetrics } from './metrics.ts';
import { alive, settled, signalGroup, sleep } from './proc.ts';
import { CLI_PANE, SHELL_PANE, type PaneInfo, type Tmux } from './tmux.ts';


const TICK_MS = 100;
const SESSION_CHECK_MS = 2000;
/** A message handed to the CLI and not acknowledged within this time is offered again. */
const ACK_TIMEOUT_MS = 60_000;
/**
 * A message typed into a busy hook harness (Claude Code queues it and submits it after its
 * turn) fails only when no hook has been heard of for this long: a long turn is not a
 * failure, a CLI stuck busy for ever (an interrupted turn runs no Stop hook) is (ms).
 */
const BUSY_ACK_TIMEOUT_MS = 30 * 60_000;
/** After SessionStart, wait this long before typing into the pane (the prompt box needs to be up). */
const INPUT_SETTLE_MS = 1500;
/** A resumed CLI that exits by itself this soon did not get its session back. */
const RESUME_FAILED_MS = 10_000;
/** How long an exit waits for tmux to mark pane 0 dead (and so report its status or signal). */
const PANE_DEAD_WAIT_MS = 2000;
/** After this many failed resumes in a row the supervisor starts a new session rather than loop. */
const MAX_FAILED_RESUMES = 2;
/** A hook-less harness counts as ready for input this long after it started. */
const HOOKLESS_READY_MS = 3000;

export type CliState = 'starting' | 'idle' | 'busy' | 'exited' | 'stopping' | 'stopped';

export interface SupervisorDeps {
  contract: PodContract;
  ctx: HarnessContext;
  adapter: HarnessAdapter;
  tmux: Tmux;
  inbox: Inbox;
  outbox: EventOutbox;
  metrics: SupervisorMetrics;
  log: Logger;
  /** Environment for the panes (no secrets: people can read it in the pane). */
  paneEnv: Record<string, string>;
  /** argv of the shell in pane 1. */
  shell: string[];
  /** File pane 0's output is appended to (the container's stdout), or undefined. */
  teeFile?: string | undefined;
  /** Told of every hook call of the current CLI after the supervisor handled it (the PR rewake checks on `stop`). */
  onHookEvent?: ((event: string, input: Record<string, unknown>) => void) | undefined;
  /**
   * Told once of each message set aside after MAX_DELIVERY_ATTEMPTS failed attempts
   * (`reason`: the last failure, bounded; `file`: its dead letter), so the sender can be
   * answered (the Matrix bridge reacts and replies). Must not throw.
   */
  onDeadLetter?: ((m: InboxMessage, reason: string, file: string) => void) | undefined;
}

/** What `status` (MCP tool, /status) reports. */
export interface SupervisorStatus {
  agent: string;
  harness: string;
  state: CliState;
  sessionId: string;
  cliPid?: number | undefined;
  /** Seconds the current CLI process has been up. */
  uptimeSeconds?: number | undefined;
  restarts: number;
  crashLoop: boolean;
  lastExit?: { status?: number | undefined; signal?: number | undefined; at: string } | undefined;
  inboxPending: number;
  /** Messages set aside (inbox `dead/`) because they could not be delivered. */
  inboxDeadLetters: number;
  /** Failed delivery attempts in a row since the CLI last took a message, and the last reason. */
  deliveryFailures: number;
  lastDeliveryFailure?: string | undefined;
  hookArmed: boolean;
}

export class Supervisor {
  readonly deps: SupervisorDeps;
  /** Hands the inbox's messages to the CLI (handover.ts). */
  readonly courier: Courier;
  private readonly tuning: SupervisorTuning;
  private readonly log: Logger;
  state: CliState = 'starting';
  /** Bumped on every CLI (re)start: hooks of an older CLI are stale. */
  generation = 0;
  sessionId = '';
  cliPid: number | undefined;
  private startedAt = 0;
  /** Epoch ms from which pane 0 takes typed input (infinite until a hook harness's SessionStart). */
  inputReadyAt = Number.POSITIVE_INFINITY;
  restarts = 0;
  private consecutiveFailures = 0;
  /** Whether the running CLI was started to resume its session. */
  private resumed = false;
  /** Resumed starts in a row that exited by themselves within RESUME_FAILED_MS. */
  private failedResumes = 0;
  private restartTimes: number[] = [];
  crashLoop = false;
  lastExit: SupervisorStatus['lastExit'];
  /** Last hook call of the current CLI (epoch ms). */
  private lastHookAt = 0;
  private tickTimer: NodeJS.Timeout | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private lastSessionCheck = 0;
  private busyCheck = false;
  /** Last time tmux answered (for /healthz). */
  lastTmuxOk = Date.now();

  constructor(deps: SupervisorDeps) {
    this.deps = deps;
    this.tuning = deps.contract.supervisor;
    this.log = deps.log;
    this.courier = new Courier(deps, this);
    deps.inbox.on('message', () => this.pump());
  }

  private get sessionFile(): string {
    return path.join(this.deps.ctx.layout.stateDir, 'session.json');
  }

  /** Starts tmux and the CLI (a fresh tmux server: leftovers of an earlier supervisor are removed). */
  async start(): Promise<void> {
    this.sessionId = await this.loadSessionId();
    await this.deps.tmux.killServer();
    await this.launch('start');
    this.tickTimer = setInterval(() => this.tick(), TICK_MS);
    await this.deps.outbox.emit('agent_started', { harness: this.deps.adapter.kind, sessionId: this.sessionId });
  }

  private async loadSessionId(): Promise<string> {
    try {
      const { id } = JSON.parse(await readFile(this.sessionFile, 'utf8')) as { id?: unknown };
      if (typeof id === 'string' && /^[0-9a-f-]{36}$/.test(id)) return id;
    } catch {
      // first start
    }
    const id = randomUUID();
    await this.saveSessionId(id);
    return id;
  }

  private async saveSessionId(id: string): Promise<void> {
    await writeFileAtomic(this.sessionFile, JSON.stringify({ id, updatedAt: new Date().toISOString() }) + '\n', 0o600);
  }

  /** (Re)starts the CLI: respawns pane 0, or recreates the whole session when it is gone. */
  private async launch(reason: string): Promise<void> {
    if (this.state === 'stopping' || this.state === 'stopped') return;
    const { ctx, adapter, tmux } = this.deps;
    this.generation++;
    this.courier.cancelWaiters();
    this.courier.failInFlight('cli_exited', 'the CLI was restarted while taking it');
    if (this.failedResumes >= MAX_FAILED_RESUMES) {
      // The CLI refuses its own transcript (e.g. it was killed while rewriting it on resume):
      // a new session keeps the agent working; the old transcript stays on the home volume.
      const from = this.sessionId;
      this.sessionId = randomUUID();
      await this.saveSessionId(this.sessionId);
      this.failedResumes = 0;
      this.log.warn({ from, to: this.sessionId }, `the CLI exited ${MAX_FAILED_RESUMES} times right after resuming its session; starting a new session`);
      void this.deps.outbox.emit('session_reset', { from, to: this.sessionId });
    }
    const resume = await adapter.hasSession(ctx, this.sessionId);
    this.resumed = resume;
    const spec = adapter.launch(ctx, { id: this.sessionId, resume });
    const env = { ...spec.env, AGENT_SMITH_CLI_GENERATION: String(this.generation) };
    const panes = await tmux.panes();
    if (!panes) {
      await tmux.createSession({ cli: spec.argv, shell: this.deps.shell, cwd: ctx.workdir, env: { ...this.deps.paneEnv, ...env } });
    } else {
      await tmux.respawn(CLI_PANE, spec.argv, ctx.workdir, { ...this.deps.paneEnv, ...env }, !panes[0]?.dead);
    }
    if (this.deps.teeFile) await tmux.pipeOutput(CLI_PANE, this.deps.teeFile).catch((err: unknown) => this.log.warn({ err }, 'cannot tee pane 0 to stdout'));
    const info = (await tmux.panes())?.[0];
    this.cliPid = info && !info.dead ? info.pid : undefined;
    this.startedAt = Date.now();
    this.state = 'starting';
    this.inputReadyAt = adapter.hasHooks ? Number.POSITIVE_INFINITY : this.startedAt + HOOKLESS_READY_MS;
    this.lastTmuxOk = Date.now();
    this.deps.metrics.cliUp.set(this.cliPid ? 1 : 0);
    this.log.info({ reason, cliPid: this.cliPid, sessionId: this.sessionId, resume, generation: this.generation, argv: spec.argv[0] }, 'CLI started');
  }

  private tick(): void {
    if (this.state === 'stopping' || this.state === 'stopped' || this.restartTimer || this.busyCheck) return;
    const now = Date.now();
    if (this.cliPid && !alive(this.cliPid)) {
      this.cliPid = undefined;
      this.run(this.onExit());
      return;
    }
    if (this.cliPid && now - this.startedAt >= this.tuning.stableAfterSeconds * 1000 && (this.consecutiveFailures > 0 || this.crashLoop)) {
      this.consecutiveFailures = 0;
      if (this.crashLoop) {
        this.crashLoop = false;
        this.deps.metrics.crashLoop.set(0);
        this.log.info({ uptimeSeconds: Math.round((now - this.startedAt) / 1000) }, 'CLI recovered from the crash loop');
        void this.deps.outbox.emit('crash_loop_recovered', {});
      }
    }
    if (now - this.lastSessionCheck >= SESSION_CHECK_MS) {
      this.lastSessionCheck = now;
      this.run(this.checkSession());
    }
    if (this.courier.inFlight && now - this.courier.inFlight.at > ACK_TIMEOUT_MS) {
      const working = this.deps.adapter.hasHooks && this.state === 'busy' && now - this.lastHookAt < BUSY_ACK_TIMEOUT_MS;
      if (!working) this.courier.failInFlight('not_acknowledged', `not taken by the CLI within ${Math.round((now - this.courier.inFlight.at) / 1000)} s`);
    }
    if (this.deps.inbox.size > 0 && !this.courier.inFlight) this.pump();
  }

  /** Runs a step of the loop exclusively (no tick while it runs); errors are logged. */
  private run(p: Promise<void>): void {
    this.busyCheck = true;
    p.catch((err: unknown) => this.log.error({ err }, 'supervisor step failed')).finally(() => {
      this.busyCheck = false;
    });
  }

  private async checkSession(): Promise<void> {
    const panes = await this.deps.tmux.panes();
    if (!panes) {
      this.log.warn({}, 'tmux session main is gone (server killed?); recreating it');
      this.deps.metrics.cliRestarts.inc({ reason: 'tmux_lost' });
      this.restarts++;
      await this.launch('tmux session lost');
      return;
    }
    this.lastTmuxOk = Date.now();
    const shell = panes.find((p) => p.index === 1);
    if (!shell) {
      await this.deps.tmux.cmd('split-window', '-d', '-v', '-l', '30%', '-t', CLI_PANE, '-c', this.deps.ctx.workdir, '--', ...this.deps.shell);
    } else if (shell.dead) {
      await this.deps.tmux.respawn(SHELL_PANE, this.deps.shell, this.deps.ctx.workdir, {});
    }
  }

  /**
   * The panes once tmux knows how the processes of `indices` ended (see settled()), or
   * after `waitMs`: a process is gone from /proc before tmux reaps it, and until then tmux
   * knows neither its exit status nor its signal (a kill would pass for an exit).
   * Undefined when the session is gone.
   */
  private async deadPanes(indices: number[], waitMs = PANE_DEAD_WAIT_MS): Promise<PaneInfo[] | undefined> {
    let panes = await this.deps.tmux.panes();
    const pending = () => panes?.some((p) => indices.includes(p.index) && !settled(p));
    for (let waited = 0; pending() && waited < waitMs; waited += 50) {
      await sleep(50);
      panes = await this.deps.tmux.panes();
    }
    return panes;
  }

  private async onExit(): Promise<void> {
    const panes = await this.deadPanes([0]);
    const pane = panes?.[0];
    const now = Date.now();
    const uptime = now - this.startedAt;
    this.lastExit = { status: pane?.deadStatus, signal: pane?.deadSignal, at: new Date(now).toISOString() };
    this.state = 'exited';
    this.generation++;
    this.courier.cancelWaiters();
    this.courier.failInFlight('cli_exited', `the CLI exited while taking it (${pane?.deadSignal ? `signal ${pane.deadSignal}` : `status ${pane?.deadStatus ?? 'unknown'}`})`);
    this.deps.metrics.cliUp.set(0);
    if (uptime >= this.tuning.stableAfterSeconds * 1000) this.consecutiveFailures = 0;
    this.consecutiveFailures++;
    this.restarts++;
    this.restartTimes = this.restartTimes.filter((t) => now - t < this.tuning.crashLoopWindowSeconds * 1000);
    this.restartTimes.push(now);
    const delayMs = Math.min(this.tuning.restartInitialDelayMs * 2 ** (this.consecutiveFailures - 1), this.tuning.restartMaxDelayMs);
    const reason = !panes ? 'tmux_lost' : pane?.deadSignal ? 'signal' : pane?.deadStatus !== undefined ? 'exit' : 'unknown';
    // Exited by itself (not killed) soon after a resume: the session did not come back.
    this.failedResumes = this.resumed && reason === 'exit' && uptime < RESUME_FAILED_MS ? this.failedResumes + 1 : 0;
    this.deps.metrics.cliRestarts.inc({ reason });
    this.log.warn({ ...this.lastExit, uptimeMs: uptime, attempt: this.consecutiveFailures, delayMs }, 'CLI exited; restarting after delay');
    void this.deps.outbox.emit('cli_restarted', { ...this.lastExit, attempt: this.consecutiveFailures, delayMs });
    if (!this.crashLoop && this.restartTimes.length >= this.tuning.crashLoopRestarts) {
      this.crashLoop = true;
      this.deps.metrics.crashLoop.set(1);
      this.log.error(
        { restarts: this.restartTimes.length, windowSeconds: this.tuning.crashLoopWindowSeconds, lastExit: this.lastExit },
        `crash loop: the CLI exited ${this.restartTimes.length} times in ${this.tuning.crashLoopWindowSeconds}s; readiness is false until it stays up ${this.tuning.stableAfterSeconds}s. Attach with 'agent-smith attach' or read the pane output in the container log`,
      );
      void this.deps.outbox.emit('crash_loop', { restarts: this.restartTimes.length, windowSeconds: this.tuning.crashLoopWindowSeconds, lastExit: this.lastExit });
    }
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      this.run(this.launch(`restart ${this.consecutiveFailures}`));
    }, delayMs);
  }

  /** A hook call from the CLI (`agent-smith hook <event>`). Stale generations are ignored. */
  async onHook(event: string, generation: number | undefined, input: Record<string, unknown>): Promise<void> {
    this.deps.metrics.hookEvents.inc({ event });
    if (generation !== undefined && generation !== this.generation) return;
    this.lastHookAt = Date.now();
    const sessionId = typeof input.session_id === 'string' ? input.session_id : undefined;
    if (sessionId && sessionId !== this.sessionId && /^[0-9a-f-]{36}$/.test(sessionId)) {
      this.log.info({ from: this.sessionId, to: sessionId }, 'session id changed; keeping the new one for resumption');
      this.sessionId = sessionId;
      await this.saveSessionId(sessionId);
    }
    switch (event) {
      case 'session-start':
        this.state = 'idle';
        this.inputReadyAt = Date.now() + INPUT_SETTLE_MS;
        setTimeout(() => this.pump(), INPUT_SETTLE_MS + 10).unref();
        break;
      case 'prompt-submit': {
        this.state = 'busy';
        // Any pending message the CLI submits is taken, also one offered again after its
        // ack timeout (a busy CLI queues what is typed and submits it later).
        // The header holds the id as written for the CLI (attrValue, then pasteSafe): compare in that form.
        const shown = typeof input.prompt === 'string' ? renderedMessageId(input.prompt) : undefined;
        const taken = shown ? this.deps.inbox.findPending((p) => pasteSafe(attrValue(p.id)) === shown) : undefined;
        if (taken) await this.ack(taken.id, 'tmux');
        break;
      }
      case 'stop':
        this.state = 'idle';
        break;
      case 'notification':
        this.log.info({ message: input.message }, 'CLI notification');
        break;
    }
    this.deps.onHookEvent?.(event, input);
  }

  /**
   * Long poll of the Stop hook's inbox waiter: resolves with the next message, 'stale' when
   * the waiter's CLI is not the current one (or a newer waiter replaced it), or 'timeout'.
   */
  waitForMessage(generation: number, timeoutMs: number): Promise<Handout | 'stale' | 'timeout'> {
    return this.courier.waitForMessage(generation, timeoutMs);
  }

  /** Called when a waiter's connection closed before it got anything. */
  dropWaiter(generation: number): void {
    this.courier.dropWaiter(generation);
  }

  get hookArmed(): boolean {
    return this.courier.hookArmed;
  }

  /** The CLI took a message (the hook printed it, or UserPromptSubmit echoed its id). */
  ack(id: string, route: 'hook' | 'tmux'): Promise<boolean> {
    return this.courier.ack(id, route);
  }

  /** Hands the oldest pending message to the CLI when it can take one (handover.ts). */
  pump(): void {
    this.courier.pump();
  }

  status(): SupervisorStatus {
    return {
      agent: this.deps.contract.agent.name,
      harness: this.deps.adapter.kind,
      state: this.state,
      sessionId: this.sessionId,
      cliPid: this.cliPid,
      uptimeSeconds: this.cliPid ? Math.round((Date.now() - this.startedAt) / 1000) : undefined,
      restarts: this.restarts,
      crashLoop: this.crashLoop,
      lastExit: this.lastExit,
      inboxPending: this.deps.inbox.size,
      inboxDeadLetters: this.deps.inbox.deadLetters,
      deliveryFailures: this.courier.failuresInARow,
      lastDeliveryFailure: this.courier.lastFailure,
      hookArmed: this.courier.hookArmed,
    };
  }

  /**
   * Ready: the CLI is alive, not in a crash loop, and takes messages: after
   * NOT_READY_AFTER_FAILURES failed delivery attempts in a row (more than one message's
   * worth, so delivery itself is broken) it is not ready until a message goes through.
   */
  ready(): { ok: boolean; reason: string } {
    if (this.crashLoop) return { ok: false, reason: 'crash loop' };
    if (!this.cliPid) return { ok: false, reason: `CLI ${this.state}` };
    if (this.courier.failuresInARow >= NOT_READY_AFTER_FAILURES) {
      return { ok: false, reason: `inbox delivery failing: ${this.courier.failuresInARow} attempts in a row, last: ${this.courier.lastFailure ?? 'unknown'}` };
    }
    return { ok: true, reason: 'CLI running' };
  }

  /**
   * Graceful stop (SIGTERM): SIGTERM to the process groups of the CLI and the shell, SIGKILL
   * after `stopGraceSeconds`, then the tmux server goes. Resolves the exit statuses.
   */
  async stop(): Promise<{ cli?: number | undefined; shell?: number | undefined; killed: boolean }> {
    this.state = 'stopping';
    if (this.tickTimer) clearInterval(this.tickTimer);
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.courier.cancelWaiters();
    // A message being typed into pane 0 finishes (and, without hooks, is acknowledged)
    // before the CLI goes, or the next start would type it again.
    for (const until = Date.now() + 3000; this.courier.pumping && Date.now() < until; ) await sleep(50);
    const { tmux } = this.deps;
    const running = ((await tmux.panes()) ?? []).filter((p) => !p.dead);
    for (const p of running) signalGroup(p.pid, 'SIGTERM');
    // An interactive shell ignores SIGTERM (bash(1)); SIGHUP, its terminal closing, ends it.
    const shell = running.find((p) => p.index === 1);
    if (shell) signalGroup(shell.pid, 'SIGHUP');
    // Gone means its end is known (pane dead, with a status or a signal), not only gone
    // from /proc: a multi-threaded CLI can linger while its other threads exit.
    const indices = running.map((p) => p.index);
    let after = (await this.deadPanes(indices, this.tuning.stopGraceSeconds * 1000)) ?? [];
    const lingering = after.filter((p) => indices.includes(p.index) && !settled(p));
    const killed = lingering.length > 0;
    if (killed) {
      this.log.warn({ pids: lingering.map((p) => p.pid) }, 'CLI or shell still running after SIGTERM; sending SIGKILL');
      for (const p of lingering) signalGroup(p.pid, 'SIGKILL');
      after = (await this.deadPanes(indices)) ?? [];
    }
    const statusOf = (i: number) => {
      const p = after.find((x) => x.index === i);
      return p?.deadSignal ? 128 + p.deadSignal : p?.deadStatus;
    };
    const result = { cli: statusOf(0), shell: statusOf(1), killed };
    await tmux.killServer();
    this.state = 'stopped';
    this.cliPid = undefined;
    this.deps.metrics.cliUp.set(0);
    return result;
  }
}






