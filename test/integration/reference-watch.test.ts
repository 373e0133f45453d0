/**
 * The operator watches what Agents reference (issue 14, item 10): a credential Secret's
 * key renamed, a persona ConfigMap broken, the Matrix token Secret deleted under a running
 * Agent each show in its conditions within 10 s, and a Secret created afterwards brings
 * it back, while the running pod is left alone. The operator under test resyncs every
 * 600 s (its default), so only the watch can make it in time.
 *
 * That operator runs as the Helm chart's ServiceAccount, with the chart's ClusterRole.
 *
 * Also: the watch of Secrets is metadata-only on the real API server (no value in the
 * list or in a watch event), and a change to a Secret no Agent names queues nothing.
 */
import { pino } from 'pino';
import type { KubernetesObject, V1Pod, V1StatefulSet } from '@kubernetes/client-node';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { stringify } from 'yaml';
import { listObjectMetadata, PARTIAL_OBJECT_METADATA_ACCEPT } from '../../operator/src/kube/metadata.ts';
import { ResilientInformer } from '../../operator/src/runtime/informer.ts';
import { kubeClients, kubectl, makeNamespace, waitFor, type KubeClients } from '../support/kube.ts';
import { chartRbacKubeconfig, startOperator, TEST_SHARD_LABEL, type OperatorProcess } from '../support/operator.ts';

const kubeconfig = inject('kubeconfig');
const AGENT = 'refbot';
const POD = `${AGENT}-0`;
/** What the issue asks: a reference change shows within this, in ms. */
const WITHIN_MS = 10_000;
const GITHUB_VALUE = 'ghp_reference_watch_value_1';
const MATRIX_VALUE = 'syt_reference_watch_value_2';
const PERSONA = { 'CLAUDE.md': 'You are refbot.', 'settings.json': '{"env":{"REFBOT":"1"}}' };

interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
}
interface AgentObject extends KubernetesObject {
  status?: { phase?: string; conditions?: Condition[] };
}

let c: KubeClients;
let ns: { name: string; remove: () => Promise<void> };
let operator: OperatorProcess | undefined;
let chartRbac: { path: string; remove: () => Promise<void> } | undefined;
let failed = false;

const readAgent = async () => (await c.custom.getNamespacedCustomObject({ group: 'agentsmith.dev', version: 'v1alpha1', namespace: ns.name, plural: 'agents', name: AGENT })) as AgentObject;
const cond = (a: AgentObject, type: string) => a.status?.conditions?.find((x) => x.type === type);
const secret = (name: string, data: Record<string, string>) => ({ metadata: { name }, stringData: data });

/** Sum of the operator's samples of `name` whose labels contain `labels`. */
async function metric(name: string, labels = ''): Promise<number> {
  const port = /"metrics":(\d+)/.exec(operator?.log() ?? '')?.[1];
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = new RegExp(`^${name}\\{([^}]*)\\} (\\S+)$`).exec(line);
    if (m && (m[1] ?? '').includes(labels)) sum += Number(m[2]);
  }
  return sum;
}

/**
 * Waits at most WITHIN_MS after a change for `type` to reach `status` with a message
 * containing `text`; returns the Agent and how long it took, in ms.
 */
async function conditionWithin(what: string, since: number, type: string, status: string, text: string): Promise<{ agent: AgentObject; ms: number }> {
  const agent = await waitFor(
    what,
    async () => {
      const a = await readAgent();
      const x = cond(a, type);
      return x?.status === status && x.message.includes(text) && a;
    },
    Math.max(0, since + WITHIN_MS - Date.now()),
    100,
  );
  return { agent, ms: Date.now() - since };
}

