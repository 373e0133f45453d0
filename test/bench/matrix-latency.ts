/**
 * Benchmark: Matrix event → supervisor inbox latency on loopback.
 *
 *   node test/bench/matrix-latency.ts [--messages 200] [--gap-ms 150]
 *
 * A real Synapse (scripts/lib/services/synapse.ts) and `agent-smith supervise` with a `custom`
 * harness (a `cat`, so the figures are the bridge's, not a model CLI's). A person sends
 * `--messages` messages one at a time, `--gap-ms` apart, each mentioning the agent.
 * Per message, from the moment the person's `PUT /send` returned (Synapse has persisted
 * the event):
 * - baseline: when a bare /sync long-poll loop of another member (no processing, in this
 *   process) receives it: Synapse's own serve time, the floor of any sync client;
 * - bridge: when the supervisor logged it into the inbox (its log line's `time`; the bridge
 *   writes the inbox file before it logs).
 * Reported: p50 and p99 of both and of bridge − baseline per message (the bridge's own
 * cost after Synapse served the event; target p50 < 100 ms, issue 7). Appends a table to
 * test/bench/results.md. Not a test: nothing passes or fails on a number.
 */
import { appendFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { makeMatrixPod } from '../support/matrix-pod.ts';
import { ROOT } from '../../scripts/lib/paths.ts';
import { runCli, startSupervisor } from '../support/pod.ts';
import { isReaction, startSynapse, synapseVersion, type MatrixTestUser } from '../../scripts/lib/services/synapse.ts';

const { values } = parseArgs({ options: { messages: { type: 'string', default: '200' }, 'gap-ms': { type: 'string', default: '150' } } });
const count = Number(values.messages);
const gapMs = Number(values['gap-ms']);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}

/** A bare /sync loop: records when each event id first arrives (ms since the epoch). */
function rawSync(user: MatrixTestUser, url: string, seen: Map<string, number>, signal: AbortSignal): Promise<void> {
  const filter = JSON.stringify({ room: { timeline: { types: ['m.room.message'], limit: 50 }, state: { types: [] }, ephemeral: { types: [] } }, presence: { types: [] } });
  return (async () => {
    let since: string | undefined;
    while (!signal.aborted) {
      const q = new URLSearchParams({ filter, timeout: since ? '30000' : '0', ...(since ? { since } : {}) });
      const res = await fetch(`${url}/_matrix/client/v3/sync?${q.toString()}`, { headers: { authorization: `Bearer ${user.accessToken}` }, signal }).catch(() => undefined);
      if (!res) continue;
      const now = Date.now();
      const body = (await res.json()) as { next_batch: string; rooms?: { join?: Record<string, { timeline?: { events?: Array<{ event_id: string }> } }> } };
      for (const room of Object.values(body.rooms?.join ?? {})) for (const e of room.timeline?.events ?? []) if (!seen.has(e.event_id)) seen.set(e.event_id, now);
      since = body.next_batch;
    }
  })();
}

const synapse = await startSynapse();
const bot = await synapse.register('testbot');
const alice = await synapse.register('alice');
const observer = await synapse.register('observer');
const room = await alice.createRoom({ invite: [bot.userId, observer.userId] });
await observer.join(room);
const pod = await makeMatrixPod({ synapse, bot, rooms: [room] });
const setup = await runCli(pod, ['setup']);
if (setup.code !== 0) throw new Error(setup.stderr);
const sup = startSupervisor(pod);
try {
  await sup.waitForLog((l) => l.msg === 'joined a configured room');
  for (;;) {
    const id = await alice.sendText(room, 'warm-up');
    try {
      await alice.waitForEvent(room, (e) => isReaction(e, bot.userId, id), 3000);
      break;
    } catch {
      // not live yet
    }
  }
  const stop = new AbortController();
  const baseline = new Map<string, number>();
  const loop = rawSync(observer, synapse.url, baseline, stop.signal);
  await sleep(500);

  const sentAt = new Map<string, number>();
  for (let i = 0; i < count; i++) {
    const id = await alice.sendText(room, `testbot: task ${i}`);
    sentAt.set(id, Date.now());
    await sleep(gapMs);
  }
  const deadline = Date.now() + 30_000;
  const inboxAt = () => new Map(sup.logs().filter((l) => l.msg === 'Matrix message put in the inbox').map((l) => [String(l.event), Number(l.time)]));
  while (Date.now() < deadline && [...sentAt.keys()].some((id) => !inboxAt().has(id) || !baseline.has(id))) await sleep(100);
  stop.abort();
  await loop.catch(() => undefined);

  const ins = inboxAt();
  const rows = [...sentAt].filter(([id]) => ins.has(id) && baseline.has(id)).map(([id, t]) => ({ base: baseline.get(id)! - t, bridge: ins.get(id)! - t, over: ins.get(id)! - baseline.get(id)! }));
  const col = (k: 'base' | 'bridge' | 'over') => rows.map((r) => r[k]);
  const f = (n: number) => n.toFixed(0);
  const table = [
    '',
    `## Matrix event → inbox latency, ${new Date().toISOString()} (Synapse ${synapseVersion()}, SQLite, loopback, 2 cores; ${rows.length}/${count} messages, ${gapMs} ms apart)`,
    '',
    '| from PUT /send returned to | p50 ms | p99 ms | max ms |',
    '|---|---|---|---|',
    `| baseline: a bare /sync loop receives it (Synapse's serve time) | ${f(pct(col('base'), 50))} | ${f(pct(col('base'), 99))} | ${f(Math.max(...col('base')))} |`,
    `| bridge: the supervisor has it in the inbox | ${f(pct(col('bridge'), 50))} | ${f(pct(col('bridge'), 99))} | ${f(Math.max(...col('bridge')))} |`,
    `| bridge − baseline, per message (the bridge's own cost) | ${f(pct(col('over'), 50))} | ${f(pct(col('over'), 99))} | ${f(Math.max(...col('over')))} |`,
    '',
    `Target: p50 of bridge − baseline < 100 ms (${pct(col('over'), 50) < 100 ? 'met' : 'NOT met'}); bridge p50 / baseline p50 = ${(pct(col('bridge'), 50) / Math.max(1, pct(col('base'), 50))).toFixed(2)}x.`,
    '',
  ].join('\n');
  console.log(table);
  appendFileSync(`${ROOT}/test/bench/results.md`, table);
} finally {
  sup.proc.kill('SIGTERM');
  await sup.exited;
  await pod.cleanup();
  await synapse.close();
}
