/**
 * `agent-smith supervise`: wiring of the supervisor (contract, tmux, inbox, HTTP, MCP,
 * signals). Runs as the agent container's main process behind `tini -g`.
 *
 * Environment: AGENT_SMITH_CONTRACT (layout.ts), AGENT_SMITH_PORT
 * (public port, default 8080; 0 = any), AGENT_SMITH_LOCAL_PORT (loopback, default 15090),
 * AGENT_SMITH_TMUX_SOCKET (default: tmux's own socket, found by `tmux attach -t main`),
 * AGENT_SMITH_MATRIX_TIMELINE_LIMIT (timeline events per room per /sync, default 50).
 */
import { execFileSync } from 'node:child_process';
import { constants as fsConstants, existsSync, openSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MATRIX_ACCESS_TOKEN_FILE, SUPERVISOR_PORT, type PodContract } from '../../contract/contract.ts';
import { loadContract } from '../../contract/load.ts';
import { layoutTrustEnv } from '../../contract/trust.ts';
import { ROSTER_JSON } from '../../contract/roster.ts';
import { writeFileAtomic } from '../../lib/files.ts';
import { ConsumerMetrics } from '../../plugins/events/consume.ts';
import type { EventLog } from '../../plugins/events/log.ts';
import { EventMetrics } from '../../plugins/events/metrics.ts';
import { EventOutbox } from '../../core/outbox.ts';
import { eventTools } from '../../plugins/events/tools.ts';
import { harnessContext, localPort } from '../../plugins/harness/context.ts';
import { adapterFor } from '../../plugins/harness/index.ts';
import { layoutFromEnv } from '../../contract/layout.ts';
import { makeLogger, type Logger } from '../../lib/log.ts';
import { MatrixBridge } from '../../plugins/matrix/bridge.ts';
import { MatrixMetrics } from '../../plugins/matrix/metrics.ts';
import { ApprovalMetrics } from '../../plugins/matrix/approvals.ts';
import { matrixTools } from '../../plugins/matrix/tools.ts';
import type { PrRewake } from '../../plugins/github/index.ts';
import { filterSubject, token } from '../../plugins/events/subject.ts';
import { ReviewFanout } from '../../plugins/review/fanout.ts';
import { serveSupervisor } from './http.ts';
import { Inbox, type InboxMessage } from '../../core/inbox.ts';
import type { McpToolDeps, Notification } from './mcp.ts';
import { SupervisorMetrics } from './metrics.ts';
import { Supervisor } from './supervisor.ts';
import { CLI_PANE, Tmux } from './tmux.ts';

