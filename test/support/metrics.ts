/** Reading counters out of a Prometheus text exposition (the operator's and others' /metrics). */

/**
 * Sum of the samples of metric `name` whose labels pass `keep` (all when omitted), from a
 * Prometheus text exposition (https://prometheus.io/docs/instrumenting/exposition_formats/).
 * Label values are taken as written (no unescaping: ours never contain quotes).
 */
export function sumCounter(exposition: string, name: string, keep: (labels: Record<string, string>) => boolean = () => true): number {
  let sum = 0;
  const line = new RegExp(`^${name}(?:\\{([^}]*)\\})? (\\S+)$`, 'gm');
  for (const m of exposition.matchAll(line)) {
    const labels = Object.fromEntries([...(m[1] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1]!, l[2]!]));
    if (keep(labels)) sum += Number(m[2]);
  }
  return sum;
}

/** GET a metrics endpoint's text (throws on a non-2xx). */
export async function scrape(url: string): Promise<string> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return res.text();
}
