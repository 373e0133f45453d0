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
