import type { KubernetesObject, V1ContainerStatus, V1ManagedFieldsEntry, V1ObjectMeta, V1PodCondition, V1PodStatus } from '@kubernetes/client-node';
import { LABEL_COMPONENT } from '../api/constants.ts';
import { pickMetadata } from '../kube/metadata.ts';

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
 * The metadata a child cache keeps (childCache): identity, labels (the owner and team
 * labels queue reconciles), annotations (the applied hash, the egress CA's dates) and
 * each managed-fields entry's manager, operation, subresource and time without its
 * field set (kube/subset.ts writtenByUs reads the times after a restart).
 */
function childMetadata(meta: V1ObjectMeta | undefined): V1ObjectMeta {
  const m = meta ?? {};
  const out = pickMetadata(m, ['name', 'namespace', 'uid', 'resourceVersion', 'generation', 'deletionTimestamp', 'labels']);
  if (m.annotations !== undefined) {
    out.annotations = m.annotations[LAST_APPLIED_ANNOTATION] === undefined ? m.annotations : without(m.annotations, LAST_APPLIED_ANNOTATION);
  }
  if (m.managedFields !== undefined) {
    out.managedFields = m.managedFields.map((e) => {
      const entry: V1ManagedFieldsEntry = {};
      if (e.manager !== undefined) entry.manager = e.manager;
      if (e.operation !== undefined) entry.operation = e.operation;
      if (e.subresource !== undefined) entry.subresource = e.subresource;
      if (e.time !== undefined) entry.time = e.time;
      return entry;
    });
  }
  return out;
}

/** Service, ServiceAccount, RoleBinding, NetworkPolicy: kind and childMetadata. */
function metadataOf<T extends KubernetesObject>(obj: T): T {
  const out: KubernetesObject = { metadata: childMetadata(obj.metadata) };
  if (obj.apiVersion !== undefined) out.apiVersion = obj.apiVersion;
  if (obj.kind !== undefined) out.kind = obj.kind;
  return out as T;
}

/**
 * What the operator's caches keep of the children it manages (client-go's
 * TransformFunc): only what the reconcile reads, not the spec it rendered (whether to
 * apply again is told by the applied-hash annotation and the version,
 * kube/subset.ts needsApply). One transform per kind (a list's items carry no kind).
 * Each is pure; the input is not changed (kept parts are shared with it).
 */
export const childCache = {
  metadata: metadataOf,
  /** StatefulSet: also its status (rollout, readiness) and volume claim templates (immutable: compared with spec.storage and re-asserted on drift). */
  statefulSet: <T extends KubernetesObject & { spec?: { volumeClaimTemplates?: unknown }; status?: unknown }>(obj: T): T => {
    const out = metadataOf(obj);
    if (obj.spec?.volumeClaimTemplates !== undefined) out.spec = { volumeClaimTemplates: obj.spec.volumeClaimTemplates };
    if (obj.status !== undefined) out.status = obj.status;
    return out;
  },
  /** Secret (the egress CA, rendered into the pod's config): also its type and data. */
  secret: <T extends KubernetesObject & { type?: string; data?: unknown }>(obj: T): T => {
    const out = metadataOf(obj);
    if (obj.type !== undefined) out.type = obj.type;
    if (obj.data !== undefined) out.data = obj.data;
    return out;
  },
  /**
   * ConfigMap: a team roster (label `app.kubernetes.io/component: team-roster`, one per
   * team, whose reconcile compares content) whole but for trimMetadata's cuts; an
   * Agent's own, metadata only.
   */
  configMap: <T extends KubernetesObject>(obj: T): T => (obj.metadata?.labels?.[LABEL_COMPONENT] === 'team-roster' ? trimMetadata(obj) : metadataOf(obj)),
};

/** Of a container's status, what the Agent's status reads: name, readiness, restarts and its current and last state. */
function containerView(c: V1ContainerStatus): V1ContainerStatus {
  const out: V1ContainerStatus = { name: c.name, ready: c.ready, restartCount: c.restartCount, image: '', imageID: '' };
  if (c.state !== undefined) out.state = c.state;
  if (c.lastState !== undefined) out.lastState = c.lastState;
  return out;
}

/**
 * What the operator's cache keeps of an agent pod (reconcile/status.ts reads it): name,
 * namespace, uid, resourceVersion, labels (the controller revision) and deletion time; the
 * phase, conditions (type, status, reason, message) and each container's name, readiness,
 * restarts and states (image and imageID are left empty: required by the type, read by
 * nobody). Addresses, QoS class, resources, images and the spec are dropped. Pure.
 */
export function podCache<T extends KubernetesObject & { status?: V1PodStatus }>(obj: T): T {
  const metadata = pickMetadata(obj.metadata, ['name', 'namespace', 'uid', 'resourceVersion', 'labels', 'deletionTimestamp']);
  const out = { metadata } as T;
  if (obj.apiVersion !== undefined) out.apiVersion = obj.apiVersion;
  if (obj.kind !== undefined) out.kind = obj.kind;
  const st = obj.status;
  if (st) {
    const status: V1PodStatus = {};
    if (st.phase !== undefined) status.phase = st.phase;
    if (st.conditions) {
      status.conditions = st.conditions.map((c) => {
        const out: V1PodCondition = { type: c.type, status: c.status };
        if (c.reason !== undefined) out.reason = c.reason;
        if (c.message !== undefined) out.message = c.message;
        return out;
      });
    }
    if (st.initContainerStatuses) status.initContainerStatuses = st.initContainerStatuses.map(containerView);
    if (st.containerStatuses) status.containerStatuses = st.containerStatuses.map(containerView);
    out.status = status;
  }
  return out;
}
