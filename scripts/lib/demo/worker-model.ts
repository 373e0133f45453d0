/**
 * The "worker" model: a scripted Responder for scripts/lib/fakes/anthropic-api.ts that
 * makes the real Claude Code do a developer's work through its real tools, one tool call
 * per model turn, each step chosen from the conversation so far (which tool results exist
 * and what they say). It knows three tasks, recognised in the newest agent-smith message
 * (agent-image/src/core/inbox.ts renderMessage):
 *
 * 1. Fix the failing test ("... homelab-apps ... fail ... fix ..."), in {@link WorkerOptions.dir}:
 *    Bash `node --test` (see it fail) → Read the test file → Read the source file → Edit the
 *    source file (Claude Code's Edit needs a prior Read of the file; input {file_path,
 *    old_string, new_string}) → Bash `node --test` (stops, reporting, unless it passes) →
 *    Bash `git checkout -b <branch>` → `git commit -am` → `git push -u origin <branch>` →
 *    `gh pr create --repo --title --body --head --base main` → `matrix_reply` with the pull
 *    request URL gh printed (when the message came from Matrix) → `publish_event` pr_opened
 *    {repo, number, url, title} → `publish_event` task_done {summary, url} → a closing text.
 * 2. A PR review rewake (source="github", the text of agent-image/src/plugins/github/
 *    unanswered.ts rewakeText): Read the source file → Edit it (drop punctuation from slugs)
 *    → Bash `node --test` → `git commit -am` → `git push` → for each review comment named,
 *    `gh api repos/{o}/{r}/pulls/{n}/comments/{id}/replies -f body=...` (for a PR comment,
 *    `gh api repos/{o}/{r}/issues/{n}/comments -f body=...`) → a closing text.
 * 3. Delete a branch ("delete the branch fix/x"): Bash `git push origin --delete <branch>`
 *    (an `ask` rule in the shipped settings: the approval goes to the room) → `matrix_reply`
 *    saying what the tool result was (the push's output, or the denial the model was told)
 *    → a closing text.
 *
 * Anything else goes to the offline demo's responder (an echo), so the worker can stand in
 * for it. A failed step (is_error, or a test run that still fails) ends the task: a
 * `matrix_reply` naming the step and its output when the message came from Matrix, then a
 * text. The MCP steps are skipped when the request does not offer the tool. Claude Code's
 * `<system-reminder>` sections in prompts and tool results are ignored.
 *
 * The homelab-apps project it fixes is {@link HOMELAB_APPS_FILES} (a Node project without
 * package.json: `node --test` runs test/*.test.mjs); the demo's git server holds it.
 */
import type { ContentBlockIn, Helpers, MessageIn, RecordedRequest, Turn } from '../fakes/anthropic-api.ts';
import { offlineResponder, parseAgentSmithMessage } from './offline-model.ts';

const REPLY_TOOL = 'mcp__agent-smith__matrix_reply';
const EVENT_TOOL = 'mcp__agent-smith__publish_event';
/** What every text the worker writes starts with (so a reader of the room knows the model is scripted). */
export const WORKER_PREFIX = '[worker model]';
/** The branch the worker pushes its fix to, unless told another (`WorkerOptions.branch`). */
export const FIX_BRANCH = 'fix/slugify-dashes';

/** The repository the worker fixes. */
export const HOMELAB_APPS = 'agent-smith/homelab-apps';
/** The source file with the bug, relative to the repository root. */
export const SOURCE_FILE = 'src/slug.mjs';
/** The failing test, relative to the repository root. */
export const TEST_FILE = 'test/slug.test.mjs';
/** The bug (in {@link SOURCE_FILE}) and its fix: words joined with `_` where the test expects `-`. */
export const BUG = { old: ".join('_')", fixed: ".join('-')" } as const;
/** What the review round changes: punctuation is dropped from slugs. */
export const REVIEW_CHANGE = { old: 'title.trim().toLowerCase()', fixed: "title.trim().toLowerCase().replace(/[^a-z0-9\\s-]/g, '')" } as const;

/** homelab-apps as the demo's git server holds it: `node --test` fails on main. */
export const HOMELAB_APPS_FILES: Record<string, string> = {
  'README.md': `# homelab-apps\n\nA repository of the agent-smith demo, served by its local git server as github.com/${HOMELAB_APPS}.\n\nRun the tests with \`node --test\` (Node 20 or later; no dependencies).\n`,
  [SOURCE_FILE]: `/** Turns a title into the slug of its URL: lower case, words joined by dashes. */\nexport function slugify(title) {\n  return title.trim().toLowerCase().split(/\\s+/)${BUG.old};\n}\n`,
  [TEST_FILE]: `import { test } from 'node:test';\nimport assert from 'node:assert/strict';\nimport { slugify } from '../src/slug.mjs';\n\ntest('slugify joins the words of a title with dashes', () => {\n  assert.equal(slugify('  Hello Home Lab '), 'hello-home-lab');\n});\n`,
};

