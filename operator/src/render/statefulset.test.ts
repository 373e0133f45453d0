import { describe, expect, it } from 'vitest';
import { MATRIX_ACCESS_TOKEN_FILE } from '../../../agent-image/src/contract/contract.ts';
import { Agent } from '../api/agent.ts';
import { renderStatefulSet, serviceHostnames } from './statefulset.ts';

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

describe('renderStatefulSet: hostAliases for the in-cluster Services the supervisor dials', () => {
  const spec = {
    events: { natsUrl: 'nats://nats.demo.svc.cluster.local:4222' },
    matrix: { ...matrix, homeserverUrl: 'http://synapse.demo.svc:8008' },
  };
  const serviceAddresses = [
    { host: 'nats.demo.svc.cluster.local', addresses: ['10.96.0.10'] },
    { host: 'synapse.demo.svc', addresses: ['10.96.0.11', 'fd00::11'] },
  ];

  it('names both Services at their cluster IPs in every spelling, so the agent resolves them without DNS', () => {
    const pod = renderStatefulSet(agent(spec), { ...opts, serviceAddresses }).spec!.template.spec!;
    expect(pod.hostAliases).toEqual([
      { ip: '10.96.0.10', hostnames: ['nats.demo.svc.cluster.local', 'nats.demo.svc'] },
      { ip: '10.96.0.11', hostnames: ['synapse.demo.svc', 'synapse.demo.svc.cluster.local'] },
      { ip: 'fd00::11', hostnames: ['synapse.demo.svc', 'synapse.demo.svc.cluster.local'] },
    ]);
  });

  it('gives one entry per IP when two Services share it', () => {
    const shared = [
      { host: 'nats.demo.svc', addresses: ['10.96.0.10'] },
      { host: 'synapse.demo.svc', addresses: ['10.96.0.10'] },
    ];
    expect(renderStatefulSet(agent(spec), { ...opts, serviceAddresses: shared }).spec!.template.spec!.hostAliases).toEqual([
      { ip: '10.96.0.10', hostnames: ['nats.demo.svc', 'nats.demo.svc.cluster.local', 'synapse.demo.svc', 'synapse.demo.svc.cluster.local'] },
    ]);
  });

  it('changes the pod template when a Service comes back with another cluster IP, so the pod rolls', () => {
    const before = renderStatefulSet(agent(spec), { ...opts, serviceAddresses }).spec!.template;
    const recreated = [{ ...serviceAddresses[0]!, addresses: ['10.96.0.99'] }, serviceAddresses[1]!];
    const after = renderStatefulSet(agent(spec), { ...opts, serviceAddresses: recreated }).spec!.template;
    expect(after).not.toEqual(before);
    expect(after.spec!.hostAliases?.[0]).toEqual({ ip: '10.96.0.99', hostnames: ['nats.demo.svc.cluster.local', 'nats.demo.svc'] });
  });

  it('has none for an Agent without resolved Services, or under proxy-env (the pod keeps DNS there)', () => {
    expect(renderStatefulSet(agent({}), opts).spec!.template.spec!.hostAliases).toBeUndefined();
    expect(renderStatefulSet(agent(spec), opts).spec!.template.spec!.hostAliases).toBeUndefined();
    const proxyEnv = agent({ ...spec, egress: { allow: ['matrix.example.org'], enforcement: 'proxy-env' } });
    expect(renderStatefulSet(proxyEnv, { ...opts, serviceAddresses }).spec!.template.spec!.hostAliases).toBeUndefined();
  });
});

describe('serviceHostnames', () => {
  it('spells an in-cluster Service name as written, with .svc and with .svc.cluster.local', () => {
    expect(serviceHostnames('nats.demo.svc')).toEqual(['nats.demo.svc', 'nats.demo.svc.cluster.local']);
    expect(serviceHostnames('nats.demo.svc.cluster.local')).toEqual(['nats.demo.svc.cluster.local', 'nats.demo.svc']);
    expect(serviceHostnames('matrix.example.org')).toEqual(['matrix.example.org']);
  });
});
