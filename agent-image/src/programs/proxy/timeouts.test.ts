import { describe, expect, it } from 'vitest';
import { CloseReport, ConnectionTimeouts, type CloseReason, type TrackedConnection } from './timeouts.ts';

const LIMITS = { handshakeTimeoutMs: 10_000, headersTimeoutMs: 5_000, keepAliveTimeoutMs: 30_000, idleTimeoutMs: 60_000 };

function setup() {
  let now = 0;
  const closed: Array<[TrackedConnection, CloseReason]> = [];
  const t = new ConnectionTimeouts({ limits: LIMITS, onExpire: (c, r) => closed.push([c, r]), now: () => now });
  const socket = () => ({ bytesRead: 0, bytesWritten: 0 });
  /** Advances the clock in 1 s sweeps, like the server's interval. */
  const run = (ms: number, each?: () => void) => {
    for (let i = 0; i < ms; i += 1000) {
      now += 1000;
      each?.();
      t.sweep();
    }
  };
  return { t, closed, socket, run };
}

describe('ConnectionTimeouts', () => {
  it('closes a handshake and a request head at their deadlines although a byte arrives every second', () => {
    const { t, closed, socket, run } = setup();
    const hs = socket();
    const head = socket();
    const a = t.track(hs);
    const b = t.track(head);
    t.enter(b, 'head');
    run(4_000, () => {
      hs.bytesRead++;
      head.bytesRead++;
    });
    expect(closed).toEqual([]);
    run(1_000, () => head.bytesRead++);
    expect(closed).toEqual([[b, 'headers_timeout']]);
    run(5_000, () => hs.bytesRead++);
    expect(closed).toEqual([
      [b, 'headers_timeout'],
      [a, 'handshake_timeout'],
    ]);
    expect(t.size).toBe(0);
  });

  it('gives an idle keep-alive connection keepAliveTimeoutMs, and the next head headersTimeoutMs from its first byte', () => {
    const { t, closed, socket, run } = setup();
    const quiet = socket();
    const slow = socket();
    const q = t.track(quiet);
    const s = t.track(slow);
    for (const c of [q, s]) {
      t.begin(c);
      t.end(c);
      expect(c.phase).toBe('idle');
    }
    run(20_000);
    expect(closed).toEqual([]);
    slow.bytesRead++;
    run(1_000);
    expect(s.phase).toBe('head');
    run(4_000, () => slow.bytesRead++);
    expect(closed).toEqual([]);
    run(1_000, () => slow.bytesRead++);
    expect(closed).toEqual([[s, 'headers_timeout']]);
    run(5_000);
    expect(closed).toEqual([
      [s, 'headers_timeout'],
      [q, 'keep_alive_timeout'],
    ]);
  });

  it('lets a busy connection live while bytes move, and closes it after idleTimeoutMs without any', () => {
    const { t, closed, socket, run } = setup();
    const sock = socket();
    const c = t.track(sock);
    t.begin(c);
    t.begin(c);
    t.end(c);
    expect(c.phase).toBe('busy');
    run(120_000, () => sock.bytesWritten++);
    expect(closed).toEqual([]);
    run(60_000);
    expect(closed).toEqual([[c, 'idle_timeout']]);
  });

  it('evicts the connection waiting longest with nothing in flight before any busy one', () => {
    const { t, socket, run } = setup();
    const busy = t.track(socket());
    t.begin(busy);
    run(1_000);
    const older = t.track(socket());
    run(1_000);
    const newer = t.track(socket());
    t.enter(newer, 'head');
    expect(t.evictable()).toBe(older);
    t.untrack(older);
    expect(t.evictable()).toBe(newer);
    t.untrack(newer);
    expect(t.evictable()).toBeUndefined();
  });
});

describe('CloseReport', () => {
  it('writes each reason at most once per interval, with the closes summed', () => {
    let now = 0;
    const lines: Array<[CloseReason, number]> = [];
    const r = new CloseReport((reason, n) => lines.push([reason, n]), 60_000, () => now);
    for (let i = 0; i < 300; i++) r.note('headers_timeout');
    r.note('evicted');
    expect(lines).toEqual([
      ['headers_timeout', 1],
      ['evicted', 1],
    ]);
    now = 30_000;
    r.flush();
    expect(lines).toHaveLength(2);
    now = 60_000;
    r.flush();
    expect(lines).toEqual([
      ['headers_timeout', 1],
      ['evicted', 1],
      ['headers_timeout', 299],
    ]);
  });

  it('with every connection busy, evicts the slowest uploader busy for headersTimeoutMs, never one that reads nothing (a long poll)', () => {
    const { t, socket, run } = setup();
    const poll = t.track(socket());
    const trickleBytes = socket();
    const trickle = t.track(trickleBytes);
    const uploadBytes = socket();
    const upload = t.track(uploadBytes);
    for (const c of [poll, trickle, upload]) t.begin(c);
    run(4_000, () => {
      trickleBytes.bytesRead += 1;
      uploadBytes.bytesRead += 10_000;
    });
    // Not busy long enough to judge yet.
    expect(t.evictable()).toBeUndefined();
    run(2_000, () => {
      trickleBytes.bytesRead += 1;
      uploadBytes.bytesRead += 10_000;
    });
    expect(t.evictable()).toBe(trickle);
    t.untrack(trickle);
    expect(t.evictable()).toBe(upload);
    t.untrack(upload);
    expect(t.evictable()).toBeUndefined();
  });
});
