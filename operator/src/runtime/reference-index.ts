/**
 * Which owners (queue keys) refer to which objects, both ways, so an event on an object
 * finds exactly the owners to reconcile (controller-runtime's field indexer behind
 * `Watches(..., EnqueueRequestsFromMapFunc)`). Agent-agnostic: owners and objects are
 * opaque keys; `objectKey` builds the usual one.
 *
 * Objects are keyed by kind, namespace and name, not uid, so an object that does not
 * exist yet (a Secret an owner waits for) is found when it is created.
 */
export class ReferenceIndex {
  private readonly byObject = new Map<string, Set<string>>();
  private readonly byOwner = new Map<string, Set<string>>();

  /** Replaces what `owner` refers to with `objects` (an empty list removes the owner). O(old + new). */
  set(owner: string, objects: Iterable<string>): void {
    const next = new Set(objects);
    const before = this.byOwner.get(owner);
    for (const obj of before ?? []) {
      if (next.has(obj)) continue;
      const owners = this.byObject.get(obj);
      owners?.delete(owner);
      if (owners?.size === 0) this.byObject.delete(obj);
    }
    for (const obj of next) {
      let owners = this.byObject.get(obj);
      if (!owners) this.byObject.set(obj, (owners = new Set()));
      owners.add(owner);
    }
    if (next.size) this.byOwner.set(owner, next);
    else this.byOwner.delete(owner);
  }

  /** Forgets `owner` (it was deleted). */
  delete(owner: string): void {
    this.set(owner, []);
  }

  /** The owners that refer to `object`, in no particular order (empty when none). */
  owners(object: string): string[] {
    const owners = this.byObject.get(object);
    return owners ? [...owners] : [];
  }

  /** Number of distinct objects referred to (for tests and metrics). */
  get size(): number {
    return this.byObject.size;
  }
}

/** The index key of a namespaced object: `Kind/namespace/name`. */
export function objectKey(kind: string, namespace: string, name: string): string {
  return `${kind}/${namespace}/${name}`;
}