export interface WorkerOptions {
  /** The clone of homelab-apps (absolute; default /workspace/homelab-apps, where setup clones it in the pod). */
  dir?: string;
  /** `owner/name` (default {@link HOMELAB_APPS}). */
  repo?: string;
  /** The branch of the fix (default {@link FIX_BRANCH}). */
  branch?: string;
}

/** One tool call of the current task and its result (undefined while it runs). */
interface Done {
  name: string;
  input: Record<string, unknown>;
  result?: { text: string; isError: boolean };
}

/** A step: a tool call, skipped when `when` says no; `check` turns a result into a failure text. */
interface Step {
  label: string;
  tool: string;
  input: (done: Done[]) => Record<string, unknown>;
  when?: () => boolean;
  check?: (result: { text: string; isError: boolean }) => string | undefined;
}

/** Drops Claude Code's `<system-reminder>` sections. */
const withoutReminders = (s: string) => s.replace(/<system-reminder>[\s\S]*?<\/system-reminder>/g, '').trim();

function blockText(content: string | ContentBlockIn[] | undefined): string {
  if (content === undefined) return '';
  if (typeof content === 'string') return content;
  return content.map((b) => (typeof b.text === 'string' ? b.text : b.content !== undefined ? blockText(b.content) : '')).join('\n');
}

/**
 * The index of the newest user message carrying an agent-smith message, and that message.
 * Text blocks are searched first (a prompt, or the Stop hook's feedback, with or without
 * system-reminder tags); tool results only when no text has one (they hold files and
 * command output, which could quote a message).
 */
function currentTask(messages: MessageIn[]): { at: number; msg: NonNullable<ReturnType<typeof parseAgentSmithMessage>> } | undefined {
  for (const inResults of [false, true]) {
    for (let i = messages.length - 1; i >= 0; i--) {
      const m = messages[i]!;
      if (m.role !== 'user') continue;
      const text = typeof m.content === 'string' ? m.content : blockText(m.content.filter((b) => (inResults ? b.type === 'tool_result' : b.type === 'text')));
      const msg = parseAgentSmithMessage(text);
      if (msg) return { at: i, msg };
    }
  }
  return undefined;
}

/** The tool calls made after message `at`, paired with their results. */
function doneSince(messages: MessageIn[], at: number): Done[] {
  const done: Done[] = [];
  const byId = new Map<string, Done>();
  for (const m of messages.slice(at + 1)) {
    if (typeof m.content === 'string') continue;
    for (const b of m.content) {
      if (m.role === 'assistant' && b.type === 'tool_use') {
        const d: Done = { name: b.name ?? '', input: (b.input ?? {}) as Record<string, unknown> };
        done.push(d);
        byId.set(b.id ?? '', d);
      } else if (m.role === 'user' && b.type === 'tool_result') {
        const d = byId.get(b.tool_use_id ?? '');
        if (d) d.result = { text: withoutReminders(blockText(b.content)), isError: b.is_error === true };
      }
    }
  }
  return done;
}

/** A shell word in single quotes. */
const sq = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
const firstLine = (s: string, max = 300) => {
  const line = s.split('\n').find((l) => l.trim()) ?? '';
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
};
/** The tail of a command's output, for a report. */
const tail = (s: string, lines = 12) => s.split('\n').slice(-lines).join('\n');

/** The pull request URL gh printed (`https://github.com/o/r/pull/12`). */
export function pullRequestUrl(text: string): { url: string; number: number } | undefined {
  const m = /(https?:\/\/\S+\/pull\/(\d+))/.exec(text);
  return m ? { url: m[1]!, number: Number(m[2]) } : undefined;
}

