/**
 * A Claude subscription login (issue 17 item 5) as an egress credential: the real Claude
 * Code binary holds only a stub in CLAUDE_CODE_OAUTH_TOKEN, talks to api.anthropic.com
 * (no ANTHROPIC_BASE_URL, as in a pod) through the real `agent-smith proxy`, and the fake
 * model API, standing in for api.anthropic.com behind the proxy, accepts only the real
 * token. The home is the one `agent-smith setup` assembles (no dialog, no login).
 *
 * Claude Code 2.1.330 facts this relies on (checked against the fake): the token in
 * CLAUDE_CODE_OAUTH_TOKEN goes out as `Authorization: Bearer <token>` with the
 * `oauth-2025-04-20` beta in `anthropic-beta` and no `x-api-key`, to ANTHROPIC_BASE_URL
 * when that is set, else to https://api.anthropic.com; `hasCompletedOnboarding` (setup
 * writes it) is all the first-run state it needs (without it the onboarding screen first
 * checks that api.anthropic.com answers, ignoring ANTHROPIC_BASE_URL).
 */
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { PodContractInput } from '../../agent-image/src/contract/contract.ts';
import { lastUserText, OAUTH_BETA, startFakeAnthropic, type FakeAnthropic } from '../../scripts/lib/fakes/anthropic-api.ts';
import { makeTestCa } from '../../scripts/lib/fakes/test-ca.ts';
import { makePod, runCli, startSupervisor, testContract, tmux, type PodFiles, type SupervisorProcess } from '../support/pod.ts';
import { startProxy, type CredentialFixture, type ProxyFixture } from './proxy-harness.ts';

/** Shaped like what `claude setup-token` prints. */
const REAL = `sk-ant-oat01-${randomBytes(48).toString('base64url')}`;
/** Shaped like the operator's stubs (operator/src/render/stubs.ts). */
const STUB = `agent-smith-stub-${randomBytes(32).toString('base64url')}`;
const HOST = 'api.anthropic.com';
const CREDENTIAL: CredentialFixture = { name: 'claude', hosts: [HOST], scheme: 'bearer', header: 'Authorization', stub: STUB, require: false, real: REAL };

let fake: FakeAnthropic | undefined;
let fx: ProxyFixture | undefined;
let pod: PodFiles | undefined;
let sup: SupervisorProcess | undefined;

afterEach(async () => {
  await sup?.stop();
  sup = undefined;
  await pod?.cleanup();
  await fx?.stop();
  await fake?.close();
  pod = fx = fake = undefined;
});

/** The fake as api.anthropic.com (accepting only REAL), the proxy with `credentials`, and an agent pod assembled by setup. */
async function start(credentials: CredentialFixture[]): Promise<{ fake: FakeAnthropic; fx: ProxyFixture; pod: PodFiles }> {
  const ca = await makeTestCa('agent-smith test model CA');
  const leaf = await ca.issue([{ type: 'dns', value: HOST }]);
  fake = await startFakeAnthropic({ tls: { key: leaf.keyPem, cert: leaf.certPem }, auth: { oauthTokens: [REAL] } });
  fx = await startProxy({
    allow: [HOST],
    allowCidrs: ['127.0.0.0/8'],
    credentials,
    hosts: { [HOST]: { addresses: ['127.0.0.1'], ports: { '443': Number(new URL(fake.url).port) } } },
    upstreamCa: [ca.caPem],
  });
  const egress: PodContractInput['egress'] = {
    allow: [HOST],
    allowCidrs: [],
    enforcement: 'proxy-env',
    proxyPort: fx.port,
    credentials: [{ name: 'claude', hosts: [HOST], scheme: 'bearer', header: 'Authorization', stub: STUB, env: ['CLAUDE_CODE_OAUTH_TOKEN'] }],
  };
  // HTTPS_PROXY as the operator sets it on the agent container (the supervisor's panes inherit it).
  pod = await makePod({ contract: testContract({ egress }), extraEnv: { HTTPS_PROXY: `http://127.0.0.1:${fx.port}`, NO_PROXY: '127.0.0.1,localhost' } });
  await mkdir(pod.path('/etc/agent-smith/egress-ca-cert'), { recursive: true });
  await writeFile(pod.path('/etc/agent-smith/egress-ca-cert/ca.crt'), fx.caPem);
  const setup = await runCli(pod, ['setup']);
  expect(setup.code, setup.stderr).toBe(0);
  return { fake, fx, pod };
}

/**
 * Runs `claude -p <prompt>` as the agent container runs the CLI: in the pod's mount
 * namespace, HOME /home/agent, the trust and proxy variables of the pod, the launch
 * environment of the Claude adapter, and the stub where the contract's `env` says.
 */
