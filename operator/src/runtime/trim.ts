import type { KubernetesObject } from '@kubernetes/client-node';

/** Annotation in which client-side `kubectl apply` keeps a copy of the whole applied object. */
export const LAST_APPLIED_ANNOTATION = 'kubectl.kubernetes.io/last-applied-configuration';

/**
 * The object without `metadata.managedFields` and without kubectl's last-applied
 * annotation: what an informer cache should hold when its reader never looks at either
 * (client-go's TransformFunc, as controller-runtime uses it to strip managed fields).
 * Managed fields are about half of a pod's or StatefulSet's JSON. Pure: returns a new
 * object sharing the untouched parts with `obj`.
 */
export function trimMetadata<T extends KubernetesObject>(obj: T): T {
  const meta = obj.metadata;
  if (!meta || (meta.managedFields === undefined && meta.annotations?.[LAST_APPLIED_ANNOTATION] === undefined)) return obj;
  const metadata = without(meta, 'managedFields');
  if (metadata.annotations?.[LAST_APPLIED_ANNOTATION] !== undefined) metadata.annotations = without(metadata.annotations, LAST_APPLIED_ANNOTATION);
  return { ...obj, metadata };
}

/** A copy of `o` without `key` (and without undefined values); built afresh rather than with `delete`, which slows V8's objects. */
function without<T extends object>(o: T, key: string): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (k !== key && v !== undefined) out[k] = v;
  return out as T;
}

/**
 * An object as seen by a reader of its status only (the operator's view of a pod):
 * kind, metadata (trimmed as by trimMetadata) and status; the spec, most of a pod, is
 * dropped. Pure.
 */
export function statusOnly<T extends KubernetesObject & { status?: unknown }>(obj: T): T {
  const { apiVersion, kind, metadata, status } = trimMetadata(obj);
  return { apiVersion, kind, metadata, status } as T;
}
