/**
 * The main job (README: `scripts/demo`): a local cluster with a real node, the operator
 * installed in it with our Helm chart from the image our Dockerfile builds, and
 * example-devbot running as a real pod on that node, talkable from Matrix.
 *
 * It builds the images (cached), starts the control plane with its real node (kubelet,
 * containerd, CNI, kube-proxy, CoreDNS) and 2 kwok nodes, imports the images, installs the
 * operator; starts the demo services (scripts/lib/demo: Synapse, nats-server, a git server
 * standing in for github.com, the GitHub API fake for api.github.com, and the offline demo
 * model, scripted for one real task, standing in for api.anthropic.com) on the node's pod gateway and publishes them as
 * Services and DNS names; applies agents/example-devbot patched to run on the real node with
 * Matrix, events, credentials and the stand-ins' CA, and agents/example-infrabot as it is
 * (on a kwok node); waits until both are Ready; prints how to talk to devbot and attach to
 * it; and stays up until Ctrl-C, then stops everything it started.
 *
 * Flags: --no-wait (exit once the agents are Ready and the instructions are printed).
 */
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { CACHE_BIN } from './lib/cluster.ts';
import { publishDemoServices } from './lib/demo/in-cluster.ts';
import { renderDemoAgent } from './lib/demo/render.ts';
import { startDemoServices, type DemoServices } from './lib/demo/services.ts';
import { OPERATOR_NAMESPACE, startDevCluster, type DevCluster } from './lib/real-cluster.ts';
import type { DemoConnection } from './lib/demo/say.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const noWait = process.argv.includes('--no-wait');
const say = (msg: string) => console.log(`\x1b[1m[agent-smith]\x1b[0m ${msg}`);
const NAMESPACE = 'default';

const started = Date.now();
let cluster: DevCluster | undefined;
let services: DemoServices | undefined;
let stopping = false;
async function stopAll(code: number): Promise<never> {
  if (stopping) process.exit(code);
  stopping = true;
  say('stopping the demo services and the cluster (its node stops every pod)');
  await services?.stop().catch((err: unknown) => say(`a demo service did not stop cleanly: ${(err as Error).message}`));
  await cluster?.stop();
  say('stopped; nothing left running');
  process.exit(code);
}
process.on('SIGINT', () => void stopAll(0));
process.on('SIGTERM', () => void stopAll(0));
// However this process ends (an uncaught error included), Synapse and nats-server must not
// outlive it. (The cluster stops by itself when our end of its stdin closes.)
process.on('exit', () => services?.killSync());

try {
  say('starting a local cluster with a real node (etcd, kube-apiserver, controller-manager, scheduler, kubelet, containerd, kube-proxy, CoreDNS) and 2 kwok nodes; building and importing the images; installing the operator with Helm');
  const dev = await startDevCluster({ kwokNodes: 2, log: say });
  cluster = dev;
  const kubectl = dev.kubectl;
  say(`control plane ${dev.version} up at ${dev.server}; node ${dev.real.name}; operator installed (kubectl logs -n ${OPERATOR_NAMESPACE} deploy/agent-smith-operator)`);

  // The local node's pods never leave the machine (no default route), so the real model API
  // is out of reach: the demo's model is always the offline fake.
  if (process.env.ANTHROPIC_API_KEY) say('ANTHROPIC_API_KEY is set but not used: the local node\'s pods cannot leave this machine, so devbot talks to the offline demo model');
  say('starting the demo services: Synapse, nats-server, a git server as github.com, a GitHub API fake as api.github.com, the OFFLINE DEMO model as api.anthropic.com');
  const demoDir = join(dev.dir, 'demo');
  services = await startDemoServices({ dir: demoDir, host: dev.real.podGateway, log: (line) => say(line) });
  const inCluster = await publishDemoServices(services, kubectl, dev.real.dnsHostsFile);

  const manifests = [
    ...renderDemoAgent(services, { root: ROOT, folder: 'example-devbot', namespace: NAMESPACE, node: dev.real.name, inCluster }),
    ...renderDemoAgent(services, { root: ROOT, folder: 'example-infrabot', namespace: NAMESPACE }),
  ];
  await kubectl(['apply', '-f', '-'], manifests.map((m) => stringify(m)).join('---\n'));
  say(`applied agents/example-devbot (a real pod on node ${dev.real.name}) and agents/example-infrabot (on a kwok node); waiting for Ready`);
  await kubectl(['wait', '-n', NAMESPACE, '--for=condition=Ready', 'agent/devbot', 'agent/infrabot', '--timeout=300s']);
  console.log('\n' + (await kubectl(['get', 'agents', '-n', NAMESPACE, '-o', 'wide'])));
  console.log(await kubectl(['get', 'pods', '-n', NAMESPACE, '-o', 'wide']));

  // The connection file of scripts/say (it holds the demo user's access token: 0600).
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
      '  OFFLINE DEMO: devbot runs the real Claude Code against a FAKE model that echoes what you say,\n  answers with its matrix_reply tool and publishes a task_done event. One task is scripted for real work:\n  "the test in homelab-apps fails, fix it and open a PR" (it edits, tests, pushes a branch and runs gh pr create).',
      '',
      '  In another terminal:',
      '',
      `    export KUBECONFIG=${dev.kubeconfig}`,
      // agent-smith runs `node`: the one running this demo (bootstrap may have installed it in the cache).
      `    export PATH=${[join(ROOT, 'agent-image/bin'), CACHE_BIN, dirname(process.execPath)].join(':')}:$PATH`,
      `    export AGENT_SMITH_DEMO=${demoFile}`,
      '',
      `    ${join(ROOT, 'scripts/say')} devbot "hello"      # posts in the room as the demo user and prints the answer`,
      '    agent-smith attach devbot           # devbot\'s tmux session (Claude Code in pane 0); detach with C-b d',
      '    agent-smith events --nats-url ' + services.natsUrl + ' --agent devbot',
      '    kubectl get agents',
      '    kubectl logs devbot-0 -c agent                    # the supervisor',
      '    kubectl exec devbot-0 -c agent -- curl -sS https://example.org   # refused: not on the allowlist',
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
