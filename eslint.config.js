// @ts-check
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import tseslint from 'typescript-eslint';
import importX, { createNodeResolver } from 'eslint-plugin-import-x';

const root = import.meta.dirname;
const src = 'agent-image/src';

/** The sub-folders of `dir` (relative to the repository): one per program or plug-in, so a new one is covered at once. */
function folders(dir) {
  return readdirSync(join(root, dir), { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => e.name);
}

/**
 * Import boundaries (issue 16), as zones of import-x's no-restricted-paths: a file under
 * `target` may not import a file under `from` (paths resolved by the resolver below, so
 * `../../x.ts`, a re-export or a dynamic import count alike; `except` is relative to `from`).
 * The agent-image floors, top to bottom: cli.ts > programs/<name> > plugins/<name> > core >
 * lib and contract (see docs/architecture.md).
 */
const siblings = (dir, what) =>
  folders(dir).map((name) => ({
    target: `${dir}/${name}`,
    from: dir,
    except: [`./${name}`],
    message: `One ${what} never imports another (${dir}/${name} is its own ${what}): move what both need down a floor (core/ or lib/).`,
  }));
const boundaryZones = [
  {
    target: [`${src}/programs`, `${src}/plugins`, `${src}/core`, `${src}/lib`, `${src}/contract`],
    from: `${src}/cli.ts`,
    message: 'cli.ts is the top floor (the entry point): nothing imports it.',
  },
  {
    target: [`${src}/plugins`, `${src}/core`, `${src}/lib`, `${src}/contract`],
    from: `${src}/programs`,
    message: 'Import runs up a floor: only cli.ts imports a program (programs/<name>).',
  },
  {
    target: [`${src}/core`, `${src}/lib`, `${src}/contract`],
    from: `${src}/plugins`,
    message: 'Import runs up a floor: core/, lib/ and contract/ never import a plug-in; a plug-in plugs into a port of core/.',
  },
  {
    target: [`${src}/lib`, `${src}/contract`],
    from: `${src}/core`,
    message: 'Import runs up a floor: lib/ and contract/ never import core/.',
  },
  ...siblings(`${src}/programs`, 'program'),
  ...siblings(`${src}/plugins`, 'plug-in'),
  {
    target: `${src}/lib`,
    from: 'agent-image',
    except: ['./src/lib'],
    message: 'lib/ knows nothing of agent-smith: it imports nothing else of ours.',
  },
  {
    target: `${src}/contract`,
    from: 'agent-image',
    except: ['./src/contract'],
    message: 'contract/ is shared with the operator: it imports nothing else of ours.',
  },
  {
    target: [`${src}/lib`, `${src}/contract`],
    from: ['operator', 'scripts', 'test'],
    message: 'lib/ and contract/ import nothing else of ours.',
  },
  {
    target: 'operator',
    from: 'agent-image',
    except: ['./src/contract'],
    message: 'The operator imports only the pod contract (agent-image/src/contract).',
  },
  {
    target: 'agent-image',
    from: 'operator',
    message: 'agent-image never imports the operator: what both need is the pod contract (agent-image/src/contract).',
  },
  {
    target: ['agent-image', 'operator'],
    from: ['scripts', 'test'],
    message: 'Product code never imports dev tooling (scripts/) or tests (test/).',
  },
  {
    target: 'scripts',
    from: 'test',
    message: 'scripts/ (dev tooling) never imports test/: move what both need to scripts/lib.',
  },
  // One zone per `from`, so an exception below can add to a zone's `except`.
].flatMap((z) => [z.from].flat().map((from) => ({ ...z, from, except: z.except ?? [] })));

/**
 * The zones with `allow` (repository paths, files or folders) let through: each is added to
 * the `except` of every zone whose `from` holds it.
 */
function zonesAllowing(allow) {
  return boundaryZones.map((z) => {
    const inside = allow.filter((p) => p === z.from || p.startsWith(`${z.from}/`));
    return inside.length ? { ...z, except: [...z.except, ...inside.map((p) => `./${relative(z.from, p)}`)] } : z;
  });
}
const restrictedPaths = (allow) => ['error', { basePath: root, zones: zonesAllowing(allow) }];

/** A unit test beside the code keeps to its floor, but may use the shared test helpers. */
const besideCodeTests = ['agent-image/**/*.test.ts', 'operator/**/*.test.ts'];
const testHelpers = 'test/support';

/**
 * Named import exceptions: `files` may import `allow` although a zone forbids it, with the
 * reason.
 */
const importExceptions = [
  {
    files: [`${src}/programs/proxy/ca.test.ts`],
    allow: ['operator/src/pki/egress-ca.ts'],
    reason: 'the proxy\'s CA test mints its leaves from a CA made by the operator\'s generator, so the two are tested together',
  },
  {
    files: [`${src}/core/outbox.test.ts`],
    allow: [`${src}/plugins/events/metrics.ts`],
    reason: 'the outbox test counts with the events plug-in\'s metric set (a test of a port using its one plug-in)',
  },
];

/** One config object per exception file, with everything it may import (a later object replaces the rule's options). */
function importExceptionConfigs() {
  const byFile = new Map();
  for (const e of importExceptions) {
    for (const f of e.files) {
      const prev = byFile.get(f) ?? { allow: [], reasons: [] };
      byFile.set(f, { allow: [...prev.allow, ...e.allow], reasons: [...prev.reasons, e.reason] });
    }
  }
  return [...byFile].map(([file, { allow, reasons }]) => ({
    name: `import exception ${file}: ${reasons.join('; ')}`,
    files: [file],
    rules: { 'import-x/no-restricted-paths': restrictedPaths(file.endsWith('.test.ts') ? [...allow, testHelpers] : allow) },
  }));
}

/** Product code: agent-image/src and operator/src, without the tests beside it. */
const product = ['agent-image/src/**/*.ts', 'operator/src/**/*.ts'];
const tests = ['**/*.test.ts', 'test/**/*.ts'];

/**
 * Size and complexity limits for product code (lines counted without blank lines and
 * comments). Measured on the tree in December 2026 (agent-image/src and operator/src,
 * about 130 files): 5 files over 400 lines (the largest 605; the next below is 396), 7
 * functions over 100 lines (the longest 148), 13 over complexity 25 (the highest 51), 2
 * blocks nested five deep, 4 functions with more than 6 parameters. The splits of issue 16
 * took the largest under the limits; what is left is named below, each with its own ceiling.
 */
const productLimits = {
  'max-lines': ['error', { max: 400, skipBlankLines: true, skipComments: true }],
  'max-lines-per-function': ['error', { max: 100, skipBlankLines: true, skipComments: true }],
  complexity: ['error', 25],
  'max-depth': ['error', 4],
  'max-params': ['error', 6],
};

/**
 * Named exceptions: a file over a product limit, with the reason, and a ceiling at its
 * measured size (so it cannot grow).
 */
const exceptions = [




  {
    files: ['operator/src/api/crd.ts'],
    reason: 'toStructural maps every JSON-schema keyword zod emits to its structural-schema form in one pass; split, the keyword table would be harder to check against the Kubernetes rules',
    rules: { complexity: ['error', 30] },
  },

  {
    files: ['agent-image/src/programs/proxy/policy.ts'],
    reason: 'resolveChecked vets every resolved address form in one ordered pass (the order is the security argument: docs/security.md)',
    rules: { complexity: ['error', 28] },
  },
  {
    files: ['agent-image/src/programs/proxy/match.ts'],
    reason: '#next, the scrubber\'s hot scan loop (probe, filter, verify), is kept in one function for speed (test/bench/proxy-scrub.ts)',
    rules: { complexity: ['error', 27] },
  },

  {
    files: ['agent-image/src/programs/supervise/http.ts'],
    reason: 'serveSupervisor builds both listeners (public probes and metrics, the loopback hook/MCP routes) in one function',
    rules: { 'max-lines-per-function': ['error', { max: 105, skipBlankLines: true, skipComments: true }] },
  },
  {
    files: ['agent-image/src/programs/attach/resolve.ts'],
    reason: 'podProblem turns every pod phase and container state Kubernetes reports into one message for the user',
    rules: { complexity: ['error', 32] },
  },
  {
    files: ['agent-image/src/plugins/github/unanswered.ts'],
    reason: 'unansweredItems walks a pull request\'s review threads, reviews and comments in one pass',
    rules: { complexity: ['error', 29] },
  },
  {
    files: ['agent-image/src/programs/proxy/decide.ts'],
    reason: 'decideRequest/decideFor evaluate the egress policy rule by rule in one ordered decision (the order is the security argument)',
    rules: { complexity: ['error', 27], 'max-params': ['error', 8] },
  },
  {
    files: ['agent-image/src/plugins/events/query.ts'],
    reason: 'the event-log read loop (fetch, each message, parse, keep the newest) nests five deep inside its try/finally',
    rules: { 'max-depth': ['error', 5] },
  },
];

export default tseslint.config(
  { ignores: ['node_modules/**', 'crds/**', 'charts/**', '**/*.js'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  {
    // Import direction (issue 16). Our imports name the file with its .ts extension, so
    // the node resolver finds it as is; .ts is listed for an import without one.
    files: ['**/*.ts'],
    plugins: { 'import-x': importX },
    settings: {
      'import-x/resolver-next': [createNodeResolver({ extensions: ['.ts', '.js', '.mjs', '.cjs', '.json', '.node'] })],
    },
    rules: { 'import-x/no-restricted-paths': restrictedPaths([]) },
  },
  { files: besideCodeTests, rules: { 'import-x/no-restricted-paths': restrictedPaths([testHelpers]) } },
  ...importExceptionConfigs(),
  {
    files: product,
    ignores: tests,
    rules: productLimits,
  },
  ...exceptions.map(({ files, reason, rules }) => ({ name: `limits exception ${files.join(', ')}: ${reason}`, files, ignores: tests, rules })),
  {
    // The operator talks to the API server only through kube/ (issue 16): elsewhere the
    // client library's types are fine, its clients and calls are not. runtime/ holds the
    // informer and the Lease elector (the watch and leader machinery); main.ts wires them.
    files: ['operator/src/**/*.ts'],
    ignores: ['operator/src/kube/**', 'operator/src/runtime/informer.ts', 'operator/src/runtime/leader.ts', 'operator/src/main.ts', ...tests],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        { paths: [{ name: '@kubernetes/client-node', allowTypeImports: true, message: 'only operator/src/kube/ talks to the API server: add a function there and call it' }] },
      ],
    },
  },
  {
    // Tests and dev tooling: a file-size cap only (a test's describe() is one long function).
    files: [...tests, 'scripts/**/*.ts'],
    rules: { 'max-lines': ['error', { max: 600, skipBlankLines: true, skipComments: true }] },
  },
  {
    // Tests write async fakes of async interfaces without awaiting anything.
    files: ['**/*.test.ts'],
    rules: { '@typescript-eslint/require-await': 'off' },
  },
);
