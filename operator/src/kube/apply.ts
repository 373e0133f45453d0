import { PatchStrategy, type KubernetesObject } from '@kubernetes/client-node';
import { FIELD_MANAGER } from '../api/constants.ts';
import { describeError, httpStatusOf } from '../runtime/errors.ts';
import type { Clients } from './clients.ts';
import { readOrUndefined, toReconcileError } from './errors.ts';

/** `Kind namespace/name` of an object, for messages. */
function describeObject(obj: KubernetesObject): string {
  return `${obj.kind} ${obj.metadata?.namespace ? `${obj.metadata.namespace}/` : ''}${obj.metadata?.name ?? ''}`;
}

/**
 * Server-side apply of `obj` under the operator's one field manager, with `force` so the
 * operator takes back fields someone else changed (it owns what it renders). Only the
 * fields present in `obj` are owned; fields set by others (HPA replicas, annotations
 * added by tools) stay.
 *
 * @returns the object as stored
 * @throws client-node's ApiException on any HTTP error (422 for an invalid or immutable field)
 */
export async function serverSideApply<T extends KubernetesObject>(clients: Clients, obj: T): Promise<T> {
  return clients.objects.patch(obj, undefined, undefined, FIELD_MANAGER, true, PatchStrategy.ServerSideApply);
}

/** What {@link applyObject} did: the object as stored, or why the API server refused it (422). */
export type ApplyOutcome<T> = { applied: T } | { rejected: string };

/**
 * {@link serverSideApply} for the reconciler: a 422 Unprocessable Entity (an invalid or
 * immutable field: the object, not the cluster, is wrong) is returned as `rejected`
 * (`HTTP 422: <the API server's message>`); any other failure is thrown as
 * kube/errors.ts says (`TemporaryError`, `RetryAfter` on a 429).
 */
export async function applyObject<T extends KubernetesObject>(clients: Clients, obj: T): Promise<ApplyOutcome<T>> {
  try {
    return { applied: await serverSideApply(clients, obj) };
  } catch (err) {
    if (httpStatusOf(err) === 422) return { rejected: describeError(err) };
    throw toReconcileError(`applying ${describeObject(obj)}`, err);
  }
}

/** What {@link createObject} did: the object as stored, `exists` (409: one of that name is already there), or why the API server refused it (422). */
export type CreateOutcome<T> = { created: T } | { exists: true } | { rejected: string };

/**
 * Creates `obj` (POST) under the operator's field manager: for an object that must never
 * be overwritten by a second writer racing the cache, such as a freshly minted egress CA
 * (a 409 says someone has one: read it rather than replace it). A 422 is returned as
 * `rejected`; any other failure is thrown as kube/errors.ts says (`TemporaryError`,
 * `RetryAfter` on a 429).
 */
export async function createObject<T extends KubernetesObject>(clients: Clients, obj: T): Promise<CreateOutcome<T>> {
  try {
    return { created: await clients.objects.create(obj, undefined, undefined, FIELD_MANAGER) };
  } catch (err) {
    const status = httpStatusOf(err);
    if (status === 409) return { exists: true };
    if (status === 422) return { rejected: describeError(err) };
    throw toReconcileError(`creating ${describeObject(obj)}`, err);
  }
}

/** Deletes a RoleBinding (one left from an earlier spec.kubernetesAccess); 404 is fine. */
export async function deleteRoleBinding(clients: Clients, namespace: string, name: string): Promise<void> {
  await readOrUndefined(`deleting RoleBinding ${namespace}/${name}`, () => clients.rbac.deleteNamespacedRoleBinding({ name, namespace }));
}
