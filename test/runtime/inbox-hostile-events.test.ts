/**
 * A durable event consumer (agent-image/src/plugins/events/consume.ts) against a real nats-server
 * with JetStream, fed bad events by a client of the test's own: not JSON, too large, one
 * its handler refuses for its content (SkipEvent, a ZodError), one its handler hangs on.
 * Each is skipped after one warning line and counted; the good event behind them is
 * handled at once; nothing stays pending.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { EventsConfig } from '../../agent-image/src/contract/contract.ts';
import { ConsumerMetrics, SkipEvent } from '../../agent-image/src/plugins/events/consume.ts';
import { EventLog, EventOutbox, filterSubject, type EventEnvelope } from '../../agent-image/src/plugins/events/index.ts';
import { startNats, type NatsServer } from '../../scripts/lib/services/nats.ts';
import { waitFor } from '../support/wait.ts';
import { capturingLogger } from '../support/log.ts';

const PREFIX = 'agents';
const STREAM = 'AGENT_EVENTS';

describe('event consumer with bad events', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let dir: string;

  beforeAll(async () => {
    nats = await startNats();
    nc = await connect({ servers: nats.url });
    dir = await mkdtemp(join(tmpdir(), 'agent-smith-hostile-events-'));
  });
  afterAll(async () => {
    await nc?.close();
    await nats?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('skips a malformed, an oversized, a refused and a hanging event, each logged once and counted, and handles the good one behind them', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const log = capturingLogger(lines, 'warn');
    const registry = new Registry();
    const metrics = new ConsumerMetrics(registry);
    const outbox = new EventOutbox({ stateDir: join(dir, 'state'), agent: 'reviewer', team: 'hostile', log });
    const el = new EventLog({ config: EventsConfig.parse({ natsUrl: nats.url, subjectPrefix: PREFIX }), outbox, log });
    el.start();
    const seen: string[] = [];
    const handler = async (e: EventEnvelope): Promise<void> => {
      const title = String(e.data.title);
      seen.push(title);
      if (title === 'SKIP') throw new SkipEvent('no repository named');
      if (title === 'ZOD') z.object({ repo: z.string() }).parse(e.data);
      if (title === 'HANG') await new Promise(() => undefined);
    };
    const filter = filterSubject(PREFIX, { team: 'hostile', type: 'pr_opened' });
    const c = el.consume({ durable: 'hostile-test', filterSubject: filter, maxDeliver: 3, handlerTimeoutMs: 1000, metrics }, handler);
    await waitFor('the durable consumer', async () => (await (await jetstreamManager(nc)).consumers.info(STREAM, 'hostile-test')).name === 'hostile-test', 30_000);

    const js = jetstream(nc);
    const subject = `${PREFIX}.hostile.author.pr_opened`;
    const envelope = (title: string, extra: Record<string, unknown> = {}) =>
      JSON.stringify({ id: `ev-${title}-${Date.now()}`, type: 'pr_opened', time: new Date().toISOString(), agent: 'author', team: 'hostile', data: { title, ...extra } });
    await js.publish(subject, 'not json {');
    await js.publish(subject, envelope('HUGE', { body: 'x'.repeat(300 * 1024) }));
    await js.publish(subject, envelope('HANG'));
    await js.publish(subject, envelope('SKIP'));
    await js.publish(subject, envelope('ZOD'));
    await js.publish(subject, envelope('GOOD'));

    // The good event is handled after the hanging one's first time limit, not never.
    await waitFor('the good event handled', () => seen.includes('GOOD'), 20_000);
    // The hanging one is tried maxDeliver (3) times, then skipped.
    const skipped = async (reason: string) => (await metrics.skipped.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
    await waitFor('the hanging event given up', async () => (await skipped('failed')) === 1, 30_000);
    expect(seen.filter((t) => t === 'HANG')).toHaveLength(3);
    // Refused events are not redelivered: handled once each.
    await new Promise((r) => setTimeout(r, 2500));
    expect(seen.filter((t) => t === 'SKIP')).toHaveLength(1);
    expect(seen.filter((t) => t === 'ZOD')).toHaveLength(1);
    expect(seen).not.toContain('HUGE');
    expect({ malformed: await skipped('malformed'), tooLarge: await skipped('too_large'), rejected: await skipped('rejected'), failed: await skipped('failed') }).toEqual({
      malformed: 1,
      tooLarge: 1,
      rejected: 2,
      failed: 1,
    });
    // One warning line per bad event (the hanging one: its first failure, then the final error), none quoting a payload.
    const consumerLines = lines.filter((l) => l.consumer === 'hostile-test' && Number(l.level) >= 40);
    expect(consumerLines.map((l) => l.msg).sort()).toEqual(
      [
        'event larger than a consumer takes; skipped',
        'event handler failed on the last delivery; the event is skipped',
        'event handler failed; redelivery later',
        'not an event envelope; skipped',
        'the event handler refused the event for its content; skipped',
        'the event handler refused the event for its content; skipped',
      ].sort(),
    );
    for (const l of consumerLines) expect(JSON.stringify(l).length).toBeLessThan(1000);
    // Nothing left pending or unacknowledged on the durable.
    await waitFor('the durable drained', async () => {
      const info = await (await jetstreamManager(nc)).consumers.info(STREAM, 'hostile-test');
      return info.num_pending === 0 && info.num_ack_pending === 0;
    }, 20_000);
    await c.stop();
    await el.stop();
  });
});
