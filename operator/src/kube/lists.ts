/**
 * The LIST calls behind the operator's informers (operator.ts): the Agents, and every
 * kind it manages, across all namespaces. Each resolves to the list as the API server
 * sends it (items and the list's resourceVersion, which the watch then starts from).
 */
import type { KubernetesListObject, KubernetesObject } from '@kubernetes/client-node';
import { GROUP, PLURAL, VERSION } from '../api/agent.ts';
import { LABEL_MANAGED_BY, MANAGED_BY } from '../api/constants.ts';
import type { Clients } from './clients.ts';
import { listObjectMetadata } from './metadata.ts';

type List = Promise<KubernetesListObject<KubernetesObject>>;

/** Every Agent in the cluster, or those matching `labelSelector`. */
export function listAgents(clients: Clients, labelSelector?: string): List {
  return clients.custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, ...(labelSelector ? { labelSelector } : {}) }) as List;
}

/** The kinds the operator keeps an informer cache of, by the plural of their API path. */
export type ManagedResource = 'pods' | 'statefulsets' | 'secrets' | 'configmaps' | 'services' | 'serviceaccounts' | 'rolebindings' | 'networkpolicies';

/** Every object of `resource` in the cluster matching `labelSelector` (the operator's managed-by label). */
export function listManaged(clients: Clients, resource: ManagedResource, labelSelector: string): List {
  const sel = { labelSelector };
  const lists: Record<ManagedResource, () => Promise<unknown>> = {
    pods: () => clients.core.listPodForAllNamespaces(sel),
    statefulsets: () => clients.apps.listStatefulSetForAllNamespaces(sel),
    secrets: () => clients.core.listSecretForAllNamespaces(sel),
    configmaps: () => clients.core.listConfigMapForAllNamespaces(sel),
    services: () => clients.core.listServiceForAllNamespaces(sel),
    serviceaccounts: () => clients.core.listServiceAccountForAllNamespaces(sel),
    rolebindings: () => clients.rbac.listRoleBindingForAllNamespaces(sel),
    networkpolicies: () => clients.networking.listNetworkPolicyForAllNamespaces(sel),
  };
  return lists[resource]() as List;
}

/**
 * Label selector of the objects the operator does not manage (no managed-by label, or
 * another manager's): the reference informers' scope. Its own children are watched by
 * the child informers already, and no spec reference names one (they are named after
 * the Agent and hold what the operator renders, not what a user provides).
 */
export const NOT_MANAGED_SELECTOR = `${LABEL_MANAGED_BY}!=${MANAGED_BY}`;

/** The metadata only (PartialObjectMetadata, never a value) of every object at `path`, e.g. `/api/v1/secrets`, matching `labelSelector` when given. */
export function listMetadata(clients: Clients, path: string, labelSelector?: string): List {
  return listObjectMetadata(clients.kc, path, labelSelector);
}
