import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EventMetrics } from '../plugins/events/metrics.ts';
import { EventOutbox } from './outbox.ts';

/** A logger whose lines the test can read. */
function captureLog() {
  const lines: Array<Record<string, unknown> & { msg: string }> = [];
  const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown> & { msg: string }) });
  return { log, lines };
}

async function fileLines(file: string): Promise<string[]> {
  return (await readFile(file, 'utf8')).split('\n').filter(Boolean);
}

describe('EventOutbox', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'outbox-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const make = (over: { maxEvents?: number; team?: string } = {}) => {
    const { log, lines } = captureLog();
    const metrics = new EventMetrics(new Registry());
    return { outbox: new EventOutbox({ stateDir: dir, agent: 'devbot', log, metrics, ...over }), lines, metrics };
  };

  it('gives every event an id, the agent and team, and keeps the pending ones in order across a restart', async () => {
    const { outbox } = make({ team: 'homelab' });
    await outbox.open();
    for (const n of [1, 2, 3]) await outbox.emit('cli_restarted', { attempt: n });
    const first = outbox.peek()!;
    expect(first).toMatchObject({ type: 'cli_restarted', agent: 'devbot', team: 'homelab', data: { attempt: 1 } });
    expect(first.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(new Date(first.time).toISOString()).toBe(first.time);
    await outbox.markDone(first.id);

    const again = make().outbox;
    await again.open();
    expect(again.pending).toBe(2);
    const ids: unknown[] = [];
    while (again.peek()) {
      ids.push(again.peek()!.data.attempt);
      await again.markDone(again.peek()!.id);
    }
    expect(ids).toEqual([2, 3]);
    expect(await readFile(again.file, 'utf8')).toBe('');
  });

  it('ignores a markDone for an event that is not the oldest pending one', async () => {
    const { outbox } = make();
    await outbox.emit('a');
    await outbox.emit('b');
    await outbox.markDone('not-the-head');
    expect(outbox.pending).toBe(2);
  });

  it('drops the oldest beyond maxEvents, counts them and warns once per overflow', async () => {
    const { outbox, lines, metrics } = make({ maxEvents: 5 });
    for (let i = 0; i < 8; i++) await outbox.emit('notification', { n: i });
    expect(outbox.pending).toBe(5);
    expect(outbox.peek()!.data.n).toBe(3);
    expect((await metrics.outboxDropped.get()).values[0]!.value).toBe(3);
    expect((await metrics.outboxPending.get()).values[0]!.value).toBe(5);
    expect(lines.filter((l) => l.msg.startsWith('event outbox full'))).toHaveLength(1);

    const again = make({ maxEvents: 5 }).outbox;
    await again.open();
    expect(again.pending).toBe(5);
    expect(again.peek()!.data.n).toBe(3);
  });

  it('skips a torn last line and unreadable lines, keeps the rest, and appends cleanly after them', async () => {
    const { outbox } = make();
    await outbox.emit('a');
    await outbox.emit('b');
    await writeFile(outbox.file, (await readFile(outbox.file, 'utf8')) + 'not json\n{"id":"x","type":"c"');
    const { outbox: again, lines } = make();
    await again.open();
    expect(again.pending).toBe(2);
    expect(lines.find((l) => l.msg === 'event outbox: skipped unreadable lines')).toMatchObject({ torn: true, unreadable: 1 });
    await again.emit('d');
    expect((await fileLines(again.file)).map((l) => (JSON.parse(l) as { type: string }).type)).toEqual(['a', 'b', 'd']);
  });

  it('gives lines from before ids existed a stable id, so a re-send is still a duplicate', async () => {
    const { outbox } = make();
    await mkdir(dirname(outbox.file), { recursive: true });
    await writeFile(outbox.file, JSON.stringify({ type: 'agent_started', time: '2026-12-01T10:00:00.000Z', agent: 'devbot', data: {} }) + '\n');
    await outbox.open();
    const id = outbox.peek()!.id;
    const again = make().outbox;
    await again.open();
    expect(again.peek()!.id).toBe(id);
  });

  it('compacts the file once most of it is done, without losing a pending event', async () => {
    const { outbox } = make();
    for (let i = 0; i < 1500; i++) await outbox.emit('notification', { n: i });
    for (let i = 0; i < 1200; i++) await outbox.markDone(outbox.peek()!.id);
    expect((await fileLines(outbox.file)).length).toBeLessThan(1000);
    const again = make().outbox;
    await again.open();
    expect(again.pending).toBe(300);
    expect(again.peek()!.data.n).toBe(1200);
  });
});