beforeAll(async () => {
  c = kubeClients(kubeconfig);
  ns = await makeNamespace(c, 'refwatch');
  await c.core.createNamespacedSecret({ namespace: ns.name, body: secret('github-token', { token: GITHUB_VALUE }) });
  await c.core.createNamespacedSecret({ namespace: ns.name, body: secret('matrix-token', { token: MATRIX_VALUE }) });
  await c.core.createNamespacedConfigMap({ namespace: ns.name, body: { metadata: { name: 'persona' }, data: PERSONA } });
  // Its own operator, for this namespace's Agents only, at the default resync of 600 s,
  // acting as the Helm chart's ServiceAccount: the chart's RBAC must allow the watches.
  chartRbac = await chartRbacKubeconfig(kubeconfig, ns.name, ns.name);
  operator = startOperator(chartRbac.path, ['--agent-selector', `${TEST_SHARD_LABEL}=${ns.name}`]);
  await waitFor('operator ready', () => operator?.log().includes('operator ready'), 60_000);
  const agent = {
    apiVersion: 'agentsmith.dev/v1alpha1',
    kind: 'Agent',
    metadata: { name: AGENT, namespace: ns.name, labels: { [TEST_SHARD_LABEL]: ns.name } },
    spec: {
      persona: { configMapRef: { name: 'persona' } },
      egress: {
        allow: ['api.github.com', 'matrix.example.org'],
        credentials: [{ name: 'github', hosts: ['api.github.com'], secretRef: { name: 'github-token', key: 'token' } }],
      },
      matrix: { homeserverUrl: 'https://matrix.example.org', userId: '@refbot:example.org', accessTokenSecretRef: { name: 'matrix-token', key: 'token' } },
      storage: { retainOnDelete: false },
    },
  };
  const applied = await kubectl(kubeconfig, ['apply', '-f', '-'], stringify(agent));
  expect(applied.stderr).toBe('');
});

afterEach((ctx) => {
  if (ctx.task.result?.state === 'fail') failed = true;
});

afterAll(async () => {
  if (failed && operator) console.log(`[reference-watch] operator log:\n${operator.log().slice(-20_000)}`);
  operator?.proc.kill('SIGTERM');
  await operator?.exited;
  await chartRbac?.remove();
  await ns?.remove();
});

