/**
 * Flow 3 end to end (issue 8, first done-when line): a review comment on the agent's
 * pull request wakes the agent once, naming the comment; after the agent answers on
 * GitHub, no further rewake; a new comment wakes it again.
 *
 * Real parts: the supervisor, tmux, the real Claude Code binary (against the fake model
 * API), the real egress proxy holding the real GitHub token (the pod holds only the stub,
 * as GH_TOKEN), and curl run by the agent's Bash tool through the proxy. GitHub is the
 * HTTPS fake (scripts/lib/fakes/github-api.ts) behind the proxy as `api.github.test`; it accepts
 * only the real token.
 *
 * (a) Claude Code: the rewake goes through the Stop hook's inbox waiter (exit 2).
 * (b) A `custom` harness without hooks (a `cat` that records what is typed into it):
 *     the idle poll types the rewake into pane 0.
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Agent, fetch as undiciFetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PodContractInput } from '../../agent-image/src/contract/contract.ts';
import { startFakeAnthropic, type FakeAnthropic, type RecordedRequest, type Turn } from '../../scripts/lib/fakes/anthropic-api.ts';
import { startGitHubFake, type GitHubFake } from '../../scripts/lib/fakes/github-api.ts';
import { metric, waitFor } from '../support/matrix-pod.ts';
import { makePod, runCli, startSupervisor, testContract, type PodFiles, type SupervisorProcess } from '../support/pod.ts';
import { startProxy, type ProxyFixture } from './proxy-harness.ts';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const LOGIN = 'testbot-gh';
const REAL = 'ghp_RealAgentToken0123456789abcdefABCDEF01';
const STUB = 'agent-smith-stub-GHGHghghGHGHghghGHGHghghGHGHghghGHGHghgh0001';
const API = 'https://api.github.test';

/** The last message of a request as text, with JSON string escapes of quotes undone. */
function lastMessage(req: RecordedRequest): string {
  return JSON.stringify(req.body.messages.at(-1)?.content ?? '').replaceAll('\\"', '"');
}

