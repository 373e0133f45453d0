/**
 * docs/operations.md lists every Prometheus metric the operator, the supervisor and the
 * egress proxy export: a metric added in code without a line there fails here. Metric
 * names are read from the prom-client constructors (`new Counter({ name: '...' })`), which
 * all name their metric with a literal (also checked: a computed name would escape this test).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../../scripts/lib/paths.ts';

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
    .map((f) => readFileSync(join(ROOT, dir, f), 'utf8'));
}

const code = [...sources('operator/src'), ...sources('agent-image/src')];
const constructors = code.flatMap((s) => [...s.matchAll(/new (?:Counter|Gauge|Histogram|Summary)(?:<[^>]*>)?\(\{\s*name:\s*([^,]+),/g)].map((m) => m[1]!.trim()));
const names = constructors.map((n) => /^'([a-z_:][a-z0-9_:]*)'$/.exec(n)?.[1]);
const operations = readFileSync(join(ROOT, 'docs/operations.md'), 'utf8');

describe('docs/operations.md metrics', () => {
  it('finds the metrics, each named by a literal', () => {
    expect(constructors.length).toBeGreaterThan(40);
    expect(constructors.filter((_, i) => names[i] === undefined)).toEqual([]);
  });

  it('lists every metric the code exports', () => {
    const missing = names.filter((n) => n !== undefined && !operations.includes(`\`${n}\``));
    expect(missing, 'add them to the Metrics section of docs/operations.md').toEqual([]);
  });
});
