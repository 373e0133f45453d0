/**
 * `agent-smith hook <event>`: what Claude Code's hooks run (settings.json written by
 * setup). Reads the hook's JSON input on stdin and reports it to the supervisor's
 * loopback server (AGENT_SMITH_SUPERVISOR_URL), tagged with the CLI generation
 * (AGENT_SMITH_CLI_GENERATION) so a hook of a CLI that has since been restarted is ignored.
 *
 * `stop` is the inbox waiter (async + asyncRewake in settings.json): after reporting
 * idle it long-polls `/inbox/next`; when a message arrives it prints it on stderr,
 * acknowledges it and exits 2, which wakes the idle session with the message (Claude
 * Code hooks: exit 2 = blocking, stderr goes to the model). It exits 0 when it is stale
 * (a newer waiter or CLI took over) or its CLI is gone.
 *
 * `permission-request` (Claude Code's PermissionRequest hook) asks the supervisor's
 * `POST /approvals`, which holds the request until an approver answers in Matrix or the
 * approval timeout passes, and prints the decision on stdout:
 * `{"hookSpecificOutput":{"hookEventName":"PermissionRequest","decision":{"behavior":"allow"}}}`
 * or `... {"behavior":"deny","message":"..."}` (the model gets the message as the tool's
 * result). It fails closed: an unset or unreachable supervisor, an answer it cannot read,
 * or no answer within spec.matrix.approvals.timeoutSeconds + 30 s is a deny saying why.
 *
 * Hooks never fail the CLI: any error is exit 0 with a line on stderr.
 */
import { request } from 'node:http';
import { DEFAULT_APPROVAL_TIMEOUT_SECONDS } from '../../contract/contract.ts';
import { MAX_APPROVAL_REQUEST_BYTES, TOO_LARGE_MESSAGE } from '../../core/approval.ts';
import { layoutFromEnv } from '../../contract/layout.ts';
import { loadContract } from '../../contract/load.ts';

const EVENTS = new Set(['session-start', 'prompt-submit', 'stop', 'notification', 'permission-request']);
/** Past the approval timeout, how long the hook still waits for the supervisor's answer (s). */
const APPROVAL_GRACE_SECONDS = 30;

