/**
 * Agents that pass the CRD schema but cannot work as written: each gets a condition
 * whose message names the field and the fix, no pod is rendered, and the operator keeps
 * running (no crash, no retry storm).
 */
import type { KubernetesObject } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { stringify } from 'yaml';
import { kubeClients, kubectl, makeNamespace, waitFor, type KubeClients } from '../support/kube.ts';

interface AgentObject extends KubernetesObject {
  status?: { phase?: string; conditions?: { type: string; status: string; reason: string; message: string }[] };
}

const kubeconfig = inject('kubeconfig');
const base = inject('operatorHttp');
let c: KubeClients;
let ns: { name: string; remove: () => Promise<void> };

const cred = (name: string, hosts: string[], secret = 'tokens', key = 'github') => ({ name, hosts, secretRef: { name: secret, key } });
const matrix = (extra: Record<string, unknown> = {}) => ({
  homeserverUrl: 'https://matrix.example.org',
  userId: '@bot:example.org',
  accessTokenSecretRef: { name: 'tokens', key: 'matrix' },
  ...extra,
});

/** [what is wrong, spec, condition type, reason, text the message must contain]. */
const cases: Array<[string, Record<string, unknown>, string, string, string]> = [
  ['a credential Secret that does not exist', { egress: { allow: ['api.github.com'], credentials: [cred('gh', ['api.github.com'], 'nope')] } }, 'CredentialsResolved', 'CredentialsMissing', 'spec.egress.credentials[0] (gh).secretRef: Secret NS/nope not found'],
  ['a credential key the Secret lacks', { egress: { allow: ['api.github.com'], credentials: [cred('gh', ['api.github.com'], 'tokens', 'gitlab')] } }, 'CredentialsResolved', 'CredentialsMissing', 'has no key "gitlab"'],
  ['a credential key that is empty', { egress: { allow: ['api.github.com'], credentials: [cred('gh', ['api.github.com'], 'tokens', 'empty')] } }, 'CredentialsResolved', 'CredentialsMissing', 'has no key "empty" (or it is empty)'],
  ['a Matrix token Secret that does not exist', { egress: { allow: ['matrix.example.org'] }, matrix: matrix({ accessTokenSecretRef: { name: 'nope', key: 'matrix' } }) }, 'CredentialsResolved', 'CredentialsMissing', 'spec.matrix.accessTokenSecretRef: Secret NS/nope not found'],
  ['a persona ConfigMap that does not exist', { persona: { configMapRef: { name: 'nope' } } }, 'PersonaResolved', 'PersonaNotFound', 'spec.persona.configMapRef: ConfigMap NS/nope not found'],
  ['a persona ConfigMap without CLAUDE.md', { persona: { configMapRef: { name: 'no-claude' } } }, 'PersonaResolved', 'PersonaInvalid', 'has no CLAUDE.md key (it has "notes.md")'],
  ['a persona settings.json that is not JSON', { persona: { configMapRef: { name: 'bad-settings' } } }, 'PersonaResolved', 'PersonaInvalid', 'spec.persona.configMapRef: ConfigMap NS/bad-settings key "settings.json" is not valid JSON'],
  ['a persona mcp.json that is not an object', { persona: { configMapRef: { name: 'bad-mcp' } } }, 'PersonaResolved', 'PersonaInvalid', 'ConfigMap NS/bad-mcp key "mcp.json" must be a JSON object'],
  ['a persona mcp.json server that is not an object', { persona: { configMapRef: { name: 'bad-mcp-server' } } }, 'PersonaResolved', 'PersonaInvalid', 'ConfigMap NS/bad-mcp-server key "mcp.json": field mcpServers.github must be an object'],
  ['two credentials for one host', { egress: { allow: ['api.github.com'], credentials: [cred('a', ['api.github.com']), cred('b', ['api.github.com'])] } }, 'SpecValid', 'InvalidSpec', 'spec.egress.credentials[1] (b): host "api.github.com" already gets credential "a"'],
  ['an allowlist wildcard over .com', { egress: { allow: ['*.com'] } }, 'SpecValid', 'InvalidSpec', 'spec.egress.allow[0]: "*.com" covers a whole public suffix'],
  ['an allowlist wildcard over .co.uk', { egress: { allow: ['*.co.uk'] } }, 'SpecValid', 'InvalidSpec', 'spec.egress.allow[0]: "*.co.uk" covers a whole public suffix'],
  ['a repeated allowlist entry', { egress: { allow: ['github.com', 'github.com'] } }, 'SpecValid', 'InvalidSpec', 'spec.egress.allow[1]: "github.com" repeats spec.egress.allow[0]'],
  ['allowCidrs of the whole Internet', { egress: { allowCidrs: ['0.0.0.0/0'] } }, 'SpecValid', 'InvalidSpec', 'spec.egress.allowCidrs[0]: "0.0.0.0/0" opens /0'],
  ['allowCidrs that is not an address', { egress: { allowCidrs: ['999.1.1.1/16'] } }, 'SpecValid', 'InvalidSpec', 'spec.egress.allowCidrs[0]: "999.1.1.1/16" is not a valid CIDR'],
  ['a credential over a public suffix', { egress: { allow: ['*.io'], credentials: [cred('a', ['*.io'])] } }, 'SpecValid', 'InvalidSpec', 'spec.egress.credentials[0].hosts[0]: "*.io" covers a whole public suffix'],
  ['two repos cloned into one folder', { repos: [{ name: 'a/app' }, { name: 'b/app' }] }, 'SpecValid', 'InvalidSpec', 'spec.repos[1]: "b/app" would be cloned into /workspace/app like "a/app"'],
  ['a homeserver the egress policy cannot reach', { matrix: matrix() }, 'SpecValid', 'InvalidSpec', 'spec.matrix.homeserverUrl: the Matrix homeserver host "matrix.example.org" is not allowed by spec.egress.allow'],
  ['a NATS server at an IP outside allowCidrs', { events: { natsUrl: 'nats://10.9.8.7:4222' } }, 'SpecValid', 'InvalidSpec', 'spec.events.natsUrl: the NATS server at IP 10.9.8.7 is not in spec.egress.allowCidrs'],
  ['its own Matrix id among allowedUsers', { egress: { allow: ['matrix.example.org'] }, matrix: matrix({ allowedUsers: ['@bot:example.org'] }) }, 'SpecValid', 'InvalidSpec', 'spec.matrix.allowedUsers[0]: the agent\'s own user id'],
  ['a ClusterRole that does not exist', { kubernetesAccess: { clusterRole: 'no-such-role' } }, 'ReferencesResolved', 'ReferenceNotFound', 'spec.kubernetesAccess.clusterRole: ClusterRole "no-such-role" not found'],
  ['a StorageClass that does not exist', { storage: { storageClassName: 'gold' } }, 'ReferencesResolved', 'ReferenceNotFound', 'spec.storage.storageClassName: StorageClass "gold" not found'],
  ['an image pull Secret that does not exist', { pod: { imagePullSecrets: [{ name: 'regcred' }] } }, 'ReferencesResolved', 'ReferenceNotFound', 'spec.pod.imagePullSecrets[0]: Secret NS/regcred not found'],
];

