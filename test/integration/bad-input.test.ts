/**
 * Bad Agents are refused by the API server at apply time (schema and CEL rules of the
 * generated CRD), with a message that names the field. Nothing is stored.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { stringify } from 'yaml';
import { kubeClients, kubectl, makeNamespace } from '../support/kube.ts';

const kubeconfig = inject('kubeconfig');
let ns: { name: string; remove: () => Promise<void> };

beforeAll(async () => {
  ns = await makeNamespace(kubeClients(kubeconfig), 'bad-input');
});
afterAll(async () => ns?.remove());

const good = { repos: [{ name: 'acme/app' }], egress: { allow: ['github.com'] } };

/** [what is wrong, manifest overrides, the field the error must name, a word of the fix]. */
const cases: Array<[string, { name?: string; spec?: unknown }, string, RegExp]> = [
  ['no spec at all', { spec: undefined }, 'spec', /Required value/],
  ['a repo that is not owner/repo', { spec: { ...good, repos: [{ name: 'not a repo' }] } }, 'spec.repos[0].name', /owner\/repo|should match/],
  ['a negative storage size', { spec: { ...good, storage: { home: '-5Gi' } } }, 'spec.storage.home', /should match/],
  ['an unparsable storage size', { spec: { ...good, storage: { workspace: 'lots' } } }, 'spec.storage.workspace', /should match/],
  ['a zero storage size', { spec: { ...good, storage: { home: '0' } } }, 'spec.storage.home', /positive quantity/],
  ['an unknown harness kind', { spec: { ...good, harness: { kind: 'gpt' } } }, 'spec.harness.kind', /Unsupported value: "gpt"/],
  ['an empty allowlist entry', { spec: { ...good, egress: { allow: [''] } } }, 'spec.egress.allow[0]', /should match|at least 1/],
  ['a URL instead of a host in the allowlist', { spec: { ...good, egress: { allow: ['https://github.com'] } } }, 'spec.egress.allow[0]', /should match/],
  ['a custom harness without a command', { spec: { ...good, harness: { kind: 'custom' } } }, 'spec.harness.command', /harness.command is required/],
  ['a primaryRepo that is not among repos', { spec: { ...good, primaryRepo: 'other' } }, 'spec.primaryRepo', /must name one of spec.repos/],
  ['a Matrix user id without a server', { spec: { ...good, matrix: { homeserverUrl: 'https://m.example.org', userId: 'devbot', accessTokenSecretRef: { name: 's', key: 'k' } } } }, 'spec.matrix.userId', /should match/],
  ['Matrix without its access token Secret', { spec: { ...good, matrix: { homeserverUrl: 'https://m.example.org', userId: '@d:example.org' } } }, 'spec.matrix.accessTokenSecretRef', /Required value/],
  ['a credential for a host that is not allowed', {
    spec: { ...good, egress: { allow: ['github.com'], credentials: [{ name: 'gh', hosts: ['api.github.com'], secretRef: { name: 's', key: 'k' } }] } },
  }, 'spec.egress.credentials', /must also be allowed by egress.allow/],
  ['both inline and ConfigMap persona', { spec: { ...good, persona: { instructions: 'x', configMapRef: { name: 'p' } } } }, 'spec.persona', /either persona.instructions or persona.configMapRef/],
  ['a PR poll interval below 30 s', { spec: { ...good, github: { login: 'bot', watchPullRequests: { intervalSeconds: 5 } } } }, 'spec.github.watchPullRequests.intervalSeconds', /greater than or equal to 30/],
  ['suspend as a string', { spec: { ...good, suspend: 'sometimes' } }, 'spec.suspend', /must be of type boolean|Invalid value/],
  ['a name too long for its StatefulSet pod', { name: 'a'.repeat(53), spec: good }, 'metadata.name', /at most 52 characters/],
  ['an unknown enforcement mode', { spec: { ...good, egress: { allow: ['github.com'], enforcement: 'none' } } }, 'spec.egress.enforcement', /Unsupported value: "none"/],
  ['a git e-mail that is not an address', { spec: { ...good, git: { email: 'devbot at example.org' } } }, 'spec.git.email', /should match/],
  ['an unknown permission mode', { spec: { ...good, permissions: { mode: 'yolo' } } }, 'spec.permissions.mode', /Unsupported value: "yolo"/],
  ['a permission rule of two lines', { spec: { ...good, permissions: { deny: ['Bash(git push * main)\nBash(rm -rf /)'] } } }, 'spec.permissions.deny[0]', /should match/],
  ['an over-long permission rule', { spec: { ...good, permissions: { allow: [`Bash(${'x'.repeat(1100)})`] } } }, 'spec.permissions.allow[0]', /Too long|at most 1024/],
  ['a Read rule relative to the settings file instead of absolute', { spec: { ...good, permissions: { deny: ['Read(/etc/agent-smith/**)'] } } }, 'spec.permissions.deny[0]', /absolute path starts with "\/\/"/],
  ['cluster-wide Kubernetes access (not rendered, so refused)', { spec: { ...good, kubernetesAccess: { clusterRole: 'view', clusterWide: true } } }, 'spec.kubernetesAccess.clusterWide', /clusterWide: true is not supported yet.*ClusterRoleBinding/],
];

describe('the API server refuses a bad Agent at apply time', () => {
  it.each(cases.map((c, i) => [...c, i] as const))('%s', async (_what, override, field, fix, i) => {
    const manifest: Record<string, unknown> = {
      apiVersion: 'agentsmith.dev/v1alpha1',
      kind: 'Agent',
      metadata: { name: override.name ?? `bad-${i}`, namespace: ns.name },
    };
    if (override.spec !== undefined) manifest.spec = override.spec;
    const result = await kubectl(kubeconfig, ['apply', '-f', '-'], stringify(manifest));
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('is invalid');
    expect(result.stderr).toContain(field);
    expect(result.stderr).toMatch(fix);
    const stored = await kubectl(kubeconfig, ['get', 'agent', (manifest.metadata as { name: string }).name, '-n', ns.name]);
    expect(stored.stderr).toContain('NotFound');
  });
});