describe('a change to what a running Agent references', () => {
  it('shows in its conditions within 10 s, and the running pod is left alone', async () => {
    // Running: Ready, its pod up on a kwok node.
    await waitFor('Agent Ready=True', async () => cond(await readAgent(), 'Ready')?.status === 'True', 120_000, 250);
    const pod: V1Pod = await c.core.readNamespacedPod({ name: POD, namespace: ns.name });
    const sts: V1StatefulSet = await c.apps.readNamespacedStatefulSet({ name: AGENT, namespace: ns.name });
    const config = await c.core.readNamespacedConfigMap({ name: `${AGENT}-config`, namespace: ns.name });
    expect(pod.status?.phase).toBe('Running');
    /** Nothing rolled: same pod object, StatefulSet generation, template and revision, rendered config. */
    const leftAlone = async () => {
      const [p, s, cm] = await Promise.all([
        c.core.readNamespacedPod({ name: POD, namespace: ns.name }),
        c.apps.readNamespacedStatefulSet({ name: AGENT, namespace: ns.name }),
        c.core.readNamespacedConfigMap({ name: `${AGENT}-config`, namespace: ns.name }),
      ]);
      expect(p.metadata?.uid).toBe(pod.metadata?.uid);
      expect(p.metadata?.resourceVersion).toBe(pod.metadata?.resourceVersion);
      expect(s.metadata?.generation).toBe(sts.metadata?.generation);
      expect(s.spec?.template).toEqual(sts.spec?.template);
      expect(s.status?.updateRevision).toBe(sts.status?.updateRevision);
      expect(cm.metadata?.resourceVersion).toBe(config.metadata?.resourceVersion);
    };
    const timings: Record<string, number> = {};

    // 1. The credential Secret's key renamed (token -> gh): CredentialsResolved=False naming the key.
    let since = Date.now();
    await c.core.replaceNamespacedSecret({ name: 'github-token', namespace: ns.name, body: secret('github-token', { gh: GITHUB_VALUE }) });
    const renamed = await conditionWithin('CredentialsResolved=False naming the renamed key', since, 'CredentialsResolved', 'False', `spec.egress.credentials[0] (github).secretRef: Secret ${ns.name}/github-token has no key "token"`);
    timings['key renamed'] = renamed.ms;
    expect(cond(renamed.agent, 'CredentialsResolved')?.reason).toBe('CredentialsMissing');
    expect(cond(renamed.agent, 'CredentialsResolved')?.message).toContain('it has "gh"');
    expect(JSON.stringify(renamed.agent.status)).not.toContain(GITHUB_VALUE);
    // The pod serves on with what it has.
    expect(cond(renamed.agent, 'Ready')?.status).toBe('True');
    await leftAlone();

    // 2. The key back: resolved again, still the same pod.
    since = Date.now();
    await c.core.replaceNamespacedSecret({ name: 'github-token', namespace: ns.name, body: secret('github-token', { token: GITHUB_VALUE }) });
    timings['key restored'] = (await conditionWithin('CredentialsResolved=True again', since, 'CredentialsResolved', 'True', 'credential(s) found')).ms;
    await leftAlone();

    // 3. The persona ConfigMap broken (settings.json that is not JSON), then fixed.
    since = Date.now();
    await c.core.replaceNamespacedConfigMap({ name: 'persona', namespace: ns.name, body: { metadata: { name: 'persona' }, data: { ...PERSONA, 'settings.json': '{"env": {oops' } } });
    timings['persona broken'] = (
      await conditionWithin('PersonaResolved=False naming settings.json', since, 'PersonaResolved', 'False', `ConfigMap ${ns.name}/persona key "settings.json" is not valid JSON`)
    ).ms;
    await leftAlone();
    since = Date.now();
    await c.core.replaceNamespacedConfigMap({ name: 'persona', namespace: ns.name, body: { metadata: { name: 'persona' }, data: PERSONA } });
    timings['persona fixed'] = (await conditionWithin('PersonaResolved=True again', since, 'PersonaResolved', 'True', `from ConfigMap ${ns.name}/persona`)).ms;
    await leftAlone();

    // 4. The Matrix token Secret deleted, then created again with the right key.
    since = Date.now();
    await c.core.deleteNamespacedSecret({ name: 'matrix-token', namespace: ns.name });
    timings['matrix Secret deleted'] = (
      await conditionWithin('CredentialsResolved=False naming the Matrix token Secret', since, 'CredentialsResolved', 'False', `spec.matrix.accessTokenSecretRef: Secret ${ns.name}/matrix-token not found`)
    ).ms;
    await leftAlone();
    since = Date.now();
    await c.core.createNamespacedSecret({ namespace: ns.name, body: secret('matrix-token', { token: MATRIX_VALUE }) });
    const back = await conditionWithin('CredentialsResolved=True after the Secret is created', since, 'CredentialsResolved', 'True', 'credential(s) found');
    timings['matrix Secret created'] = back.ms;
    expect(back.agent.status?.phase).toBe('Ready');
    await leftAlone();

    console.log(`[reference-watch] condition updated after (ms): ${JSON.stringify(timings)}`);
    expect(await metric('agentsmith_reference_reconciles_total', 'kind="Secret"')).toBeGreaterThanOrEqual(4);
    expect(await metric('agentsmith_reference_reconciles_total', 'kind="ConfigMap"')).toBeGreaterThanOrEqual(2);
  }, 240_000);

  it('queues nothing for a Secret or ConfigMap no Agent names', async () => {
    await waitFor('Agent Ready=True', async () => cond(await readAgent(), 'Ready')?.status === 'True', 60_000, 250);
    const queued = await metric('agentsmith_reference_reconciles_total');
    const reconciles = await metric('controller_runtime_reconcile_total', 'controller="agent"');
    await c.core.createNamespacedSecret({ namespace: ns.name, body: secret('unrelated', { token: 'x' }) });
    await c.core.replaceNamespacedSecret({ name: 'unrelated', namespace: ns.name, body: secret('unrelated', { other: 'y' }) });
    await c.core.createNamespacedConfigMap({ namespace: ns.name, body: { metadata: { name: 'unrelated' }, data: { a: 'b' } } });
    await c.core.deleteNamespacedConfigMap({ name: 'unrelated', namespace: ns.name });
    // A referenced Secret changed last: once its reconcile shows, the events before it have been handled too.
    await c.core.replaceNamespacedSecret({ name: 'github-token', namespace: ns.name, body: secret('github-token', { token: GITHUB_VALUE, extra: 'z' }) });
    await waitFor('the referenced change queued', async () => (await metric('agentsmith_reference_reconciles_total')) > queued, WITHIN_MS, 100);
    expect(await metric('agentsmith_reference_reconciles_total')).toBe(queued + 1);
    await waitFor('its reconcile done', async () => (await metric('controller_runtime_reconcile_total', 'controller="agent"')) >= reconciles + 1, WITHIN_MS, 100);
    expect(await metric('controller_runtime_reconcile_total', 'controller="agent"')).toBe(reconciles + 1);
  }, 60_000);

  it('follows the spec: a Secret the Agent is changed to name is watched, the one it no longer names is not', async () => {
    const patched = await kubectl(kubeconfig, ['patch', 'agent', AGENT, '-n', ns.name, '--type=json', '-p', JSON.stringify([{ op: 'replace', path: '/spec/egress/credentials/0/secretRef/name', value: 'github-token-2' }])]);
    expect(patched.stderr).toBe('');
    await waitFor('CredentialsResolved=False: github-token-2 not found', async () => cond(await readAgent(), 'CredentialsResolved')?.message.includes(`Secret ${ns.name}/github-token-2 not found`), WITHIN_MS, 100);
    const queued = await metric('agentsmith_reference_reconciles_total');
    // The Secret it named before: nothing queued.
    await c.core.deleteNamespacedSecret({ name: 'github-token', namespace: ns.name });
    // The one it names now, created: resolved within 10 s.
    const since = Date.now();
    await c.core.createNamespacedSecret({ namespace: ns.name, body: secret('github-token-2', { token: GITHUB_VALUE }) });
    await conditionWithin('CredentialsResolved=True once github-token-2 exists', since, 'CredentialsResolved', 'True', 'credential(s) found');
    expect(await metric('agentsmith_reference_reconciles_total')).toBe(queued + 1);
  }, 60_000);
});

