/**
 * Metadata-only reads of a collection: the API server's PartialObjectMetadata
 * representation, which carries each object's `metadata` and nothing else (no `data` of
 * a Secret or ConfigMap), so a list or watch of every Secret in the cluster never sends
 * a value over the wire. client-go's metadata client and controller-runtime's
 * `OnlyMetadata` watches use the same media types
 * (https://kubernetes.io/docs/reference/using-api/api-concepts/#receiving-resources-as-tables
 * and k8s.io/client-go/metadata).
 */
import { HttpMethod, RequestContext, type KubeConfig, type KubernetesListObject, type V1ObjectMeta } from '@kubernetes/client-node';
import { fetch } from 'undici';

/**
 * Accept header of a metadata-only list. No plain `application/json` fallback (client-go
 * offers one): a server that cannot answer in this form must fail (406), not send every
 * object whole.
 */
export const PARTIAL_OBJECT_METADATA_LIST_ACCEPT = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1';

/** Accept header of a metadata-only watch: each event's object is a PartialObjectMetadata. */
export const PARTIAL_OBJECT_METADATA_ACCEPT = 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1';

/** Objects per page of a metadata list (the API server's `limit`), so no response is unbounded. */
const PAGE_SIZE = 500;

/** Longest wait for one page, in ms: a list that hangs fails, and the informer restarts it with backoff. */
const PAGE_TIMEOUT_MS = 60_000;

/** A `meta.k8s.io/v1` PartialObjectMetadata: an object's metadata only (client-node has no model of it). */
export interface PartialObjectMetadata {
  apiVersion?: string;
  kind?: string;
  metadata?: V1ObjectMeta;
}

/** An API error of a metadata list: `statusCode` is what client-node's ListWatch and httpStatusOf read (410 makes the informer relist). */
export class MetadataListError extends Error {
  readonly statusCode: number;
  constructor(statusCode: number, message: string) {
    super(message);
    this.name = 'MetadataListError';
    this.statusCode = statusCode;
  }
}

/**
 * Lists a collection as PartialObjectMetadata, page by page (`limit`/`continue`, one
 * consistent snapshot), through `kc`'s authentication and connection pool.
 *
 * @param path collection path, e.g. `/api/v1/secrets` (all namespaces)
 * @param labelSelector optional label selector of the list
 * @returns every object's metadata, and the list's `metadata.resourceVersion` to watch from
 * @throws MetadataListError with the HTTP status when the server refuses (403 without
 *   list RBAC, 406 if it cannot serve metadata-only, 410 when a continue token expired);
 *   transport errors as undici throws them, a TimeoutError after PAGE_TIMEOUT_MS on a page. The error never carries the response body
 *   beyond the Status message.
 */
export async function listObjectMetadata(kc: KubeConfig, path: string, labelSelector?: string): Promise<KubernetesListObject<PartialObjectMetadata>> {
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new Error('no current cluster in the kubeconfig');
  const items: PartialObjectMetadata[] = [];
  let resourceVersion: string | undefined;
  let cont: string | undefined;
  do {
    const url = new URL(server + path);
    url.searchParams.set('limit', String(PAGE_SIZE));
    if (labelSelector) url.searchParams.set('labelSelector', labelSelector);
    if (cont) url.searchParams.set('continue', cont);
    const ctx = new RequestContext(url.toString(), HttpMethod.GET);
    await kc.applySecurityAuthentication(ctx);
    ctx.setHeaderParam('Accept', PARTIAL_OBJECT_METADATA_LIST_ACCEPT);
    const response = await fetch(url, { method: 'GET', headers: ctx.getHeaders(), dispatcher: ctx.getDispatcher(), signal: AbortSignal.timeout(PAGE_TIMEOUT_MS) });
    const text = await response.text();
    if (response.status !== 200) {
      let message = `list ${path} as metadata: HTTP ${response.status}`;
      try {
        const status = JSON.parse(text) as { message?: unknown };
        if (typeof status.message === 'string') message += `: ${status.message}`;
      } catch {
        // not a Status object
      }
      throw new MetadataListError(response.status, message);
    }
    const page = JSON.parse(text) as { kind?: string; items?: PartialObjectMetadata[]; metadata?: { resourceVersion?: string; continue?: string } };
    if (page.kind !== 'PartialObjectMetadataList') {
      throw new MetadataListError(406, `list ${path} as metadata: the API server answered with ${String(page.kind)}, not PartialObjectMetadataList`);
    }
    for (const item of page.items ?? []) items.push(item);
    resourceVersion ??= page.metadata?.resourceVersion;
    cont = page.metadata?.continue || undefined;
  } while (cont);
  return { apiVersion: 'meta.k8s.io/v1', kind: 'PartialObjectMetadataList', metadata: { ...(resourceVersion ? { resourceVersion } : {}) }, items };
}

/**
 * What a reference cache keeps of an object: its name, namespace, uid and
 * resourceVersion, nothing else (no labels, no annotations: kubectl's last-applied
 * annotation of a Secret holds its values). Pure; use as the informer's transform.
 */
export function identityOnly<T extends PartialObjectMetadata>(obj: T): T {
  return { metadata: pickMetadata(obj.metadata, ['name', 'namespace', 'uid', 'resourceVersion']) } as T;
}

/**
 * A new metadata object with only the `keys` of `meta` that are set (the values shared,
 * not copied): what a cache transform keeps of an object's metadata. Pure.
 */
export function pickMetadata(meta: V1ObjectMeta | undefined, keys: readonly (keyof V1ObjectMeta)[]): V1ObjectMeta {
  const out: Record<string, unknown> = {};
  for (const k of keys) if (meta?.[k] !== undefined) out[k] = meta[k];
  return out;
}