function runClaude(pod: PodFiles, proxyPort: number, prompt: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = {
    ...pod.env,
    HTTPS_PROXY: `http://127.0.0.1:${proxyPort}`,
    NO_PROXY: '127.0.0.1,localhost',
    NODE_EXTRA_CA_CERTS: '/etc/agent-smith/egress-ca-cert/ca.crt',
    SSL_CERT_FILE: '/home/agent/.agent-smith/ca-bundle.pem',
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    DISABLE_AUTOUPDATER: '1',
    CLAUDE_CODE_OAUTH_TOKEN: STUB,
  };
  const [command, args] = pod.command(['claude', '-p', prompt, '--model', 'claude-sonnet-4-5', '--output-format', 'json']);
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: pod.path('/workspace'), env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Every file under `dir` whose bytes contain `needle`. */
async function filesContaining(dir: string, needle: string): Promise<string[]> {
  const hits: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const file = join(e.parentPath, e.name);
    if ((await readFile(file)).includes(needle)) hits.push(file);
  }
  return hits;
}

describe('a Claude subscription OAuth token as an egress credential', () => {
  it('the CLI holds the stub; the model API sees only the real token, with the OAuth beta', async () => {
    const { fake, fx, pod } = await start([CREDENTIAL]);
    fake.respond((req, h) => h.text(`subscription answer to "${h.lastUserText(req)}"`));

    const run = await runClaude(pod, fx.port, 'hello over oauth');
    expect(run.code, `${run.stderr}\n${run.stdout}`).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ subtype: 'success', is_error: false, result: 'subscription answer to "hello over oauth"' });

    expect(fake.unauthorized).toEqual([]);
    expect(fake.requests.length).toBeGreaterThan(0);
    for (const r of fake.requests) {
      expect(r.headers.authorization).toBe(`Bearer ${REAL}`);
      expect(r.headers['x-api-key']).toBeUndefined();
      expect(String(r.headers['anthropic-beta']).split(',')).toContain(OAUTH_BETA);
    }
    const swaps = fx.audits().filter((l) => l.host === HOST && l.credential === 'claude' && l.location === 'header:authorization');
    expect(swaps.length).toBeGreaterThan(0);

    // The real token is nowhere the agent can read: not in its output, home or workspace.
    expect(run.stdout + run.stderr).not.toContain(REAL);
    expect(await filesContaining(pod.path('/home/agent'), REAL)).toEqual([]);
    expect(await filesContaining(pod.path('/workspace'), REAL)).toEqual([]);
    expect(fx.output()).not.toContain(REAL);
  }, 120_000);

  it('without the credential in the proxy the stub reaches the model API and is refused', async () => {
    const { fake, fx, pod } = await start([]);
    const run = await runClaude(pod, fx.port, 'hello without a credential');
    expect(run.code).not.toBe(0);
    expect(fake.requests).toEqual([]);
    expect(fake.unauthorized.length).toBeGreaterThan(0);
    expect(fake.unauthorized[0]).toMatchObject({ path: '/v1/messages', authorization: `Bearer ${STUB}` });
  }, 120_000);

  it('under the supervisor: the CLI starts in its tmux pane with no login or onboarding screen and answers a message over the subscription', async () => {
    const { fake, pod } = await start([CREDENTIAL]);
    fake.respond((req, h) => h.text(`pane answer ${/MARK-[\w-]+/.exec(h.lastUserText(req))?.[0] ?? 'none'}`));
    sup = startSupervisor(pod);
    const screen = () => tmux(pod, 'capture-pane', '-p', '-t', 'main:0.0');
    const deadline = Date.now() + 60_000;
    while (!(await screen().catch(() => '')).includes('❯') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
    const first = await screen();
    expect(first).toContain('❯');
    expect(first).not.toMatch(/login|log in|Select|theme|API key/i);

    const res = await fetch(`${pod.localUrl}/inbox`, { method: 'POST', body: JSON.stringify({ source: 'test', text: 'say MARK-oauth-pane' }) });
    expect(res.status).toBe(202);
    const req = await fake.waitForRequest((r) => lastUserText(r).includes('MARK-oauth-pane'), 60_000);
    expect(req.headers.authorization).toBe(`Bearer ${REAL}`);
    expect(fake.unauthorized).toEqual([]);
    while (!(await screen()).includes('pane answer MARK-oauth-pane') && Date.now() < deadline + 30_000) await new Promise((r) => setTimeout(r, 250));
    expect(await screen()).toContain('pane answer MARK-oauth-pane');
    expect(await screen()).not.toContain(REAL);
  }, 150_000);
});

