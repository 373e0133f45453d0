/**
 * The main job (README: `scripts/demo`): a local control plane with the operator, and
 * example-devbot running for real on this machine, talkable from Matrix.
 *
 * It starts the control plane (2 kwok nodes), installs the CRD, runs the operator, the
 * development pod runner (Node `local`) and the demo services (scripts/lib/demo: Synapse,
 * nats-server, a git server answering as github.com, and unless ANTHROPIC_API_KEY is set
 * the offline demo model answering as api.anthropic.com); applies agents/example-devbot
 * patched to run on the runner's node with Matrix, events and credentials, and
 * agents/example-infrabot as it is (on a kwok node); waits until both are Ready; prints
 * how to talk to devbot and attach to it; and stays up until Ctrl-C, then stops
 * everything it started (the runner's pods included).
 *
 * Flags: --no-wait (exit once the agents are Ready and the instructions are printed).
 */
import { spawn, execFile } from 'node:child_process';
import { chmod, writeFile } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { CACHE_BIN, startLocalCluster } from './lib/cluster.ts';
import { renderDemoAgent } from './lib/demo/render.ts';
import { startDemoServices, type DemoServices } from './lib/demo/services.ts';
import { startPodRunner, type PodRunner } from './lib/pod-runner/index.ts';
import type { DemoConnection } from '../agent-image/src/say/say.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const run = promisify(execFile);
const noWait = process.argv.includes('--no-wait');
const say = (msg: string) => console.log(`\x1b[1m[agent-smith]\x1b[0m ${msg}`);
const RUNNER_NODE = 'local';
const NAMESPACE = 'default';

const started = Date.now();
say('starting the local Kubernetes control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)');
const cluster = await startLocalCluster({ nodes: 2 });
const kubectl = async (args: string[], input?: string) => {
  const p = run(join(CACHE_BIN, 'kubectl'), ['--kubeconfig', cluster.kubeconfig, ...args]);
  if (input !== undefined) p.child.stdin?.end(input);
  return (await p).stdout;
};

let operator: ReturnType<typeof spawn> | undefined;
let runner: PodRunner | undefined;
let services: DemoServices | undefined;
let stopping = false;
async function stopAll(code: number): Promise<never> {
  if (stopping) process.exit(code);
  stopping = true;
  say('stopping the agents\' pods, the pod runner, the demo services, the operator and the control plane');
  await runner?.stop().catch((err: unknown) => say(`the pod runner did not stop cleanly: ${(err as Error).message}`));
  await services?.stop().catch((err: unknown) => say(`a demo service did not stop cleanly: ${(err as Error).message}`));
  if (operator && operator.exitCode === null) {
    const exited = new Promise((r) => operator?.once('exit', r));
    operator.kill('SIGTERM');
    await exited;
  }
  await cluster.stop();
  say('stopped; nothing left running');
  process.exit(code);
}
process.on('SIGINT', () => void stopAll(0));
process.on('SIGTERM', () => void stopAll(0));
// However this process ends (an uncaught error included), the operator must not outlive
// it, nor Synapse and nats-server. (The control plane stops by itself when our end of its
// stdin closes; the runner kills its pods' processes on exit.)
process.on('exit', () => {
  if (operator && operator.exitCode === null) operator.kill('SIGKILL');
  services?.killSync();
});

