/**
 * Docker cannot run here, so the Dockerfile is kept honest by reading it: every path each
 * target copies exists, its entry point is a module it copies, and everything it imports
 * at run time is a production dependency (the image installs with --omit=dev).
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
    expect(missingDependencies([...tsFiles(join(ROOT, 'operator/src')), ...tsFiles(join(ROOT, 'agent-image/src/contract'))])).toEqual([]);
  });
});

/** `<file> imports <package>` for each run-time import of a package that is not a production dependency. */
function missingDependencies(files: string[]): string[] {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
  const missing: string[] = [];
  for (const file of files) {
    for (const m of readFileSync(file, 'utf8').matchAll(/^import\s+(?!type\b)[^'"]*['"]([^'"]+)['"]/gm)) {
      const spec = m[1]!;
      if (spec.startsWith('.') || spec.startsWith('node:')) continue;
      const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
      if (!(name in pkg.dependencies)) missing.push(`${relative(ROOT, file)} imports ${name}`);
    }
  }
  return missing;
}

describe('Dockerfile, target agent', () => {
  const lines = [...stage('deps'), ...stage('base'), ...stage('agent')];

  it('copies only paths that exist', () => {
    for (const p of copiedPaths(lines)) expect(existsSync(join(ROOT, p)), p).toBe(true);
  });

  it('runs agent-smith supervise behind tini; the agent-smith wrapper starts the CLI module, which it copies', () => {
    expect(lines.find((l) => l.startsWith('ENTRYPOINT'))).toBe('ENTRYPOINT ["tini", "-g", "--", "agent-smith"]');
    expect(lines.find((l) => l.startsWith('CMD'))).toBe('CMD ["supervise"]');
    const wrapper = /ln -s \/app\/(\S+) \/usr\/local\/bin\/agent-smith/.exec(lines.join('\n'))?.[1];
    expect(wrapper).toBe('agent-image/bin/agent-smith');
    expect(copiedPaths(lines).some((p) => wrapper!.startsWith(p.replace(/\/?$/, '/')))).toBe(true);
    // The wrapper runs the CLI module next to it.
    // The wrapper runs the compiled CLI next to it (the build stage's output), else the sources.
    const text = readFileSync(join(ROOT, wrapper!), 'utf8');
    expect(text).toContain('cli=$here/../src/cli.js');
    expect(text).toMatch(/exec node .*"\$cli" "\$@"/);
    expect(existsSync(join(ROOT, 'agent-image/src/cli.ts'))).toBe(true);
    expect(dockerfile).toMatch(/RUN npx tsc -p agent-image\/tsconfig\.build\.json --outDir \/out/);
    expect(stage('agent')).toContain('COPY --from=build /out/agent-image/src ./agent-image/src');
    expect(existsSync(join(ROOT, 'agent-image/tsconfig.build.json'))).toBe(true);
  });

  it('installs the tools the pod uses and the Claude Code version the tests run', () => {
    const text = lines.join('\n');
    const apt = stage('agent').find((l) => l.includes('apt-get install')) ?? '';
    for (const tool of ['tini', 'tmux', 'git', 'iptables', 'ca-certificates']) expect(apt.split(/\s+/), tool).toContain(tool);
    expect(stage('agent').some((l) => /^COPY --from=kubectl \S*kubectl \/usr\/local\/bin\/kubectl$/.test(l))).toBe(true);
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> };
    expect(text).toContain(`CLAUDE_CODE_VERSION=${pkg.devDependencies['@anthropic-ai/claude-code']}`);
  });

  it('runs as the non-root agent user (UID 1000, as the operator renders)', () => {
    expect(stage('agent').some((l) => /^USER\s+1000(:1000)?$/.test(l))).toBe(true);
  });

  it('has every package agent-smith imports at run time among the production dependencies', () => {
    expect(missingDependencies(tsFiles(join(ROOT, 'agent-image/src')))).toEqual([]);
  });
});
