/**
 * Docker cannot run here, so the Dockerfile is kept honest by reading it: every path each
 * target copies exists, its entry point is a module it copies, and everything it imports
 * at run time is a production dependency (the image installs with --omit=dev). Its bases
 * are build arguments (scripts/lib/images.sh builds it with bases of its own) and the
 * users it adds must not collide with the base's. scripts/images builds it for real.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../../scripts/lib/paths.ts';

const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');

/** The instructions of one build stage, from its FROM line to the next. */
function stage(name: string): string[] {
  const lines = dockerfile.split('\n');
  const start = lines.findIndex((l) => new RegExp(`^FROM\\s+\\S+\\s+AS\\s+${name}\\s*$`, 'i').test(l));
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

/** The RUN instruction (with its continuation lines) that contains `needle`. */
function runWith(lines: string[], needle: string): string {
  const runs = lines.join('\n').split(/\n(?=[A-Z]+\s)/).filter((i) => i.startsWith('RUN'));
  const run = runs.find((r) => r.includes(needle));
  expect(run, `a RUN with ${needle}`).toBeDefined();
  return run!;
}

describe('Dockerfile, base images', () => {
  const lines = dockerfile.split('\n');
  const firstFrom = lines.findIndex((l) => /^FROM\s/i.test(l));

  it('names its bases by build arguments declared before the first FROM, the upstream images by default', () => {
    const args = new Map(lines.slice(0, firstFrom).flatMap((l) => {
      const m = /^ARG\s+(\w+)=(\S+)$/.exec(l);
      return m ? [[m[1]!, m[2]!] as const] : [];
    }));
    expect(args.get('NODE_IMAGE')).toBe('node:24-bookworm-slim');
    expect(args.get('KUBECTL_IMAGE')).toBe('registry.k8s.io/kubectl:v1.35.4');
  });

  it('builds every stage FROM a base argument or an earlier stage, never a literal image', () => {
    const stages: string[] = [];
    for (const l of lines.filter((x) => /^FROM\s/i.test(x))) {
      const m = /^FROM\s+(\S+)\s+AS\s+(\S+)$/i.exec(l);
      expect(m, l).not.toBeNull();
      expect(['${NODE_IMAGE}', '${KUBECTL_IMAGE}', ...stages], l).toContain(m![1]);
      stages.push(m![2]!);
    }
    expect(stages).toEqual(expect.arrayContaining(['deps', 'build', 'operator-build', 'kubectl', 'operator', 'agent']));
  });

  it('hands npm the CA bundle only as a build secret, and node-gyp the base image\'s Node headers', () => {
    for (const l of lines.filter((x) => /^(ENV|ARG|COPY|ADD)\s/i.test(x))) expect(l).not.toMatch(/ca-certificates\.crt|ca_bundle|NODE_EXTRA_CA_CERTS/);
    const npmRuns = lines.join('\n').split(/\n(?=[A-Z]+\s)/).filter((i) => /^RUN[\s\S]*\bnpm (ci|install)\b/.test(i));
    expect(npmRuns).toHaveLength(3);
    for (const run of npmRuns) {
      // Optional, so a Docker build without the secret works as before.
      expect(run).toMatch(/^RUN --mount=type=secret,id=ca_bundle,required=false\b/);
      expect(run).toContain('if [ -s /run/secrets/ca_bundle ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/ca_bundle; fi');
    }
    // node-pty's native build: the official node image (and ours) has /usr/local/include/node.
    expect(runWith(stage('deps'), 'npm ci')).toContain('npm_package_config_node_gyp_nodedir=/usr/local npm ci');
  });
});

describe('Dockerfile, target operator', () => {
  const lines = [...stage('deps'), ...stage('build'), ...stage('operator-build'), ...stage('operator')];

  it('copies only paths that exist', () => {
    for (const p of copiedPaths(lines)) expect(existsSync(join(ROOT, p)), p).toBe(true);
  });

  it('starts the compiled operator main module, built from sources it copies', () => {
    const entry = stage('operator').find((l) => l.startsWith('ENTRYPOINT'));
    const path = /"\/app\/([^"]+)"/.exec(entry ?? '')?.[1];
    // operator/tsconfig.build.json compiles the tree as it is into operator/dist (npm run build:operator does the same).
    expect(path).toBe('operator/dist/operator/src/main.js');
    expect(stage('operator')).toContain('COPY --from=operator-build /out/operator-dist ./operator/dist');
    expect(runWith(stage('operator-build'), 'tsc')).toContain('-p operator/tsconfig.build.json --outDir /out/operator-dist');
    const source = path!.replace(/^operator\/dist\//, '').replace(/\.js$/, '.ts');
    expect(existsSync(join(ROOT, source)), source).toBe(true);
    expect(copiedPaths(stage('operator-build')).some((p) => source.startsWith(p.replace(/\/?$/, '/')))).toBe(true);
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
  const agent = [...stage('agent-tools'), ...stage('agent')];
  const lines = [...stage('deps'), ...agent];

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
    const apt = agent.find((l) => l.includes('apt-get install')) ?? '';
    for (const tool of ['tini', 'tmux', 'git', 'curl', 'iptables', 'ca-certificates']) expect(apt.split(/\s+/), tool).toContain(tool);
    expect(agent.some((l) => /^COPY --from=kubectl \S*kubectl \/usr\/local\/bin\/kubectl$/.test(l))).toBe(true);
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> };
    expect(text).toContain(`CLAUDE_CODE_VERSION=${pkg.devDependencies['@anthropic-ai/claude-code']}`);
  });

  it('runs as the non-root agent user (UID 1000, as the operator renders)', () => {
    expect(stage('agent').some((l) => /^USER\s+1000(:1000)?$/.test(l))).toBe(true);
  });

  it('adds the agent (UID 1000) after removing whoever holds UID/GID 1000 (the node base image\'s `node` user)', () => {
    const run = runWith(agent, 'useradd');
    const at = (s: string): number => {
      const i = run.indexOf(s);
      expect(i, s).toBeGreaterThanOrEqual(0);
      return i;
    };
    const add = at('useradd --uid 1000 --gid 1000 ');
    expect(at('if getent passwd 1000 >/dev/null; then userdel --remove "$(getent passwd 1000 | cut -d: -f1)"; fi')).toBeLessThan(add);
    expect(at('if getent group 1000 >/dev/null; then groupdel "$(getent group 1000 | cut -d: -f1)"; fi')).toBeLessThan(at('groupadd --gid 1000 agent'));
    expect(at('groupadd --gid 1000 agent')).toBeLessThan(add);
    expect(run).toMatch(/useradd --uid 1000 --gid 1000 .*--home-dir \/home\/agent .* agent \\$/m);
  });

  it('adds the egress proxy\'s user with UID/GID 1337 under a name Debian does not already use', () => {
    const run = runWith(agent, 'useradd');
    const m = /useradd --uid 1337 --gid 1337 .* (\S+) \\$/m.exec(run);
    expect(m, 'useradd --uid 1337').not.toBeNull();
    expect(run).toContain(`groupadd --gid 1337 ${m![1]}`);
    // Debian's static users and groups (base-passwd's passwd.master and group.master), and
    // the node image's.
    const taken = ['root', 'daemon', 'bin', 'sys', 'sync', 'games', 'man', 'lp', 'mail', 'news', 'uucp', 'proxy', 'www-data', 'backup', 'list', 'irc', 'gnats', 'nobody', 'nogroup', '_apt', 'adm', 'tty', 'disk', 'kmem', 'dialout', 'fax', 'voice', 'cdrom', 'floppy', 'tape', 'sudo', 'audio', 'dip', 'operator', 'src', 'shadow', 'utmp', 'video', 'sasl', 'plugdev', 'staff', 'users', 'node'];
    expect(taken).not.toContain(m![1]);
  });

  it('has every package agent-smith imports at run time among the production dependencies', () => {
    expect(missingDependencies(tsFiles(join(ROOT, 'agent-image/src')))).toEqual([]);
  });
});
