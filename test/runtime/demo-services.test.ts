/**
 * The demo's services as the end-to-end test and scripts/demo start them (scripts/lib/demo):
 * the git server as github.com holds homelab-apps with its failing test, the GitHub API
 * fake as api.github.com knows each bot (its token, also the git server's password) and
 * the reviewer, and example-devbot renders with a github credential for both hosts (GH_TOKEN,
 * GITHUB_TOKEN), spec.github.login and the stand-ins' CA. Real Synapse and nats-server start
 * too (the services need them); no cluster.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentSpec } from '../../operator/src/api/agent.ts';
import { renderDemoAgent, type AgentManifest } from '../../scripts/lib/demo/render.ts';
import { DEMO_REVIEWER, startDemoServices, type DemoServices } from '../../scripts/lib/demo/services.ts';
import { HOMELAB_APPS, HOMELAB_APPS_FILES, SOURCE_FILE } from '../../scripts/lib/demo/worker-model.ts';
import { ROOT } from '../../scripts/lib/paths.ts';
import { startStandInProxy, writeCaBundle, type StandInProxy } from '../support/stand-ins.ts';

const run = promisify(execFile);

describe('the demo services', () => {
  let dir: string;
  let services: DemoServices;
  let tunnel: StandInProxy;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'demo-services-'));
    services = await startDemoServices({ dir: join(dir, 'services'), bots: ['devbot'] });
    tunnel = await startStandInProxy({
      'github.com:443': { host: '127.0.0.1', port: Number(new URL(services.git.url).port) },
      'api.github.com:443': { host: '127.0.0.1', port: services.github.fake.port },
    });
    const ca = await writeCaBundle(join(dir, 'ca.pem'), [services.upstreamCaPem]);
    const token = services.github.bots.devbot!.token;
    env = { PATH: process.env.PATH, HOME: dir, HTTPS_PROXY: tunnel.url, SSL_CERT_FILE: ca, GIT_SSL_CAINFO: ca, GH_TOKEN: token, GH_NO_UPDATE_NOTIFIER: '1', GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_COUNT: '1', GIT_CONFIG_KEY_0: 'http.https://github.com/.extraHeader', GIT_CONFIG_VALUE_0: `Authorization: Basic ${Buffer.from(`x-access-token:${token}`).toString('base64')}` };
  }, 180_000);

  afterAll(async () => {
    await tunnel?.close();
    await services?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  it('homelab-apps on the git server (as github.com, with the bot\'s token) has the failing test; the bot is devbot-agent on api.github.com', async () => {
    await run('git', ['clone', '-q', `https://github.com/${HOMELAB_APPS}.git`, join(dir, 'apps')], { env });
    const test = await run('node', ['--test'], { cwd: join(dir, 'apps'), env }).then(() => 'passed', (e: { stdout: string }) => e.stdout);
    expect(test).toMatch(/fail 1/);
    expect(await services.git.readFile(HOMELAB_APPS, 'main', SOURCE_FILE)).toBe(HOMELAB_APPS_FILES[SOURCE_FILE]);
    const me = await run('gh', ['api', 'user', '--jq', '.login'], { env, encoding: 'utf8' });
    expect(me.stdout.trim()).toBe('devbot-agent');
    // The reviewer can comment on a pull request the bot opens.
    expect(services.github.reviewer.login).toBe(DEMO_REVIEWER);
  });

  it('example-devbot renders with the github credential on github.com and api.github.com, its login, and a valid spec', () => {
    const manifests = renderDemoAgent(services, {
      root: ROOT,
      folder: 'example-devbot',
      namespace: 'demo',
      node: 'local',
      inCluster: { homeserverUrl: 'http://synapse.agent-smith-demo.svc.cluster.local:8008', natsUrl: 'nats://nats.agent-smith-demo.svc.cluster.local:4222', publicStandIns: { 'github.com': '10.0.0.50', 'api.github.com': '10.0.0.51', 'api.anthropic.com': '10.0.0.52' } },
    });
    const agent = manifests.find((m): m is AgentManifest => m.kind === 'Agent')!;
    expect(agent.spec.egress?.credentials).toContainEqual(expect.objectContaining({ name: 'github', hosts: ['github.com', 'api.github.com'], env: ['GH_TOKEN', 'GITHUB_TOKEN'] }));
    expect(agent.spec.egress?.allow).toEqual(expect.arrayContaining(['github.com', 'api.github.com', 'api.anthropic.com']));
    expect(agent.spec.egress?.allowCidrs).toEqual(expect.arrayContaining(['10.0.0.50/32', '10.0.0.51/32', '10.0.0.52/32']));
    expect(agent.spec.github).toMatchObject({ login: 'devbot-agent', watchPullRequests: { enabled: true, intervalSeconds: 30 } });
    const secret = manifests.find((m) => m.kind === 'Secret') as { stringData: Record<string, string> };
    expect(secret.stringData.github).toBe(services.github.bots.devbot!.token);
    const ca = manifests.find((m) => m.kind === 'ConfigMap' && (m as { data?: Record<string, string> }).data?.['ca.crt']) as { data: Record<string, string> };
    expect(ca.data['ca.crt']).toContain(services.github.fake.caPem.trim());
    const parsed = AgentSpec.safeParse(agent.spec);
    expect(parsed.error?.issues ?? []).toEqual([]);
  });
});
