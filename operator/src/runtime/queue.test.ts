import { describe, expect, it } from 'vitest';
import { ExponentialBackoff } from './backoff.ts';
import { WorkQueue } from './queue.ts';

describe('WorkQueue', () => {
  it('de-duplicates a key added twice while waiting', async () => {
    const q = new WorkQueue();
    q.add('ns/a');
    q.add('ns/a');
    q.add('ns/b');
    expect(q.length).toBe(2);
    expect(await q.get()).toBe('ns/a');
    expect(await q.get()).toBe('ns/b');
  });

  it('never hands a key to two workers; a key added while in flight comes back after done()', async () => {
    const q = new WorkQueue();
    q.add('ns/a');
    const first = await q.get();
    q.add('ns/a'); // an event arrives mid-reconcile
    expect(q.length).toBe(0);
    let second: string | undefined;
    void q.get().then((k) => (second = k));
    await new Promise((r) => setImmediate(r));
    expect(second).toBeUndefined();
    q.done(first!);
    await new Promise((r) => setImmediate(r));
    expect(second).toBe('ns/a');
  });

  it('addAfter keeps the earliest timer and delivers the key once', async () => {
    const q = new WorkQueue();
    q.addAfter('ns/a', 200);
    q.addAfter('ns/a', 20);
    const started = Date.now();
    expect(await q.get()).toBe('ns/a');
    expect(Date.now() - started).toBeLessThan(150);
    q.done('ns/a');
    await new Promise((r) => setTimeout(r, 250));
    expect(q.length).toBe(0);
  });

  it('backs off exponentially per key up to the cap, and forget() resets', () => {
    const b = new ExponentialBackoff(10, 50);
    expect([b.next('k'), b.next('k'), b.next('k'), b.next('k')]).toEqual([10, 20, 40, 50]);
    expect(b.next('other')).toBe(10);
    b.forget('k');
    expect(b.next('k')).toBe(10);
  });

  it('resolves waiting workers with undefined on shutdown', async () => {
    const q = new WorkQueue();
    const waiting = q.get();
    q.shutDown();
    expect(await waiting).toBeUndefined();
    q.add('ns/a');
    expect(await q.get()).toBeUndefined();
  });
});

describe('WorkQueue wait', () => {
  it('reports how long a key waited before a worker took it', async () => {
    const q = new WorkQueue();
    const waits: number[] = [];
    q.onWait = (ms) => waits.push(ms);
    q.add('ns/a');
    q.add('ns/a');
    await new Promise((r) => setTimeout(r, 30));
    await q.get();
    expect(waits).toHaveLength(1);
    expect(waits[0]).toBeGreaterThanOrEqual(25);
  });

  it('hands out high-priority keys before every waiting normal key, FIFO within each lane', async () => {
    const q = new WorkQueue();
    for (const k of ['ns/a', 'ns/b', 'ns/c']) q.add(k);
    q.add('ns/pod1', { priority: 'high' });
    q.add('ns/b', { priority: 'high' }); // waiting in the normal lane: promoted, not duplicated
    expect(q.length).toBe(4);
    const order: string[] = [];
    for (let i = 0; i < 4; i++) order.push((await q.get())!);
    expect(order).toEqual(['ns/pod1', 'ns/b', 'ns/a', 'ns/c']);
  });

  it('hands a key out light only when every add since the last hand-out was light', async () => {
    const q = new WorkQueue();
    q.add('ns/a', { priority: 'high', light: true });
    q.add('ns/b', { priority: 'high', light: true });
    q.add('ns/b'); // a full add after the light one
    q.add('ns/c');
    q.add('ns/c', { priority: 'high', light: true }); // light after full stays full, but goes first
    expect(await q.next()).toEqual({ key: 'ns/a', light: true });
    expect(await q.next()).toEqual({ key: 'ns/b', light: false });
    expect(await q.next()).toEqual({ key: 'ns/c', light: false });
  });

  it('a key added high while in flight is not handed to a second worker, and comes back first (with its weight) after done()', async () => {
    const q = new WorkQueue();
    q.add('ns/a');
    q.add('ns/x');
    expect(await q.next()).toEqual({ key: 'ns/a', light: false });
    q.add('ns/a', { priority: 'high', light: true });
    q.add('ns/y');
    expect(await q.next()).toEqual({ key: 'ns/x', light: false }); // ns/a is in flight
    expect(await q.next()).toEqual({ key: 'ns/y', light: false });
    let next: unknown;
    void q.next().then((i) => (next = i));
    await new Promise((r) => setImmediate(r));
    expect(next).toBeUndefined();
    q.done('ns/a');
    await new Promise((r) => setImmediate(r));
    expect(next).toEqual({ key: 'ns/a', light: true });
  });

  it('timed adds are full adds in the normal lane', async () => {
    const q = new WorkQueue();
    q.add('ns/a', { light: true });
    q.addAfter('ns/a', 0);
    expect(await q.next()).toEqual({ key: 'ns/a', light: false });
  });

  it('a worker reserved for the high lane takes only high keys, and gets one before the other workers do', async () => {
    const q = new WorkQueue();
    q.add('ns/normal');
    let reserved: unknown;
    void q.next({ highOnly: true }).then((i) => (reserved = i));
    await new Promise((r) => setImmediate(r));
    expect(reserved).toBeUndefined(); // a normal key is not for it
    let general: unknown;
    void q.next().then((i) => (general = i));
    await new Promise((r) => setImmediate(r));
    expect(general).toEqual({ key: 'ns/normal', light: false });
    let general2: unknown;
    void q.next().then((i) => (general2 = i));
    q.add('ns/pod', { priority: 'high', light: true });
    await new Promise((r) => setImmediate(r));
    expect(reserved).toEqual({ key: 'ns/pod', light: true });
    expect(general2).toBeUndefined();
  });
});
