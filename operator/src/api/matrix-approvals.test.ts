import { describe, expect, it } from 'vitest';
import { MatrixSpec } from './agent.ts';

const base = { homeserverUrl: 'https://matrix.example.org', userId: '@devbot:example.org', accessTokenSecretRef: { name: 'm', key: 'token' } };

describe('spec.matrix.approvals', () => {
  it('defaults to a 300 s timeout and no room of its own', () => {
    expect(MatrixSpec.parse(base).approvals).toEqual({ timeoutSeconds: 300 });
    expect(MatrixSpec.parse({ ...base, approvals: { room: '#approvals:example.org' } }).approvals).toEqual({ room: '#approvals:example.org', timeoutSeconds: 300 });
  });

  it('refuses a timeout outside 10..86400 s and a room that is not a room id or alias', () => {
    const issue = (approvals: unknown) => MatrixSpec.safeParse({ ...base, approvals }).error?.issues[0];
    expect(issue({ timeoutSeconds: 9 })?.path).toEqual(['approvals', 'timeoutSeconds']);
    expect(issue({ timeoutSeconds: 86_401 })?.path).toEqual(['approvals', 'timeoutSeconds']);
    expect(issue({ timeoutSeconds: 30.5 })?.path).toEqual(['approvals', 'timeoutSeconds']);
    expect(issue({ timeoutSeconds: 10 })).toBeUndefined();
    expect(issue({ timeoutSeconds: 86_400 })).toBeUndefined();
    expect(issue({ room: 'approvals' })?.message).toMatch(/room id .* or alias/);
  });
});
