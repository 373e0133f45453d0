/**
 * The reads the Agent reconciler gathers (reconcile/gather.ts) beyond its informer
 * caches: the Secrets and ConfigMaps an Agent names, the cluster-scoped objects it names,
 * in-cluster Services and the API server's EndpointSlices. A missing object resolves to
 * `undefined` (or `false`); any other failure is thrown as kube/errors.ts says
 * (`TemporaryError`, or `RetryAfter` on a 429).
 */
import type { V1ConfigMap, V1EndpointSlice, V1Secret, V1Service } from '@kubernetes/client-node';
import type { Clients } from './clients.ts';
import { readOrUndefined, toReconcileError } from './errors.ts';
import { httpStatusOf } from '../runtime/errors.ts';

/** One GET of a Secret, values included (callers never log or copy them); undefined on 404. */
export function readSecret(clients: Clients, namespace: string, name: string): Promise<V1Secret | undefined> {
  return readOrUndefined(`reading Secret ${namespace}/${name}`, () => clients.core.readNamespacedSecret({ name, namespace }));
}

/** One GET of a ConfigMap; undefined on 404. */
export function readConfigMap(clients: Clients, namespace: string, name: string): Promise<V1ConfigMap | undefined> {
  return readOrUndefined(`reading ConfigMap ${namespace}/${name}`, () => clients.core.readNamespacedConfigMap({ name, namespace }));
}

/** One GET of a Service; undefined on 404. */
export function readService(clients: Clients, namespace: string, name: string): Promise<V1Service | undefined> {
  return readOrUndefined(`reading Service ${namespace}/${name}`, () => clients.core.readNamespacedService({ name, namespace }));
}

/** Whether the ClusterRole `name` exists (one GET). */
export async function clusterRoleExists(clients: Clients, name: string): Promise<boolean> {
  return (await readOrUndefined(`reading ClusterRole ${name}`, () => clients.rbac.readClusterRole({ name }))) !== undefined;
}

/** Whether the StorageClass `name` exists (one GET). */
export async function storageClassExists(clients: Clients, name: string): Promise<boolean> {
  return (await readOrUndefined(`reading StorageClass ${name}`, () => clients.storage.readStorageClass({ name }))) !== undefined;
}

/**
 * The EndpointSlices of Service `namespace/name` (label kubernetes.io/service-name), one
 * LIST. `'forbidden'` on a 403: an operator ClusterRole without `list` on
 * discovery.k8s.io endpointslices, which the caller reports rather than fails on.
 */
export async function listServiceEndpointSlices(clients: Clients, namespace: string, name: string): Promise<V1EndpointSlice[] | 'forbidden'> {
  try {
    const slices = await clients.discovery.listNamespacedEndpointSlice({ namespace, labelSelector: `kubernetes.io/service-name=${name}` });
    return slices.items;
  } catch (err) {
    if (httpStatusOf(err) === 403) return 'forbidden';
    throw toReconcileError(`listing the EndpointSlices of ${namespace}/${name}`, err);
  }
}
