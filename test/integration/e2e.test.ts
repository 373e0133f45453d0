/**
 * The whole path of an Agent, end to end on this machine (issue 9, item 3), with the
 * pieces a user runs and nothing faked but the model and GitHub's hostname:
 *
 *   kubectl apply (example-devbot as the demo renders it: claude harness, Matrix, NATS)
 *   → the suite's operator renders the StatefulSet → the development pod runner runs the pod
 *   (egress proxy sidecar, setup cloning from the git server as github.com through the proxy
 *   with only the stub token, the supervisor starting the real Claude Code binary in tmux)
 *   → Ready=True on the Agent → a person's Matrix mention in the room → 👀 → the answer in
 *   the room (Claude Code against the offline model through the proxy, matrix_reply)
 *   → a task_done event in the JetStream stream (`agent-smith events`)
 *   → `agent-smith attach devbot` in a PTY shows the CLI, C-b d detaches
 *   → `kubectl delete agent` stops every process of the pod and, with
 *     storage.retainOnDelete, keeps the claims and their data.
 *
 * The services (Synapse, nats-server, the git server, the offline model, the proxy's
 * development hooks) are the demo's own (scripts/lib/demo), so this is also the demo's path.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import type { V1Pod } from '@kubernetes/client-node';
import { spawn as spawnPty, type IPty } from 'node-pty';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { stringify } from 'yaml';
import { renderDemoAgent, type AgentManifest } from '../../scripts/lib/demo/render.ts';
import { isOfflineEcho, OFFLINE_PREFIX, startDemoServices, type DemoServices } from '../../scripts/lib/demo/services.ts';
import { startPodRunner, type PodRunner } from '../../scripts/lib/pod-runner/index.ts';
import { findMarked } from '../../scripts/lib/pod-runner/process.ts';
import { isReaction, type RoomEvent } from '../support/synapse.ts';
import { kubeClients, kubectl, makeNamespace, waitFor, type KubeClients } from '../support/kube.ts';
import { ROOT } from '../support/paths.ts';

const run = promisify(execFile);
const kubeconfig = inject('kubeconfig');
const NODE = 'e2e';
const AGENT = 'devbot';
const POD = `${AGENT}-0`;
const CLI = join(ROOT, 'agent-image/src/cli.ts');
/** What the person says to the agent (unique per run: it is looked for in the room, the model's requests and the CLI's transcript). */
const TEXT = `please say hello to the end-to-end test ${Date.now()}`;

interface AgentObject {
  status?: { phase?: string; podName?: string; conditions?: { type: string; status: string; reason: string; message: string }[] };
}

let c: KubeClients;
let ns: { name: string; remove: () => Promise<void> };
let services: DemoServices | undefined;
let runner: PodRunner | undefined;
let stateDir = '';
let servicesDir = '';
let failed = false;
const terminals: IPty[] = [];

const readAgent = async () => (await c.custom.getNamespacedCustomObject({ group: 'agentsmith.dev', version: 'v1alpha1', namespace: ns.name, plural: 'agents', name: AGENT })) as AgentObject;
const readPod = () => c.core.readNamespacedPod({ name: POD, namespace: ns.name });
const gone = async (read: () => Promise<unknown>) => {
  try {
    await read();
    return false;
  } catch (err) {
    return (err as { code?: number }).code === 404;
  }
};
/** Live processes of pod `uid` (the runner marks each with `<runner>:<uid>:<container>`), with their marker's container and command line. */
async function podProcesses(uid: string): Promise<{ pid: number; container: string; cmd: string; environ: string }[]> {
  const out: { pid: number; container: string; cmd: string; environ: string }[] = [];
  for (const pid of await findMarked('')) {
    const environ = await readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '');
    const m = new RegExp(`AGENT_SMITH_POD_RUNNER=[^:\\0]*:${uid}:([^\\0]*)`).exec(environ);
    if (!m) continue;
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    if (/^\d+ \(.*\) Z/.test(stat)) continue; // a zombie waiting for its reaper is gone
    out.push({ pid, container: m[1] ?? '', cmd: (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).replaceAll('\0', ' '), environ });
  }
  return out;
}
/** What a terminal showed, without escape sequences and blanks (tmux may move the cursor instead of printing spaces). */
const visible = (s: string) => s.replace(/\x1b\[[0-9;?>=]*[ -/]*[@-~]/g, '').replace(/\x1b[\]P^_][^\x07\x1b]*(\x07|\x1b\\)/g, '').replace(/\x1b./g, '').replace(/\s+/g, '');

