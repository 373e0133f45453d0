import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeLogger } from '../../lib/log.ts';
import { Inbox } from '../../core/inbox.ts';
import type { EventEnvelope } from '../../core/event-schema.ts';
import { reviewRequestId } from '../../core/review-request.ts';
import { ReviewFanout, reviewersOf, type PrOpenedEvent } from './fanout.ts';

const team = [
  { name: 'devbot', matrix: '@devbot:hs' },
  { name: 'infrabot', matrix: '@infrabot:hs' },
  { name: 'docbot' },
];
const pr = (over: Partial<PrOpenedEvent['data']> = {}): EventEnvelope & PrOpenedEvent => ({
  id: 'ev-1',
  type: 'pr_opened',
  time: '2026-12-06T12:00:00Z',
  agent: 'devbot',
  team: 'acme',
  data: { repo: 'acme/api', number: 7, url: 'https://github.com/acme/api/pull/7', title: 'Add <retry>', ...over },
});

describe('review fan-out', () => {
  let dir: string;
  let rosterFile: string;
  const log = makeLogger('test', 'silent');
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'fanout-'));
    rosterFile = path.join(dir, 'roster.json');
    await writeFile(rosterFile, JSON.stringify({ team: 'acme', agents: team }));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('asks every teammate but the author, or only the named reviewers', () => {
    expect(reviewersOf(pr(), team).map((t) => t.name)).toEqual(['infrabot', 'docbot']);
    expect(reviewersOf(pr({ reviewers: ['docbot', 'devbot', 'stranger'] }), team).map((t) => t.name)).toEqual(['docbot']);
  });

  it('mentions the reviewers with Matrix ids in one escaped notice', async () => {
    const sent: Array<{ eventId: string; text: string; html: string; mentions: string[] }> = [];
    const fanout = new ReviewFanout({ agentName: 'devbot', rosterFile, inbox: { put: () => Promise.reject(new Error('unused')) }, log, announcer: { announceReviewRequest: async (a) => (sent.push(a), '$e') } });
    expect(await fanout.announce(pr())).toEqual(['infrabot', 'docbot']);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.mentions).toEqual(['@infrabot:hs']);
    expect(sent[0]!.eventId).toBe('ev-1');
    expect(sent[0]!.text).toContain('acme/api#7');
    expect(sent[0]!.html).toContain('Add &#60;retry&#62;');
    expect(sent[0]!.html).toContain('https://matrix.to/#/%40infrabot%3Ahs');
    // Another agent's event, or another type: nothing to announce.
    expect(await fanout.announce({ ...pr(), agent: 'infrabot' })).toEqual([]);
    expect(await fanout.announce({ ...pr(), type: 'task_done' })).toEqual([]);
    expect(sent).toHaveLength(1);
  });

  it('puts the request in a reviewer inbox once, whichever path brings it first', async () => {
    const inbox = new Inbox(path.join(dir, 'inbox'));
    await inbox.open();
    const fanout = new ReviewFanout({ agentName: 'infrabot', rosterFile, inbox, log });
    // The Matrix path got there first under the shared id.
    await inbox.put({ id: reviewRequestId('ev-1'), source: 'matrix', text: 'Review request for infrabot' });
    expect(await fanout.receive(pr())).toBe(true);
    expect(await fanout.receive(pr())).toBe(true);
    expect(inbox.size).toBe(1);
    // Not a reviewer of this one, and never of its own.
    expect(await fanout.receive({ ...pr({ reviewers: ['docbot'] }), id: 'ev-2' })).toBe(false);
    expect(await new ReviewFanout({ agentName: 'devbot', rosterFile, inbox, log }).receive({ ...pr(), id: 'ev-3' })).toBe(false);
    expect(inbox.size).toBe(1);
  });

  it('skips a pr_opened whose data does not pass the schema', async () => {
    const inbox = new Inbox(path.join(dir, 'inbox'));
    await inbox.open();
    const fanout = new ReviewFanout({ agentName: 'infrabot', rosterFile, inbox, log });
    expect(await fanout.receive({ ...pr(), data: { repo: 'acme/api', number: -1 } })).toBe(false);
    expect(inbox.size).toBe(0);
  });
});
