import { PatchStrategy, type KubernetesObject } from '@kubernetes/client-node';
import { FIELD_MANAGER } from '../api/constants.ts';
import type { Clients } from './clients.ts';

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