beforeAll(async () => {
  c = kubeClients(kubeconfig);
  ns = await makeNamespace(c, 'e2e');
  // Both under /tmp, not a home directory: the pods' UIDs (1000, the proxy's 1337) must reach them.
  stateDir = await mkdtemp(join(tmpdir(), 'e2e-runner-'));
  servicesDir = await mkdtemp(join(tmpdir(), 'e2e-services-'));
  // Offline whatever the environment says: the fake model, never a real API.
  services = await startDemoServices({ dir: servicesDir, anthropicApiKey: '', bots: [AGENT] });
  const proxyEnv = services.proxyEnv;
  runner = await startPodRunner({
    kubeconfig,
    nodeName: NODE,
    stateDir,
    log: pino({ level: 'debug' }, pino.destination({ dest: join(stateDir, 'runner.log'), sync: true })),
    shutdownGraceMs: 10_000,
    // The proxy's development hooks (github.com and api.anthropic.com → the local fakes), as scripts/demo does.
    containerEnv: (_pod, container) => (container.name === 'egress-proxy' ? proxyEnv : undefined),
  });
}, 300_000);

afterEach((ctx) => {
  if (ctx.task.result?.state === 'fail') failed = true;
});

afterAll(async () => {
  for (const t of terminals) t.kill();
  // The runner first: it ends every process of the pod, whatever state the test left.
  await runner?.stop();
  await services?.stop();
  await ns?.remove();
  await c?.core.deleteNode({ name: NODE }).catch(() => undefined);
  if (failed) console.log(`[e2e] runner log: ${join(stateDir, 'runner.log')}, container logs: ${join(stateDir, 'logs')}, services: ${servicesDir}`);
  else {
    if (stateDir) await rm(stateDir, { recursive: true, force: true });
    if (servicesDir) await rm(servicesDir, { recursive: true, force: true });
  }
}, 120_000);

