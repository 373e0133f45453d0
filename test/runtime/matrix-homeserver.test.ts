/**
 * The bridge against a homeserver that misbehaves in ways a real Synapse will not on cue:
 * a 429 with `retry_after_ms`, a token it rejects (401 M_UNKNOWN_TOKEN) until the Secret
 * holding it is rotated, a token of another user, and an event lookup that keeps failing
 * (502) while /sync answers. A small HTTP fake of the endpoints involved (whoami, sync,
 * join, event, send), shapes from the client-server API.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MatrixBridge } from '../../agent-image/src/plugins/matrix/bridge.ts';
import { MatrixMetrics } from '../../agent-image/src/plugins/matrix/metrics.ts';
import { Inbox, MAX_PENDING } from '../../agent-image/src/core/inbox.ts';
import { waitFor } from '../support/matrix-pod.ts';

interface Seen {
  path: string;
  auth: string;
  at: number;
}

describe('Matrix bridge: homeserver errors', () => {
  let dir: string;
  let server: Server;
  let url: string;
  let seen: Seen[];
  let logs: string[];
  let bridge: MatrixBridge | undefined;
  /** What the fake answers; tests change it. */
  let users: Record<string, string>;
  let syncReplies: Array<{ status: number; body: unknown }>;
  /** /sync answers by `since` token (before syncReplies). */
  let batches: Record<string, unknown>;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'agent-smith-matrix-'));
    seen = [];
    logs = [];
    users = {};
    syncReplies = [];
    batches = {};
    server = createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      const auth = req.headers.authorization ?? '';
      seen.push({ path, auth, at: Date.now() });
      // A string body is sent as it is (JSON that JSON.stringify could not write, e.g. nested past the stack).
      const send = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(typeof body === 'string' ? body : JSON.stringify(body));
      const user = users[auth.replace(/^Bearer /, '')];
      if (!user) return send(401, { errcode: 'M_UNKNOWN_TOKEN', error: 'Invalid access token passed.' });
      if (path === '/_matrix/client/v3/account/whoami') return send(200, { user_id: user });
      if (path === '/_matrix/client/v3/sync') {
        const batch = batches[new URL(req.url ?? '/', 'http://x').searchParams.get('since') ?? ''];
        const next = batch ? { status: 200, body: batch } : (syncReplies.shift() ?? { status: 200, body: { next_batch: `s${seen.length}` } });
        // An empty long poll: answer after a moment, as a homeserver with nothing new would at its timeout.
        setTimeout(() => send(next.status, next.body), next.status === 200 ? 100 : 0);
        return;
      }
      if (path.startsWith('/_matrix/client/v3/rooms/') && path.includes('/event/')) return send(502, { errcode: 'M_UNKNOWN', error: 'Bad gateway' });
      if (path.startsWith('/_matrix/client/v3/rooms/') && path.includes('/send/')) return send(200, { event_id: `$sent${seen.length}` });
      send(404, { errcode: 'M_UNRECOGNIZED', error: 'Unrecognized request' });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterEach(async () => {
    await bridge?.stop();
    bridge = undefined;
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  async function start(token: string, metrics = new MatrixMetrics(new Registry()), inbox = new Inbox(join(dir, 'inbox')), allowedUsers: string[] = []): Promise<MatrixBridge> {
    await writeFile(join(dir, 'access-token'), `${token}\n`);
    await inbox.open();
    const sink = new Writable({ write: (chunk: Buffer, _enc, cb) => (logs.push(chunk.toString()), cb()) });
    bridge = new MatrixBridge({
      config: { homeserverUrl: url, userId: '@bot:hs', allowedUsers, rooms: [] },
      agentName: 'bot',
      tokenFile: join(dir, 'access-token'),
      stateDir: join(dir, 'state'),
      inbox,
      metrics,
      log: pino({ level: 'debug' }, sink),
      backoffInitialMs: 200,
      backoffMaxMs: 400,
    });
    await bridge.start();
    return bridge;
  }

  it("waits exactly the homeserver's retry_after_ms after a 429, then resumes", async () => {
    users = { 'tok-1': '@bot:hs' };
    syncReplies = [{ status: 429, body: { errcode: 'M_LIMIT_EXCEEDED', error: 'Too Many Requests', retry_after_ms: 1500 } }];
    const registry = new Registry();
    const b = await start('tok-1', new MatrixMetrics(registry));
    await waitFor('syncing', () => b.status().state === 'syncing' && seen.filter((s) => s.path.endsWith('/sync')).length >= 2);
    const syncs = seen.filter((s) => s.path.endsWith('/sync'));
    // 1.5 s, not the 200 ms backoff the bridge would otherwise use.
    expect(syncs[1]!.at - syncs[0]!.at).toBeGreaterThanOrEqual(1450);
    expect(syncs[1]!.at - syncs[0]!.at).toBeLessThan(2500);
    expect(await registry.getSingleMetricAsString('agentsmith_supervisor_matrix_sync_errors_total')).toContain('kind="rate_limited"} 1');
    expect(b.ready().ok).toBe(true);
  });

  it('is unauthorized (not ready) while the homeserver rejects the token, and picks up a rotated token file', async () => {
    users = { 'tok-new': '@bot:hs' };
    const b = await start('tok-old');
    await waitFor('unauthorized', () => b.status().state === 'unauthorized');
    expect(b.ready()).toMatchObject({ ok: false });
    expect(b.ready().reason).toMatch(/M_UNKNOWN_TOKEN/);
    // The Secret is updated in place (kubelet rewrites the mounted file).
    await writeFile(join(dir, 'access-token'), 'tok-new\n');
    await waitFor('syncing with the new token', () => b.status().state === 'syncing', 10_000);
    expect(seen.at(-1)!.auth).toBe('Bearer tok-new');
    // Neither token was ever logged.
    expect(logs.join('')).not.toMatch(/tok-old|tok-new/);
  });

  it("refuses a token that belongs to another user than spec.matrix.userId", async () => {
    users = { 'tok-2': '@someone-else:hs' };
    const b = await start('tok-2');
    await waitFor('unauthorized', () => b.status().state === 'unauthorized');
    expect(b.ready().reason).toMatch(/belongs to @someone-else:hs, not to spec.matrix.userId @bot:hs/);
    expect(seen.some((s) => s.path.endsWith('/sync'))).toBe(false);
  });

  it('skips an event whose lookup keeps failing while /sync answers: not ready and backing off meanwhile, and the message behind it delivered', async () => {
    users = { 'tok-3': '@bot:hs' };
    const room = '!r:hs';
    const ev = (id: string, sender: string, content: Record<string, unknown>) => ({ event_id: id, type: 'm.room.message', sender, origin_server_ts: Date.now(), content });
    batches = {
      '': { next_batch: 's1', rooms: { join: { [room]: { timeline: { events: [{ event_id: '$join', type: 'm.room.member', sender: '@bot:hs', state_key: '@bot:hs', origin_server_ts: 1, content: { membership: 'join' } }] } } } } },
      s1: {
        next_batch: 's2',
        rooms: {
          join: {
            [room]: {
              timeline: {
                events: [
                  // A bad event (a reply id over 255 bytes): skipped at once, logged once however often the batch is tried.
                  ev('$bad', '@bob:hs', { msgtype: 'm.text', body: 'and this?', 'm.relates_to': { 'm.in_reply_to': { event_id: `$${'a'.repeat(300)}` } } }),
                  // A reply whose target the homeserver cannot look up (502 every time).
                  ev('$poison', '@bob:hs', { msgtype: 'm.text', body: 'what about it?', 'm.relates_to': { 'm.in_reply_to': { event_id: '$gone' } } }),
                  ev('$good', '@alice:hs', { msgtype: 'm.text', body: 'please deploy' }),
                ],
              },
            },
          },
        },
      },
    };
    const registry = new Registry();
    const inbox = new Inbox(join(dir, 'inbox'));
    const b = await start('tok-3', new MatrixMetrics(registry), inbox, ['@alice:hs']);
    await waitFor('stalled', () => b.status().state === 'stalled', 10_000);
    expect(b.ready()).toMatchObject({ ok: false });
    expect(b.ready().reason).toMatch(/stalled: a \/sync batch failed \d time\(s\) in a row/);
    expect(inbox.size).toBe(0); // the message behind the poison waits for its batch
    await waitFor('the batch through', () => b.status().state === 'syncing' && b.ready().ok, 20_000);
    expect(inbox.peek()).toMatchObject({ id: '$good', text: 'please deploy' });
    expect(inbox.size).toBe(1);
    expect(await registry.getSingleMetricAsString('agentsmith_supervisor_matrix_events_failed_total')).toContain('reason="unavailable"} 1');
    expect(await registry.getSingleMetricAsString('agentsmith_supervisor_matrix_batch_failures_total')).toContain(' 4');
    // The batch was tried 5 times with a growing wait (200, 400, 400, 400 ms here), not every 500 ms for ever.
    const s1 = seen.filter((x) => x.path.endsWith('/event/%24gone'));
    expect(s1.length).toBeGreaterThanOrEqual(5);
    expect(s1.length).toBeLessThanOrEqual(10); // withRetry's attempts per lookup aside, no loop
    const skipped = logs.join('').split('\n').filter((l) => l.includes('Matrix event skipped'));
    expect(skipped).toHaveLength(2);
    expect(skipped[0]).toContain('"reason":"invalid_relation"');
    expect(skipped[1]).toContain('"reason":"unavailable"');
    expect(await registry.getSingleMetricAsString('agentsmith_supervisor_matrix_events_failed_total')).toContain('reason="invalid_relation"} 1');
    // Bob is told with a ⚠️ on each (he did not name the agent), Alice gets her 👀.
    expect(seen.filter((x) => x.path.includes('/send/m.reaction/')).length).toBe(3);
  });
  it('holds the batch while the inbox is full (the agent takes nothing), never skipping its messages, and delivers them once it has room', async () => {
    users = { 'tok-4': '@bot:hs' };
    const room = '!r:hs';
    batches = {
      '': { next_batch: 's1', rooms: { join: { [room]: { timeline: { events: [{ event_id: '$join', type: 'm.room.member', sender: '@bot:hs', state_key: '@bot:hs', origin_server_ts: 1, content: { membership: 'join' } }] } } } } },
      s1: { next_batch: 's2', rooms: { join: { [room]: { timeline: { events: [{ event_id: '$ask', type: 'm.room.message', sender: '@alice:hs', origin_server_ts: Date.now(), content: { msgtype: 'm.text', body: 'please deploy' } }] } } } } },
    };
    // Messages the agent has not taken, from before this start (start() opens the inbox).
    const before = new Inbox(join(dir, 'inbox'));
    await before.open();
    for (let i = 0; i < MAX_PENDING; i++) await before.put({ id: `old-${i}`, source: 'test', text: `old ${i}` });
    const inbox = new Inbox(join(dir, 'inbox'));
    const registry = new Registry();
    const b = await start('tok-4', new MatrixMetrics(registry), inbox, ['@alice:hs']);
    await waitFor('stalled', () => b.status().state === 'stalled', 10_000);
    // Well past the 5th attempt, after which an event that keeps failing transiently is skipped.
    await waitFor('6 failed attempts', async () => (await registry.getSingleMetricAsString('agentsmith_supervisor_matrix_batch_failures_total')).match(/ (\d+)$/m)?.[1] === '6', 20_000);
    expect(await registry.getSingleMetricAsString('agentsmith_supervisor_matrix_events_failed_total')).not.toMatch(/reason=/);
    expect(b.ready()).toMatchObject({ ok: false });
    await inbox.ack('old-0');
    await waitFor('the message in the inbox', () => inbox.size === MAX_PENDING && inbox.findPending((m) => m.id === '$ask') !== undefined, 20_000);
    await waitFor('syncing again', () => b.status().state === 'syncing', 10_000);
  });
  it('skips events a hostile homeserver shapes to break the checks themselves (an id object without toString, content nested past the stack) and delivers the one behind them', async () => {
    users = { 'tok-5': '@bot:hs' };
    const room = '!r:hs';
    batches = {
      '': { next_batch: 's1', rooms: { join: { [room]: { timeline: { events: [{ event_id: '$join', type: 'm.room.member', sender: '@bot:hs', state_key: '@bot:hs', origin_server_ts: 1, content: { membership: 'join' } }] } } } } },
      s1: {
        next_batch: 's2',
        rooms: {
          join: {
            [room]: {
              timeline: {
                events: [
                  { event_id: { toString: 1 }, type: 'm.room.message', sender: { toString: 1 }, origin_server_ts: 1, content: { msgtype: 'm.text', body: 'x' } },
                  { event_id: '$deep', type: 'm.room.message', sender: '@alice:hs', origin_server_ts: 1, content: { msgtype: 'm.text', body: 'x', deep: 'DEEP' } },
                  { event_id: '$good', type: 'm.room.message', sender: '@alice:hs', origin_server_ts: Date.now(), content: { msgtype: 'm.text', body: 'please deploy' } },
                ],
              },
            },
          },
        },
      },
    };
    // Content nested 30,000 deep: valid JSON a homeserver could relay, past what JSON.stringify can write back.
    batches.s1 = JSON.stringify(batches.s1).replace('"DEEP"', `${'['.repeat(30_000)}${']'.repeat(30_000)}`);
    const inbox = new Inbox(join(dir, 'inbox'));
    const registry = new Registry();
    const b = await start('tok-5', new MatrixMetrics(registry), inbox, ['@alice:hs']);
    await waitFor('the good message in the inbox', () => inbox.findPending((m) => m.id === '$good') !== undefined, 10_000);
    expect(inbox.size).toBe(1);
    expect(b.ready()).toMatchObject({ ok: true });
    const failed = await registry.getSingleMetricAsString('agentsmith_supervisor_matrix_events_failed_total');
    expect(failed).toContain('reason="invalid_id"} 1');
    expect(failed).toContain('reason="invalid_content"} 1');
  });
});