/** A local repository the setup step can clone (no network). */
async function localRepo(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  await run('git', ['init', '-q', '-b', 'main', dir]);
  await writeFile(join(dir, 'README.md'), '# app\n');
  await run('git', ['-C', dir, '-c', 'user.name=t', '-c', 'user.email=t@t', 'add', '.']);
  await run('git', ['-C', dir, '-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '-m', 'init']);
  return `file://${dir}`;
}

describe('PR rewake through the egress proxy', () => {
  let github: GitHubFake;
  let fx: ProxyFixture;

  beforeAll(async () => {
    github = await startGitHubFake({ hostnames: ['api.github.test'] });
    github.addUser(LOGIN, REAL, 'Bot');
    github.addUser('alice', 'ghp_alice');
    fx = await startProxy({
      allow: ['api.github.test'],
      allowCidrs: ['127.0.0.0/8'],
      credentials: [{ name: 'github', hosts: ['api.github.test'], scheme: 'bearer', header: 'Authorization', stub: STUB, require: false, real: REAL }],
      hosts: { 'api.github.test': { addresses: ['127.0.0.1'], ports: { '443': github.port } } },
      upstreamCa: [github.caPem],
      logLevel: 'info',
    });
  });

  afterAll(async () => {
    await fx?.stop();
    await github?.close();
  });

  /** A pod whose contract watches `repo` as LOGIN, with the stub as GH_TOKEN, behind the proxy. */
  async function podFor(repo: string, over: Partial<PodContractInput>, extra: { modelUrl?: string; files?: Record<string, string> } = {}): Promise<PodFiles> {
    const pod = await makePod({
      contract: testContract({
        repos: [{ name: repo, url: 'file:///placeholder', dir: '/workspace/app' }],
        github: { login: LOGIN, apiUrl: API, watchPullRequests: { enabled: true, intervalSeconds: 2 } },
        egress: {
          allow: ['api.github.test'],
          allowCidrs: ['127.0.0.0/8'],
          enforcement: 'proxy-env',
          proxyPort: fx.port,
          credentials: [{ name: 'github', hosts: ['api.github.test'], scheme: 'bearer', header: 'Authorization', stub: STUB, env: ['GH_TOKEN'] }],
        },
        ...over,
      }),
      ...extra,
      extraEnv: { HTTPS_PROXY: `http://127.0.0.1:${fx.port}`, https_proxy: `http://127.0.0.1:${fx.port}`, NO_PROXY: '127.0.0.1,localhost', no_proxy: '127.0.0.1,localhost' },
    });
    // The clone URL: a local repository (setup clones it; nothing here needs the network).
    const contractFile = pod.path('/etc/agent-smith/contract.json');
    const contract = JSON.parse(await readFile(contractFile, 'utf8')) as PodContractInput;
    contract.repos[0]!.url = await localRepo(pod.path('/tmp/origin-app'));
    await writeFile(contractFile, JSON.stringify(contract, null, 2));
    // The per-agent egress CA, as the operator mounts it: the supervisor (NODE_EXTRA_CA_CERTS)
    // and the agent's tools (setup's CA bundle) trust it.
    await mkdir(pod.path('/etc/agent-smith/egress-ca-cert'), { recursive: true });
    await writeFile(pod.path('/etc/agent-smith/egress-ca-cert/ca.crt'), fx.caPem);
    pod.env.NODE_EXTRA_CA_CERTS = '/etc/agent-smith/egress-ca-cert/ca.crt';
    const setup = await runCli(pod, ['setup']);
    expect(setup.code, setup.stderr).toBe(0);
    return pod;
  }

  /** What GitHub saw from the pod: the real token only. */
  function expectOnlyRealToken(): void {
    const fromPod = github.requests.filter((r) => r.login === LOGIN || r.authorization?.includes(STUB));
    expect(fromPod.length).toBeGreaterThan(0);
    expect(fromPod.every((r) => r.authorization === `Bearer ${REAL}`)).toBe(true);
    expect(fx.output()).not.toContain(REAL);
  }

  describe('(a) Claude Code: the Stop hook', () => {
    const REPO = 'acme/app';
    let model: FakeAnthropic;
    let pod: PodFiles;
    let sup: SupervisorProcess;
    /** Run by the model while it works on a `WORK-TURN` message. */
    let duringTurn: (() => void) | undefined;

    beforeAll(async () => {
      model = await startFakeAnthropic();
      // The model: a PR rewake is acknowledged in words (no answer on GitHub); a request to
      // reply (an ordinary inbox message) is done with curl through the proxy, as the agent would.
      model.respond((req, h): Turn => {
        const last = lastMessage(req);
        if (last.includes('tool_result')) return h.text('replied on GitHub');
        const reply = /REPLY-TO (\d+) (\d+)/.exec(last);
        if (reply) {
          const [, pr, comment] = reply;
          const command = `curl -sS --fail-with-body -X POST -H "Authorization: Bearer $GH_TOKEN" -H 'Accept: application/vnd.github+json' ${API}/repos/${REPO}/pulls/${pr}/comments/${comment}/replies -d '{"body":"Renamed it, thanks."}'`;
          return h.toolUse('Bash', { command, description: 'Reply to the review comment' });
        }
        if (last.includes('WORK-TURN')) {
          duringTurn?.();
          return h.text('worked on it');
        }
        if (last.includes('source="github"')) return h.text('I will look at the review feedback.');
        return h.text('ok');
      });
      pod = await podFor(REPO, {}, { modelUrl: model.url, files: { 'settings.json': JSON.stringify({ permissions: { allow: ['Read', 'Bash'] } }) } });
      sup = startSupervisor(pod);
      await sup.waitForLog((l) => l.msg === 'CLI started');
      await sup.waitForLog((l) => String(l.msg).startsWith('PR rewake watching'));
    });

    afterAll(async () => {
      await sup?.stop();
      await model?.close();
      await pod?.cleanup();
    });

    const status = async () => (await (await fetch(`${pod.localUrl}/status`)).json()) as { state: string; hookArmed: boolean; inboxPending: number };
    const sawInLastMessage = (marker: string) => model.requests.filter((r) => !r.side && lastMessage(r).includes(marker));
    const rewakes = () => sup.logs().filter((l) => l.msg === 'PR rewake: new unanswered comments put in the inbox');
    const idleWithHook = () => waitFor('the CLI idle with its Stop hook armed', async () => {
      const s = await status();
      return s.state === 'idle' && s.hookArmed && s.inboxPending === 0;
    }, 90_000);

    it('a review comment wakes the agent once through the Stop hook; answered, it never again; a new comment does', async () => {
      const pr = github.openPullRequest({ repo: REPO, author: LOGIN, title: 'Add retries', committedAt: new Date(Date.now() - 3_600_000) });
      // A first turn, so Claude Code's Stop hook (the inbox waiter) is armed.
      await fetch(`${pod.localUrl}/inbox`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ source: 'api', text: 'warm up' }) });
      await idleWithHook();

      const c1 = github.addReviewComment({ repo: REPO, number: pr.number, author: 'alice', body: 'MARK-c1: please rename this variable', path: 'src/app.ts', line: 3 });
      await waitFor('the model to see MARK-c1', () => sawInLastMessage('MARK-c1').length > 0, 60_000);
      const delivered = await sup.waitForLog((l) => l.msg === 'message delivered to the CLI' && String(l.id).startsWith('github-'));
      expect(delivered.route).toBe('hook'); // the Stop hook printed it and exited 2
      const seen = lastMessage(sawInLastMessage('MARK-c1')[0]!);
      expect(seen).toContain(`${REPO}#${pr.number} review comment by alice on src/app.ts:3`);
      expect(seen).toContain(c1.html_url);

      // Further idle cycles (polls every 2 s, a Stop after the model's answer): not again.
      await idleWithHook();
      await sleep(7_000);
      expect(sawInLastMessage('MARK-c1')).toHaveLength(1);
      expect(rewakes()).toHaveLength(1);

      // The agent answers on GitHub (curl with the stub, through the proxy).
      await fetch(`${pod.localUrl}/inbox`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ source: 'api', text: `REPLY-TO ${pr.number} ${c1.id}` }) });
      const reply = await waitFor('the agent\'s reply on GitHub', () => github.reviewComments(REPO, pr.number).find((c) => c.user?.login === LOGIN), 90_000);
      expect(reply).toMatchObject({ in_reply_to_id: c1.id, body: 'Renamed it, thanks.' });
      await idleWithHook();
      await sleep(7_000);
      expect(rewakes()).toHaveLength(1);
      expect(sawInLastMessage('MARK-c1')).toHaveLength(1);

      // A new comment in the thread wakes it again, naming only the new one.
      github.addReviewComment({ repo: REPO, number: pr.number, author: 'alice', body: 'MARK-c2: and the other one?', inReplyTo: Number(c1.id) });
      await waitFor('the model to see MARK-c2', () => sawInLastMessage('MARK-c2').length > 0, 60_000);
      expect(lastMessage(sawInLastMessage('MARK-c2')[0]!)).not.toContain('MARK-c1');
      await idleWithHook();
      await sleep(5_000);
      expect(sawInLastMessage('MARK-c2')).toHaveLength(1);
      expect(rewakes()).toHaveLength(2);
      expect(await metric(sup, 'agentsmith_supervisor_github_requests_total{status="304"}')).toBeGreaterThan(0);

      // A comment that comes in while the agent works on something else is named as soon as
      // it stops (the Stop's own check, not the next poll).
      duringTurn = () => github.addReviewComment({ repo: REPO, number: pr.number, author: 'alice', body: 'MARK-c5: one more thing', path: 'src/app.ts', line: 9 });
      await fetch(`${pod.localUrl}/inbox`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ source: 'api', text: 'WORK-TURN' }) });
      await waitFor('the model to see MARK-c5', () => sawInLastMessage('MARK-c5').length > 0, 60_000);
      const atStop = rewakes().at(-1)!;
      expect(atStop).toMatchObject({ trigger: 'stop' });
      // Put while the Stop hook was still arming: it waited for the waiter, which printed it (exit 2).
      expect(await sup.waitForLog((l) => l.msg === 'message delivered to the CLI' && l.id === atStop.id)).toMatchObject({ route: 'hook' });
      await idleWithHook();
      expect(sawInLastMessage('MARK-c5')).toHaveLength(1);
      expect(rewakes()).toHaveLength(3);
      // Comments that came while the agent was idle were found by the poll (or by the check of
      // the Stop just before, when it was still reading GitHub), the last one by its Stop.
      const byTrigger = (t: string) => metric(sup, `agentsmith_supervisor_github_rewakes_total{trigger="${t}"}`);
      expect((await byTrigger('poll')) + (await byTrigger('stop'))).toBe(3);
      // The rewake is in the event outbox; GitHub only ever saw the real token; no log carries the stub.
      expect(sup.logs().filter((l) => l.msg === 'event rewake' && l.source === 'github')).toHaveLength(3);
      expectOnlyRealToken();
      expect(JSON.stringify(sup.logs())).not.toContain(STUB);
    });
  });

  describe('(b) a custom harness without hooks: the idle poll', () => {
    const REPO = 'acme/tool';
    let pod: PodFiles;
    let sup: SupervisorProcess;

    beforeAll(async () => {
      pod = await podFor(REPO, {
        // The "CLI" appends whatever is typed into it to a file in its working directory.
        harness: { kind: 'custom', command: ['sh', '-c', 'exec cat >> received.txt'], args: [] },
        github: { login: LOGIN, apiUrl: API, watchPullRequests: { enabled: true, intervalSeconds: 1 } },
      });
      sup = startSupervisor(pod);
      await sup.waitForLog((l) => String(l.msg).startsWith('PR rewake watching'));
    });

    afterAll(async () => {
      await sup?.stop();
      await pod?.cleanup();
    });

    const received = () => readFile(pod.path('/workspace/received.txt'), 'utf8').catch(() => '');
    const count = (text: string, marker: string) => text.split(marker).length - 1;

    it('a review comment is typed into the idle CLI once; answered, never again; a new comment is', async () => {
      const pr = github.openPullRequest({ repo: REPO, author: LOGIN, title: 'Tooling', committedAt: new Date(Date.now() - 3_600_000) });
      const c3 = github.addReviewComment({ repo: REPO, number: pr.number, author: 'alice', body: 'MARK-c3: why sh?', path: 'bin/run', line: 1 });
      await waitFor('MARK-c3 typed into the CLI', async () => (await received()).includes('MARK-c3'), 60_000);
      expect(await received()).toContain('source="github"');
      expect(await received()).toContain(c3.html_url);
      await sleep(5_000);
      expect(count(await received(), 'MARK-c3')).toBe(1);

      // The agent answers (as itself, on GitHub); then idle polls find nothing new.
      const res = await undiciFetch(`${github.url}/repos/${REPO}/pulls/${pr.number}/comments/${c3.id}/replies`, {
        method: 'POST',
        headers: { authorization: `Bearer ${REAL}`, 'content-type': 'application/json' },
        body: JSON.stringify({ body: 'Portability.' }),
        // The fake's CA is not Node's: this one request from the test goes direct.
        dispatcher: new Agent({ connect: { ca: github.caPem } }),
      });
      expect(res.status).toBe(201);
      await sleep(5_000);
      expect(count(await received(), 'MARK-c3')).toBe(1);

      github.addReview({ repo: REPO, number: pr.number, author: 'alice', body: 'MARK-c4: please also add a test', state: 'CHANGES_REQUESTED' });
      await waitFor('MARK-c4 typed into the CLI', async () => (await received()).includes('MARK-c4'), 60_000);
      await sleep(4_000);
      const text = await received();
      expect(count(text, 'MARK-c4')).toBe(1);
      expect(count(text, 'MARK-c3')).toBe(1);
      expect(await metric(sup, 'agentsmith_supervisor_github_rewakes_total{trigger="poll"}'), JSON.stringify(sup.logs().filter((l) => /Stop|PR rewake|delivered|other input/.test(String(l.msg))).map((l) => [l.time, l.msg, l.trigger, l.route, l.comments]))).toBe(2);
      expectOnlyRealToken();
    });
  });
});
