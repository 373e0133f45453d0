/**
 * The event log with its real parts: nats-server with JetStream (scripts/lib/services/nats.ts), the
 * supervisor as a real process (its MCP tools called over HTTP as the CLI would), and
 * `agent-smith events`. DESIGN.md flow 4; issue 8 item 3.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventsConfig } from '../../agent-image/src/contract/contract.ts';
import { EventLog, EventMetrics, EventOutbox, filterSubject, queryEvents, type EventEnvelope } from '../../agent-image/src/plugins/events/index.ts';
import { makeLogger } from '../../agent-image/src/lib/log.ts';
import { callTool, metric } from '../support/matrix-pod.ts';
import { startNats, type NatsServer } from '../../scripts/lib/services/nats.ts';
import { terminate } from '../../scripts/lib/process.ts';
import { makePod, runCli, startSupervisor, testContract, type PodFiles, type SupervisorProcess } from '../support/pod.ts';
import { waitFor } from '../support/wait.ts';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';

const STREAM = 'AGENT_EVENTS';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const PREFIX = 'agents';

/** Every stored event matching the filter, oldest first, read by the test's own client. */
async function stored(nc: NatsConnection, f: { agent?: string; type?: string; team?: string }): Promise<EventEnvelope[]> {
  return queryEvents(nc, { stream: STREAM, subjectPrefix: PREFIX, ...f, limit: 10_000 });
}

/** Messages the stream holds on one subject, from the server's own count (duplicates would count). */
async function countOnSubject(nc: NatsConnection, subject: string): Promise<number> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(STREAM, { subjects_filter: subject });
  return info.state.subjects?.[subject] ?? 0;
}

async function stopSupervisor(sup: SupervisorProcess | undefined): Promise<void> {
  if (sup) await terminate(sup.proc, sup.exited);
}

async function eventPod(nats: NatsServer, agent: string, team?: string): Promise<PodFiles> {
  const pod = await makePod({
    contract: testContract({
      agent: { name: agent, namespace: 'default', ...(team ? { team } : {}) },
      harness: { kind: 'custom', command: ['cat'], args: [] },
      events: { natsUrl: nats.url, subjectPrefix: PREFIX, maxAgeSeconds: 7 * 86_400, maxMessages: 50_000 },
    }),
  });
  const setup = await runCli(pod, ['setup']);
  expect(setup.code, setup.stderr).toBe(0);
  return pod;
}

