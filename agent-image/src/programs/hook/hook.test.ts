import { describe, expect, it } from 'vitest';
import { answerDecision } from './hook.ts';

describe('the PermissionRequest hook reads the supervisor\'s answer', () => {
  it('takes a 200 decision, tells the model a 413 input is too large for chat, names any other status', () => {
    expect(answerDecision(200, '{"behavior":"allow"}')).toEqual({ behavior: 'allow' });
    expect(answerDecision(413, '{"error":"body larger than 524288 bytes"}')).toEqual({ behavior: 'deny', message: expect.stringContaining('too large to ask about in chat') as unknown });
    expect(answerDecision(500, '{"error":"internal error"}')).toEqual({ behavior: 'deny', message: expect.stringContaining('HTTP 500') as unknown });
    expect(answerDecision(200, 'not json')).toMatchObject({ behavior: 'deny' });
  });
});
