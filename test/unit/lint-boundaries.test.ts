/**
 * The linter keeps the boundaries of issue 16 (eslint.config.js): an import that runs up a
 * floor of agent-image/src, between two programs or two plug-ins, from the operator into the
 * image beyond contract/ (or from the image into the operator), or from product code into
 * scripts/ or test/ fails `npx eslint .`,
 * and so does a file or function over the size and complexity limits. Each case lints a
 * made-up file at a path in the tree (the file need not exist; what it imports does) with
 * the project's own config, through the ESLint Node API.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ESLint, type Linter } from 'eslint';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../../scripts/lib/paths.ts';

const BOUNDARY = 'import-x/no-restricted-paths';
const LIMITS = ['max-lines', 'max-lines-per-function', 'complexity', 'max-depth', 'max-params'];
const API_ACCESS = '@typescript-eslint/no-restricted-imports';

// Only the rules under test: the type-aware rules would need the made-up files in a TypeScript project.
const eslint = new ESLint({
  cwd: ROOT,
  overrideConfig: [{ languageOptions: { parserOptions: { projectService: false, project: null } } }],
  ruleFilter: ({ ruleId }) => ruleId === BOUNDARY || ruleId === API_ACCESS || LIMITS.includes(ruleId),
});

/** The messages of linting `code` as if it were the file `path` (relative to the repository). */
async function lint(path: string, code: string): Promise<Linter.LintMessage[]> {
  const [result] = await eslint.lintText(code, { filePath: `${ROOT}/${path}` });
  if (!result) throw new Error(`ESLint returned no result for ${path}`);
  return result.messages;
}

/** The ids of the rules that fired (a parse failure shows as `fatal: <message>`). */
async function fired(path: string, code: string): Promise<string[]> {
  return (await lint(path, code)).map((m) => m.ruleId ?? `fatal: ${m.message}`);
}

