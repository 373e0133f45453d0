/**
 * The demo's worker model (scripts/lib/demo/worker-model.ts) driving the REAL Claude Code
 * binary through real tool calls, on this host (no Kubernetes, no supervisor): Claude Code
 * in tmux as root with IS_SANDBOX=1 and the shipped permission rules
 * (agents/_shared/settings.json) in `bypassPermissions` mode, working in a clone of
 * homelab-apps from the demo's git server (as github.com), with gh 2.23 against the
 * GitHub fake (as api.github.com) through a CONNECT tunnel, and a stand-in for the
 * supervisor's MCP server that records matrix_reply and publish_event (test/support/mcp-recorder.ts).
 * Messages are pasted into the pane as agent-smith renders them (core/inbox.ts renderMessage);
 * the rewake's text is the PR watcher's own, from the fake.
 *
 * Shown: the fix (Read, Edit, Bash tests, branch, commit, push, gh pr create, the answer
 * with the PR link, pr_opened and task_done); the review round (a second commit pushed,
 * the comment answered in its thread); a branch deletion on the ask list, denied by the
 * PermissionRequest hook (the model reports the denial) and then allowed (the branch goes).
 */
import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderMessage } from '../../agent-image/src/core/inbox.ts';
import { makeGitHubClient } from '../../agent-image/src/plugins/github/client.ts';
import { rewakeText } from '../../agent-image/src/plugins/github/unanswered.ts';
import { PrWatcher } from '../../agent-image/src/plugins/github/watcher.ts';
import { startFakeAnthropic, type FakeAnthropic, type Turn } from '../../scripts/lib/fakes/anthropic-api.ts';
import { startGitHubFake, type GitHubFake } from '../../scripts/lib/fakes/github-api.ts';
import { startGitServer, type GitServer } from '../../scripts/lib/fakes/git-server.ts';
import { BUG, HOMELAB_APPS, HOMELAB_APPS_FILES, REVIEW_CHANGE, SOURCE_FILE, TEST_FILE, workerResponder, WORKER_PREFIX } from '../../scripts/lib/demo/worker-model.ts';
import { ROOT } from '../../scripts/lib/paths.ts';
import { capturingLogger } from '../support/log.ts';
import { startStandInProxy, writeCaBundle, type StandInProxy } from '../support/stand-ins.ts';
import { waitFor } from '../support/wait.ts';

const run = promisify(execFile);
const LOGIN = 'devbot-agent';
const TOKEN = 'ghp_DevbotToken00000000000000000000000002';
const PASSWORD = 'git-password-0002';
const ROOM = '!agents:localhost';
const BRANCH = 'fix/slugify-dashes';
const CLAUDE = join(ROOT, 'node_modules/.bin/claude');
const DENIAL = 'Nobody in the room approved this within 60 seconds: denied.';

interface Call {
  tool: string;
  input: { room?: string; thread?: string; text?: string; type?: string; data?: Record<string, unknown>; ok?: boolean };
}

