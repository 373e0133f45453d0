/**
 * The whole path of an Agent, end to end on this machine's real node (issue 15), with the
 * pieces a user runs and nothing faked but the model and GitHub:
 *
 *   our images built from the Dockerfile and imported into the node's containerd; the
 *   operator installed with our Helm chart from its image (leader-elected)
 *   → kubectl apply (example-devbot as the demo renders it: claude harness, Matrix, NATS,
 *   enforcement iptables) → the operator renders the StatefulSet → the kubelet runs the pod
 *   (egress-init's firewall, the egress proxy sidecar, setup cloning from the git server as
 *   github.com through the proxy with only the stub token, the supervisor starting the real
 *   Claude Code binary in tmux) → Ready=True on the Agent → a person's Matrix mention in the
 *   room → 👀 → the answer in the room (Claude Code against the offline model through the
 *   proxy, matrix_reply) → a task_done event in the JetStream stream (`agent-smith events`)
 *   → `kubectl logs` and `agent-smith attach devbot` (the API server's exec) show the CLI
 *   → `kubectl delete agent` stops every process of the pod and, with
 *     storage.retainOnDelete, keeps the claims and their data.
 *
 * The services (Synapse, nats-server, the git server, the offline model) are the demo's own
 * (scripts/lib/demo), reached by the pod through Services and DNS names, so this is also
 * the demo's path.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { CoordinationV1Api, type V1Pod } from '@kubernetes/client-node';
import { spawn as spawnPty, type IPty } from 'node-pty';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { publishDemoServices } from '../../scripts/lib/demo/in-cluster.ts';
import { renderDemoAgent, type AgentManifest } from '../../scripts/lib/demo/render.ts';
import { DEMO_REVIEWER, demoGitHubLogin, isOfflineEcho, OFFLINE_PREFIX, startDemoServices, type DemoServices } from '../../scripts/lib/demo/services.ts';
import { BUG, FIX_BRANCH, HOMELAB_APPS, REVIEW_CHANGE, SOURCE_FILE, WORKER_PREFIX } from '../../scripts/lib/demo/worker-model.ts';
import { toolResults } from '../../scripts/lib/fakes/anthropic-api.ts';
import { OPERATOR_NAMESPACE, startDevCluster, type DevCluster } from '../../scripts/lib/real-cluster.ts';
import { isReaction, type RoomEvent } from '../../scripts/lib/services/synapse.ts';
import { kubeClients, kubectl, makeNamespace, waitFor, type KubeClients } from '../support/kube.ts';
import { podProcesses } from '../support/node.ts';
import { ROOT } from '../../scripts/lib/paths.ts';
import { CLI } from '../support/pod.ts';

const run = promisify(execFile);
const AGENT = 'devbot';
const POD = `${AGENT}-0`;
/** What the person says to the agent (unique per run: it is looked for in the room, the model's requests and the CLI's transcript). */
const TEXT = `please say hello to the end-to-end test ${Date.now()}`;
/** spec.matrix.approvals.timeoutSeconds of the Agent here (the CRD's minimum is 10). */
const APPROVAL_TIMEOUT_S = 20;

interface AgentObject {
  status?: { phase?: string; podName?: string; conditions?: { type: string; status: string; reason: string; message: string }[] };
}

let dev: DevCluster | undefined;
let kubeconfig = '';
let c: KubeClients;
let ns: { name: string; remove: () => Promise<void> };
let services: DemoServices | undefined;
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
/** `kubectl exec` in the agent container, as a user runs it; resolves to stdout, throws with stderr. */
async function inAgent(...cmd: string[]): Promise<string> {
  const r = await kubectl(kubeconfig, ['exec', '-n', ns.name, POD, '-c', 'agent', '--', ...cmd]);
  if (r.code !== 0) throw new Error(`kubectl exec ${cmd.join(' ')}: exit ${r.code}: ${r.stderr}`);
  return r.stdout;
}
/** What a terminal showed, without escape sequences and blanks (tmux may move the cursor instead of printing spaces). */
const visible = (s: string) => s.replace(/\x1b\[[0-9;?>=]*[ -/]*[@-~]/g, '').replace(/\x1b[\]P^_][^\x07\x1b]*(\x07|\x1b\\)/g, '').replace(/\x1b./g, '').replace(/\s+/g, '');

