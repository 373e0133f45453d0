import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { Counter } from 'prom-client';

/** A Kubernetes API verb as the API server's audit log names it. */
export type ApiVerb = 'get' | 'list' | 'watch' | 'create' | 'update' | 'patch' | 'delete' | 'deletecollection' | 'other';

/** Verbs that change state: a controller at rest should send none. */
export const WRITE_VERBS: ReadonlySet<ApiVerb> = new Set(['create', 'update', 'patch', 'delete', 'deletecollection']);

/**
 * The verb and resource of a Kubernetes API request, from its method and path
 * (https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-uris).
 * Pure. `resource` is the plural, with `/subresource` when there is one.
 */
export function classifyRequest(method: string, pathAndQuery: string): { verb: ApiVerb; resource: string } {
  const [path = '', query = ''] = pathAndQuery.split('?');
  const parts = path.split('/').filter(Boolean);
  // /api/v1/... or /apis/<group>/<version>/...
  const rest = parts[0] === 'api' ? parts.slice(2) : parts[0] === 'apis' ? parts.slice(3) : [];
  const scoped = rest[0] === 'namespaces' && rest.length >= 3 ? rest.slice(2) : rest;
  const [resource = 'unknown', name, sub] = scoped;
  const named = name !== undefined;
  const params = new URLSearchParams(query);
  let verb: ApiVerb;
  switch (method.toUpperCase()) {
    case 'GET':
      verb = params.get('watch') === 'true' || params.get('watch') === '1' ? 'watch' : named ? 'get' : 'list';
      break;
    case 'POST':
      verb = 'create';
      break;
    case 'PUT':
      verb = 'update';
      break;
    case 'PATCH':
      verb = 'patch';
      break;
    case 'DELETE':
      verb = named ? 'delete' : 'deletecollection';
      break;
    default:
      verb = 'other';
  }
  return { verb, resource: sub ? `${resource}/${sub}` : resource };
}

/**
 * Counts every request this process sends to `apiServerOrigin`, by verb and resource,
 * through undici's diagnostics channel (`undici:request:create`), which client-node's
 * HTTP calls and watches go through. No request is touched; only method and path are
 * read (never headers, so never a token).
 *
 * @returns a function that stops counting
 */
export function countApiRequests(apiServerOrigin: string, counter: Counter<'verb' | 'resource'>): () => void {
  const origin = new URL(apiServerOrigin).origin;
  const onMessage = (message: unknown) => {
    const req = (message as { request?: { origin?: string | URL; method?: string; path?: string } }).request;
    if (!req?.method || !req.path) return;
    if (req.origin !== undefined && new URL(String(req.origin)).origin !== origin) return;
    const { verb, resource } = classifyRequest(req.method, req.path);
    counter.inc({ verb, resource });
  };
  subscribe('undici:request:create', onMessage);
  return () => void unsubscribe('undici:request:create', onMessage);
}