describe('the worker model drives the real Claude Code', () => {
  let dir: string;
  let clone: string;
  let git: GitServer;
  let github: GitHubFake;
  let tunnel: StandInProxy;
  let model: FakeAnthropic;
  let sock: string;
  /** Closing texts the worker answered with (one per finished task). */
  const ends: string[] = [];

  const calls = async (): Promise<Call[]> => (await readFile(join(dir, 'calls.jsonl'), 'utf8').catch(() => '')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Call);
  const tmux = (...args: string[]) => run('tmux', ['-S', sock, ...args], { encoding: 'utf8' });
  const pane = async () => (await tmux('capture-pane', '-p', '-t', 'w:0')).stdout;
  let seq = 0;
  /** Pastes a message into the CLI as the supervisor does (bracketed paste, then Enter). */
  async function say(source: string, text: string, meta: Record<string, string> = {}): Promise<void> {
    const id = `msg-${++seq}`;
    const body = renderMessage({ id, source, text, meta });
    await new Promise<void>((resolve, reject) => {
      const p = spawn('tmux', ['-S', sock, 'load-buffer', '-b', id, '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
      p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`tmux load-buffer exit ${code}`))));
      p.stdin.end(body);
    });
    await tmux('paste-buffer', '-p', '-d', '-b', id, '-t', 'w:0');
    await new Promise((r) => setTimeout(r, 500));
    await tmux('send-keys', '-t', 'w:0', 'Enter');
  }
  const fromMatrix = (text: string, n: number) => say('matrix', text, { room: ROOM, sender: '@demo:localhost', event: `$ev${n}`, thread: `$ev${n}` });
  /** Waits for the worker's next closing text. */
  const nextEnd = async (count: number, what: string) =>
    waitFor(what, () => ends.length >= count || undefined, 150_000, 250).catch(async (err: unknown) => {
      throw new Error(`${(err as Error).message}\npane:\n${await pane()}\ncalls: ${JSON.stringify(await calls())}`);
    });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'worker-model-'));
    git = await startGitServer({ repos: { [HOMELAB_APPS]: HOMELAB_APPS_FILES }, hostnames: ['github.com'], basicPassword: PASSWORD });
    github = await startGitHubFake({ hostnames: ['api.github.com'], git });
    github.addUser(LOGIN, TOKEN);
    github.addUser('alice', 'ghp_alice');
    github.addRepository(HOMELAB_APPS);
    tunnel = await startStandInProxy({
      'github.com:443': { host: '127.0.0.1', port: Number(new URL(git.url).port) },
      'api.github.com:443': { host: '127.0.0.1', port: github.port },
    });
    const ca = await writeCaBundle(join(dir, 'ca.pem'), [git.caPem, github.caPem]);
    const home = join(dir, 'home');
    const workspace = join(dir, 'workspace');
    await mkdir(home, { recursive: true });
    await mkdir(workspace, { recursive: true });
    clone = join(workspace, 'homelab-apps');
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '',
      HOME: home,
      CLAUDE_CONFIG_DIR: home,
      TMPDIR: dir,
      IS_SANDBOX: '1',
      ANTHROPIC_BASE_URL: '',
      ANTHROPIC_AUTH_TOKEN: 'fake',
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
      DISABLE_AUTOUPDATER: '1',
      // The stdio stand-in's tools were deferred behind tool search in interactive mode despite
      // alwaysLoad (it connects after start-up; the supervisor's HTTP server is up before the CLI).
      ENABLE_TOOL_SEARCH: 'false',
      HTTPS_PROXY: tunnel.url,
      NO_PROXY: '127.0.0.1,localhost',
      SSL_CERT_FILE: ca,
      GIT_SSL_CAINFO: ca,
      GH_TOKEN: TOKEN,
      GH_NO_UPDATE_NOTIFIER: '1',
      GH_PROMPT_DISABLED: '1',
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_COUNT: '3',
      GIT_CONFIG_KEY_0: 'http.https://github.com/.extraHeader',
      GIT_CONFIG_VALUE_0: `Authorization: Basic ${Buffer.from(`x-access-token:${PASSWORD}`).toString('base64')}`,
      GIT_CONFIG_KEY_1: 'user.name',
      GIT_CONFIG_VALUE_1: 'devbot',
      GIT_CONFIG_KEY_2: 'user.email',
      GIT_CONFIG_VALUE_2: `${LOGIN}@users.noreply.github.com`,
    };
    await run('git', ['clone', '-q', `https://github.com/${HOMELAB_APPS}.git`, clone], { env });

    model = await startFakeAnthropic();
    const worker = workerResponder({ dir: clone });
    model.respond((req, h): Turn => {
      const turn = worker(req, h);
      if (turn.content.every((b) => b.type === 'text')) ends.push(turn.content.map((b) => (b.type === 'text' ? b.text : '')).join(''));
      return turn;
    });
    env.ANTHROPIC_BASE_URL = model.url;

    // The shipped rules, unattended (what spec.permissions' default renders), plus the approval hook.
    const shipped = JSON.parse(await readFile(join(ROOT, 'agents/_shared/settings.json'), 'utf8')) as { permissions: Record<string, unknown> };
    const hook = join(dir, 'permission-hook.sh');
    await writeFile(join(dir, 'decision'), 'deny');
    await writeFile(
      hook,
      `#!/bin/sh\ncat >> ${join(dir, 'hook-inputs.jsonl')}; echo >> ${join(dir, 'hook-inputs.jsonl')}\n` +
        `if [ "$(cat ${join(dir, 'decision')})" = allow ]; then echo '{"hookSpecificOutput":{"hookEventName":"PermissionRequest","decision":{"behavior":"allow"}}}'; ` +
        `else echo '{"hookSpecificOutput":{"hookEventName":"PermissionRequest","decision":{"behavior":"deny","message":"${DENIAL}"}}}'; fi\n`,
      { mode: 0o755 },
    );
    await writeFile(
      join(home, 'settings.json'),
      JSON.stringify({
        permissions: { ...shipped.permissions, defaultMode: 'bypassPermissions', disableAutoMode: 'disable' },
        skipDangerousModePermissionPrompt: true,
        hooks: { PermissionRequest: [{ hooks: [{ type: 'command', command: hook, timeout: 30 }] }] },
      }),
    );
    await writeFile(join(home, '.claude.json'), JSON.stringify({ hasCompletedOnboarding: true, theme: 'dark', projects: { [clone]: { hasTrustDialogAccepted: true, hasCompletedProjectOnboarding: true } } }));
    const mcp = join(dir, 'mcp.json');
    await writeFile(mcp, JSON.stringify({ mcpServers: { 'agent-smith': { type: 'stdio', command: process.execPath, args: [join(ROOT, 'test/support/mcp-recorder.ts'), join(dir, 'calls.jsonl')], alwaysLoad: true } } }));

    sock = join(dir, 'tmux.sock');
    const envArgs = Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]);
    await tmux('new-session', '-d', '-s', 'w', '-x', '200', '-y', '50', '-c', clone, ...envArgs, CLAUDE, '--mcp-config', mcp, '--model', 'claude-sonnet-4-5');
    await waitFor('Claude Code\'s prompt', async () => /for shortcuts|bypass permissions/i.test(await pane()) || undefined, 60_000, 250).catch(async (err: unknown) => {
      throw new Error(`${(err as Error).message}\npane:\n${await pane()}`);
    });
  }, 120_000);

  afterAll(async () => {
    if (sock) await tmux('kill-server').catch(() => undefined);
    await model?.close();
    await tunnel?.close();
    await github?.close();
    await git?.close();
    // Claude Code's MCP log may still be written as the CLI exits.
    if (dir) await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  });

  /** The tool calls the model made, with their results, in order (from the last request). */
  const toolTrail = () => {
    const messages = model.requests.filter((r) => !r.side).at(-1)?.body.messages ?? [];
    const blocks = messages.flatMap((m) => (typeof m.content === 'string' ? [] : m.content));
    const results = new Map(blocks.filter((b) => b.type === 'tool_result').map((b) => [b.tool_use_id, b]));
    return blocks
      .filter((b) => b.type === 'tool_use')
      .map((b) => ({ name: b.name, input: b.input as Record<string, string>, result: JSON.stringify(results.get(b.id)?.content ?? ''), isError: results.get(b.id)?.is_error === true }));
  };

  it('"the test in homelab-apps fails, fix it and open a PR": Read, Edit, tests, branch, commit, push, gh pr create, the answer with the link, pr_opened, task_done', async () => {
    await fromMatrix('devbot: the test in homelab-apps fails, fix it and open a PR', 1);
    await nextEnd(1, 'the fix task to end');
    const url = `https://github.com/${HOMELAB_APPS}/pull/1`;
    expect(ends[0]).toContain(url);

    // Real tool calls, each after the previous result.
    const trail = toolTrail();
    expect(trail.map((t) => t.name)).toEqual(['Bash', 'Read', 'Read', 'Edit', 'Bash', 'Bash', 'Bash', 'Bash', 'Bash', 'mcp__agent-smith__matrix_reply', 'mcp__agent-smith__publish_event', 'mcp__agent-smith__publish_event']);
    // The first test run fails (exit 1: an error result); every later step succeeds.
    expect(trail.map((t) => t.isError)).toEqual([true, ...Array<boolean>(11).fill(false)]);
    expect(trail[0]?.result).toMatch(/fail 1/);
    expect(trail[1]?.result).toContain('hello-home-lab');
    expect(trail[3]?.input).toMatchObject({ file_path: `${clone}/${SOURCE_FILE}`, old_string: BUG.old, new_string: BUG.fixed });
    expect(trail[4]?.result).toMatch(/fail 0/);
    expect(trail[8]?.result).toContain(url);

    // The branch with the fix is on the git server; main is untouched.
    expect(await git.readFile(HOMELAB_APPS, BRANCH, SOURCE_FILE)).toContain(BUG.fixed);
    expect(await git.readFile(HOMELAB_APPS, 'main', SOURCE_FILE)).toContain(BUG.old);
    expect(await git.readFile(HOMELAB_APPS, BRANCH, TEST_FILE)).toBe(HOMELAB_APPS_FILES[TEST_FILE]);
    // The GitHub fake has the pull request, by the token's user, head the pushed branch.
    const [pr] = github.pullRequests(HOMELAB_APPS);
    expect(pr).toMatchObject({ number: 1, html_url: url, user: { login: LOGIN }, head: { ref: BRANCH, sha: (await git.branch(HOMELAB_APPS, BRANCH))!.sha }, base: { ref: 'main' } });
    // The answer in the room's thread, and the events (valid for the real schema).
    const c = await calls();
    expect(c[0]).toMatchObject({ tool: 'matrix_reply', input: { room: ROOM, thread: '$ev1' } });
    expect(c[0]?.input.text).toContain(url);
    expect(c.slice(1).map((x) => [x.input.type, x.input.ok])).toEqual([['pr_opened', true], ['task_done', true]]);
    expect(c[1]?.input.data).toEqual({ repo: HOMELAB_APPS, number: 1, url, title: expect.stringContaining('slugify') as string });
  }, 200_000);

  it('a review comment (the PR watcher\'s rewake text): a second commit pushed, the comment answered in its thread', async () => {
    const before = (await git.branch(HOMELAB_APPS, BRANCH))!.sha;
    const comment = github.addReviewComment({ repo: HOMELAB_APPS, number: 1, author: 'alice', body: 'Please drop punctuation from slugs too.', path: SOURCE_FILE, line: 3 });
    // What the PR watcher finds on the fake, as the supervisor would put it in the inbox.
    const lines: Array<Record<string, unknown>> = [];
    const octokit = makeGitHubClient({ apiUrl: github.url, token: TOKEN, log: capturingLogger(lines), env: {}, ca: [github.caPem] });
    const stateDir = join(dir, 'watcher');
    await mkdir(stateDir, { recursive: true });
    const found = await new PrWatcher({ octokit, login: LOGIN, repos: [HOMELAB_APPS], stateDir, log: capturingLogger(lines) }).check();
    expect(found.items.map((i) => i.key)).toEqual([`rc:${comment.id}`]);
    await say('github', rewakeText(found.items, LOGIN));
    await nextEnd(2, 'the review task to end');

    const reply = github.reviewComments(HOMELAB_APPS, 1).at(-1);
    expect(reply).toMatchObject({ in_reply_to_id: comment.id, user: { login: LOGIN } });
    expect(reply?.body).toContain('@alice');
    const after = (await git.branch(HOMELAB_APPS, BRANCH))!.sha;
    expect(after).not.toBe(before);
    expect(await git.readFile(HOMELAB_APPS, BRANCH, SOURCE_FILE)).toContain(REVIEW_CHANGE.fixed);
    expect(github.pullRequests(HOMELAB_APPS)[0]?.head.sha).toBe(after);
    // Answered: the watcher finds nothing left.
    const again = await new PrWatcher({ octokit, login: LOGIN, repos: [HOMELAB_APPS], stateDir, log: capturingLogger(lines) }).check();
    expect(again.items).toEqual([]);
  }, 200_000);

  it('deleting a branch is on the ask list: denied by the PermissionRequest hook, the model reports the denial; allowed, the branch goes', async () => {
    await fromMatrix(`devbot: please delete the branch ${BRANCH}`, 3);
    await nextEnd(3, 'the denied deletion to end');
    const hookInputs = (await readFile(join(dir, 'hook-inputs.jsonl'), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { hook_event_name: string; tool_name: string; tool_input: { command: string } });
    expect(hookInputs).toHaveLength(1);
    expect(hookInputs[0]).toMatchObject({ hook_event_name: 'PermissionRequest', tool_name: 'Bash', tool_input: { command: `cd '${clone}' && git push origin --delete ${BRANCH}` } });
    let answer = (await calls()).at(-1);
    expect(answer).toMatchObject({ tool: 'matrix_reply', input: { room: ROOM, thread: '$ev3' } });
    expect(answer?.input.text).toBe(`${WORKER_PREFIX} I did not delete ${BRANCH}: ${DENIAL}`);
    expect(await git.branches(HOMELAB_APPS)).toContain(BRANCH);

    await writeFile(join(dir, 'decision'), 'allow');
    await fromMatrix(`devbot: please delete the branch ${BRANCH}`, 4);
    await nextEnd(4, 'the allowed deletion to end');
    answer = (await calls()).at(-1);
    expect(answer?.input.text).toContain(`${WORKER_PREFIX} deleted the branch ${BRANCH}`);
    expect(await git.branches(HOMELAB_APPS)).toEqual(['main']);
  }, 200_000);
});