describe('import boundaries', () => {
  it.each([
    ['a plug-in importing a program', 'agent-image/src/plugins/matrix/probe.ts', "import { canonicalHost } from '../../programs/proxy/policy.ts';"],
    ['a plug-in importing a program dynamically', 'agent-image/src/plugins/matrix/probe.ts', "export const p = import('../../programs/proxy/policy.ts');"],
    ['a plug-in re-exporting a program', 'agent-image/src/plugins/matrix/probe.ts', "export { canonicalHost } from '../../programs/proxy/policy.ts';"],
    ['a program importing another program', 'agent-image/src/programs/hook/probe.ts', "import { loadProxyConfig } from '../proxy/config.ts';"],
    ['a plug-in importing another plug-in', 'agent-image/src/plugins/github/probe.ts', "import { MatrixClient } from '../matrix/client.ts';"],
    ['core importing a plug-in', 'agent-image/src/core/probe.ts', "import { MatrixClient } from '../plugins/matrix/client.ts';"],
    ['lib importing core', 'agent-image/src/lib/probe.ts', "import { Inbox } from '../core/inbox.ts';"],
    ['lib importing contract', 'agent-image/src/lib/probe.ts', "import { PodContract } from '../contract/contract.ts';"],
    ['contract importing lib', 'agent-image/src/contract/probe.ts', "import { writeFileAtomic } from '../lib/files.ts';"],
    ['a program importing the entry point', 'agent-image/src/programs/hook/probe.ts', "import '../../cli.ts';"],
    ['the operator importing a program', 'operator/src/render/probe.ts', "import { UPSTREAM_CA_ENV } from '../../../agent-image/src/programs/proxy/config.ts';"],
    ['the operator importing lib', 'operator/src/render/probe.ts', "import { writeFileAtomic } from '../../../agent-image/src/lib/files.ts';"],
    ['agent-image importing the operator', 'agent-image/src/programs/proxy/probe.ts', "import { generateEgressCa } from '../../../../operator/src/pki/egress-ca.ts';"],
    ['product code importing scripts/', 'agent-image/src/core/probe.ts', "import { ROOT } from '../../../scripts/lib/paths.ts';"],
    ['the operator importing test/', 'operator/src/probe.ts', "import { testLogger } from '../../test/support/log.ts';"],
    ['product code importing test/', 'agent-image/src/plugins/github/probe.ts', "import { testLogger } from '../../../../test/support/log.ts';"],
    ['scripts/ importing test/', 'scripts/lib/probe.ts', "import { testLogger } from '../../test/support/log.ts';"],
  ])('fails on %s', async (_what, path, code) => {
    expect(await fired(path, code)).toContain(BOUNDARY);
  });

  /** The folders under agent-image/src/<dir>, each with one of its source files. */
  const members = (dir: string) =>
    readdirSync(join(ROOT, 'agent-image/src', dir), { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => ({ name: e.name, file: readdirSync(join(ROOT, 'agent-image/src', dir, e.name)).find((f) => f.endsWith('.ts') && !f.endsWith('.test.ts')) }))
      .filter((m): m is { name: string; file: string } => m.file !== undefined);

  it.each(['programs', 'plugins'])('fails on an import between any two of %s (every folder there, so a new one is covered)', async (dir) => {
    const all = members(dir);
    expect(all.length).toBeGreaterThan(2);
    for (const from of all) {
      for (const to of all) {
        if (to === from) continue;
        const rules = await fired(`agent-image/src/${dir}/${from.name}/probe.ts`, `import '../${to.name}/${to.file}';`);
        expect(rules, `${from.name} importing ${to.name}/${to.file}`).toContain(BOUNDARY);
      }
      expect(await fired(`agent-image/src/${dir}/${from.name}/probe.ts`, `import './${from.file}';`), `${from.name} importing itself`).toEqual([]);
    }
  });

  it('fails on operator code outside kube/ that takes a client or call from the Kubernetes client library; its types are fine', async () => {
    expect(await fired('operator/src/reconcile/probe.ts', "import { CoreV1Api } from '@kubernetes/client-node';")).toContain(API_ACCESS);
    expect(await fired('operator/src/render/probe.ts', "import { PatchStrategy, type V1Pod } from '@kubernetes/client-node';")).toContain(API_ACCESS);
    expect(await fired('operator/src/reconcile/probe.ts', "import type { V1Pod } from '@kubernetes/client-node';")).toEqual([]);
    expect(await fired('operator/src/kube/probe.ts', "import { CoreV1Api } from '@kubernetes/client-node';")).toEqual([]);
  });

  it('names the rule that was broken', async () => {
    const [m] = await lint('agent-image/src/plugins/matrix/probe.ts', "import { x } from '../../programs/proxy/policy.ts';");
    expect(m?.message).toMatch(/runs up a floor/);
  });

  it.each([
    ['a plug-in importing core, lib, contract, itself and packages', 'agent-image/src/plugins/matrix/probe.ts', "import { Inbox } from '../../core/inbox.ts';\nimport { writeFileAtomic } from '../../lib/files.ts';\nimport { PodContract } from '../../contract/contract.ts';\nimport { MatrixClient } from './client.ts';\nimport { pino } from 'pino';\nimport { readFile } from 'node:fs/promises';"],
    ['a program importing plug-ins and its own files', 'agent-image/src/programs/supervise/probe.ts', "import { MatrixClient } from '../../plugins/matrix/client.ts';\nimport { Inbox } from '../../core/inbox.ts';\nimport { x } from './tmux.ts';"],
    ['the entry point importing a program', 'agent-image/src/probe.ts', "import { x } from './programs/proxy/main.ts';"],
    ['the operator importing the contract', 'operator/src/render/probe.ts', "import { PodContract } from '../../../agent-image/src/contract/contract.ts';"],
    ['a test in test/ importing everything', 'test/runtime/probe.test.ts', "import { x } from '../../agent-image/src/programs/proxy/policy.ts';\nimport { ROOT } from '../../scripts/lib/paths.ts';\nimport { testLogger } from '../support/log.ts';"],
    ['a unit test beside the code using the test helpers', 'agent-image/src/plugins/github/probe.test.ts', "import { testLogger } from '../../../../test/support/log.ts';"],
  ])('passes %s', async (_what, path, code) => {
    expect(await fired(path, code)).toEqual([]);
  });
});

/** A function of `n` statements, one line each. */
function longFunction(n: number): string {
  return `export function long(): number {\n  let x = 0;\n${'  x += 1;\n'.repeat(n)}  return x;\n}\n`;
}

describe('size and complexity limits (product code)', () => {
  it('fails on a function over 100 lines, passes one under', async () => {
    expect(await fired('agent-image/src/core/probe.ts', longFunction(100))).toContain('max-lines-per-function');
    expect(await fired('agent-image/src/core/probe.ts', longFunction(90))).toEqual([]);
  });

  it('fails on a file over 400 lines, not counting comments and blank lines', async () => {
    const lines = (n: number) => Array.from({ length: n }, (_, i) => `export const c${i} = ${i};`).join('\n');
    expect(await fired('operator/src/probe.ts', lines(401))).toContain('max-lines');
    expect(await fired('operator/src/probe.ts', `${lines(390)}\n${'// a comment\n\n'.repeat(50)}`)).toEqual([]);
  });

  it('fails on a function with complexity over 25', async () => {
    const branches = Array.from({ length: 26 }, (_, i) => `  if (x === ${i}) return ${i};`).join('\n');
    expect(await fired('agent-image/src/plugins/review/probe.ts', `export function f(x: number): number {\n${branches}\n  return -1;\n}\n`)).toContain('complexity');
  });

  it('leaves tests and dev tooling to a file-size cap only', async () => {
    expect(await fired('test/runtime/probe.test.ts', longFunction(150))).toEqual([]);
    expect(await fired('scripts/lib/probe.ts', longFunction(150))).toEqual([]);
  });
});
