/**
 * `git clone` over HTTPS through `agent-smith proxy` (HTTPS_PROXY), as an agent does it:
 * the client holds only the stub (a credential helper hands out `x-access-token:<stub>`),
 * trusts only the per-agent egress CA, and the git server (the real `git http-backend`)
 * demands the real token as the Basic password. With the credential in the proxy's
 * config the clone works; without it the server answers 401 and the clone fails.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { startGitServer, type GitServer } from '../../scripts/lib/fakes/git-server.ts';
import { startProxy, type CredentialFixture, type ProxyFixture } from './proxy-harness.ts';

const run = promisify(execFile);
const REAL = 'ghs_GitRealInstallationToken0123456789abcd';
const STUB = 'agent-smith-stub-GGGGiiiiTTTTggggIIIIttttGGGGiiiiTTTTgggg7777';
const GITHUB: CredentialFixture = { name: 'github', hosts: ['git.test'], scheme: 'basic', header: 'Authorization', stub: STUB, require: false, real: REAL };

async function clone(fx: ProxyFixture, dir: string): Promise<{ code: number; stderr: string }> {
  const helper = `!f() { test "$1" = get && echo username=x-access-token && echo password=${STUB}; }; f`;
  try {
    await run('git', ['-c', `credential.helper=${helper}`, 'clone', '--quiet', 'https://git.test/app.git', dir], {
      env: {
        PATH: process.env.PATH,
        HOME: fx.pod.path('/home/agent'),
        GIT_CONFIG_NOSYSTEM: '1',
        GIT_CONFIG_GLOBAL: '/dev/null',
        GIT_TERMINAL_PROMPT: '0',
        HTTPS_PROXY: `http://127.0.0.1:${fx.port}`,
        // The agent trusts the egress CA and nothing else (DESIGN.md: trustEnv).
        GIT_SSL_CAINFO: fx.caFile,
      },
      timeout: 60_000,
    });
    return { code: 0, stderr: '' };
  } catch (err) {
    const e = err as { code?: number; stderr?: string };
    return { code: e.code ?? 1, stderr: e.stderr ?? '' };
  }
}

describe('git clone through the egress proxy', () => {
  let server: GitServer | undefined;
  let fx: ProxyFixture | undefined;

  afterEach(async () => {
    await fx?.stop();
    await server?.close();
    fx = undefined;
    server = undefined;
  });

  const start = async (credentials: CredentialFixture[]) => {
    server = await startGitServer({ repos: { app: { 'README.md': '# app through the proxy\n' } }, hostnames: ['git.test'], basicPassword: REAL });
    const port = Number(new URL(server.url).port);
    fx = await startProxy({
      allow: ['git.test'],
      allowCidrs: ['127.0.0.0/8'],
      credentials,
      hosts: { 'git.test': { addresses: ['127.0.0.1'], ports: { '443': port } } },
      upstreamCa: [server.caPem],
    });
    return { server, fx };
  };

  it('clones with only the stub on the client; the server sees the real token', async () => {
    const { fx } = await start([GITHUB]);
    const dir = fx.pod.path('/workspace/app');
    const result = await clone(fx, dir);
    expect(result, result.stderr).toMatchObject({ code: 0 });
    expect(await readFile(join(dir, 'README.md'), 'utf8')).toBe('# app through the proxy\n');
    const swaps = fx.audits().filter((l) => l.location === 'header:authorization' && l.decision === 'allow');
    expect(swaps.length).toBeGreaterThan(0);
    expect(swaps[0]).toMatchObject({ host: 'git.test', credential: 'github', mode: 'connect' });
    expect(fx.output()).not.toContain(REAL);
    expect(fx.output()).not.toContain(STUB);
  });

  it('fails with 401 when the proxy has no credential for the host', async () => {
    const { server, fx } = await start([]);
    const result = await clone(fx, fx.pod.path('/workspace/app'));
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/Authentication failed|401/);
    expect(server.requests.length).toBeGreaterThan(0);
    expect(fx.audits().some((l) => l.status === 401 && l.host === 'git.test')).toBe(true);
  });
});
