import { describe, expect, it } from 'vitest';
import { Agent } from '../api/agent.ts';
import { referencedObjects } from './references.ts';

const agent = (spec: Record<string, unknown>) =>
  Agent.parse({ apiVersion: 'agentsmith.dev/v1alpha1', kind: 'Agent', metadata: { name: 'a', namespace: 'team-ns', uid: 'u' }, spec });
const cred = (name: string, secret: string, key = 'token') => ({ name, hosts: ['api.github.com'], secretRef: { name: secret, key } });

describe('referencedObjects', () => {
  it('names every Secret and ConfigMap the spec refers to, in the Agent\'s namespace, once each', () => {
    const refs = referencedObjects(
      agent({
        persona: { configMapRef: { name: 'persona' } },
        egress: { allow: ['api.github.com', 'matrix.example.org'], credentials: [cred('gh', 'tokens'), cred('other', 'tokens', 'second'), cred('third', 'more')] },
        matrix: { homeserverUrl: 'https://matrix.example.org', userId: '@a:example.org', accessTokenSecretRef: { name: 'matrix-token', key: 'token' } },
        pod: { imagePullSecrets: [{ name: 'regcred' }, { name: 'tokens' }] },
      }),
    );
    expect(refs).toEqual([
      { kind: 'ConfigMap', namespace: 'team-ns', name: 'persona' },
      { kind: 'Secret', namespace: 'team-ns', name: 'tokens' },
      { kind: 'Secret', namespace: 'team-ns', name: 'more' },
      { kind: 'Secret', namespace: 'team-ns', name: 'matrix-token' },
      { kind: 'Secret', namespace: 'team-ns', name: 'regcred' },
    ]);
  });

  it('is empty for an Agent that names nothing (inline persona, no credentials)', () => {
    expect(referencedObjects(agent({ persona: { instructions: 'hi' } }))).toEqual([]);
  });
});
