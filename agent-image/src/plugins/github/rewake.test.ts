import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Inbox } from '../../core/inbox.ts';
import { GitHubMetrics } from './metrics.ts';
import { MAX_ITEMS_PER_REWAKE, PrRewake } from './rewake.ts';
import type { UnansweredItem } from './unanswered.ts';
import type { CheckResult } from './watcher.ts';
import { capturingLogger } from '../../../../test/support/log.ts';

const item = (id: number): UnansweredItem => ({
  key: `rc:${id}`,
  kind: 'review_comment',
  repo: 'acme/app',
  number: 7,
  author: 'alice',
  path: 'src/a.ts',
  line: id,
  excerpt: `comment ${id}`,
  url: `https://github.com/acme/app/pull/7#discussion_r${id}`,
  createdAt: new Date(Date.UTC(2026, 11, 6, 12, id)).toISOString(),
});

describe('PR rewake', () => {
  let dir: string;
  let inbox: Inbox;
  let found: UnansweredItem[];
  let checks: number;
  let lines: Array<Record<string, unknown>>;
  let events: Array<{ type: string; data: Record<string, unknown> }>;
  const rewakes: PrRewake[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rewake-'));
    inbox = new Inbox(join(dir, 'inbox'));
    await inbox.open();
    found = [];
    checks = 0;
    lines = [];
    events = [];
  });
  afterEach(async () => {
    for (const r of rewakes.splice(0)) r.stop();
    await rm(dir, { recursive: true, force: true });
  });

  async function start(max = 2): Promise<PrRewake> {
    const log = capturingLogger(lines, 'debug');
    const r = new PrRewake({
      watcher: {
        check: (): Promise<CheckResult> => {
          checks++;
          return Promise.resolve({ items: [...found], pullRequests: 1, complete: true });
        },
      },
      inbox,
      probe: { hasHooks: true, status: () => ({ state: 'idle', inboxPending: 0, hookArmed: true, cliPid: 1 }), capturePane: () => Promise.resolve('') },
      login: 'devbot',
      intervalSeconds: 3600,
      maxConsecutiveRewakes: max,
      stateDir: dir,
      metrics: new GitHubMetrics(new Registry()),
      log,
      emit: (type, data) => {
        events.push({ type, data });
        return Promise.resolve();
      },
    });
    await r.start();
    rewakes.push(r);
    return r;
  }

  /** Takes the pending messages as the CLI would. */
  async function drain(): Promise<string[]> {
    const texts: string[] = [];
    for (let m = inbox.peek(); m; m = inbox.peek()) {
      texts.push(m.text);
      await inbox.ack(m.id);
    }
    return texts;
  }

  it('puts one message per new set of comments, never the same comment twice, also after a restart', async () => {
    const r = await start();
    found = [item(1)];
    await r.runCheck('stop');
    await r.runCheck('poll');
    const first = await drain();
    expect(first).toHaveLength(1);
    expect(first[0]).toContain('src/a.ts:1');
    expect(events).toEqual([{ type: 'rewake', data: expect.objectContaining({ source: 'github', trigger: 'stop', comments: 1 }) as unknown }]);

    found = [item(1), item(2)];
    await r.runCheck('poll');
    const second = await drain();
    expect(second).toHaveLength(1);
    expect(second[0]).toContain('src/a.ts:2');
    expect(second[0]).not.toContain('src/a.ts:1');
    expect(second[0]).toContain('1 earlier comment you were already told about is also still unanswered');

    // A new supervisor on the same home volume remembers what was shown.
    r.stop();
    const again = await start();
    await again.runCheck('poll');
    expect(await drain()).toEqual([]);
  });

  it('names at most MAX_ITEMS_PER_REWAKE comments at once; the rest come next', async () => {
    const r = await start(5);
    found = Array.from({ length: MAX_ITEMS_PER_REWAKE + 3 }, (_, i) => item(i + 1));
    await r.runCheck('poll');
    const [first] = await drain();
    expect(first).toContain('(3 more new comments will follow in the next message.)');
    expect(first).not.toContain('already told about');
    await r.runCheck('poll');
    const [second] = await drain();
    expect(second?.match(/^- /gm)).toHaveLength(3);
    expect(second).toContain(`${MAX_ITEMS_PER_REWAKE} earlier comments you were already told about`);
  });

  it('stops after the consecutive limit, logs it once, and goes on after other input', async () => {
    const r = await start(2);
    for (const id of [1, 2, 3, 4]) {
      found = [item(id)];
      await r.runCheck('poll');
    }
    expect(await drain()).toHaveLength(2);
    expect(lines.filter((l) => String(l.msg).startsWith('not rewaking for PR comments'))).toHaveLength(1);

    // Someone talks to the agent: the withheld comment (4; 3 is gone from the list) comes through.
    await inbox.put({ source: 'matrix', text: 'hello' });
    await drain();
    await r.runCheck('poll');
    const after = await drain();
    expect(after).toHaveLength(1);
    expect(after[0]).toContain('src/a.ts:4');
  });

  it('a check that finds nothing unanswered ends the run of rewakes', async () => {
    const r = await start(1);
    found = [item(1)];
    await r.runCheck('poll');
    found = [];
    await r.runCheck('poll');
    found = [item(2)];
    await r.runCheck('poll');
    expect(await drain()).toHaveLength(2);
  });

  it('a Stop right after a PR rewake does not check (stop_hook_active); a Stop after other work does', async () => {
    const r = await start();
    found = [item(1)];
    await r.runCheck('poll');
    await drain();
    found = [item(1), item(2)];
    const before = checks;
    r.onHook('stop', { stop_hook_active: true });
    await r.runCheck('poll'); // waits for any check in flight
    expect(checks).toBe(before + 1); // only the poll's
    await drain();

    r.onHook('prompt-submit', { prompt: 'a person typed this' });
    found = [item(1), item(2), item(3)];
    r.onHook('stop', { stop_hook_active: true });
    await r.runCheck('poll');
    expect(lines.some((l) => l.msg === 'PR rewake: new unanswered comments put in the inbox' && l.trigger === 'stop')).toBe(true);
  });
});