describe('an Agent, end to end', () => {
  let pod: V1Pod;
  let uid = '';

  it('kubectl apply → the operator renders → the runner runs the pod (setup clones through the proxy with the stub only) → Ready=True', async () => {
    if (!services || !runner) throw new Error('setup failed');
    const manifests = renderDemoAgent(services, { root: ROOT, folder: 'example-devbot', namespace: ns.name, runnerNode: NODE });
    const agent = manifests.find((m): m is AgentManifest => m.kind === 'Agent');
    if (!agent) throw new Error('renderDemoAgent gave no Agent');
    agent.spec.storage = { ...(agent.spec.storage as Record<string, unknown> | undefined), retainOnDelete: true };
    expect(agent.spec.harness).toMatchObject({ kind: 'claude' });
    const applied = await kubectl(kubeconfig, ['apply', '-f', '-'], manifests.map((m) => stringify(m)).join('---\n'));
    expect(applied.stderr).toBe('');
    expect(applied.stdout).toContain(`agent.agentsmith.dev/${AGENT} created`);

    const ready = await waitFor('Agent Ready=True', async () => {
      const a = await readAgent();
      return a.status?.conditions?.find((x) => x.type === 'Ready' && x.status === 'True') && a;
    }, 300_000, 1000);
    expect(ready.status).toMatchObject({ phase: 'Ready', podName: POD });
    const table = await kubectl(kubeconfig, ['get', 'agent', AGENT, '-n', ns.name]);
    expect(table.stdout).toMatch(new RegExp(`${AGENT}\\s+True\\s+Ready\\s+0\\s+claude`));

    pod = await readPod();
    uid = pod.metadata?.uid ?? '';
    expect(pod.spec?.nodeName).toBe(NODE);
    const init = Object.fromEntries((pod.status?.initContainerStatuses ?? []).map((s) => [s.name, s]));
    expect(init['egress-proxy']).toMatchObject({ ready: true, started: true });
    expect(init.setup?.state?.terminated).toMatchObject({ exitCode: 0, reason: 'Completed' });
    expect(pod.status?.containerStatuses?.find((s) => s.name === 'agent')).toMatchObject({ ready: true, restartCount: 0 });

    // setup cloned both repos from the git server, which accepts only the real password: the
    // proxy put it in for the stub. The real value is nowhere the agent can see it.
    for (const repo of ['agent-smith/agent-smith', 'agent-smith/homelab-apps']) {
      expect(services.git.requests).toContain(`/${repo}.git/info/refs?service=git-upload-pack`);
    }
    const agentRoot = runner.describe(ns.name, POD)?.containers.agent?.rootfs ?? '';
    expect(await readFile(join(agentRoot, 'workspace/agent-smith/README.md'), 'utf8')).toContain('served by its local git server as github.com/agent-smith/agent-smith');
    expect(existsSync(join(agentRoot, 'workspace/homelab-apps/README.md'))).toBe(true);
    const secret = services.gitPassword;
    expect(JSON.stringify(pod)).not.toContain(secret);
    expect(await readFile(join(agentRoot, 'workspace/agent-smith/.git/config'), 'utf8')).not.toContain(secret);
    // The CLI runs in tmux: the real Claude Code binary, with no real credential in its environment.
    const procs = await waitFor('Claude Code in the agent container', async () => {
      const p = await podProcesses(uid);
      return p.some((x) => x.container === 'agent' && /claude/.test(x.cmd) && !/supervise/.test(x.cmd)) && p;
    }, 60_000, 500);
    expect(procs.some((p) => p.container === 'agent' && p.cmd.startsWith('tmux'))).toBe(true);
    for (const p of procs.filter((x) => x.container === 'agent')) {
      expect(p.environ, p.cmd).not.toContain(secret);
      expect(p.environ, p.cmd).not.toContain(`=${services.anthropicToken}\0`);
    }
  }, 420_000);

  it('a person mentions it in the Matrix room → 👀 → an answer from Claude Code in the room → task_done in JetStream', async () => {
    if (!services) throw new Error('setup failed');
    const person = services.user.client;
    const bot = services.bots[AGENT];
    if (!bot) throw new Error(`no bot ${AGENT}`);
    const text = TEXT;
    const question = await person.sendText(services.room.id, `${AGENT}: ${text}`, { 'm.mentions': { user_ids: [bot.userId] } });

    await person.waitForEvent(services.room.id, (e) => isReaction(e, bot.userId, question), 120_000);
    const answer = await waitFor('the answer in the room', async () => {
      const seen = await person.messages(services!.room.id, 100);
      const at = seen.findIndex((e) => e.event_id === question);
      return at >= 0 && seen.slice(at + 1).find((e: RoomEvent) => e.sender === bot.userId && e.type === 'm.room.message');
    }, 240_000, 500);
    expect(answer.content.msgtype).toBe('m.notice');
    expect(isOfflineEcho(answer, text)).toBe(true);
    // It came from Claude Code's turn: the model saw the message as agent-smith delivered it.
    expect(services.model?.requests.some((r) => JSON.stringify(r.body.messages).includes(text))).toBe(true);

    // task_done, as a user reads the log, and as the stream holds it (once).
    const events = await waitFor('task_done from agent-smith events', async () => {
      const r = await run(process.execPath, [CLI, 'events', '--nats-url', services!.natsUrl, '--agent', AGENT, '--type', 'task_done'], { encoding: 'utf8' });
      const lines = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; agent: string; team: string; data: { summary?: string } });
      return lines.length > 0 && lines;
    }, 120_000, 1000);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ type: 'task_done', agent: AGENT, team: 'homelab' });
    expect(events[0]?.data.summary).toContain(OFFLINE_PREFIX);
    const nc = await connect({ servers: services.natsUrl });
    try {
      const info = await (await jetstreamManager(nc)).streams.info('AGENT_EVENTS', { subjects_filter: `agents.homelab.${AGENT}.>` });
      expect(info.state.subjects?.[`agents.homelab.${AGENT}.task_done`]).toBe(1);
      expect(info.state.subjects?.[`agents.homelab.${AGENT}.agent_started`]).toBeGreaterThanOrEqual(1);
    } finally {
      await nc.close();
    }
  }, 420_000);

  it('agent-smith attach devbot shows the CLI in a terminal, and C-b d detaches', async () => {
    const pty = spawnPty(process.execPath, [CLI, 'attach', AGENT, '-n', ns.name, '--kubeconfig', kubeconfig], {
      name: 'xterm-256color',
      cols: 120,
      rows: 40,
      cwd: ROOT,
      env: { ...process.env, TERM: 'xterm-256color' },
    });
    terminals.push(pty);
    let output = '';
    pty.onData((d) => (output += d));
    const exited = new Promise<{ exitCode: number }>((resolve) => pty.onExit(resolve));
    // Claude Code's screen: the offline model's last words of the answered turn.
    await waitFor('the CLI on the attached screen', () => visible(output).includes('answeredinMatrix') || undefined, 60_000, 200).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\nscreen: ${visible(output).slice(-2000)}`);
    });
    expect(visible(output)).toContain(visible(OFFLINE_PREFIX));
    pty.write('\x02d');
    const { exitCode } = await exited;
    expect(visible(output)).toContain('[detached');
    expect(exitCode).toBe(0);
    // The session and the CLI go on.
    expect((await readPod()).status?.containerStatuses?.find((s) => s.name === 'agent')).toMatchObject({ ready: true, restartCount: 0 });
  }, 120_000);

  it('kubectl delete agent stops every process of the pod and keeps the volumes (retainOnDelete)', async () => {
    const before = await podProcesses(uid);
    expect(before.length).toBeGreaterThanOrEqual(4);
    expect(new Set(before.map((p) => p.container))).toEqual(new Set(['egress-proxy', 'agent']));
    const agentRoot = runner?.describe(ns.name, POD)?.containers.agent?.rootfs ?? '';
    // Where the claims' data lives on this machine (a mount is a symlink in the runner's container root).
    const homeDir = await readlink(join(agentRoot, 'home/agent'));
    const workspaceDir = await readlink(join(agentRoot, 'workspace'));

    const deleted = await kubectl(kubeconfig, ['delete', 'agent', AGENT, '-n', ns.name, '--wait=false']);
    expect(deleted.stdout).toContain(`agent.agentsmith.dev "${AGENT}" deleted`);
    await waitFor('the pod gone', () => gone(readPod), 120_000, 500);
    await waitFor('the StatefulSet gone', () => gone(() => c.apps.readNamespacedStatefulSet({ name: AGENT, namespace: ns.name })), 60_000, 500);
    expect(await podProcesses(uid)).toEqual([]);
    for (const p of before) expect(existsSync(`/proc/${p.pid}/cmdline`) && (await readFile(`/proc/${p.pid}/environ`, 'utf8').catch(() => '')).includes(uid), p.cmd).toBe(false);

    // The claims stay, bound, with their data: the clone, the CLI's home and transcript.
    const pvcs = await c.core.listNamespacedPersistentVolumeClaim({ namespace: ns.name });
    const claims = new Map(pvcs.items.map((p) => [p.metadata?.name ?? '', p]));
    for (const name of [`home-${POD}`, `workspace-${POD}`]) {
      expect(claims.get(name)?.metadata?.deletionTimestamp, name).toBeUndefined();
      expect(claims.get(name)?.status?.phase, name).toBe('Bound');
    }
    expect(await readFile(join(workspaceDir, 'agent-smith/README.md'), 'utf8')).toContain('github.com/agent-smith/agent-smith');
    expect(existsSync(join(homeDir, '.claude/CLAUDE.md'))).toBe(true);
    // Claude Code's transcript of the conversation, which a resumed session reads back.
    const transcripts = (await readdir(join(homeDir, '.claude/projects'), { recursive: true })).filter((f) => f.endsWith('.jsonl'));
    const texts = await Promise.all(transcripts.map((f) => readFile(join(homeDir, '.claude/projects', f), 'utf8')));
    expect(texts.some((t) => t.includes(TEXT))).toBe(true);
  }, 240_000);
});
