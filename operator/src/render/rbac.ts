import type { V1RoleBinding } from '@kubernetes/client-node';
import type { Agent } from '../api/agent.ts';
import { childMeta, childNames } from './meta.ts';

/**
 * The RoleBinding that grants `spec.kubernetesAccess.clusterRole` to the agent's
 * ServiceAccount in the Agent's namespace, or `undefined` when no access is asked for
 * (the reconciler then deletes a leftover binding). Pure.
 *
 * Cluster-wide access (`clusterWide: true`) is refused (the CRD's CEL rule, SpecValid):
 * a namespaced Agent cannot own a cluster-scoped ClusterRoleBinding through an owner
 * reference, so it would need a finalizer and the operator the `bind` verb cluster-wide.
 */
export function renderRoleBinding(agent: Agent): V1RoleBinding | undefined {
  const access = agent.spec.kubernetesAccess;
  if (!access?.clusterRole || access.clusterWide) return undefined;
  const names = childNames(agent.metadata.name);
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'RoleBinding',
    metadata: childMeta(agent, names.roleBinding, 'rbac'),
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: access.clusterRole },
    subjects: [{ kind: 'ServiceAccount', name: names.serviceAccount, namespace: agent.metadata.namespace ?? 'default' }],
  };
}