describe('the metadata-only watch of Secrets', () => {
  it('lists and watches Secrets without their values, on the real API server', async () => {
    const path = `/api/v1/namespaces/${ns.name}/secrets`;
    const listed = await listObjectMetadata(c.kc, path);
    expect(listed.kind).toBe('PartialObjectMetadataList');
    const matrix = listed.items.find((s) => s.metadata?.name === 'matrix-token');
    expect(matrix?.metadata?.uid).toBeTruthy();
    expect(JSON.stringify(listed)).not.toContain(Buffer.from(MATRIX_VALUE).toString('base64'));
    expect(JSON.stringify(listed)).not.toContain('"data"');

    // The informer as the operator runs it, without the transform: what the server sends.
    const seen: KubernetesObject[] = [];
    const informer = new ResilientInformer<KubernetesObject>(c.kc, {
      name: 'test-secret-metadata',
      path,
      list: () => listObjectMetadata(c.kc, path),
      watchAccept: PARTIAL_OBJECT_METADATA_ACCEPT,
      onChange: (obj) => seen.push(obj),
      log: pino({ level: 'silent' }),
    });
    informer.start();
    try {
      await informer.waitForSync();
      const value = 'watched_secret_value_3';
      await c.core.createNamespacedSecret({ namespace: ns.name, body: secret('watched', { token: value }) });
      const event = await waitFor('the watch event of the new Secret', () => seen.find((o) => o.metadata?.name === 'watched'), WITHIN_MS, 50);
      expect(event.kind).toBe('PartialObjectMetadata');
      expect(JSON.stringify(event)).not.toContain(Buffer.from(value).toString('base64'));
      expect(JSON.stringify(event)).not.toContain('"data"');
      expect(informer.cache.get('watched', ns.name)?.metadata?.uid).toBe(event.metadata?.uid);
    } finally {
      await informer.stop();
    }
  });
});