/** The first event after `after` in the room (threads included) from the bot that `pred` accepts. */
async function answerAfter(after: string | RoomEvent, pred: (e: RoomEvent) => boolean, timeoutMs: number): Promise<RoomEvent> {
  const id = typeof after === 'string' ? after : after.event_id;
  const bot = services!.bots[AGENT]!.userId;
  return waitFor(`the bot's message after ${id.slice(0, 12)}`, async () => {
    const seen = await services!.user.client.messages(services!.room.id, 200);
    const at = seen.findIndex((e) => e.event_id === id);
    return at >= 0 && seen.slice(at + 1).find((e) => e.sender === bot && e.type === 'm.room.message' && pred(e));
  }, timeoutMs, 1000);
}

/** Events per subject of this agent in the JetStream stream. */
async function streamSubjects(): Promise<Record<string, number>> {
  const nc = await connect({ servers: services!.natsUrl });
  try {
    const info = await (await jetstreamManager(nc)).streams.info('AGENT_EVENTS', { subjects_filter: `agents.homelab.${AGENT}.>` });
    return info.state.subjects ?? {};
  } finally {
    await nc.close();
  }
}

beforeAll(async () => {
  dev = await startDevCluster({ log: (line) => console.log(`[e2e] ${line}`) });
  kubeconfig = dev.kubeconfig;
  c = kubeClients(kubeconfig);
  ns = await makeNamespace(c, 'e2e');
  servicesDir = await mkdtemp(join(tmpdir(), 'e2e-services-'));
  services = await startDemoServices({ dir: servicesDir, bots: [AGENT], host: dev.real.podGateway });
  inCluster = await publishDemoServices(services, dev.kubectl, dev.real.dnsHostsFile);
}, 900_000);

let inCluster: Awaited<ReturnType<typeof publishDemoServices>> | undefined;

afterEach((ctx) => {
  if (ctx.task.result?.state === 'fail') failed = true;
});

afterAll(async () => {
  for (const t of terminals) t.kill();
  if (failed && dev) {
    const logs = await kubectl(kubeconfig, ['logs', '-n', OPERATOR_NAMESPACE, '-l', 'app.kubernetes.io/name=agent-smith-operator', '--tail=200', '--all-containers']);
    console.log(`[e2e] operator logs:\n${logs.stdout}${logs.stderr}\n[e2e] cluster logs: ${dev.dir}/logs (kept: the run failed), services: ${servicesDir}`);
  }
  await services?.stop();
  await dev?.stop();
  if (!failed && servicesDir) await rm(servicesDir, { recursive: true, force: true });
}, 180_000);