async function readStdin(): Promise<Record<string, unknown>> {
  if (process.stdin.isTTY) return {};
  const chunks: Buffer[] = [];
  for await (const c of process.stdin as AsyncIterable<Buffer>) chunks.push(c);
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (!text) return {};
  try {
    const v = JSON.parse(text) as unknown;
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs one hook; resolves the exit code (0, or 2 when a message is handed to the model). */
export async function runHook(event: string, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  if (!EVENTS.has(event)) {
    process.stderr.write(`agent-smith hook: unknown event "${event}" (one of ${[...EVENTS].join(', ')})\n`);
    return 0;
  }
  const base = env.AGENT_SMITH_SUPERVISOR_URL;
  const generation = env.AGENT_SMITH_CLI_GENERATION ?? '';
  const input = await readStdin();
  if (event === 'permission-request') return permissionRequest(base, generation, input, env);
  if (!base) {
    process.stderr.write('agent-smith hook: AGENT_SMITH_SUPERVISOR_URL is not set (not started by the supervisor)\n');
    return 0;
  }
  const headers = { 'content-type': 'application/json', 'x-agent-smith-generation': generation };
  try {
    await fetch(`${base}/hooks/${event}`, { method: 'POST', headers, body: JSON.stringify(input), signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    process.stderr.write(`agent-smith hook ${event}: supervisor unreachable (${(err as Error).message})\n`);
    if (event !== 'stop') return 0;
  }
  if (event !== 'stop') return 0;
  return waitForMessage(base, generation, headers);
}

async function waitForMessage(base: string, generation: string, headers: Record<string, string>): Promise<number> {
  const parent = process.ppid;
  let failures = 0;
  for (;;) {
    if (process.ppid !== parent) return 0; // our CLI is gone
    let res: Response;
    try {
      res = await fetch(`${base}/inbox/next?generation=${encodeURIComponent(generation)}&timeoutMs=240000`, { headers, signal: AbortSignal.timeout(300_000) });
    } catch {
      // The supervisor is restarting: try again, more slowly each time (cap 10 s).
      failures++;
      await sleep(Math.min(250 * 2 ** failures, 10_000));
      continue;
    }
    failures = 0;
    if (res.status === 204) continue;
    if (res.status !== 200) {
      await res.body?.cancel();
      return 0;
    }
    const m = (await res.json()) as { id: string; text: string };
    process.stderr.write(`${m.text}\n`);
    try {
      await fetch(`${base}/inbox/ack`, { method: 'POST', headers, body: JSON.stringify({ id: m.id }), signal: AbortSignal.timeout(10_000) });
    } catch {
      // Not acknowledged: the supervisor offers it again after its ack timeout (at-least-once).
    }
    return 2;
  }
}

type Decision = { behavior: 'allow' } | { behavior: 'deny'; message: string };

/** The approval timeout of the pod contract (spec.matrix.approvals.timeoutSeconds), or the default when there is none or it cannot be read. */
function approvalTimeoutSeconds(env: NodeJS.ProcessEnv): number {
  try {
    return loadContract(layoutFromEnv(env).contractFile).matrix?.approvals.timeoutSeconds ?? DEFAULT_APPROVAL_TIMEOUT_SECONDS;
  } catch {
    return DEFAULT_APPROVAL_TIMEOUT_SECONDS;
  }
}

/**
 * POSTs `body` as JSON and resolves the answer's status and text; rejects after `limitMs`.
 * node:http rather than fetch: undici's fetch gives up waiting for headers after 300 s,
 * and an approval may take up to a day.
 */
function postJson(url: string, headers: Record<string, string>, body: unknown, limitMs: number): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers, signal: AbortSignal.timeout(limitMs) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

/** The decision in a supervisor answer, or undefined when it is not one. */
function readDecision(text: string): Decision | undefined {
  try {
    const d = JSON.parse(text) as { behavior?: unknown; message?: unknown };
    if (d.behavior === 'allow') return { behavior: 'allow' };
    if (d.behavior === 'deny') return { behavior: 'deny', message: typeof d.message === 'string' && d.message ? d.message : 'Denied.' };
  } catch {
    // not JSON: no decision
  }
  return undefined;
}

/**
 * The decision of the supervisor's answer to `POST /approvals` (HTTP status, body text): its
 * decision when 200 and readable; 413 (input over MAX_APPROVAL_REQUEST_BYTES) is the
 * "too large to ask about in chat" deny; anything else a deny naming the status.
 */
export function answerDecision(status: number, text: string): Decision {
  if (status === 413) return { behavior: 'deny', message: TOO_LARGE_MESSAGE };
  return (status === 200 ? readDecision(text) : undefined) ?? { behavior: 'deny', message: `Denied: the supervisor could not decide the approval (HTTP ${status}).` };
}

/** The PermissionRequest hook (see the module comment): prints the decision JSON on stdout; always exit 0. */
async function permissionRequest(base: string | undefined, generation: string, input: Record<string, unknown>, env: NodeJS.ProcessEnv): Promise<number> {
  let decision: Decision;
  if (!base) {
    decision = { behavior: 'deny', message: 'Denied: no approval could be asked (AGENT_SMITH_SUPERVISOR_URL is not set: this CLI was not started by the agent-smith supervisor).' };
  } else if (Buffer.byteLength(JSON.stringify(input)) > MAX_APPROVAL_REQUEST_BYTES) {
    // The supervisor would refuse it (413), maybe while it is still being sent.
    decision = { behavior: 'deny', message: TOO_LARGE_MESSAGE };
  } else {
    const seconds = approvalTimeoutSeconds(env) + APPROVAL_GRACE_SECONDS;
    try {
      const res = await postJson(`${base}/approvals`, { 'content-type': 'application/json', 'x-agent-smith-generation': generation }, input, seconds * 1000);
      decision = answerDecision(res.status, res.text);
    } catch (err) {
      const why = (err as Error).name === 'TimeoutError' || (err as Error).name === 'AbortError' ? `no answer within ${seconds} s` : `supervisor unreachable: ${(err as Error).message}`;
      process.stderr.write(`agent-smith hook permission-request: ${why}\n`);
      decision = { behavior: 'deny', message: `Denied: the approval could not be asked (${why}).` };
    }
  }
  process.stdout.write(`${JSON.stringify({ hookSpecificOutput: { hookEventName: 'PermissionRequest', decision } })}\n`);
  return 0;
}
