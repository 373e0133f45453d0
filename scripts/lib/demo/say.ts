/**
 * `scripts/say AGENT TEXT`: a person's one-line way to talk to an agent of the local
 * demo (scripts/demo). Posts "<agent>: <text>" to the demo's room as the demo person,
 * mentioning the agent's Matrix user (`m.mentions`, Matrix client-server API v1.7+), and
 * prints the agent's next message in the room when it comes.
 *
 * The connection comes from the file the demo writes and prints (`--demo FILE`, default
 * $AGENT_SMITH_DEMO): {homeserverUrl, userId, accessToken, roomId, agents: {name: userId}}.
 * The requests go through the agent's own Matrix client (matrix/client.ts): the access token
 * is sent as `Authorization: Bearer` only, never printed.
 *
 * Endpoints (Matrix client-server API): PUT /rooms/{roomId}/send/m.room.message/{txnId};
 * GET /rooms/{roomId}/messages?dir=b (newest first).
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { MatrixClient, MatrixError, type MatrixEvent } from '../../../agent-image/src/plugins/matrix/client.ts';

/** The file the demo writes for this command. */
export interface DemoConnection {
  homeserverUrl: string;
  userId: string;
  accessToken: string;
  roomId: string;
  roomAlias?: string;
  /** Agent name → its Matrix user id. */
  agents: Record<string, string>;
}

/** A one-line failure of `say`, printed as `scripts/say: <message>` (exit 1). */
export class SayError extends Error {
  override name = 'SayError';
}

/** @throws SayError naming the file or field when the demo file is missing or malformed */
export function readDemoConnection(file: string | undefined): DemoConnection {
  if (!file) throw new SayError('no demo to talk to: start scripts/demo and export the AGENT_SMITH_DEMO it prints (or pass --demo FILE)');
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new SayError(`cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); is scripts/demo still running?`);
  }
  const c = raw as Partial<DemoConnection>;
  for (const field of ['homeserverUrl', 'userId', 'accessToken', 'roomId'] as const) {
    if (typeof c[field] !== 'string' || !c[field]) throw new SayError(`${file}: ${field} is missing`);
  }
  if (!c.agents || typeof c.agents !== 'object') throw new SayError(`${file}: agents is missing`);
  return c as DemoConnection;
}

/**
 * Sends `text` to `agent` and waits for its answer.
 * @param opts.timeoutMs how long to wait for the answer (ms)
 * @param opts.pollMs pause between reads of the room (ms, default 500)
 * @returns the answer's body
 * @throws SayError for an unknown agent, a homeserver error (MatrixClient's message: method
 *   and path, never the token), or no answer in time
 */
export async function say(c: DemoConnection, agent: string, text: string, opts: { timeoutMs: number; pollMs?: number }): Promise<string> {
  const agentUser = c.agents[agent];
  if (!agentUser) throw new SayError(`the demo has no agent named ${agent} (it has: ${Object.keys(c.agents).join(', ')})`);
  const client = new MatrixClient({ homeserverUrl: c.homeserverUrl, accessToken: () => Promise.resolve(c.accessToken) });
  try {
    const sent = await client.send(c.roomId, 'm.room.message', { msgtype: 'm.text', body: `${agent}: ${text}`, 'm.mentions': { user_ids: [agentUser] } }, randomUUID());
    const deadline = Date.now() + opts.timeoutMs;
    while (Date.now() < deadline) {
      // No `from`: the newest events (client-server API v1.3+); MatrixClient.messages wants a token.
      const { chunk } = await client.request<{ chunk: MatrixEvent[] }>('GET', `/rooms/${encodeURIComponent(c.roomId)}/messages`, { query: { dir: 'b', limit: '100' } });
      const timeline = chunk.reverse();
      const at = timeline.findIndex((e) => e.event_id === sent);
      const answer = at < 0 ? undefined : timeline.slice(at + 1).find((e) => e.sender === agentUser && e.type === 'm.room.message');
      if (answer) return typeof answer.content.body === 'string' ? answer.content.body : JSON.stringify(answer.content);
      await new Promise((r) => setTimeout(r, opts.pollMs ?? 500));
    }
  } catch (err) {
    if (!(err instanceof MatrixError)) throw err;
    throw new SayError(err.status === 0 ? `cannot reach the homeserver ${c.homeserverUrl} (${err.message}); is scripts/demo still running?` : err.message);
  }
  throw new SayError(`${agent} did not answer within ${Math.round(opts.timeoutMs / 1000)} s (agent-smith attach ${agent} shows what it is doing)`);
}

/** The CLI command: prints the answer; returns the exit code (1 after a one-line error on stderr). */
export async function runSay(agent: string, words: string[], opts: { demo?: string | undefined; timeout?: string | undefined }): Promise<number> {
  try {
    const timeoutS = opts.timeout === undefined ? 120 : Number(opts.timeout);
    if (!Number.isFinite(timeoutS) || timeoutS <= 0) throw new SayError(`--timeout ${opts.timeout}: expected a number of seconds`);
    const text = words.join(' ').trim();
    if (!text) throw new SayError('nothing to say: scripts/say devbot "hello"');
    const c = readDemoConnection(opts.demo ?? process.env.AGENT_SMITH_DEMO);
    process.stderr.write(`you → ${agent}: ${text}\n`);
    const answer = await say(c, agent, text, { timeoutMs: timeoutS * 1000 });
    process.stdout.write(`${answer}\n`);
    return 0;
  } catch (err) {
    if (!(err instanceof SayError)) throw err;
    process.stderr.write(`scripts/say: ${err.message}\n`);
    return 1;
  }
}
