/**
 * The rest of what the operator renders for an Agent: RBAC from kubernetesAccess, the
 * NetworkPolicy, the team roster shared by teammates, and children restored after drift.
 */
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { stringify } from 'yaml';
import { kubeClients, kubectl, makeNamespace, waitFor, type KubeClients } from '../support/kube.ts';

const kubeconfig = inject('kubeconfig');
const jsonPatch = setHeaderOptions('Content-Type', PatchStrategy.JsonPatch);
let c: KubeClients;
let ns: { name: string; remove: () => Promise<void> };

const apply = (name: string, spec: Record<string, unknown>) =>
  kubectl(kubeconfig, ['apply', '-f', '-'], stringify({ apiVersion: 'agentsmith.dev/v1alpha1', kind: 'Agent', metadata: { name, namespace: ns.name }, spec }));
const roster = async () => (await c.core.readNamespacedConfigMap({ name: 'team-crew-roster', namespace: ns.name })).data?.['roster.md'] ?? '';

beforeAll(async () => {
  c = kubeClients(kubeconfig);
  ns = await makeNamespace(c, 'children');
});
afterAll(async () => ns?.remove());

describe('kubernetesAccess', () => {
  it('binds the ClusterRole to the agent in its namespace, and unbinds it when removed', async () => {
    await apply('watcher', { kubernetesAccess: { clusterRole: 'view' } });
    const rb = await waitFor('the RoleBinding', () => c.rbac.readNamespacedRoleBinding({ name: 'watcher-access', namespace: ns.name }));
    expect(rb.roleRef.name).toBe('view');
    expect(rb.subjects).toEqual([expect.objectContaining({ kind: 'ServiceAccount', name: 'watcher', namespace: ns.name })]);
    const sa = await c.core.readNamespacedServiceAccount({ name: 'watcher', namespace: ns.name });
    expect(sa.automountServiceAccountToken).toBe(true);
    // What the agent may do now, as the API server's authorizer says.
    const can = await kubectl(kubeconfig, ['auth', 'can-i', 'list', 'pods', '-n', ns.name, `--as=system:serviceaccount:${ns.name}:watcher`]);
    expect(can.stdout.trim()).toBe('yes');
    const cannot = await kubectl(kubeconfig, ['auth', 'can-i', 'delete', 'pods', '-n', ns.name, `--as=system:serviceaccount:${ns.name}:watcher`]);
    expect(cannot.stdout.trim()).toBe('no');

    await c.custom.patchNamespacedCustomObject(
      { group: 'agentsmith.dev', version: 'v1alpha1', namespace: ns.name, plural: 'agents', name: 'watcher', body: [{ op: 'remove', path: '/spec/kubernetesAccess' }] },
      jsonPatch,
    );
    await waitFor('the RoleBinding to go', async () => (await c.rbac.listNamespacedRoleBinding({ namespace: ns.name })).items.length === 0);
  });

  it('gets a NetworkPolicy that selects its pod', async () => {
    const np = await waitFor('the NetworkPolicy', () => c.networking.readNamespacedNetworkPolicy({ name: 'watcher', namespace: ns.name }));
    expect(np.spec?.podSelector?.matchLabels).toEqual({ 'app.kubernetes.io/name': 'agent', 'app.kubernetes.io/instance': 'watcher' });
  });
});

describe('a team roster', () => {
  it('lists every teammate, and follows a teammate joining and leaving', async () => {
    await apply('alpha', { team: 'crew', github: { login: 'alpha-bot' } });
    await waitFor('alpha in the roster', async () => (await roster()).includes('**alpha**'));
    await apply('beta', { team: 'crew' });
    await waitFor('alpha and beta in the roster', async () => {
      const r = await roster();
      return r.includes('**alpha**') && r.includes('**beta**');
    });
    const cm = await c.core.readNamespacedConfigMap({ name: 'team-crew-roster', namespace: ns.name });
    expect(cm.metadata?.ownerReferences?.map((o) => o.name).sort()).toEqual(['alpha', 'beta']);
    const claude = (await c.core.readNamespacedConfigMap({ name: 'alpha-config', namespace: ns.name })).data?.['CLAUDE.md'];
    expect(claude).toContain('@/etc/agent-smith/team/roster.md');

    await kubectl(kubeconfig, ['delete', 'agent', 'beta', '-n', ns.name]);
    await waitFor('beta to leave the roster', async () => !(await roster()).includes('**beta**'));
    expect(await roster()).toContain('**alpha**');
  });
});

describe('drift', () => {
  it('restores a deleted child and an edited one', async () => {
    await c.core.deleteNamespacedService({ name: 'alpha', namespace: ns.name });
    await waitFor('the Service to come back', async () => {
      const s = await c.core.readNamespacedService({ name: 'alpha', namespace: ns.name });
      return s.metadata?.deletionTimestamp === undefined;
    });
    // The StatefulSet, and the egress CA Secret (a new CA is made and rolled out).
    const ca = await c.core.readNamespacedSecret({ name: 'alpha-egress-ca', namespace: ns.name });
    await c.apps.deleteNamespacedStatefulSet({ name: 'alpha', namespace: ns.name });
    await c.core.deleteNamespacedSecret({ name: 'alpha-egress-ca', namespace: ns.name });
    await waitFor('the StatefulSet to come back', async () => {
      const s = await c.apps.readNamespacedStatefulSet({ name: 'alpha', namespace: ns.name });
      return s.metadata?.uid !== undefined && s.metadata.deletionTimestamp === undefined;
    });
    const renewed = await waitFor('a new CA Secret', async () => {
      const s = await c.core.readNamespacedSecret({ name: 'alpha-egress-ca', namespace: ns.name });
      return s.metadata?.uid !== ca.metadata?.uid ? s : undefined;
    });
    expect(renewed.data?.['ca.key']).toBeDefined();
    await c.core.patchNamespacedConfigMap(
      { name: 'alpha-config', namespace: ns.name, body: [{ op: 'replace', path: '/data/CLAUDE.md', value: 'tampered' }] },
      jsonPatch,
    );
    await waitFor('the ConfigMap to be restored', async () => {
      const cm = await c.core.readNamespacedConfigMap({ name: 'alpha-config', namespace: ns.name });
      return cm.data?.['CLAUDE.md']?.includes('You are alpha');
    });
  });
});
