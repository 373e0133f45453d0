/**
 * Helpers for runtime tests of the Matrix bridge: a pod whose contract names a Synapse
 * account, the supervisor's MCP tools called over HTTP as the CLI would, and what the
 * supervisor's logs say was put in the inbox and delivered.
 */
import type { PodContractInput } from '../../agent-image/src/contract/contract.ts';
import { makePod, testContract, type PodFiles, type SupervisorProcess } from './pod.ts';
import type { MatrixTestUser, Synapse } from '../../scripts/lib/services/synapse.ts';

export interface MatrixPodOptions {
  synapse: Synapse;
  bot: MatrixTestUser;
  allowedUsers?: string[];
  rooms?: string[];
  /** Other agents of the team (written to the roster the operator would mount). */
  teammates?: Array<{ name: string; matrix: string }>;
  modelUrl?: string;
  /** Harness; default a `custom` one running `cat`, which swallows what is typed into it. */
  harness?: PodContractInput['harness'];
  extraEnv?: NodeJS.ProcessEnv;
  /** The Agent's name (default testbot) and team (default none; the roster is always written). */
  name?: string;
  team?: string;
  /** The contract's `events` (the event log on a real nats-server). */
  events?: PodContractInput['events'];
}

/** A pod with `spec.matrix` set and the bot's access token in the file the operator mounts. */
export function makeMatrixPod(o: MatrixPodOptions): Promise<PodFiles> {
  const name = o.name ?? 'testbot';
  const contract = testContract({
    agent: { name, namespace: 'default', ...(o.team ? { team: o.team } : {}) },
    harness: o.harness ?? { kind: 'custom', command: ['cat'], args: [] },
    matrix: { homeserverUrl: o.synapse.url, userId: o.bot.userId, allowedUsers: o.allowedUsers ?? [], rooms: o.rooms ?? [] },
    ...(o.events ? { events: o.events } : {}),
  });
  const roster = { team: o.team ?? 'test', agents: [{ name, harness: 'claude', matrix: o.bot.userId, repos: [] }, ...(o.teammates ?? []).map((t) => ({ ...t, harness: 'claude', repos: [] }))] };
  return makePod({
    contract,
    ...(o.modelUrl ? { modelUrl: o.modelUrl } : {}),
    files: { 'matrix/access-token': `${o.bot.accessToken}\n`, 'team/roster.json': JSON.stringify(roster) },
    ...(o.extraEnv ? { extraEnv: o.extraEnv } : {}),
  });
}

/** Calls a tool of the supervisor's MCP server (stateless Streamable HTTP, as the CLI does). */
export async function callTool(pod: PodFiles, name: string, args: Record<string, unknown>): Promise<{ text: string; isError: boolean }> {
  const res = await fetch(`${pod.localUrl}/mcp`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: args } }),
  });
  const raw = await res.text();
  // The answer is one SSE `message` event (or plain JSON).
  const data = raw.includes('data: ') ? raw.split('\n').find((l) => l.startsWith('data: '))!.slice(6) : raw;
  const msg = JSON.parse(data) as { result?: { content: Array<{ text: string }>; isError?: boolean }; error?: { message: string } };
  if (msg.error) throw new Error(`MCP ${name}: ${msg.error.message}`);
  return { text: msg.result?.content.map((c) => c.text).join('\n') ?? '', isError: msg.result?.isError ?? false };
}

/** Event ids the bridge put in the inbox (from its log), in order, across the given supervisor runs. */
export function putInInbox(...sups: SupervisorProcess[]): string[] {
  return sups.flatMap((s) => s.logs().filter((l) => l.msg === 'Matrix message put in the inbox').map((l) => String(l.event)));
}

/** Message ids the supervisor delivered to the CLI (from its log), across the given supervisor runs. */
export function deliveredToCli(...sups: SupervisorProcess[]): string[] {
  return sups.flatMap((s) => s.logs().filter((l) => l.msg === 'message delivered to the CLI').map((l) => String(l.id)));
}

export { waitFor } from './wait.ts';

/** One sample of a Prometheus metric by its full line prefix (name and labels), or 0. */
export async function metric(sup: SupervisorProcess, prefix: string): Promise<number> {
  const text = await (await fetch(`${sup.publicUrl()}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${prefix} `));
  return line ? Number(line.split(' ').at(-1)) : 0;
}
