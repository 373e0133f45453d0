/**
 * Docker cannot run here, so the Dockerfile is kept honest by reading it: every path the
 * operator target copies exists, its entry point is the operator's main module, and
 * everything the operator imports at run time is a production dependency (the image
 * installs with --omit=dev).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../support/paths.ts';

const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');

/** The instructions of one build stage, from its FROM line to the next. */
function stage(name: string): string[] {
  const lines = dockerfile.split('\n');
  const start = lines.findIndex((l) => new RegExp(`^FROM\\s+\\S+\\s+AS\\s+${name}\\b`, 'i').test(l));
  expect(start, `stage ${name}`).toBeGreaterThanOrEqual(0);
  const end = lines.findIndex((l, i) => i > start && /^FROM\s/i.test(l));
  return lines.slice(start, end < 0 ? undefined : end);
}

/** Sources of COPY lines without --from (paths in the build context). */
function copiedPaths(lines: string[]): string[] {
  return lines
    .filter((l) => /^COPY\s/i.test(l) && !/--from=/.test(l))
    .flatMap((l) => l.trim().split(/\s+/).slice(1, -1));
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) return tsFiles(p);
    return p.endsWith('.ts') && !p.endsWith('.test.ts') ? [p] : [];
  });
}

describe('Dockerfile, target operator', () => {
  const lines = [...stage('deps'), ...stage('base'), ...stage('operator')];

  it('copies only paths that exist', () => {
    for (const p of copiedPaths(lines)) expect(existsSync(join(ROOT, p)), p).toBe(true);
  });

  it('starts the operator main module, which it copies', () => {
    const entry = lines.find((l) => l.startsWith('ENTRYPOINT'));
    const path = /"\/app\/([^"]+)"/.exec(entry ?? '')?.[1];
    expect(path).toBe('operator/src/main.ts');
    expect(copiedPaths(lines).some((p) => path!.startsWith(p.replace(/\/?$/, '/')))).toBe(true);
  });

  it('runs as non-root', () => {
    expect(stage('operator').some((l) => /^USER\s+[1-9]\d*/.test(l))).toBe(true);
  });

  it('has every package the operator imports at run time among the production dependencies', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    const files = [...tsFiles(join(ROOT, 'operator/src')), ...tsFiles(join(ROOT, 'agent-image/src/contract'))];
    const missing: string[] = [];
    for (const file of files) {
      for (const m of readFileSync(file, 'utf8').matchAll(/^import\s+(?!type\b)[^'"]*['"]([^'"]+)['"]/gm)) {
        const spec = m[1]!;
        if (spec.startsWith('.') || spec.startsWith('node:')) continue;
        const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
        if (!(name in pkg.dependencies)) missing.push(`${relative(ROOT, file)} imports ${name}`);
      }
    }
    expect(missing).toEqual([]);
  });
});