describe('an Agent, end to end', () => {
  let pod: V1Pod;

  it('kubectl apply → the operator (installed by Helm from its image) renders → the kubelet runs the pod (setup clones through the proxy with the stub only) → Ready=True', async () => {
    if (!services || !dev || !inCluster) throw new Error('setup failed');
    const manifests = renderDemoAgent(services, { root: ROOT, folder: 'example-devbot', namespace: ns.name, node: dev.real.name, inCluster });
    const agent = manifests.find((m): m is AgentManifest => m.kind === 'Agent');
    if (!agent) throw new Error('renderDemoAgent gave no Agent');
    agent.spec.storage = { ...(agent.spec.storage as Record<string, unknown> | undefined), retainOnDelete: true };
    // Approvals time out quickly here, so the unanswered request below is denied within the test.
    agent.spec.matrix = { ...(agent.spec.matrix as Record<string, unknown>), approvals: { timeoutSeconds: APPROVAL_TIMEOUT_S } };
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

    // The operator that did it: the chart's two replicas on the real node, one of them the
    // leader holding the Lease (hostname, i.e. the pod's name, then a random suffix).
    const operators = await c.core.listNamespacedPod({ namespace: OPERATOR_NAMESPACE, labelSelector: 'app.kubernetes.io/name=agent-smith-operator' });
    expect(operators.items.filter((p) => p.status?.containerStatuses?.[0]?.ready)).toHaveLength(2);
    expect(operators.items.every((p) => p.spec?.containers[0]?.image === dev!.images.operator && p.spec?.nodeName === dev!.real.name)).toBe(true);
    const lease = await c.kc.makeApiClient(CoordinationV1Api).readNamespacedLease({ name: 'agent-smith-operator', namespace: OPERATOR_NAMESPACE });
    const holder = lease.spec?.holderIdentity ?? '';
    expect(operators.items.map((p) => p.metadata?.name).filter((n) => n && holder.startsWith(`${n}_`))).toHaveLength(1);

    pod = await readPod();
    expect(pod.spec?.nodeName).toBe(dev.real.name);
    // The images our Dockerfile built, as the Helm-installed operator rendered them.
    expect(pod.spec?.containers.find((x) => x.name === 'agent')?.image).toBe(dev.images.agent);
    const init = Object.fromEntries((pod.status?.initContainerStatuses ?? []).map((s) => [s.name, s]));
    expect(init['egress-init']?.state?.terminated).toMatchObject({ exitCode: 0, reason: 'Completed' });
    expect(init['egress-proxy']).toMatchObject({ ready: true, started: true });
    expect(init.setup?.state?.terminated).toMatchObject({ exitCode: 0, reason: 'Completed' });
    expect(pod.status?.containerStatuses?.find((s) => s.name === 'agent')).toMatchObject({ ready: true, restartCount: 0 });

    // setup cloned both repos from the git server, which accepts only the real password: the
    // proxy put it in for the stub. The real value is nowhere the agent can see it.
    for (const repo of ['agent-smith/agent-smith', 'agent-smith/homelab-apps']) {
      expect(services.git.requests).toContain(`/${repo}.git/info/refs?service=git-upload-pack`);
    }
    expect(await inAgent('cat', '/workspace/agent-smith/README.md')).toContain('served by its local git server as github.com/agent-smith/agent-smith');
    expect(await inAgent('ls', '/workspace/homelab-apps')).toContain('README.md');
    // The tools an agent works with are in the image, and its commits carry its identity
    // (spec.github.login's noreply address, the operator's default).
    expect(await inAgent('sh', '-c', 'gh --version && jq --version && rg --version && curl --version')).toMatch(/gh version [\s\S]*jq-1[\s\S]*ripgrep [\s\S]*curl /);
    expect(await inAgent('git', '-C', '/workspace/homelab-apps', 'var', 'GIT_AUTHOR_IDENT')).toMatch(/^devbot <devbot-agent@users\.noreply\.github\.com> \d+/);
    // The real GitHub token (git's password and the API's token), which only the proxy holds.
    const secret = services.github.bots[AGENT]!.token;
    expect(JSON.stringify(pod)).not.toContain(secret);
    expect(await inAgent('cat', '/workspace/agent-smith/.git/config')).not.toContain(secret);
    // The CLI runs in tmux: the real Claude Code binary, with no real credential in its environment.
    const procs = await waitFor('Claude Code in the agent container', async () => {
      const p = podProcesses(await readPod());
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

  it('kubectl logs shows the supervisor and the CLI\'s screen', async () => {
    const logs = await kubectl(kubeconfig, ['logs', '-n', ns.name, POD, '-c', 'agent']);
    expect(logs.code).toBe(0);
    expect(logs.stdout).toContain('CLI started');
    // Pane 0 is teed to the container's output: the offline model's answer as the CLI showed it.
    expect(visible(logs.stdout)).toContain(visible(OFFLINE_PREFIX));
  }, 60_000);

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

  // Issue 17: the agent works unattended, from a Matrix request to a reviewed pull request,
  // and asks the room only for what its rules put on the ask list. The model is the demo's
  // worker (scripts/lib/demo/worker-model.ts): it drives the real Claude Code through real
  // tool calls, one per turn, from what the tools answered.
  let pr: { number: number; html_url: string } | undefined;

  it('"the test in homelab-apps fails, fix it and open a PR": real tool calls, a push with only the stub, gh pr create, the PR link in the room, pr_opened and task_done', async () => {
    if (!services) throw new Error('setup failed');
    const person = services.user.client;
    const bot = services.bots[AGENT]!;
    const asked = await person.sendText(services.room.id, `${AGENT}: the test in homelab-apps fails, fix it and open a PR`, { 'm.mentions': { user_ids: [bot.userId] } });
    const answer = await answerAfter(asked, (e) => String(e.content.body).startsWith(WORKER_PREFIX), 300_000);
    const opened = services.github.fake.pullRequests(HOMELAB_APPS);
    expect(opened).toHaveLength(1);
    pr = opened[0]!;
    expect(opened[0]).toMatchObject({ user: { login: demoGitHubLogin(AGENT) }, head: { ref: FIX_BRANCH }, base: { ref: 'main' }, state: 'open' });
    expect(String(answer.content.body)).toContain(pr.html_url);
    // The branch on the git server has the fix; main does not (the agent pushed a branch).
    expect(await services.git.readFile(HOMELAB_APPS, FIX_BRANCH, SOURCE_FILE)).toContain(BUG.fixed);
    expect(await services.git.readFile(HOMELAB_APPS, 'main', SOURCE_FILE)).toContain(BUG.old);
    // Real tool calls: Claude Code ran the tests (failing, then passing) and gh, and sent the results back.
    const results = services.model.requests.flatMap((r) => toolResults(r)).map((r) => r.text);
    expect(results.some((t) => /fail/i.test(t))).toBe(true);
    expect(results.some((t) => t.includes(pr!.html_url))).toBe(true);
    // The GitHub fake saw only real tokens (a stub would be an unknown token: no login):
    // the proxy swapped the stub on gh's GraphQL calls and the PR watcher's REST calls.
    expect(services.github.fake.requests.filter((r) => r.login === demoGitHubLogin(AGENT) && r.path === '/graphql').length).toBeGreaterThan(0);
    expect(services.github.fake.requests.filter((r) => r.login === undefined).map((r) => `${r.method} ${r.path}`)).toEqual([]);

    const events = await waitFor('pr_opened and a second task_done in JetStream', async () => {
      const subjects = await streamSubjects();
      return (subjects[`agents.homelab.${AGENT}.pr_opened`] ?? 0) >= 1 && (subjects[`agents.homelab.${AGENT}.task_done`] ?? 0) >= 2 && subjects;
    }, 120_000, 1000);
    expect(events[`agents.homelab.${AGENT}.pr_opened`]).toBe(1);
  }, 420_000);

  it('a reviewer comments on the pull request: the agent is rewoken, pushes a second commit and answers the comment, nobody attached', async () => {
    if (!services || !pr) throw new Error('no pull request from the test before');
    const before = await services.git.branch(HOMELAB_APPS, FIX_BRANCH);
    const comment = services.github.fake.addReviewComment({ repo: HOMELAB_APPS, number: pr.number, author: DEMO_REVIEWER, body: 'Please also drop punctuation from titles.', path: SOURCE_FILE, line: 3 });
    // The PR watcher polls every 30 s (the demo's interval, the CRD's minimum) while the CLI is idle.
    const reply = await waitFor('the agent\'s answer in the review thread', async () => {
      return services!.github.fake.reviewComments(HOMELAB_APPS, pr!.number).find((c) => c.user?.login === demoGitHubLogin(AGENT) && c.in_reply_to_id === comment.id);
    }, 240_000, 1000);
    expect(reply.body.length).toBeGreaterThan(0);
    const after = await services.git.branch(HOMELAB_APPS, FIX_BRANCH);
    expect(after?.sha).not.toBe(before?.sha);
    expect(await services.git.readFile(HOMELAB_APPS, FIX_BRANCH, SOURCE_FILE)).toContain(REVIEW_CHANGE.fixed);
  }, 300_000);

  it('an ask-list command waits for the room: an unanswered request is denied after the timeout (the model is told), a ✅ from an allowed user runs it', async () => {
    if (!services) throw new Error('setup failed');
    const person = services.user.client;
    const bot = services.bots[AGENT]!;
    for (const b of ['old-experiment', 'stale-spike']) await services.git.commit(HOMELAB_APPS, { 'NOTES.md': `${b}\n` }, `${b}`, b);

    // Nobody answers: denied after spec.matrix.approvals.timeoutSeconds.
    const first = await person.sendText(services.room.id, `${AGENT}: please delete the branch old-experiment`, { 'm.mentions': { user_ids: [bot.userId] } });
    const request1 = await answerAfter(first, (e) => String(e.content.body).startsWith(`🔐 ${AGENT} asks to run Bash`), 180_000);
    expect(String(request1.content.body)).toContain('git push origin --delete old-experiment');
    const told = await answerAfter(request1, (e) => String(e.content.body).startsWith(WORKER_PREFIX), (APPROVAL_TIMEOUT_S + 120) * 1000);
    expect(String(told.content.body)).toMatch(/did not delete old-experiment: .*No approver answered within/);
    expect(services.model.requests.flatMap((r) => toolResults(r)).some((r) => r.isError && /No approver answered within/.test(r.text))).toBe(true);
    expect(await services.git.branches(HOMELAB_APPS)).toContain('old-experiment');

    // An allowed person reacts ✅: the command runs.
    const second = await person.sendText(services.room.id, `${AGENT}: please delete the branch stale-spike`, { 'm.mentions': { user_ids: [bot.userId] } });
    const request2 = await answerAfter(second, (e) => String(e.content.body).startsWith(`🔐 ${AGENT} asks to run Bash`), 180_000);
    await person.send(services.room.id, { 'm.relates_to': { rel_type: 'm.annotation', event_id: request2.event_id, key: '✅' } }, { type: 'm.reaction' });
    const done = await answerAfter(request2, (e) => String(e.content.body).startsWith(WORKER_PREFIX), 180_000);
    expect(String(done.content.body)).toContain('deleted the branch stale-spike');
    expect(await services.git.branches(HOMELAB_APPS)).not.toContain('stale-spike');

    const subjects = await waitFor('the approval events', async () => {
      const s = await streamSubjects();
      return (s[`agents.homelab.${AGENT}.approval_granted`] ?? 0) >= 1 && s;
    }, 60_000, 1000);
    expect(subjects[`agents.homelab.${AGENT}.approval_requested`]).toBe(2);
    expect(subjects[`agents.homelab.${AGENT}.approval_expired`]).toBe(1);
    const granted = await run(process.execPath, [CLI, 'events', '--nats-url', services.natsUrl, '--agent', AGENT, '--type', 'approval_granted'], { encoding: 'utf8' });
    expect(JSON.parse(granted.stdout.split('\n').filter(Boolean)[0]!)).toMatchObject({ type: 'approval_granted', data: { by: services.user.userId } });
  }, 600_000);

  it('kubectl delete agent stops every process of the pod and keeps the volumes (retainOnDelete)', async () => {
    const live = await readPod();
    const before = podProcesses(live);
    expect(before.length).toBeGreaterThanOrEqual(4);
    expect([...new Set(before.map((p) => p.container))]).toEqual(expect.arrayContaining(['egress-proxy', 'agent']));
    // Where the claims' data lives on this machine: the dev provisioner's hostPath volumes.
    const hostPath = async (claim: string) => {
      const pvc = await c.core.readNamespacedPersistentVolumeClaim({ name: claim, namespace: ns.name });
      const pv = await c.core.readPersistentVolume({ name: pvc.spec?.volumeName ?? '' });
      return pv.spec?.hostPath?.path ?? pv.spec?.local?.path ?? '';
    };
    const homeDir = await hostPath(`home-${POD}`);
    const workspaceDir = await hostPath(`workspace-${POD}`);

    const deleted = await kubectl(kubeconfig, ['delete', 'agent', AGENT, '-n', ns.name, '--wait=false']);
    expect(deleted.stdout).toContain(`agent.agentsmith.dev "${AGENT}" deleted`);
    await waitFor('the pod gone', () => gone(readPod), 120_000, 500);
    await waitFor('the StatefulSet gone', () => gone(() => c.apps.readNamespacedStatefulSet({ name: AGENT, namespace: ns.name })), 60_000, 500);
    await waitFor('every process of the pod gone', async () => podProcesses(live).length === 0, 60_000, 500);
    for (const p of before) expect(existsSync(`/proc/${p.pid}/cgroup`) && readFileSync(`/proc/${p.pid}/cgroup`, 'utf8').includes(live.metadata?.uid ?? '-'), p.cmd).toBe(false);

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
