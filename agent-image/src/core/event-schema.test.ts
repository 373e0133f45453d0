import { describe, expect, it } from 'vitest';
import { AGENT_EVENT_TYPES, EventEnvelope, validateAgentEvent } from './event-schema.ts';

const pr = { repo: 'acme/api', number: 7, url: 'https://github.com/acme/api/pull/7', title: 'Retry uploads' };

describe('validateAgentEvent', () => {
  it('accepts each agent event type with its documented data, trimming strings', () => {
    const ok: Array<[string, Record<string, unknown>]> = [
      ['pr_opened', { ...pr, reviewers: ['infrabot', 'docs-bot'] }],
      ['pr_merged', { repo: 'acme/api', number: 7, url: pr.url }],
      ['review_requested', { ...pr, reviewer: 'infrabot' }],
      ['incident', { severity: 'high', summary: 'staging is down', url: 'https://status.example.org/1' }],
      ['task_done', { summary: '  migrated the CI  ' }],
    ];
    expect(ok.map(([t]) => t).sort()).toEqual([...AGENT_EVENT_TYPES].sort());
    for (const [type, data] of ok) expect(validateAgentEvent(type, data), type).toMatchObject({ ok: true, event: { type } });
    expect(validateAgentEvent('task_done', { summary: '  migrated the CI  ' })).toEqual({ ok: true, event: { type: 'task_done', data: { summary: 'migrated the CI' } } });
  });

  it('names each bad field by its path', () => {
    const r = validateAgentEvent('pr_opened', { ...pr, number: 0, url: 'ftp://x/y', reviewers: ['infrabot', 'Bad Name'] });
    expect(r).toEqual({
      ok: false,
      error: 'data.number: expected a positive integer; data.url: expected an http(s) URL; data.reviewers[1]: expected an agent name (lower-case letters, digits and dashes)',
    });
    expect(validateAgentEvent('pr_opened', { ...pr, number: 1.5 })).toMatchObject({ error: 'data.number: expected a positive integer' });
    expect(validateAgentEvent('pr_opened', { ...pr, repo: 'acme' })).toMatchObject({ error: 'data.repo: expected "owner/name"' });
    expect(validateAgentEvent('incident', { severity: 'meh', summary: '' })).toMatchObject({
      error: 'data.severity: expected one of low, medium, high, critical; data.summary: expected a non-empty string',
    });
  });

  it('says when a field is missing or unknown', () => {
    expect(validateAgentEvent('task_done', {})).toMatchObject({ error: 'data.summary: required, expected a string' });
    expect(validateAgentEvent('task_done', { summary: 'x', pr_number: 3 })).toMatchObject({ error: 'data: unknown field "pr_number"' });
    expect(validateAgentEvent('task_done', 'done')).toMatchObject({ error: 'data: expected an object, got string' });
  });

  it('refuses types an agent may not publish, naming the ones it may', () => {
    expect(validateAgentEvent('pr_closed', {})).toMatchObject({ ok: false, error: expect.stringMatching(/^type: expected one of pr_opened, pr_merged, review_requested, incident, task_done; got "pr_closed"$/) as unknown });
    expect(validateAgentEvent('crash_loop', {})).toMatchObject({ error: expect.stringContaining('crash_loop is recorded by the supervisor itself') as unknown });
    expect(validateAgentEvent(undefined, {})).toMatchObject({ ok: false, error: expect.stringContaining('got undefined') as unknown });
  });
});

describe('EventEnvelope', () => {
  const e = { id: 'a1', type: 'agent_started', time: '2026-12-06T13:00:00.000Z', agent: 'devbot', data: {} };
  it('accepts unknown types and data fields (a newer writer), without a team', () => {
    expect(EventEnvelope.safeParse({ ...e, type: 'deploy_started', data: { new: 1 } }).success).toBe(true);
  });
  it('refuses a time that is not RFC 3339 or a missing id', () => {
    expect(EventEnvelope.safeParse({ ...e, time: 'yesterday' }).success).toBe(false);
    expect(EventEnvelope.safeParse({ ...e, id: undefined }).success).toBe(false);
  });
});
