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
 * Hooks never fail the CLI: any error is exit 0 with a line on stderr.
 */
const EVENTS = new Set(['session-start', 'prompt-submit', 'stop', 'notification']);

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
