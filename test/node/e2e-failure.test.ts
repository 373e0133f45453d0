/**
 * The failure path of a real Agent pod (issue 9, item 4), on the real node (the kubelet
 * and containerd of `localcluster up --real-node`, the operator installed by Helm):
 *
 * - the agent container's main process (the supervisor) is killed: the pod's restart count
 *   grows and the Agent says so where a user looks (`status.restarts`, the RESTARTS column,
 *   a ContainerRestarted warning in `kubectl describe agent`); killed again at once, the
 *   container sits in CrashLoopBackOff and the Agent is Degraded, naming the container;
 *   then it recovers.
 * - the persona ConfigMap is broken (settings.json that is not JSON, an mcp.json server that
 *   is not an object): PersonaResolved=False names the ConfigMap, the key and the field, and
 *   the running pod is left alone (same pod UID, no restart, StatefulSet template and the
 *   rendered config unchanged) until the ConfigMap is fixed.
 *
 * The harness is `custom` (a sleep): what is under test is the pod, the kubelet and the
 * operator, not the CLI.
 */
import { readFileSync } from 'node:fs';
import { PatchStrategy, setHeaderOptions, type V1Pod } from '@kubernetes/client-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { OPERATOR_NAMESPACE, startDevCluster, type DevCluster } from '../../scripts/lib/real-cluster.ts';
import { kubeClients, kubectl, makeNamespace, waitFor, type KubeClients } from '../support/kube.ts';
import { podProcesses } from '../support/node.ts';

const AGENT = 'failbot';
const POD = `${AGENT}-0`;
const PERSONA = `${AGENT}-persona`;
/** The second crash in a row waits this long in CrashLoopBackOff: the kubelet's initial back-off. */
const BACKOFF_MS = 10_000;

interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
}
interface AgentObject {
  metadata?: { generation?: number };
  status?: { phase?: string; restarts?: number; observedGeneration?: number; conditions?: Condition[] };
}

let dev: DevCluster | undefined;
let kubeconfig = '';
let c: KubeClients;
let ns: { name: string; remove: () => Promise<void> };
let failed = false;

const persona = { 'CLAUDE.md': 'You are failbot.', 'settings.json': '{"env":{"FAILBOT":"1"}}', 'mcp.json': '{"mcpServers":{}}' };