function version(): string {
  try {
    const file = path.resolve(import.meta.dirname, '../../../../package.json');
    return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}

function tmuxConfig(agent: string): string {
  return [
    '# Written by agent-smith supervise. Pane 0: the coding-agent CLI; pane 1: a shell.',
    'set -g remain-on-exit on',
    'set -g exit-empty off',
    'set -g history-limit 50000',
    'set -g mouse on',
    `set -g status-left "[${agent.replaceAll('"', '')}] "`,
    'set -g status-left-length 40',
    '',
  ].join('\n');
}

/**
 * A FIFO that pane 0's output is piped into (`tmux pipe-pane 'cat >> FIFO'`) and that
 * this process copies to its stdout, the container log. A FIFO rather than
 * /proc/self/fd/1, which cannot be opened when stdout is a socket. Opened read-write so it
 * never reports end-of-file when `cat` is replaced after a restart (fifo(7)).
 * @returns the FIFO path, or undefined (logged) when none can be made.
 */
async function paneOutputFifo(log: Logger): Promise<string | undefined> {
  const dir = await mkdtemp(path.join(tmpdir(), 'agent-smith-'));
  const fifo = path.join(dir, 'pane0.fifo');
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  try {
    execFileSync('mkfifo', ['-m', '600', fifo]);
    const fd = openSync(fifo, fsConstants.O_RDWR | fsConstants.O_NONBLOCK);
    const stream = new Socket({ fd, readable: true, writable: false });
    stream.on('error', (err) => log.warn({ err }, 'pane output tee failed'));
    stream.pipe(process.stdout);
    stream.unref();
    return fifo;
  } catch (err) {
    log.warn({ err }, 'cannot tee pane 0 to stdout (no mkfifo?); the pane output is only in tmux');
    return undefined;
  }
}

/** The agent's environment variables that hold credential stubs (contract egress.credentials[].env). */
export function stubEnv(contract: PodContract): Record<string, string> {
  return Object.fromEntries(contract.egress.credentials.flatMap((c) => c.env.map((name) => [name, c.stub] as const)));
}

/** The event log: the on-disk outbox always (a bounded local log without spec.events), NATS JetStream with spec.events (its client loads only then). */
async function openEventLog(contract: PodContract, stateDir: string, log: Logger, metrics: SupervisorMetrics): Promise<{ outbox: EventOutbox; eventLog: EventLog | undefined }> {
  const eventMetrics = new EventMetrics(metrics.registry);
  const outbox = new EventOutbox({ stateDir, agent: contract.agent.name, team: contract.agent.team, log, maxEvents: contract.events?.outboxMaxEvents, metrics: eventMetrics });
  await outbox.open();
  const eventLog = contract.events ? new (await import('../../plugins/events/log.ts')).EventLog({ config: contract.events, outbox, log, metrics: eventMetrics }) : undefined;
  eventLog?.start();
  return { outbox, eventLog };
}

/** The Matrix bridge of spec.matrix (not started), or undefined. */
function matrixBridge(contract: PodContract, deps: { stateDir: string; rosterFile: string; inbox: Inbox; outbox: EventOutbox; metrics: SupervisorMetrics; log: Logger; env: NodeJS.ProcessEnv }): MatrixBridge | undefined {
  if (!contract.matrix) return undefined;
  const { metrics, env } = deps;
  return new MatrixBridge({
    config: contract.matrix,
    agentName: contract.agent.name,
    tokenFile: MATRIX_ACCESS_TOKEN_FILE,
    rosterFile: deps.rosterFile,
    stateDir: deps.stateDir,
    inbox: deps.inbox,
    metrics: new MatrixMetrics(metrics.registry),
    approvalMetrics: new ApprovalMetrics(metrics.registry),
    log: deps.log,
    outbox: deps.outbox,
    onDelivered: (m) => metrics.inboxReceived.inc({ source: m.source }),
    ...(env.AGENT_SMITH_MATRIX_TIMELINE_LIMIT ? { timelineLimit: Number(env.AGENT_SMITH_MATRIX_TIMELINE_LIMIT) } : {}),
  });
}

/**
 * A message set aside (supervisor.ts) is answered where a person can see it: a Matrix
 * message gets ⚠️ and a short notice in its thread (through the bridge's public
 * react/reply; the loop guard applies). Other sources have no person to answer: the
 * warning line, the metric and the `message_dead_lettered` event say it.
 */
function senderNotifier(agentName: string, bridge: MatrixBridge | undefined, log: Logger): (m: InboxMessage, reason: string) => void {
  return (m, reason) => {
    const { room, event, thread } = m.meta;
    if (!bridge || m.source !== 'matrix' || !room || !event) return;
    const what = reason.split(':')[0] ?? 'delivery failed';
    const text = `⚠️ ${agentName} could not take this message (${what}, after several attempts). It is kept aside; the people who run this agent can find it in the supervisor's log. Please send it again, shorter or differently.`;
    const failed = (err: unknown) => log.warn({ room, event, error: err instanceof Error ? err.message.slice(0, 200) : String(err).slice(0, 200) }, 'cannot tell the Matrix sender that the message was set aside');
    bridge.react({ room, event, key: '⚠️' }).catch(failed);
    bridge.reply({ room, event, ...(thread ? { thread } : {}), text }).catch(failed);
  };
}

/** Review fan-out (DESIGN.md flow 4): teammates' pr_opened events reach this agent's inbox from the event log (a durable consumer per agent). */
function consumeReviewRequests(contract: PodContract, eventLog: EventLog | undefined, fanout: ReviewFanout, metrics: SupervisorMetrics): { stop(): Promise<void> } | undefined {
  if (!eventLog || !contract.agent.team) return undefined;
  return eventLog.consume(
    {
      durable: `review-fanout-${token(contract.agent.name)}`,
      filterSubject: filterSubject(eventLog.config.subjectPrefix, { team: contract.agent.team, type: 'pr_opened' }),
      metrics: new ConsumerMetrics(metrics.registry),
    },
    async (event) => void (await fanout.receive(event)),
  );
}

/** The MCP server's own tools (status, notify) and what they need from the supervisor. */
function mcpDeps(supervisor: Supervisor, outbox: EventOutbox, metrics: SupervisorMetrics, log: Logger): McpToolDeps {
  const notifications: Notification[] = [];
  return {
    status: () => supervisor.status(),
    notify: async (n) => {
      notifications.push(n);
      if (notifications.length > 20) notifications.shift();
      log.info({ level: n.level, text: n.text }, 'agent notification');
      await outbox.emit('notification', { level: n.level, text: n.text });
    },
    recentNotifications: () => [...notifications],
    metrics,
    log,
    version: version(),
  };
}

/** What stops on SIGTERM/SIGINT, in order: the watchers, then the CLI, shell and bridge, then the event log and HTTP. */
interface Running {
  supervisor: Supervisor;
  bridge: MatrixBridge | undefined;
  rewake: PrRewake | undefined;
  reviews: { stop(): Promise<void> } | undefined;
  outbox: EventOutbox;
  eventLog: EventLog | undefined;
  http: { close(): Promise<void> };
  log: Logger;
}

/** Stops everything on the first SIGTERM or SIGINT, then exits (0, or 1 when stopping failed). */
function stopOnSignals(r: Running): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    r.log.info({ signal }, 'stopping: SIGTERM to the CLI and the shell');
    r.rewake?.stop();
    void r.reviews?.stop();
    Promise.all([r.supervisor.stop(), r.bridge?.stop()])
      .then(async ([result]) => {
        r.log.info(result, 'CLI and shell stopped');
        await r.outbox.emit('agent_stopped', { signal, ...result });
        await r.eventLog?.stop();
        await r.http.close();
        process.exit(0);
      })
      .catch((err: unknown) => {
        r.log.error({ err }, 'stop failed');
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/** Runs the supervisor until SIGTERM/SIGINT. @throws ContractError on a bad contract. */
export async function runSupervise(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const log = makeLogger('agent-smith-supervisor');
  const layout = layoutFromEnv(env);
  const contract = loadContract(layout.contractFile);
  const ctx = harnessContext(contract, layout, env);
  const adapter = adapterFor(contract.harness.kind);
  const metrics = new SupervisorMetrics();
  const { outbox, eventLog } = await openEventLog(contract, layout.stateDir, log, metrics);
  const inbox = new Inbox(path.join(layout.stateDir, 'inbox'));
  await inbox.open();

  const configFile = path.join(layout.stateDir, 'tmux.conf');
  await writeFileAtomic(configFile, tmuxConfig(contract.agent.name));
  const trust = await layoutTrustEnv(layout);
  const tmux = new Tmux({ socket: env.AGENT_SMITH_TMUX_SOCKET || undefined, configFile, env: { ...env, ...trust, HOME: layout.homeDir } });
  const teeFile = await paneOutputFifo(log);
  const shell = [env.SHELL && existsSync(env.SHELL) ? env.SHELL : existsSync('/bin/bash') ? '/bin/bash' : '/bin/sh'];

  const rosterFile = path.join(layout.teamDir, ROSTER_JSON);
  const bridge = matrixBridge(contract, { stateDir: layout.stateDir, rosterFile, inbox, outbox, metrics, log, env });
  // Started after the CLI (it reads the supervisor's status); the hook callback finds it then.
  let rewake: PrRewake | undefined = undefined;
  const supervisor = new Supervisor({
    contract,
    ctx,
    adapter,
    tmux,
    inbox,
    outbox,
    metrics,
    log,
    paneEnv: { ...trust, ...stubEnv(contract), HOME: layout.homeDir },
    shell,
    teeFile,
    onHookEvent: (event, input) => rewake?.onHook(event, input),
    onDeadLetter: senderNotifier(contract.agent.name, bridge, log),
  });
  metrics.inboxDeadLetters.set(inbox.deadLetters);

  // Review fan-out: this agent's pr_opened mentions its reviewers in the team room.
  const fanout = new ReviewFanout({ agentName: contract.agent.name, rosterFile, announcer: bridge, inbox, log });
  const reviews = consumeReviewRequests(contract, eventLog, fanout, metrics);
  const http = await serveSupervisor({
    supervisor,
    inbox,
    metrics,
    log,
    publicPort: env.AGENT_SMITH_PORT !== undefined ? Number(env.AGENT_SMITH_PORT) : SUPERVISOR_PORT,
    localPort: localPort(env),
    mcpTools: [
      ...(bridge ? [matrixTools(bridge, metrics)] : []),
      eventTools({ outbox, eventLog, config: contract.events, metrics, onPublished: (event) => void fanout.announce(event) }),
    ],
    approver: bridge?.approvals,
    readyChecks: bridge ? { matrix: () => ({ ...bridge.ready(), ...bridge.status() }) } : {},
    mcp: mcpDeps(supervisor, outbox, metrics, log),
  });
  log.info({ publicPort: http.publicPort, localPort: http.localPort, agent: contract.agent.name, harness: adapter.kind, workdir: ctx.workdir }, 'supervisor listening');
  await supervisor.start();
  await bridge?.start();
  // Octokit and undici (~20 MB of RSS) load only for an agent that watches its pull requests.
  const gh = contract.github?.watchPullRequests.enabled ? await import('../../plugins/github/index.ts') : undefined;
  rewake = await gh?.startPrRewake({
    contract,
    layout,
    env,
    inbox,
    probe: { hasHooks: adapter.hasHooks, status: () => supervisor.status(), capturePane: () => tmux.capture(CLI_PANE) },
    metrics: new gh.GitHubMetrics(metrics.registry),
    log,
    emit: (type, data) => outbox.emit(type, data),
  });
  stopOnSignals({ supervisor, bridge, rewake, reviews, outbox, eventLog, http, log });
}