beforeAll(async () => {
  c = kubeClients(kubeconfig);
  ns = await makeNamespace(c, 'bad-config');
  await c.core.createNamespacedSecret({ namespace: ns.name, body: { metadata: { name: 'tokens' }, stringData: { github: 'gh-value', matrix: 'mx-value', empty: '' } } });
  for (const [name, data] of [
    ['no-claude', { 'notes.md': 'x' }],
    ['bad-settings', { 'CLAUDE.md': 'x', 'settings.json': '{oops' }],
    ['bad-mcp', { 'CLAUDE.md': 'x', 'mcp.json': '[1,2]' }],
    ['bad-mcp-server', { 'CLAUDE.md': 'x', 'mcp.json': '{"mcpServers":{"github":"https://example.org"}}' }],
  ] as const) {
    await c.core.createNamespacedConfigMap({ namespace: ns.name, body: { metadata: { name }, data } });
  }
  const manifests = cases.map(([, spec], i) => stringify({ apiVersion: 'agentsmith.dev/v1alpha1', kind: 'Agent', metadata: { name: `bad-${i}`, namespace: ns.name }, spec }));
  const applied = await kubectl(kubeconfig, ['apply', '-f', '-'], manifests.join('---\n'));
  expect(applied.stderr).toBe('');
});
afterAll(async () => ns?.remove());

describe('an Agent the schema accepts but that cannot work', () => {
  it.each(cases.map((x, i) => [...x, i] as const))('%s: %s names the field and the fix', async (_what, _spec, type, reason, text, i) => {
    const want = text.replace('NS', ns.name);
    const agent = await waitFor(`bad-${i} ${type}=${reason}`, async () => {
      const a = (await c.custom.getNamespacedCustomObject({ group: 'agentsmith.dev', version: 'v1alpha1', namespace: ns.name, plural: 'agents', name: `bad-${i}` })) as AgentObject;
      const cond = a.status?.conditions?.find((x) => x.type === type);
      return cond?.reason === reason && cond.message.includes(want) ? a : undefined;
    }, 30_000);
    expect(agent.status?.phase).toBe('Failed');
    expect(agent.status?.conditions?.find((x) => x.type === 'Ready')?.status).toBe('False');
    // No half-rendered pod.
    await expect(c.apps.readNamespacedStatefulSet({ name: `bad-${i}`, namespace: ns.name })).rejects.toMatchObject({ code: 404 });
  });

  it('leaves the operator healthy', async () => {
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
  });
});
