import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ExponentialBackoff } from './backoff.ts';
import { Controller } from './controller.ts';
import { RetryAfter, TemporaryError, TerminalError } from './errors.ts';
import { WorkQueue } from './queue.ts';

const log = pino({ level: 'silent' });

function controllerWith(reconcile: (key: string) => Promise<{ requeueAfterMs?: number }>, workers = 2, terminalRecheckMs?: number) {
  return new Controller({
    ...(terminalRecheckMs !== undefined ? { terminalRecheckMs } : {}),
    name: 'test',
    reconcile: (key) => reconcile(key),
    workers,
    log,
    waitForCacheSync: () => Promise.resolve(),
    queue: new WorkQueue(new ExponentialBackoff(5, 40)),
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('Controller', () => {
  it('retries a failing reconcile with backoff until it succeeds', async () => {
    const calls: number[] = [];
    const c = controllerWith(async () => {
      calls.push(Date.now());
      if (calls.length < 4) throw new Error('API server unavailable');
      return {};
    });
    c.enqueue('ns/a');
    await c.start();
    await sleep(300);
    await c.stop();
    expect(calls).toHaveLength(4);
  });

  it('retries a TemporaryError with backoff, each wait longer than the last', async () => {
    const calls: number[] = [];
    const c = controllerWith(async () => {
      calls.push(Date.now());
      if (calls.length < 4) throw new TemporaryError('reading Secret ns/a: HTTP 503');
      return {};
    });
    c.enqueue('ns/a');
    await c.start();
    await sleep(300);
    await c.stop();
    expect(calls).toHaveLength(4);
    // The backoff doubles from 5 ms: 5, 10, 20.
    expect(calls[3]! - calls[2]!).toBeGreaterThanOrEqual(18);
  });

  it('does not retry a terminal error', async () => {
    let calls = 0;
    const c = controllerWith(async () => {
      calls++;
      throw new TerminalError('InvalidSpec', 'bad');
    });
    c.enqueue('ns/a');
    await c.start();
    await sleep(100);
    await c.stop();
    expect(calls).toBe(1);
  });

  it('looks at a terminal key again only after terminalRecheckMs (the resync), not with backoff', async () => {
    const calls: number[] = [];
    const c = controllerWith(async () => {
      calls.push(Date.now());
      throw new TerminalError('InvalidSpec', 'bad');
    }, 2, 120);
    c.enqueue('ns/a');
    await c.start();
    await sleep(200);
    await c.stop();
    expect(calls).toHaveLength(2);
    expect(calls[1]! - calls[0]!).toBeGreaterThanOrEqual(115);
  });

  it('waits exactly RetryAfter, and requeueAfter reconciles again', async () => {
    const calls: number[] = [];
    const c = controllerWith(async () => {
      calls.push(Date.now());
      if (calls.length === 1) throw new RetryAfter(60);
      if (calls.length === 2) return { requeueAfterMs: 30 };
      return {};
    });
    c.enqueue('ns/a');
    await c.start();
    await sleep(250);
    await c.stop();
    expect(calls).toHaveLength(3);
    expect(calls[1]! - calls[0]!).toBeGreaterThanOrEqual(55);
  });

  it('reconciles one key at a time even with several workers', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    let calls = 0;
    const c = controllerWith(async () => {
      inFlight++;
      calls++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await sleep(20);
      inFlight--;
      return {};
    }, 4);
    await c.start();
    for (let i = 0; i < 10; i++) {
      c.enqueue('ns/a');
      await sleep(5);
    }
    await sleep(100);
    await c.stop();
    expect(maxInFlight).toBe(1);
    expect(calls).toBeGreaterThan(1);
    expect(calls).toBeLessThan(10); // adds during a reconcile collapse into one
  });

  it('serves a high-lane key (light) on its reserved worker while every other worker is busy', async () => {
    const seen: Array<{ key: string; light: boolean; at: number }> = [];
    let release!: () => void;
    const slow = new Promise<void>((r) => (release = r));
    const c = new Controller({
      name: 'test',
      reconcile: async (key, _log, how) => {
        seen.push({ key, light: how.light, at: Date.now() });
        if (key.startsWith('ns/slow')) await slow;
        return {};
      },
      workers: 1,
      priorityWorkers: 1,
      log,
      waitForCacheSync: () => Promise.resolve(),
    });
    await c.start();
    c.enqueue('ns/slow');
    c.enqueue('ns/next');
    await sleep(10);
    c.enqueue('ns/pod', { priority: 'high', light: true });
    await sleep(20);
    expect(seen.map((s) => s.key)).toEqual(['ns/slow', 'ns/pod']);
    expect(seen[1]?.light).toBe(true);
    release();
    await sleep(20);
    expect(seen.map((s) => s.key)).toEqual(['ns/slow', 'ns/pod', 'ns/next']);
    await c.stop();
  });
});