const readAgent = async () => (await c.custom.getNamespacedCustomObject({ group: 'agentsmith.dev', version: 'v1alpha1', namespace: ns.name, plural: 'agents', name: AGENT })) as AgentObject;
const cond = (a: AgentObject, type: string) => a.status?.conditions?.find((x) => x.type === type);
const readPod = () => c.core.readNamespacedPod({ name: POD, namespace: ns.name });
const agentContainer = (p: V1Pod) => p.status?.containerStatuses?.find((s) => s.name === 'agent');
/** The supervisor's PID on this machine: the `agent-smith supervise` process of the agent container's current run (0 when none). */
const supervisorPid = (p: V1Pod) => podProcesses(p).find((x) => x.container === 'agent' && / supervise\b/.test(x.cmd))?.pid ?? 0;
const cmdline = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
};
async function patchPersona(data: Record<string, string>): Promise<void> {
  await c.core.patchNamespacedConfigMap({ name: PERSONA, namespace: ns.name, body: { data } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
}
/**
 * Waits for the Agent to be Ready=True with the agent container running and ready, counted
 * `restarts` times or more, and a supervisor process other than `notPid` alive; returns the pod.
 */
async function readyAgain(what: string, restarts: number, notPid = 0): Promise<V1Pod> {
  return waitFor(
    what,
    async () => {
      const [a, p] = await Promise.all([readAgent(), readPod()]);
      const s = agentContainer(p);
      const pid = supervisorPid(p);
      return cond(a, 'Ready')?.status === 'True' && s?.ready && s.state?.running && (s.restartCount ?? 0) >= restarts && pid !== 0 && pid !== notPid && p;
    },
    120_000,
    500,
  );
}

beforeAll(async () => {
  dev = await startDevCluster({ log: (line) => console.log(`[e2e-failure] ${line}`) });
  kubeconfig = dev.kubeconfig;
  c = kubeClients(kubeconfig);
  ns = await makeNamespace(c, 'e2e-failure');
  await c.core.createNamespacedConfigMap({ namespace: ns.name, body: { metadata: { name: PERSONA }, data: persona } });
  const agent = {
    apiVersion: 'agentsmith.dev/v1alpha1',
    kind: 'Agent',
    metadata: { name: AGENT, namespace: ns.name },
    spec: {
      harness: { kind: 'custom', command: ['sh', '-c', 'echo failbot up; exec sleep 86400'] },
      persona: { configMapRef: { name: PERSONA } },
      egress: { allow: ['github.com'] },
      storage: { retainOnDelete: false },
      pod: { nodeSelector: { 'kubernetes.io/hostname': dev.real.name } },
    },
  };
  const applied = await kubectl(kubeconfig, ['apply', '-f', '-'], stringify(agent));
  expect(applied.stderr).toBe('');
});

afterEach((ctx) => {
  if (ctx.task.result?.state === 'fail') failed = true;
});

afterAll(async () => {
  if (failed && dev) {
    const logs = await kubectl(kubeconfig, ['logs', '-n', OPERATOR_NAMESPACE, '-l', 'app.kubernetes.io/name=agent-smith-operator', '--tail=200', '--all-containers']);
    console.log(`[e2e-failure] operator logs:\n${logs.stdout}${logs.stderr}`);
  }
  await dev?.stop();
}, 120_000);

describe('an Agent pod that fails', () => {
  it('reports a killed supervisor as a restart, a crash loop as Degraded naming the container, and recovers', async () => {
    const first = await readyAgain('Agent Ready=True', 0);
    const uid = first.metadata?.uid;
    expect((await readAgent()).status?.restarts).toBe(0);
    const pid = supervisorPid(first);
    expect(cmdline(pid)).toContain('supervise');

    // One kill: the kubelet restarts the container at once (no back-off for a first crash).
    process.kill(pid, 'SIGKILL');
    const second = await readyAgain('the agent container restarted and ready', 1, pid);
    expect(second.metadata?.uid).toBe(uid);
    expect(agentContainer(second)?.restartCount).toBe(1);
    expect(agentContainer(second)?.lastState?.terminated).toMatchObject({ exitCode: 137 });
    const once = await waitFor('status.restarts 1', async () => {
      const a = await readAgent();
      return a.status?.restarts === 1 && a;
    });
    expect(cond(once, 'Degraded')?.status).toBe('False');
    const table = await kubectl(kubeconfig, ['get', 'agent', AGENT, '-n', ns.name]);
    expect(table.stdout).toMatch(/NAME\s+READY\s+PHASE\s+RESTARTS\s+HARNESS\s+AGE/);
    expect(table.stdout).toMatch(new RegExp(`${AGENT}\\s+True\\s+Ready\\s+1\\s+custom`));
    const described = await waitFor('the ContainerRestarted event', async () => {
      const d = await kubectl(kubeconfig, ['describe', 'agent', AGENT, '-n', ns.name]);
      return /Warning\s+ContainerRestarted/.test(d.stdout) && d.stdout;
    }, 30_000, 1000);
    expect(described).toContain(`container agent of pod ${POD} restarted: 1 restart(s), last exit code 137 (Error)`);

    // A second kill right after: the kubelet's back-off holds the container in CrashLoopBackOff,
    // and the Agent is Degraded for as long, naming the container and its last exit.
    const pid2 = supervisorPid(second);
    expect(cmdline(pid2)).toContain('supervise');
    process.kill(pid2, 'SIGKILL');
    const looping = await waitFor('Degraded=True ContainerRestarting', async () => {
      const a = await readAgent();
      return cond(a, 'Degraded')?.status === 'True' && a;
    }, BACKOFF_MS + 30_000, 200);
    expect(cond(looping, 'Degraded')).toMatchObject({ reason: 'ContainerRestarting' });
    expect(cond(looping, 'Degraded')?.message).toContain(`container agent of pod ${POD} is in CrashLoopBackOff: 1 restart(s), last exit code 137 (Error)`);
    expect(looping.status?.phase).toBe('Degraded');
    expect(cond(looping, 'Ready')).toMatchObject({ status: 'False' });
    expect(cond(looping, 'Ready')?.message).toContain('container agent is waiting: CrashLoopBackOff');

    // Back after the back-off: Ready, not Degraded, two restarts counted, the same pod.
    const third = await readyAgain('ready again after the back-off', 2, pid2);
    expect(third.metadata?.uid).toBe(uid);
    const recovered = await waitFor('Degraded=False and restarts 2', async () => {
      const a = await readAgent();
      return cond(a, 'Degraded')?.status === 'False' && a.status?.restarts === 2 && a;
    });
    expect(recovered.status?.phase).toBe('Ready');
    expect(cmdline(supervisorPid(third))).toContain('supervise');
  }, 300_000);

  it('names a broken persona ConfigMap, its key and field, and leaves the running pod alone until it is fixed', async () => {
    const before = await readyAgain('Agent Ready=True', 0);
    const sts = await c.apps.readNamespacedStatefulSet({ name: AGENT, namespace: ns.name });
    const config = await c.core.readNamespacedConfigMap({ name: `${AGENT}-config`, namespace: ns.name });
    const restarts = agentContainer(before)?.restartCount;
    const pid = supervisorPid(before);
    /** The pod as it was: same object, same processes, no new restart; the StatefulSet and the rendered config untouched. */
    const leftAlone = async () => {
      const [p, s, cm] = await Promise.all([
        readPod(),
        c.apps.readNamespacedStatefulSet({ name: AGENT, namespace: ns.name }),
        c.core.readNamespacedConfigMap({ name: `${AGENT}-config`, namespace: ns.name }),
      ]);
      expect(p.metadata?.uid).toBe(before.metadata?.uid);
      expect(agentContainer(p)?.restartCount).toBe(restarts);
      expect(supervisorPid(p)).toBe(pid);
      expect(cmdline(pid)).toContain('supervise');
      expect(s.metadata?.generation).toBe(sts.metadata?.generation);
      expect(s.spec?.template).toEqual(sts.spec?.template);
      expect(cm.metadata?.resourceVersion).toBe(config.metadata?.resourceVersion);
    };

    // settings.json that is not JSON. The operator watches the persona ConfigMap (docs/operations.md):
    // the Agent is reconciled about a second later.
    await patchPersona({ 'settings.json': '{"env": {oops' });
    const broken = await waitFor('PersonaResolved=False naming settings.json', async () => {
      const a = await readAgent();
      return cond(a, 'PersonaResolved')?.status === 'False' && a;
    }, 90_000, 500);
    const resolved = cond(broken, 'PersonaResolved');
    expect(resolved?.reason).toBe('PersonaInvalid');
    expect(resolved?.message).toContain(`spec.persona.configMapRef: ConfigMap ${ns.name}/${PERSONA} key "settings.json" is not valid JSON`);
    expect(resolved?.message).toContain(`kubectl edit configmap ${PERSONA} -n ${ns.name}`);
    // Degraded says what is blocked; Ready still says the pod serves.
    expect(cond(broken, 'Degraded')).toMatchObject({ status: 'True', reason: 'PersonaInvalid' });
    expect(cond(broken, 'Degraded')?.message).toContain(`pod ${POD} is left running with its current spec until this is fixed`);
    expect(cond(broken, 'Ready')).toMatchObject({ status: 'True', reason: 'PodReady' });
    expect(broken.status?.phase).toBe('Degraded');
    const described = await kubectl(kubeconfig, ['describe', 'agent', AGENT, '-n', ns.name]);
    expect(described.stdout).toMatch(/Warning\s+PersonaInvalid/);
    await leftAlone();

    // Valid JSON, but an MCP server that is not an object: the message names the field.
    await patchPersona({ 'settings.json': persona['settings.json'], 'mcp.json': '{"mcpServers":{"github":"https://api.github.com"}}' });
    const field = await waitFor('PersonaResolved naming mcpServers.github', async () => {
      const a = await readAgent();
      return cond(a, 'PersonaResolved')?.message.includes('key "mcp.json": field mcpServers.github must be an object') && a;
    }, 90_000, 500);
    expect(cond(field, 'PersonaResolved')).toMatchObject({ status: 'False', reason: 'PersonaInvalid' });
    expect(cond(field, 'Ready')?.status).toBe('True');
    await leftAlone();

    // Fixed as it was: resolved, not Degraded, and still the same pod (the rendered config is the same).
    await patchPersona({ 'mcp.json': persona['mcp.json'] });
    const fixed = await waitFor('PersonaResolved=True again', async () => {
      const a = await readAgent();
      return cond(a, 'PersonaResolved')?.status === 'True' && cond(a, 'Degraded')?.status === 'False' && a;
    }, 90_000, 500);
    expect(fixed.status?.phase).toBe('Ready');
    expect(cond(fixed, 'Ready')?.status).toBe('True');
    await leftAlone();
  }, 300_000);
});
