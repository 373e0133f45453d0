import { createHash } from 'node:crypto';
import type { KubernetesObject } from '@kubernetes/client-node';

/**
 * Whether a live object already has every field a desired object sets: objects must
 * contain each desired key with a matching value, lists must have the same length with
 * matching items, scalars must be equal. Fields the API server or other managers added
 * (defaults, status, annotations of tools) do not count.
 *
 * This lets the operator skip a server-side apply that would change nothing, so an
 * Agent at rest costs no write request.
 */
export function isSubset(desired: unknown, live: unknown): boolean {
  if (desired === undefined) return true;
  if (desired === null || typeof desired !== 'object') {
    if (typeof desired === 'number' && typeof live === 'string') return String(desired) === live;
    return desired === live;
  }
  if (live === null || typeof live !== 'object') return false;
  if (Array.isArray(desired)) {
    if (!Array.isArray(live) || live.length !== desired.length) return false;
    return desired.every((d, i) => isSubset(d, live[i]));
  }
  if (desired instanceof Date) return live instanceof Date && desired.getTime() === live.getTime();
  const l = live as Record<string, unknown>;
  return Object.entries(desired as Record<string, unknown>).every(([k, v]) => isSubset(v, l[k]));
}

/**
 * Annotation in which the operator keeps, on each child it applies, a hash of the object
 * as rendered (without this annotation). The informer caches then need not hold the
 * child's spec or data to tell whether the rendering changed: the cached annotation is
 * compared with the hash of the new rendering ({@link needsApply}).
 */
export const ANNOTATION_APPLIED_HASH = 'agentsmith.dev/applied-hash';

/** Hex SHA-256 (first 32 digits) of the JSON of `obj`; the renderers build objects in a fixed key order, so equal renderings hash equal. */
export function appliedHash(obj: unknown): string {
  return createHash('sha256').update(JSON.stringify(obj)).digest('hex').slice(0, 32);
}

/** `obj` (a rendered child) with {@link ANNOTATION_APPLIED_HASH} set to the hash of `obj` as given. Pure: `obj` is not changed. */
export function withAppliedHash<T extends KubernetesObject>(obj: T): T {
  const hash = appliedHash(obj);
  return { ...obj, metadata: { ...obj.metadata, annotations: { ...obj.metadata?.annotations, [ANNOTATION_APPLIED_HASH]: hash } } };
}

/**
 * A child's version as the operator's own last apply of it returned it: its
 * resourceVersion and, for kinds that have one (StatefulSet), its generation.
 */
export interface WrittenVersion {
  resourceVersion?: string;
  generation?: number;
}

/** Looks up the {@link WrittenVersion} of child `kind` `namespace/name` (undefined: not written by this process). */
export type WrittenLookup = (kind: string, namespace: string, name: string) => WrittenVersion | undefined;

/**
 * The version of each child as this process last applied it, keyed `Kind/namespace/name`
 * (about 100 bytes a child). Lost on restart, when {@link needsApply} falls back to the
 * cached object's managed-fields times.
 */
export class WrittenVersions {
  private readonly versions = new Map<string, WrittenVersion>();

  /** Records `obj` as an apply returned it (`kind` must be set). */
  record(obj: KubernetesObject): void {
    const m = obj.metadata;
    if (!obj.kind || !m?.name) return;
    const v: WrittenVersion = {};
    if (m.resourceVersion !== undefined) v.resourceVersion = m.resourceVersion;
    if (m.generation !== undefined) v.generation = m.generation;
    this.versions.set(`${obj.kind}/${m.namespace ?? ''}/${m.name}`, v);
  }

  /** Forgets a child that is gone (its cache entry was deleted). */
  forget(kind: string, namespace: string, name: string): void {
    this.versions.delete(`${kind}/${namespace}/${name}`);
  }

  /** The version recorded for a child; a {@link WrittenLookup}. */
  readonly lookup: WrittenLookup = (kind, namespace, name) => this.versions.get(`${kind}/${namespace}/${name}`);
}

/**
 * Whether the cached version of a child is the one the operator last wrote, so nobody
 * changed it since:
 * - with `written` (this process applied it): a StatefulSet by its generation (its
 *   controller's status writes change the resourceVersion, never the generation), any
 *   other kind by its resourceVersion. A cache that lags our write also answers no (a
 *   harmless apply that changes nothing).
 * - without (the operator restarted): from the managed-fields times the cache keeps
 *   (runtime/trim.ts childCache): no manager but ours changed the object's spec or data
 *   (subresource `status` aside) after our own last change of it. A change made within
 *   the same second as ours is not seen this way.
 */
export function writtenByUs(cached: KubernetesObject, written: WrittenVersion | undefined, fieldManager: string): boolean {
  const m = cached.metadata;
  if (written) {
    if (written.generation !== undefined && m?.generation !== undefined) return written.generation === m.generation;
    return written.resourceVersion === m?.resourceVersion;
  }
  const time = (t: Date | string | undefined) => (t === undefined ? 0 : new Date(t).getTime());
  const entries = m?.managedFields ?? [];
  const ours = Math.max(0, ...entries.filter((e) => e.manager === fieldManager && !e.subresource).map((e) => time(e.time)));
  return !entries.some((e) => e.manager !== fieldManager && !e.subresource && time(e.time) > ours);
}

/**
 * Whether the rendered child `desired` must be applied over what the cache holds:
 * - nothing cached (new, or deleted by someone): yes;
 * - the cached one carries no {@link ANNOTATION_APPLIED_HASH} (written before the operator
 *   kept hashes): yes unless it holds every field of `desired` ({@link isSubset});
 * - its hash differs from the new rendering's (the spec, persona or a referenced object
 *   changed what is rendered): yes;
 * - someone else changed it since our last apply ({@link writtenByUs}): yes, so the
 *   forced apply takes our fields back (drift repair).
 * `desired` is the rendering without the hash annotation. Pure.
 */
export function needsApply(desired: KubernetesObject, cached: KubernetesObject | undefined, written: WrittenVersion | undefined, fieldManager: string): boolean {
  if (!cached) return true;
  const hash = cached.metadata?.annotations?.[ANNOTATION_APPLIED_HASH];
  if (hash === undefined) return !isSubset(desired, cached);
  if (hash !== appliedHash(desired)) return true;
  return !writtenByUs(cached, written, fieldManager);
}
