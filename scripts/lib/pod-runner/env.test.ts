import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { ContainerConfigError, containerEnv, expand, relocateValue, type Relocation } from './env.ts';

const pod: V1Pod = { metadata: { name: 'p', namespace: 'ns', uid: 'u1', labels: { app: 'x' } }, spec: { nodeName: 'local', containers: [] } };
const facts = { podIP: '127.0.0.1', hostIP: '127.0.0.1' };
const objects = { configMaps: new Map([['cm', { a: '1', 'bad key': 'x' }]]), secrets: new Map([['s', { token: 't' }]]) };

describe('expand ($(VAR) as Kubernetes does it)', () => {
  const vars: Record<string, string> = { A: 'x', B: 'y' };
  it.each([
    ['$(A)-$(B)', 'x-y'],
    ['$(MISSING)', '$(MISSING)'],
    ['$$(A)', '$(A)'],
    ['$$', '$'],
    ['a$b', 'a$b'],
    ['$(A', '$(A'],
    ['$()', '$()'],
  ])('%s → %s', (input, out) => expect(expand(input, (n) => vars[n])).toBe(out));
});

describe('containerEnv', () => {
  it('applies envFrom (prefix, invalid names skipped), then env in order with expansion and valueFrom', () => {
    const c: V1Container = {
      name: 'c',
      envFrom: [{ configMapRef: { name: 'cm' }, prefix: 'P_' }],
      env: [
        { name: 'NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
        { name: 'APP', valueFrom: { fieldRef: { fieldPath: "metadata.labels['app']" } } },
        { name: 'T', valueFrom: { secretKeyRef: { name: 's', key: 'token' } } },
        { name: 'GREETING', value: '$(NAME) on $(NODE)' },
        { name: 'NODE', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
        { name: 'OPT', valueFrom: { configMapKeyRef: { name: 'nope', key: 'k', optional: true } } },
      ],
    };
    expect(containerEnv(pod, c, objects, facts)).toEqual({ P_a: '1', NAME: 'p', APP: 'x', T: 't', GREETING: 'p on $(NODE)', NODE: 'local' });
  });

  it('refuses a missing key or object that is not optional (CreateContainerConfigError)', () => {
    expect(() => containerEnv(pod, { name: 'c', env: [{ name: 'X', valueFrom: { secretKeyRef: { name: 's', key: 'nope' } } }] }, objects, facts)).toThrow(ContainerConfigError);
    expect(() => containerEnv(pod, { name: 'c', envFrom: [{ secretRef: { name: 'gone' } }] }, objects, facts)).toThrow('secret "gone" not found');
  });
});

describe('relocateValue', () => {
  const r: Relocation = { rootfs: '/state/c/root', mountPaths: ['/etc/agent-smith', '/home/agent'], ports: new Map([[15001, 40001]]) };
  it.each([
    ['/etc/agent-smith/egress-ca-cert/ca.crt', '/state/c/root/etc/agent-smith/egress-ca-cert/ca.crt'],
    ['/home/agent', '/state/c/root/home/agent'],
    ['/home/agentx', '/home/agentx'],
    ['/usr/bin:/home/agent/bin', '/usr/bin:/state/c/root/home/agent/bin'],
    ['http://127.0.0.1:15001', 'http://127.0.0.1:40001'],
    ['http://localhost:15001/x', 'http://localhost:40001/x'],
    ['http://127.0.0.1:150011', 'http://127.0.0.1:150011'],
    ['http://127.0.0.1:8080', 'http://127.0.0.1:8080'],
    ['localhost,127.0.0.1,::1', 'localhost,127.0.0.1,::1'],
    ['relative/home/agent', 'relative/home/agent'],
  ])('%s → %s', (input, out) => expect(relocateValue(input, r)).toBe(out));
});