describe('event log', () => {
  let nats: NatsServer;
  let nc: NatsConnection;

  beforeAll(async () => {
    nats = await startNats();
  });

  afterAll(async () => {
    await nc?.close();
    await nats?.close();
  });

  describe('through the supervisor', () => {
    let pod: PodFiles;
    const sups: SupervisorProcess[] = [];

    beforeAll(async () => {
      pod = await eventPod(nats, 'devbot', 'homelab');
    });

    afterAll(async () => {
      if (process.env.DEBUG_EVENTS) for (const s of sups) console.log(s.logs().map((l) => JSON.stringify(l)).join('\n'));
      await stopSupervisor(sups.at(-1));
      await pod?.cleanup();
    });

    it('keeps 200 events published while NATS is down, across a restart and a crash of the supervisor, and stores each once, in order', async () => {
      sups.push(startSupervisor(pod));
      await sups[0]!.waitForLog((l) => l.msg === 'supervisor listening');
      // The test's own client, reconnecting across the outage below.
      nc = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
      await waitFor('agent_started in the stream', async () => (await stored(nc, { agent: 'devbot', type: 'agent_started' })).length === 1, 30_000);
      // The supervisor created the stream with the contract's limits.
      const { config } = await (await jetstreamManager(nc)).streams.info(STREAM);
      expect(config).toMatchObject({ subjects: ['agents.>'], max_msgs: 50_000, max_age: 7 * 86_400 * 1e9, max_bytes: 1024 ** 3, duplicate_window: 3600 * 1e9, storage: 'file' });

      await nats.stop();
      for (let i = 0; i < 100; i++) {
        const r = await callTool(pod, 'publish_event', { type: 'task_done', data: { summary: `task ${i}` } });
        expect(r.isError, r.text).toBe(false);
      }
      expect(await metric(sups[0]!, 'agentsmith_events_outbox_pending')).toBeGreaterThanOrEqual(100);
      await stopSupervisor(sups[0]);

      // The outbox on the home volume holds them; a new supervisor picks them up.
      sups.push(startSupervisor(pod));
      await sups[1]!.waitForLog((l) => l.msg === 'supervisor listening');
      const loaded = await sups[1]!.waitForLog((l) => l.msg === 'event outbox holds events from before this start');
      expect(loaded.pending).toBeGreaterThanOrEqual(101); // 100 tasks and agent_stopped
      for (let i = 100; i < 200; i++) {
        const r = await callTool(pod, 'publish_event', { type: 'task_done', data: { summary: `task ${i}` } });
        expect(r.isError, r.text).toBe(false);
      }
      expect(await metric(sups[1]!, 'agentsmith_events_outbox_pending')).toBeGreaterThanOrEqual(200);

      // A crash (SIGKILL) as soon as the backlog starts to drain: the next supervisor
      // publishes the rest, and sends again what the stream stored but the outbox had not
      // marked yet, which the stream drops by its id. The kill is in a subscription callback
      // of a client connected right after NATS returns (the supervisor's next attempt waits
      // out its backoff), so it lands within the first events.
      await sleep(3000); // the supervisor's backoff grows past the few ms the subscription takes
      await nats.start();
      const watcher = await connect({ servers: nats.url });
      const killed = new Promise<void>((resolve) => {
        watcher.subscribe('agents.homelab.devbot.>', {
          max: 1,
          callback: () => {
            sups[1]!.proc.kill('SIGKILL');
            resolve();
          },
        });
      });
      await watcher.flush();
      await killed;
      await sups[1]!.exited;
      await watcher.close();
      sups.push(startSupervisor(pod));
      await sups[2]!.waitForLog((l) => l.msg === 'supervisor listening');
      const left = await sups[2]!.waitForLog((l) => l.msg === 'event outbox holds events from before this start');
      expect(left.pending).toBeGreaterThan(0);
      const events = await waitFor(
        'all 200 task_done events in the stream',
        async () => {
          const e = await stored(nc, { agent: 'devbot', type: 'task_done' });
          return e.length >= 200 && e;
        },
        60_000,
      );
      await waitFor('the outbox empty', async () => (await metric(sups[2]!, 'agentsmith_events_outbox_pending')) === 0, 30_000);

      expect(new Set(events.map((e) => e.id)).size).toBe(200);
      expect(events.map((e) => e.data.summary)).toEqual(Array.from({ length: 200 }, (_, i) => `task ${i}`));
      expect(events.every((e) => e.agent === 'devbot' && e.team === 'homelab')).toBe(true);
      expect(await countOnSubject(nc, 'agents.homelab.devbot.task_done')).toBe(200);
      // The restart shows in the lifecycle events, in order.
      const lifecycle = (await stored(nc, { agent: 'devbot' })).filter((e) => e.type.startsWith('agent_')).map((e) => e.type);
      expect(lifecycle).toEqual(['agent_started', 'agent_stopped', 'agent_started', 'agent_started']);
      // One warning per outage, not one per event.
      const unreachable = (sup: SupervisorProcess) => sup.logs().filter((l) => l.msg === 'event log unreachable; events wait in the outbox');
      expect(unreachable(sups[0]!)).toHaveLength(1);
      expect(unreachable(sups[1]!)).toHaveLength(1);
      expect(unreachable(sups[2]!)).toHaveLength(0);
      expect(sups[1]!.logs().filter((l) => l.msg === 'event log reachable again; publishing the outbox')).toHaveLength(1);
    });

    it('refuses an invalid event through publish_event with the field named, and publishes nothing', async () => {
      const bad = await callTool(pod, 'publish_event', { type: 'pr_opened', data: { repo: 'acme/api', number: -3, url: 'https://github.com/acme/api/pull/3', title: 'Fix it' } });
      expect(bad.isError).toBe(true);
      expect(bad.text).toContain('data.number: expected a positive integer');
      const missing = await callTool(pod, 'publish_event', { type: 'incident', data: { summary: 'disk full' } });
      expect(missing.isError).toBe(true);
      expect(missing.text).toContain('data.severity');
      const lifecycle = await callTool(pod, 'publish_event', { type: 'crash_loop', data: {} });
      expect(lifecycle.isError).toBe(true);
      expect(lifecycle.text).toContain('type: expected one of pr_opened');

      // A valid one after them: once it is stored, anything sent before it would be too.
      const good = await callTool(pod, 'publish_event', {
        type: 'pr_opened',
        data: { repo: 'acme/api', number: 3, url: 'https://github.com/acme/api/pull/3', title: 'Fix it', reviewers: ['infrabot'] },
      });
      expect(good.isError, good.text).toBe(false);
      expect(good.text).toContain('on agents.homelab.devbot.pr_opened');
      const prs = await waitFor('the valid pr_opened stored', async () => {
        const e = await stored(nc, { agent: 'devbot', type: 'pr_opened' });
        return e.length > 0 && e;
      });
      expect(prs.map((e) => e.data)).toEqual([{ repo: 'acme/api', number: 3, url: 'https://github.com/acme/api/pull/3', title: 'Fix it', reviewers: ['infrabot'] }]);
      expect(await countOnSubject(nc, 'agents.homelab.devbot.incident')).toBe(0);
      expect(await countOnSubject(nc, 'agents.homelab.devbot.crash_loop')).toBe(0);
    });

    it('answers queries through `agent-smith events` and the MCP tool `events`', async () => {
      const cli = await runCli(pod, ['events', '--nats-url', nats.url, '--agent', 'devbot', '--type', 'task_done', '--since', '1h', '--limit', '5']);
      expect(cli.code, cli.stderr).toBe(0);
      const lines = cli.stdout.trim().split('\n').map((l) => JSON.parse(l) as EventEnvelope);
      expect(lines.map((e) => e.data.summary)).toEqual(['task 195', 'task 196', 'task 197', 'task 198', 'task 199']);

      // From the contract (in the pod), by type across agents.
      const fromContract = await runCli(pod, ['events', '--type', 'pr_opened']);
      expect(fromContract.code, fromContract.stderr).toBe(0);
      expect(fromContract.stdout.trim().split('\n').map((l) => (JSON.parse(l) as EventEnvelope).data.number)).toEqual([3]);

      const none = await runCli(pod, ['events', '--nats-url', nats.url, '--agent', 'nobody']);
      expect(none.code, none.stderr).toBe(0);
      expect(none.stdout).toBe('');
      const future = await runCli(pod, ['events', '--nats-url', nats.url, '--since', new Date(Date.now() + 3_600_000).toISOString()]);
      expect(future.stdout).toBe('');
      const badSince = await runCli(pod, ['events', '--nats-url', nats.url, '--since', 'yesterday']);
      expect(badSince.code).toBe(1);
      expect(badSince.stderr).toContain('since: expected a duration');

      const tool = await callTool(pod, 'events', { type: 'pr_opened', agent: 'devbot', since: '1h' });
      expect(tool.isError, tool.text).toBe(false);
      expect((JSON.parse(tool.text) as EventEnvelope).data).toMatchObject({ repo: 'acme/api', number: 3 });
    });
  });

  describe('in process', () => {
    let dir: string;
    const log = makeLogger('events-test', 'warn');
    const config = () => EventsConfig.parse({ natsUrl: nats.url, subjectPrefix: PREFIX });

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'agent-smith-events-'));
      nc ??= await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('re-sends after a crash between publish and outbox update are dropped by the stream (Nats-Msg-Id)', async () => {
      const stateDir = join(dir, 'crash');
      const metrics = new EventMetrics(new Registry());
      const outbox = new EventOutbox({ stateDir, agent: 'crashbot', log, metrics });
      const el = new EventLog({ config: config(), outbox, log, metrics });
      el.start();
      for (let i = 0; i < 3; i++) await outbox.emit('notification', { text: `n${i}` });
      await waitFor('3 published', async () => (await metric2(metrics)).published === 3);
      expect(await readFile(outbox.file, 'utf8')).toBe(''); // drained: the file is empty
      await el.stop();

      // A crash right after the PubAcks, before the outbox recorded them: the events are
      // still in the file when the next supervisor starts.
      const sent = await stored(nc, { agent: 'crashbot' });
      expect(sent).toHaveLength(3);
      await writeFile(outbox.file, sent.map((e) => JSON.stringify(e) + '\n').join(''));
      await rm(outbox.doneFile, { force: true });
      const metrics2 = new EventMetrics(new Registry());
      const outbox2 = new EventOutbox({ stateDir, agent: 'crashbot', log, metrics: metrics2 });
      const el2 = new EventLog({ config: config(), outbox: outbox2, log, metrics: metrics2 });
      el2.start();
      await outbox2.open();
      expect(outbox2.pending).toBe(3);
      await waitFor('the re-sends answered', async () => (await metric2(metrics2)).duplicates === 3);
      await el2.stop();
      expect(await countOnSubject(nc, 'agents._.crashbot.notification')).toBe(3);
      expect((await stored(nc, { agent: 'crashbot' })).map((e) => e.id)).toEqual(sent.map((e) => e.id));
    });

    it('consume: a durable consumer acks after the handler, redelivers on failure and resumes after a restart', async () => {
      const outbox = new EventOutbox({ stateDir: join(dir, 'consume'), agent: 'devbot', team: 'fanout', log });
      const el = new EventLog({ config: config(), outbox, log });
      el.start();
      const filter = filterSubject(PREFIX, { team: 'fanout', type: 'pr_opened' });
      const seen: Array<{ n: unknown; delivery: number }> = [];
      const handler = async (e: EventEnvelope, meta: { deliveryCount: number }) => {
        seen.push({ n: e.data.number, delivery: meta.deliveryCount });
        if (e.data.number === 2 && meta.deliveryCount === 1) throw new Error('reviewer busy');
      };
      const pr = (n: number) => ({ repo: 'acme/api', number: n, url: `https://github.com/acme/api/pull/${n}`, title: `PR ${n}` });

      let c = el.consume({ durable: 'fanout-test', filterSubject: filter }, handler);
      // The consumer exists before the first event (deliver: new).
      await waitFor('the durable consumer', async () => (await (await jetstreamManager(nc)).consumers.info(STREAM, 'fanout-test')).name === 'fanout-test');
      for (const n of [1, 2, 3]) expect((await el.publish('pr_opened', pr(n))).ok).toBe(true);
      await outbox.emit('agent_started', {}); // not matched by the filter
      await waitFor('1, 2 (after a redelivery) and 3 handled', () => seen.some((s) => s.n === 2 && s.delivery === 2) && seen.some((s) => s.n === 3), 30_000);
      await c.stop();

      // Stopped: events published meanwhile are handled after the restart, the acked ones not again.
      for (const n of [4, 5]) expect((await el.publish('pr_opened', pr(n))).ok).toBe(true);
      await waitFor('4 and 5 stored', async () => (await stored(nc, { team: 'fanout', type: 'pr_opened' })).length === 5);
      const before = seen.length;
      c = el.consume({ durable: 'fanout-test', filterSubject: filter }, handler);
      await waitFor('4 and 5 handled after the restart', () => seen.slice(before).filter((s) => s.n === 4 || s.n === 5).length === 2, 30_000);
      await new Promise((r) => setTimeout(r, 500));
      expect(seen.slice(before).map((s) => s.n)).toEqual([4, 5]);
      expect(seen.filter((s) => s.n === 1)).toHaveLength(1);
      await c.stop();
      await el.stop();
    });
  });
});

async function metric2(m: EventMetrics): Promise<{ published: number; duplicates: number }> {
  const published = (await m.published.get()).values.reduce((a, v) => a + v.value, 0);
  const duplicates = (await m.duplicates.get()).values.reduce((a, v) => a + v.value, 0);
  return { published, duplicates };
}
