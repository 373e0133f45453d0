/**
 * The egress side of an Agent as the operator renders it: credential Secrets checked
 * before any pod is rolled out, the per-agent CA made once and kept, and real values
 * never copied anywhere but the Secret the proxy mounts.
 */
import { PatchStrategy, setHeaderOptions, type KubernetesObject } from '@kubernetes/client-node';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { stringify } from 'yaml';
import { kubeClients, kubectl, makeNamespace, waitFor, type KubeClients } from '../support/kube.ts';

interface AgentObject extends KubernetesObject {
  status?: { phase?: string; observedGeneration?: number; conditions?: { type: string; status: string; reason: string; message: string }[] };
}

const kubeconfig = inject('kubeconfig');
const jsonPatch = setHeaderOptions('Content-Type', PatchStrategy.JsonPatch);
const REAL_TOKEN = 'ghp_realSecretValue0123456789abcdefABCDEF';
let c: KubeClients;
let ns: { name: string; remove: () => Promise<void> };

const read = async (name: string) =>
  (await c.custom.getNamespacedCustomObject({ group: 'agentsmith.dev', version: 'v1alpha1', namespace: ns.name, plural: 'agents', name })) as AgentObject;
const cond = (a: AgentObject, type: string) => a.status?.conditions?.find((x) => x.type === type);

beforeAll(async () => {
  c = kubeClients(kubeconfig);
  ns = await makeNamespace(c, 'egress');
});
afterAll(async () => ns?.remove());

describe('credentials', () => {
  const spec = {
    persona: { instructions: 'You are credbot.' },
    egress: { allow: ['github.com', 'api.github.com'], credentials: [{ name: 'github', hosts: ['api.github.com'], secretRef: { name: 'gh-token', key: 'token' } }] },
  };

  it('names a missing Secret in CredentialsResolved and renders no pod', async () => {
    await kubectl(kubeconfig, ['apply', '-f', '-'], stringify({ apiVersion: 'agentsmith.dev/v1alpha1', kind: 'Agent', metadata: { name: 'credbot', namespace: ns.name }, spec }));
    const a = await waitFor('CredentialsResolved=False', async () => {
      const x = await read('credbot');
      return cond(x, 'CredentialsResolved')?.status === 'False' ? x : undefined;
    });
    expect(cond(a, 'CredentialsResolved')).toMatchObject({
      reason: 'CredentialsMissing',
      message: `spec.egress.credentials[0] (github).secretRef: Secret ${ns.name}/gh-token not found; create it or fix the name`,
    });
    expect(cond(a, 'Ready')).toMatchObject({ status: 'False', reason: 'CredentialsMissing' });
    expect(a.status?.phase).toBe('Failed');
    const sts = await c.apps.listNamespacedStatefulSet({ namespace: ns.name });
    expect(sts.items).toHaveLength(0);
  });

  it('names a missing key, then becomes Ready once the Secret is right, without copying the value', async () => {
    await c.core.createNamespacedSecret({ namespace: ns.name, body: { metadata: { name: 'gh-token' }, stringData: { wrong: REAL_TOKEN } } });
    await waitFor('the missing key to be named', async () => cond(await read('credbot'), 'CredentialsResolved')?.message.includes('has no key "token"'), 30_000);
    expect(cond(await read('credbot'), 'CredentialsResolved')?.message).toContain('it has "wrong"');

    await c.core.patchNamespacedSecret(
      { name: 'gh-token', namespace: ns.name, body: [{ op: 'add', path: '/data/token', value: Buffer.from(REAL_TOKEN).toString('base64') }] },
      jsonPatch,
    );
    await waitFor('Ready=True', async () => cond(await read('credbot'), 'Ready')?.status === 'True', 60_000);
    expect(cond(await read('credbot'), 'CredentialsResolved')?.status).toBe('True');

    const cm = await c.core.readNamespacedConfigMap({ name: 'credbot-config', namespace: ns.name });
    expect(JSON.stringify(cm)).not.toContain(REAL_TOKEN);
    const sts = await c.apps.readNamespacedStatefulSet({ name: 'credbot', namespace: ns.name });
    expect(JSON.stringify(sts)).not.toContain(REAL_TOKEN);
    const agentStatus = JSON.stringify(await read('credbot'));
    expect(agentStatus).not.toContain(REAL_TOKEN);
  });
});

describe('the egress CA', () => {
  it('is created once, kept across reconciles, and replaced when the allowlist changes', async () => {
    const secret = await waitFor('the CA Secret', () => c.core.readNamespacedSecret({ name: 'credbot-egress-ca', namespace: ns.name }));
    const cert = new X509Certificate(Buffer.from(secret.data?.['ca.crt'] ?? '', 'base64'));
    expect(cert.ca).toBe(true);
    expect(secret.metadata?.ownerReferences?.[0]?.name).toBe('credbot');

    // A change that does not touch the allowlist keeps the CA.
    await c.custom.patchNamespacedCustomObject(
      { group: 'agentsmith.dev', version: 'v1alpha1', namespace: ns.name, plural: 'agents', name: 'credbot', body: [{ op: 'replace', path: '/spec/persona/instructions', value: 'You are credbot, v2.' }] },
      jsonPatch,
    );
    await waitFor('the change to be reconciled', async () => {
      const a = await read('credbot');
      return a.status?.observedGeneration === a.metadata?.generation;
    });
    const same = await c.core.readNamespacedSecret({ name: 'credbot-egress-ca', namespace: ns.name });
    expect(same.data?.['ca.crt']).toBe(secret.data?.['ca.crt']);

    // A new allowlist entry needs new name constraints, so a new CA, and a rolled pod.
    const before = await c.apps.readNamespacedStatefulSet({ name: 'credbot', namespace: ns.name });
    await c.custom.patchNamespacedCustomObject(
      { group: 'agentsmith.dev', version: 'v1alpha1', namespace: ns.name, plural: 'agents', name: 'credbot', body: [{ op: 'add', path: '/spec/egress/allow/-', value: 'registry.npmjs.org' }] },
      jsonPatch,
    );
    const renewed = await waitFor('a new CA', async () => {
      const s = await c.core.readNamespacedSecret({ name: 'credbot-egress-ca', namespace: ns.name });
      return s.data?.['ca.crt'] !== secret.data?.['ca.crt'] ? s : undefined;
    });
    const text = execFileSync('openssl', ['x509', '-noout', '-text'], { input: Buffer.from(renewed.data?.['ca.crt'] ?? '', 'base64') }).toString();
    expect(text).toMatch(/Permitted:[\s\S]*DNS:registry.npmjs.org/);
    const after = await waitFor('the pod template to change', async () => {
      const s = await c.apps.readNamespacedStatefulSet({ name: 'credbot', namespace: ns.name });
      const h = s.spec?.template.metadata?.annotations?.['agentsmith.dev/config-hash'];
      return h !== before.spec?.template.metadata?.annotations?.['agentsmith.dev/config-hash'] ? s : undefined;
    });
    expect(after).toBeDefined();
  });
});
