/**
 * The main job (README: `scripts/demo`): brings up the local control plane, installs the
 * CRD, runs the operator, applies agents/example-devbot and agents/example-infrabot,
 * waits until both are Ready, prints them, and stays up until Ctrl-C; then stops
 * everything it started.
 *
 * Flags: --no-wait (exit once the agents are Ready; used by the test of this command).
 */
import { spawn, execFile } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { CACHE_BIN, startLocalCluster } from './lib/cluster.ts';
import { personaConfigMap } from './lib/persona.ts';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const run = promisify(execFile);
const noWait = process.argv.includes('--no-wait');
const say = (msg: string) => console.log(`\x1b[1m[agent-smith]\x1b[0m ${msg}`);

const started = Date.now();
say('starting the local Kubernetes control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)');
const cluster = await startLocalCluster({ nodes: 2 });
const kubectl = async (args: string[], input?: string) => {
  const p = run(join(CACHE_BIN, 'kubectl'), ['--kubeconfig', cluster.kubeconfig, ...args]);
  if (input !== undefined) p.child.stdin?.end(input);
  return (await p).stdout;
};

let operator: ReturnType<typeof spawn> | undefined;
let stopping = false;
async function stopAll(code: number): Promise<never> {
  if (stopping) process.exit(code);
  stopping = true;
  say('stopping the operator and the control plane');
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
// it. (The control plane stops by itself when our end of its stdin closes.)
process.on('exit', () => {
  if (operator && operator.exitCode === null) operator.kill('SIGKILL');
});

try {
  say(`control plane ${cluster.version} up at ${cluster.server}`);
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

  for (const [folder, agent] of [['example-devbot', 'devbot'], ['example-infrabot', 'infrabot']] as const) {
    await kubectl(['apply', '-f', '-'], stringify(personaConfigMap(join(ROOT, 'agents', folder), `${agent}-persona`, 'default')));
    await kubectl(['apply', '-n', 'default', '-f', join(ROOT, 'agents', folder, 'agent.yaml')]);
  }
  say('applied agents/example-devbot and agents/example-infrabot; waiting for Ready');
  await kubectl(['wait', '-n', 'default', '--for=condition=Ready', 'agent/devbot', 'agent/infrabot', '--timeout=180s']);
  console.log('\n' + (await kubectl(['get', 'agents', '-n', 'default', '-o', 'wide'])));
  console.log(await kubectl(['get', 'pods', '-n', 'default', '-o', 'wide']));
  say(`both agents Ready in ${((Date.now() - started) / 1000).toFixed(0)} s. Point kubectl at the cluster with:`);
  console.log(`\n  export KUBECONFIG=${cluster.kubeconfig}\n  export PATH=${CACHE_BIN}:$PATH\n  kubectl get agents\n  kubectl explain agent.spec\n`);
  if (noWait) await stopAll(0);
  say('press Ctrl-C to stop everything');
} catch (err) {
  const e = err as { stderr?: string; message?: string };
  say(`failed: ${e.stderr?.trim() || e.message}`);
  await stopAll(1);
}
