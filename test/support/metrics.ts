/** Reading counters out of a Prometheus text exposition (the operator's and others' /metrics). */
import { WRITE_VERBS, type ApiVerb } from '../../operator/src/observability/api-metrics.ts';

/** One sample of a metric: its labels (`{}` when it has none) and its value. */
export interface Sample {
  labels: Record<string, string>;
  value: number;
}

/**
 * The samples of metric `name` in a Prometheus text exposition
 * (https://prometheus.io/docs/instrumenting/exposition_formats/). Label values are taken
 * as written (no unescaping: ours never contain quotes or braces).
 */
export function samples(exposition: string, name: string): Sample[] {
  const line = new RegExp(`^${name}(?:\\{([^}]*)\\})? (\\S+)$`, 'gm');
  return [...exposition.matchAll(line)].map((m) => ({
    labels: Object.fromEntries([...(m[1] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1]!, l[2]!])),
    value: Number(m[2]),
  }));
}

/** Sum of the samples of metric `name` whose labels pass `keep` (all when omitted). */
export function sumCounter(exposition: string, name: string, keep: (labels: Record<string, string>) => boolean = () => true): number {
  return samples(exposition, name).reduce((sum, s) => (keep(s.labels) ? sum + s.value : sum), 0);
}

/** GET a metrics endpoint's text (throws on a non-2xx). */
export async function scrape(url: string): Promise<string> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return res.text();
}

/** Whether a sample of the operator's `agentsmith_api_requests_total` counts a write (create, update, patch, delete, deletecollection). */
export const isWrite = (labels: Record<string, string>): boolean => WRITE_VERBS.has(labels.verb as ApiVerb);

/**
 * The operator's API requests and reconciles so far, from its /metrics at `url`: writes
 * (see isWrite), writes by `"verb resource"`, and reconciles of the agent controller.
 */
export async function operatorCounts(url: string): Promise<{ writes: number; writesBy: Map<string, number>; reconciles: number }> {
  const text = await scrape(url);
  const writesBy = new Map<string, number>();
  for (const s of samples(text, 'agentsmith_api_requests_total')) {
    if (!isWrite(s.labels)) continue;
    const k = `${s.labels.verb} ${s.labels.resource ?? ''}`;
    writesBy.set(k, (writesBy.get(k) ?? 0) + s.value);
  }
  const writes = [...writesBy.values()].reduce((a, b) => a + b, 0);
  return { writes, writesBy, reconciles: sumCounter(text, 'controller_runtime_reconcile_total', (l) => l.controller === 'agent') };
}
