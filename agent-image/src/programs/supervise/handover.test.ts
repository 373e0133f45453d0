import { describe, expect, it } from 'vitest';
import { makeLogger } from '../../lib/log.ts';
import type { InboxMessage } from '../../core/inbox.ts';
import { Courier, type CliView } from './handover.ts';
import type { SupervisorDeps } from './supervisor.ts';

/** A courier over an in-memory inbox holding `messages`; the CLI is stopped, so nothing is handed over by itself. */
function courier(messages: InboxMessage[]): Courier {
  const pending = [...messages];
  const gauge = { set: () => undefined, inc: () => undefined };
  const inbox = {
    get size() {
      return pending.length;
    },
    peek: () => pending[0],
    findPending: (match: (m: InboxMessage) => boolean) => pending.find(match),
    ack: (id: string) => {
      const i = pending.findIndex((m) => m.id === id);
      if (i >= 0) pending.splice(i, 1);
      return Promise.resolve(i >= 0);
    },
  };
  const deps = { inbox, metrics: { inboxDeliveryFailing: gauge, inboxDelivered: gauge, inboxDepth: gauge }, log: makeLogger('test', 'silent') } as unknown as SupervisorDeps;
  const cli: CliView = { state: 'stopped', generation: 1, cliPid: undefined, inputReadyAt: Infinity };
  return new Courier(deps, cli);
}

const message = (id: string, source: string, meta?: Record<string, string>): InboxMessage => ({ id, source, text: 'x', meta: meta ?? {}, receivedAt: '', seq: 0 });

describe('Courier.lastMatrixTask', () => {
  it('is the last Matrix task taken, and is cleared when the CLI takes a task from elsewhere', async () => {
    const c = courier([message('m1', 'matrix', { room: '!r:hs', event: '$task', thread: '$task' }), message('g1', 'github'), message('m2', 'matrix', { room: '!r:hs', event: '$task2' })]);
    expect(c.lastMatrixTask).toBeUndefined();
    await c.ack('m1', 'hook');
    expect(c.lastMatrixTask).toEqual({ room: '!r:hs', event: '$task', thread: '$task' });
    // A PR comment / rewake task: its approvals go to the approvals room, not the old thread.
    await c.ack('g1', 'hook');
    expect(c.lastMatrixTask).toBeUndefined();
    await c.ack('m2', 'hook');
    expect(c.lastMatrixTask).toMatchObject({ room: '!r:hs', event: '$task2' });
    // An unknown id (already acknowledged) changes nothing.
    await c.ack('g1', 'hook');
    expect(c.lastMatrixTask).toMatchObject({ event: '$task2' });
  });
});
