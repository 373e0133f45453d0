import { describe, expect, it } from 'vitest';
import { MATRIX_ACCESS_TOKEN_FILE } from '../../../agent-image/src/contract/contract.ts';
import { Agent } from '../api/agent.ts';
import { renderStatefulSet } from './statefulset.ts';

function agent(spec: Record<string, unknown>): Agent {
  return Agent.parse({
    apiVersion: 'agentsmith.dev/v1alpha1',
    kind: 'Agent',
    metadata: { name: 'chatbot', namespace: 'team-a', uid: '0b5a6c2e-1111-2222-3333-444455556666', generation: 1 },
    spec: { egress: { allow: ['matrix.example.org'], allowCidrs: [], credentials: [], enforcement: 'iptables' }, ...spec },
  });
}

const opts = { image: 'example.org/agent:1', configHash: 'h', egressCaSecret: 'chatbot-egress-ca' };
const matrix = { homeserverUrl: 'https://matrix.example.org', userId: '@chatbot:example.org', accessTokenSecretRef: { name: 'chatbot-matrix', key: 'token' } };

describe('renderStatefulSet: the Matrix access token', () => {
  it('mounts the one Secret key read-only at MATRIX_ACCESS_TOKEN_FILE in the agent container only, never as an environment variable', () => {
    const sts = renderStatefulSet(agent({ matrix }), opts);
    const pod = sts.spec!.template.spec!;
    expect(pod.volumes).toContainEqual({
      name: 'matrix-token',
      secret: { secretName: 'chatbot-matrix', items: [{ key: 'token', path: 'access-token' }], defaultMode: 0o440 },
    });
    const [agentContainer] = pod.containers;
    expect(agentContainer!.volumeMounts).toContainEqual({ name: 'matrix-token', mountPath: '/etc/agent-smith/matrix', readOnly: true });
    expect(`/etc/agent-smith/matrix/access-token`).toBe(MATRIX_ACCESS_TOKEN_FILE);
    for (const c of pod.initContainers ?? []) expect(c.volumeMounts?.map((m) => m.name)).not.toContain('matrix-token');
    for (const c of [...pod.containers, ...(pod.initContainers ?? [])]) {
      expect(JSON.stringify(c.env ?? [])).not.toContain('chatbot-matrix');
      expect(c.envFrom).toBeUndefined();
    }
  });

  it('has no token volume without spec.matrix', () => {
    const pod = renderStatefulSet(agent({}), opts).spec!.template.spec!;
    expect(pod.volumes?.map((v) => v.name)).not.toContain('matrix-token');
    expect(pod.containers[0]!.volumeMounts?.map((m) => m.name)).not.toContain('matrix-token');
  });
});