try {
  say(`control plane ${cluster.version} up at ${cluster.server}`);
  // The runner's pods run as their own UIDs and read the services' files under this directory.
  await chmod(cluster.dir, 0o711);
  await kubectl(['apply', '--server-side', '-f', join(ROOT, 'crds')]);
  await kubectl(['wait', '--for=condition=Established', 'crd/agents.agentsmith.dev', '--timeout=60s']);

  const logFile = join(cluster.dir, 'operator.log');
  const log = createWriteStream(logFile);
  operator = spawn(process.execPath, [join(ROOT, 'operator/src/main.ts'), '--kubeconfig', cluster.kubeconfig, '--metrics-port', '0', '--metrics-host', '127.0.0.1'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  operator.stdout?.pipe(log);
  operator.stderr?.pipe(log);
  operator.once('exit', (code) => {
    if (!stopping) {
      say(`the operator exited (code ${code}); see ${logFile}`);
      void stopAll(1);
    }
  });
  say(`operator running (log: ${logFile})`);

  const runnerLog = join(cluster.dir, 'pod-runner.log');
  const offline = !process.env.ANTHROPIC_API_KEY;
  say(`starting the development pod runner (Node ${RUNNER_NODE}) and the demo services: Synapse, nats-server, a git server as github.com${offline ? ', the OFFLINE DEMO model as api.anthropic.com' : ''}`);
  const demoDir = join(cluster.dir, 'demo');
  [services, runner] = await Promise.all([
    startDemoServices({ dir: demoDir, log: (line) => say(line) }),
    startPodRunner({
      kubeconfig: cluster.kubeconfig,
      nodeName: RUNNER_NODE,
      stateDir: join(cluster.dir, 'pod-runner'),
      log: pino({ name: 'pod-runner' }, pino.destination({ dest: runnerLog, sync: false })),
      // The demo's only departure from the pod the operator renders: the proxy resolves
      // github.com (and api.anthropic.com offline) to the local fakes and trusts their CAs.
      containerEnv: (_pod, container) => (container.name === 'egress-proxy' ? services?.proxyEnv : undefined),
    }),
  ]);
  say(`pod runner ready (log: ${runnerLog}; pods' output under ${join(cluster.dir, 'pod-runner', 'logs')})`);

  const manifests = [
    ...renderDemoAgent(services, { root: ROOT, folder: 'example-devbot', namespace: NAMESPACE, runnerNode: RUNNER_NODE }),
    ...renderDemoAgent(services, { root: ROOT, folder: 'example-infrabot', namespace: NAMESPACE }),
  ];
  await kubectl(['apply', '-f', '-'], manifests.map((m) => stringify(m)).join('---\n'));
  say('applied agents/example-devbot (on this machine, through the pod runner) and agents/example-infrabot (on a kwok node); waiting for Ready');
  await kubectl(['wait', '-n', NAMESPACE, '--for=condition=Ready', 'agent/devbot', 'agent/infrabot', '--timeout=300s']);
  console.log('\n' + (await kubectl(['get', 'agents', '-n', NAMESPACE, '-o', 'wide'])));
  console.log(await kubectl(['get', 'pods', '-n', NAMESPACE, '-o', 'wide']));

  // The connection file of `agent-smith say` (it holds the demo user's access token: 0600).
  const demoFile = join(demoDir, 'say.json');
  // Only devbot: infrabot runs on a kwok node and never answers.
  const devbot = services.bots.devbot;
  const connection: DemoConnection = {
    homeserverUrl: services.homeserverUrl,
    userId: services.user.userId,
    accessToken: services.user.client.accessToken,
    roomId: services.room.id,
    roomAlias: services.room.alias,
    agents: devbot ? { devbot: devbot.userId } : {},
  };
  await writeFile(demoFile, JSON.stringify(connection), { mode: 0o600 });

  say(`both agents Ready in ${((Date.now() - started) / 1000).toFixed(0)} s.`);
  console.log(
    [
      '',
      offline
        ? '  OFFLINE DEMO: devbot runs the real Claude Code against a FAKE model that echoes what you say,\n  answers with its matrix_reply tool and publishes a task_done event. Set ANTHROPIC_API_KEY\n  before scripts/demo to use the real model (through the egress proxy, which holds the key).'
        : '  devbot uses the real Anthropic API: the egress proxy swaps its stub for your ANTHROPIC_API_KEY.',
      '',
      '  In another terminal:',
      '',
      `    export KUBECONFIG=${cluster.kubeconfig}`,
      // agent-smith runs `node`: the one running this demo (bootstrap may have installed it in the cache).
      `    export PATH=${[join(ROOT, 'agent-image/bin'), CACHE_BIN, dirname(process.execPath)].join(':')}:$PATH`,
      `    export AGENT_SMITH_DEMO=${demoFile}`,
      '',
      '    agent-smith say devbot "hello"      # posts in the room as the demo user and prints the answer',
      '    agent-smith attach devbot           # devbot\'s tmux session (Claude Code in pane 0); detach with C-b d',
      '    agent-smith events --nats-url ' + services.natsUrl + ' --agent devbot',
      '    kubectl get agents',
      '',
      `  Or with any Matrix client: homeserver ${services.homeserverUrl}, user ${services.user.userId.slice(1).split(':')[0]} (${services.user.userId}),`,
      `  password ${services.user.password}, room ${services.room.alias}; mention devbot ("devbot: ...") to talk to it.`,
      '',
    ].join('\n'),
  );
  if (noWait) await stopAll(0);
  say('press Ctrl-C to stop everything');
} catch (err) {
  const e = err as { stderr?: string; message?: string };
  say(`failed: ${e.stderr?.trim() || e.message}`);
  await stopAll(1);
}