/** The review comments a rewake names: `- o/r#12 review comment by alice on src/a.mjs:3: "…" https://…#discussion_r123`. */
export function rewakeItems(text: string): Array<{ repo: string; number: number; kind: 'review_comment' | 'comment' | 'review'; id: number; author: string }> {
  const out: Array<{ repo: string; number: number; kind: 'review_comment' | 'comment' | 'review'; id: number; author: string }> = [];
  for (const m of text.matchAll(/^- ([\w.-]+\/[\w.-]+)#(\d+) (review comment|comment|review(?: \([^)]*\))?) by (\S+)[^\n]*?(?:#discussion_r(\d+)|#issuecomment-(\d+)|#pullrequestreview-(\d+))\s*$/gm)) {
    const kind = m[3] === 'review comment' ? 'review_comment' : m[3] === 'comment' ? 'comment' : 'review';
    out.push({ repo: m[1]!, number: Number(m[2]), kind, id: Number(m[5] ?? m[6] ?? m[7]), author: m[4]! });
  }
  return out;
}

/** Runs `steps` in order against what is done; the next tool call, or the closing turn. */
function next(steps: Step[], done: Done[], h: Helpers, req: RecordedRequest, fail: (label: string, output: string, done: Done[]) => Turn, finish: (done: Done[]) => Turn): Turn {
  const live = steps.filter((s) => (s.when ? s.when() : true) && (!s.tool.startsWith('mcp__') || h.hasTool(req, s.tool)));
  for (const [i, step] of live.entries()) {
    const d = done[i];
    if (!d) return h.toolUse(step.tool, step.input(done));
    if (!d.result) return h.text(`${WORKER_PREFIX} waiting for the result of ${step.label}.`);
    // A step with a check judges its result itself (a test run exits non-zero when tests fail).
    const problem = step.check ? step.check(d.result) : d.result.isError ? d.result.text || 'failed' : undefined;
    if (problem !== undefined) return fail(step.label, problem, done);
  }
  return finish(done);
}

/** The worker's responder (see the file comment); `opts` name the clone and the branch. */
export function workerResponder(opts: WorkerOptions = {}): (req: RecordedRequest, h: Helpers) => Turn {
  const dir = (opts.dir ?? '/workspace/homelab-apps').replace(/\/$/, '');
  const repo = opts.repo ?? HOMELAB_APPS;
  const branch = opts.branch ?? FIX_BRANCH;
  const inDir = (cmd: string) => `cd ${sq(dir)} && ${cmd}`;
  const bash = (label: string, command: string, check?: Step['check']): Step => ({ label, tool: 'Bash', input: () => ({ command: inDir(command), description: label }), ...(check ? { check } : {}) });
  // node --test's summary: `# pass 1` / `# fail 0` (tap reporter) or `ℹ pass 1` / `ℹ fail 0` (spec, Node 23+'s default).
  const testsPass: Step['check'] = (r) => (/^(?:#|ℹ) fail 0\s*$/m.test(r.text) && /^(?:#|ℹ) pass [1-9]/m.test(r.text) ? undefined : `the tests still fail:\n${tail(r.text)}`);
  const title = 'Fix slugify: join the words of a slug with dashes';

  return (req, h) => {
    const task = currentTask(req.body.messages);
    if (!task) return offlineResponder(req, h);
    const { msg } = task;
    const done = doneSince(req.body.messages, task.at);
    const fromMatrix = msg.attrs.source === 'matrix' && Boolean(msg.attrs.room);
    const reply = (text: (d: Done[]) => string): Step => ({
      label: 'the answer in Matrix',
      tool: REPLY_TOOL,
      when: () => fromMatrix,
      input: (d) => ({ room: msg.attrs.room, ...(msg.attrs.thread ? { thread: msg.attrs.thread } : {}), text: text(d) }),
    });
    const fail = (label: string, output: string, d: Done[]): Turn => {
      const text = `${WORKER_PREFIX} I could not finish (${label}): ${tail(output)}`;
      const told = d.some((x) => x.name === REPLY_TOOL && String(x.input.text).startsWith(`${WORKER_PREFIX} I could not finish`));
      if (fromMatrix && !told && h.hasTool(req, REPLY_TOOL) && d.at(-1)?.name !== REPLY_TOOL) return h.toolUse(REPLY_TOOL, { room: msg.attrs.room, ...(msg.attrs.thread ? { thread: msg.attrs.thread } : {}), text });
      return h.text(text);
    };
    const pr = (d: Done[]) => pullRequestUrl(d.find((x) => x.name === 'Bash' && String(x.input.command).includes('gh pr create'))?.result?.text ?? '');

    // 1. A PR review rewake.
    if (msg.attrs.source === 'github' && /Review feedback on your pull requests/.test(msg.body)) {
      const items = rewakeItems(msg.body).filter((i) => i.kind !== 'review');
      const steps: Step[] = [
        { label: `reading ${SOURCE_FILE}`, tool: 'Read', input: () => ({ file_path: `${dir}/${SOURCE_FILE}` }) },
        { label: `editing ${SOURCE_FILE}`, tool: 'Edit', input: () => ({ file_path: `${dir}/${SOURCE_FILE}`, old_string: REVIEW_CHANGE.old, new_string: REVIEW_CHANGE.fixed }) },
        bash('Run the tests', 'node --test', testsPass),
        bash('Commit the review change', `git commit -am ${sq('slugify: drop punctuation, as the review asked')}`),
        bash('Push the second commit', 'git push'),
        ...items.map((i): Step => {
          const body = `Done in the latest commit: slugs now drop punctuation. Thanks, @${i.author}!`;
          const path = i.kind === 'review_comment' ? `repos/${i.repo}/pulls/${i.number}/comments/${i.id}/replies` : `repos/${i.repo}/issues/${i.number}/comments`;
          return bash(`Answer ${i.author} on ${i.repo}#${i.number}`, `gh api ${path} -f body=${sq(body)} --jq .html_url`);
        }),
      ];
      return next(steps, done, h, req, fail, () => h.text(`${WORKER_PREFIX} pushed a second commit and answered ${items.length} review comment${items.length === 1 ? '' : 's'}.`));
    }

    // 2. Delete a branch (on the ask list: a person approves it in the room).
    const del = /\bdelete\s+(?:the\s+)?(?:remote\s+)?branch\s+([\w./-]+)/i.exec(msg.body);
    if (del) {
      const target = del[1]!.replace(/[.]+$/, '');
      const steps: Step[] = [
        { label: `Delete the branch ${target}`, tool: 'Bash', input: () => ({ command: inDir(`git push origin --delete ${target}`), description: `Delete the branch ${target}` }), check: () => undefined },
        reply((d) => {
          const r = d[0]?.result;
          return r?.isError ? `${WORKER_PREFIX} I did not delete ${target}: ${r.text || 'the command failed'}` : `${WORKER_PREFIX} deleted the branch ${target}: ${firstLine(r?.text ?? '') || 'done'}`;
        }),
      ];
      // A refusal is the answer here, not a failure of the task.
      const live = steps.filter((s) => (s.when ? s.when() : true) && (!s.tool.startsWith('mcp__') || h.hasTool(req, s.tool)));
      const nextStep = live[done.length];
      if (nextStep) return done.length > 0 && !done.at(-1)?.result ? h.text(`${WORKER_PREFIX} waiting.`) : h.toolUse(nextStep.tool, nextStep.input(done));
      const r = done[0]?.result;
      return h.text(`${WORKER_PREFIX} ${r?.isError ? `did not delete ${target}: ${r.text}` : `deleted ${target}.`}`);
    }

    // 3. Fix the failing test.
    if (/homelab-apps/i.test(msg.body) && /\bfail/i.test(msg.body) && /\bfix/i.test(msg.body)) {
      const steps: Step[] = [
        bash('Run the tests', 'node --test', () => undefined),
        { label: `reading ${TEST_FILE}`, tool: 'Read', input: () => ({ file_path: `${dir}/${TEST_FILE}` }) },
        { label: `reading ${SOURCE_FILE}`, tool: 'Read', input: () => ({ file_path: `${dir}/${SOURCE_FILE}` }) },
        { label: `editing ${SOURCE_FILE}`, tool: 'Edit', input: () => ({ file_path: `${dir}/${SOURCE_FILE}`, old_string: BUG.old, new_string: BUG.fixed }) },
        bash('Run the tests again', 'node --test', testsPass),
        bash('Create the branch', `git checkout -b ${branch}`),
        bash('Commit the fix', `git commit -am ${sq('slugify: join words with dashes, as the test expects')}`),
        bash('Push the branch', `git push -u origin ${branch}`),
        bash('Open the pull request', `gh pr create --repo ${repo} --title ${sq(title)} --body ${sq(`The test \`${TEST_FILE}\` failed: \`slugify\` joined words with underscores. It joins them with dashes now; \`node --test\` passes.`)} --head ${branch} --base main`, (r) => (pullRequestUrl(r.text) ? undefined : `gh printed no pull request URL:\n${tail(r.text)}`)),
        reply((d) => `${WORKER_PREFIX} Fixed the failing test in ${repo} (slugify joined words with "_" instead of "-") and opened a pull request: ${pr(d)?.url ?? '?'}`),
        { label: 'publishing pr_opened', tool: EVENT_TOOL, input: (d) => ({ type: 'pr_opened', data: { repo, number: pr(d)?.number ?? 1, url: pr(d)?.url ?? '', title } }) },
        { label: 'publishing task_done', tool: EVENT_TOOL, input: (d) => ({ type: 'task_done', data: { summary: `Fixed the failing test in ${repo} and opened ${pr(d)?.url ?? 'a pull request'}`, ...(pr(d) ? { url: pr(d)!.url } : {}) } }) },
      ];
      return next(steps, done, h, req, fail, (d) => h.text(`${WORKER_PREFIX} Done: the test passes on ${branch}, and the pull request is ${pr(d)?.url ?? '?'}.`));
    }
    return offlineResponder(req, h);
  };
}
