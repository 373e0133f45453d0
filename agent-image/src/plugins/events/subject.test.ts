import { describe, expect, it } from 'vitest';
import { eventSubject, filterSubject, parseSince, redactUrl } from './subject.ts';

describe('subjects', () => {
  it('are <prefix>.<team>.<agent>.<type>, with _ for no team', () => {
    expect(eventSubject('agents', { team: 'homelab', agent: 'devbot', type: 'pr_opened' })).toBe('agents.homelab.devbot.pr_opened');
    expect(eventSubject('org.agents', { agent: 'devbot', type: 'task_done' })).toBe('org.agents._.devbot.task_done');
  });
  it('cannot be turned into wildcards or extra tokens by a name', () => {
    expect(eventSubject('agents', { team: 'a.b', agent: 'x*', type: '>' })).toBe('agents.a_b.x_._');
  });
  it('filters with * for what is not asked', () => {
    expect(filterSubject('agents', {})).toBe('agents.*.*.*');
    expect(filterSubject('agents', { type: 'pr_opened' })).toBe('agents.*.*.pr_opened');
    expect(filterSubject('agents', { team: 'homelab', agent: 'devbot' })).toBe('agents.homelab.devbot.*');
    expect(filterSubject('agents', { team: null })).toBe('agents._.*.*');
  });
});

describe('parseSince', () => {
  const now = new Date('2026-12-06T12:00:00Z');
  it('reads durations back from now', () => {
    expect(parseSince('90s', now).toISOString()).toBe('2026-12-06T11:58:30.000Z');
    expect(parseSince('15m', now).toISOString()).toBe('2026-12-06T11:45:00.000Z');
    expect(parseSince('1h30m', now).toISOString()).toBe('2026-12-06T10:30:00.000Z');
    expect(parseSince('2d', now).toISOString()).toBe('2026-12-04T12:00:00.000Z');
  });
  it('reads RFC 3339 times', () => {
    expect(parseSince('2026-12-06T13:00:00+01:00', now).toISOString()).toBe('2026-12-06T12:00:00.000Z');
    expect(parseSince('2026-12-01T00:00:00Z', now).toISOString()).toBe('2026-12-01T00:00:00.000Z');
  });
  it('refuses anything else, saying what it takes', () => {
    for (const s of ['', 'yesterday', '1w', '2026-12-01', '-1h']) expect(() => parseSince(s, now), s).toThrow(/since: expected a duration .* or an RFC 3339 time/);
  });
});

describe('redactUrl', () => {
  it('drops user info from each server URL', () => {
    expect(redactUrl('nats://user:s3cret@nats-0:4222, tls://tok@nats-1:4222')).toBe('nats://nats-0:4222,tls://nats-1:4222');
    expect(redactUrl('nats://nats:4222')).toBe('nats://nats:4222');
    // A password with an unencoded `@`: the last `@` ends the user info (WHATWG URL).
    expect(redactUrl('nats://user:p@ss@nats-0:4222')).toBe('nats://nats-0:4222');
  });
});
