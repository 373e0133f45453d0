import { describe, expect, it } from 'vitest';
import { Agent } from '../api/agent.ts';
import { validateAgent } from './validate.ts';

const agent = (spec: Record<string, unknown>) =>
  Agent.parse({ apiVersion: 'agentsmith.dev/v1alpha1', kind: 'Agent', metadata: { name: 'a', namespace: 'n', uid: 'u' }, spec });
const errors = (spec: Record<string, unknown>) => validateAgent(agent(spec)).errors;

const gh = (name: string, hosts: string[], header = 'Authorization') => ({ name, hosts, secretRef: { name: 's', key: 'k' }, header });

describe('validateAgent', () => {
  it('accepts a sound agent', () => {
    expect(errors({ repos: [{ name: 'a/x' }], egress: { allow: ['github.com', 'raw.githubusercontent.com', 'api.github.com'], credentials: [gh('github', ['api.github.com'])] } })).toEqual([]);
  });

  it('refuses a wildcard over a public suffix, naming the entry', () => {
    expect(errors({ egress: { allow: ['*.com'] } })).toEqual([expect.stringMatching(/^spec\.egress\.allow\[0\]: "\*\.com" covers a whole public suffix/)]);
    expect(errors({ egress: { allow: ['*.co.uk'] } })[0]).toMatch(/public suffix/);
  });

  it('refuses two credentials for one host, in any headers (the proxy picks the credential by host)', () => {
    const e = errors({ egress: { allow: ['*.github.com'], credentials: [gh('a', ['api.github.com']), gh('b', ['*.github.com'])] } });
    expect(e).toEqual([expect.stringContaining('spec.egress.credentials[1] (b): host "*.github.com" already gets credential "a"')]);
    expect(errors({ egress: { allow: ['*.github.com'], credentials: [gh('a', ['api.github.com']), gh('b', ['api.github.com'], 'X-Other')] } })).toHaveLength(1);
    expect(errors({ egress: { allow: ['*.github.com'], credentials: [gh('a', ['api.github.com']), gh('b', ['uploads.github.com'], 'X-Other')] } })).toEqual([]);
  });

  it('refuses a wildcard over a private-registry suffix, as the proxy does', () => {
    expect(errors({ egress: { allow: ['*.github.io'] } })[0]).toMatch(/^spec\.egress\.allow\[0\]: "\*\.github\.io" covers a whole public suffix: "github\.io" is in the private section/);
    expect(errors({ egress: { allow: ['*.githubusercontent.com'] } })[0]).toMatch(/public suffix/);
  });

  it('refuses a credential on a host the allowlist does not allow', () => {
    expect(errors({ egress: { allow: ['github.com'], credentials: [gh('a', ['*.github.com'])] } })[0]).toMatch(/hosts\[0\]: "\*\.github\.com" is not allowed/);
  });

  it('refuses an allowCidrs range so wide it disables the private-address protection', () => {
    expect(errors({ egress: { allowCidrs: ['0.0.0.0/0'] } })[0]).toMatch(/^spec\.egress\.allowCidrs\[0\]: "0\.0\.0\.0\/0" opens \/0/);
    expect(errors({ egress: { allowCidrs: ['300.1.1.1/8'] } })[0]).toMatch(/^spec\.egress\.allowCidrs\[0\]: "300\.1\.1\.1\/8" is not a valid CIDR/);
  });

  // Each of these passed the operator's own CIDR check (SpecValid=True) and then stopped the
  // pod: egress-init or the egress proxy refused the contract. One grammar now (contract/net.ts).
  it.each([
    ['fd00:::/8', /is not a valid CIDR: no IPv4 or IPv6 address/],
    ['010.0.0.0/8', /is not a valid CIDR: no IPv4 or IPv6 address/],
    ['10.0.0.0/08', /without leading zeros/],
    ['::ffff:10.0.0.0/104', /IPv4-mapped IPv6 range/],
  ])('refuses %s, which the pod refuses, naming the field', (cidr, why) => {
    const e = errors({ egress: { allowCidrs: ['10.96.0.0/12', cidr] } });
    expect(e).toHaveLength(1);
    expect(e[0]?.startsWith(`spec.egress.allowCidrs[1]: "${cidr}" `)).toBe(true);
    expect(e[0]).toMatch(why);
  });

  it('refuses cluster-wide Kubernetes access, which it does not render (an Agent stored before the CRD refused it)', () => {
    expect(errors({ kubernetesAccess: { clusterRole: 'view', clusterWide: true } })).toEqual([
      expect.stringMatching(/^spec\.kubernetesAccess\.clusterWide: clusterWide: true is not supported yet.*ClusterRoleBinding/),
    ]);
    expect(errors({ kubernetesAccess: { clusterRole: 'view' } })).toEqual([]);
  });

  it('refuses two repositories that clone into one directory', () => {
    expect(errors({ repos: [{ name: 'a/x' }, { name: 'b/x' }] })[0]).toMatch(/^spec\.repos\[1\]: "b\/x" would be cloned into \/workspace\/x like "a\/x"/);
  });

  it('refuses a Matrix homeserver or NATS server the egress policy does not reach', () => {
    const matrix = { homeserverUrl: 'https://matrix.example.org', userId: '@a:example.org', accessTokenSecretRef: { name: 's', key: 'k' } };
    expect(errors({ matrix })[0]).toMatch(/^spec\.matrix\.homeserverUrl: the Matrix homeserver host "matrix\.example\.org" is not allowed/);
    expect(errors({ matrix, egress: { allow: ['matrix.example.org'] } })).toEqual([]);
    expect(errors({ events: { natsUrl: 'nats://nats.infra.svc:4222' } })).toEqual([]);
    expect(errors({ events: { natsUrl: 'nats://10.1.2.3:4222' } })[0]).toMatch(/allowCidrs/);
  });

  // Each of these passed the operator's own host checks and then failed in the pod: the
  // proxy refused the entry at start (pod not ready), or refused the connection the spec
  // relies on. The operator now applies the proxy's rules (contract/hosts.ts).
  it.each([
    ['api.example.com:0443', /^spec\.egress\.allow\[0\]: "api\.example\.com:0443" has a bad port: port "0443": not a decimal port 1-65535 without leading zeros/],
    ['api.example.com:65536', /^spec\.egress\.allow\[0\]: "api\.example\.com:65536" has a bad port: port "65536"/],
    ['10.0.0.1', /^spec\.egress\.allow\[0\]: "10\.0\.0\.1" is an IP address \(10\.0\.0\.1\); patterns are host names/],
    ['1234', /^spec\.egress\.allow\[0\]: "1234" is an IP address \(0\.0\.4\.210\)/],
  ])('refuses the allowlist entry %s, which the proxy refuses', (entry, why) => {
    expect(errors({ egress: { allow: [entry] } })).toEqual([expect.stringMatching(why)]);
  });

  it('refuses a credential host the proxy would not let through, though it ends like an allowed wildcard', () => {
    // *.amazonaws.com stops at the private suffix s3.amazonaws.com (buckets belong to anyone).
    const e = errors({ egress: { allow: ['*.amazonaws.com'], credentials: [gh('aws', ['bucket.s3.amazonaws.com'], 'X-Key')] } });
    expect(e).toEqual([expect.stringMatching(/^spec\.egress\.credentials\[0\]\.hosts\[0\]: "bucket\.s3\.amazonaws\.com" is not allowed by spec\.egress\.allow/)]);
    expect(errors({ egress: { allow: ['*.amazonaws.com'], credentials: [gh('aws', ['sts.amazonaws.com'], 'X-Key')] } })).toEqual([]);
  });

  it('refuses a Matrix homeserver on a port the allowlist entry does not open (the proxy admits 80 and 443 only)', () => {
    const matrix = { homeserverUrl: 'https://matrix.example.org:8448', userId: '@a:example.org', accessTokenSecretRef: { name: 's', key: 'k' } };
    expect(errors({ matrix, egress: { allow: ['matrix.example.org'] } })).toEqual([
      expect.stringMatching(/^spec\.matrix\.homeserverUrl: the Matrix homeserver host "matrix\.example\.org" is not allowed by spec\.egress\.allow on port 8448; add "matrix\.example\.org:8448" there/),
    ]);
    expect(errors({ matrix, egress: { allow: ['matrix.example.org:8448'] } })).toEqual([]);
  });

  it('refuses a NATS server at an IP that no allowCidrs range covers', () => {
    expect(errors({ events: { natsUrl: 'nats://10.1.2.3:4222' }, egress: { allowCidrs: ['192.168.0.0/16'] } })).toEqual([
      expect.stringMatching(/^spec\.events\.natsUrl: the NATS server at IP 10\.1\.2\.3 is not in spec\.egress\.allowCidrs/),
    ]);
    expect(errors({ events: { natsUrl: 'nats://10.1.2.3:4222' }, egress: { allowCidrs: ['10.0.0.0/8'] } })).toEqual([]);
  });

  it('looks for the PR watcher\'s credential on its API host (spec.github.apiUrl), as the pod does', () => {
    const ghes = { login: 'bot', apiUrl: 'https://github.example.com/api/v3' };
    const own = validateAgent(agent({ github: ghes, egress: { allow: ['github.example.com'], credentials: [gh('ghes', ['github.example.com'])] } }));
    expect(own.warnings).toEqual([]);
    const wrong = validateAgent(agent({ github: ghes, egress: { allow: ['api.github.com'], credentials: [gh('github', ['api.github.com'])] } }));
    expect(wrong.warnings).toEqual([expect.stringContaining('no spec.egress.credentials entry covers github.example.com (spec.github.apiUrl)')]);
    // Host names compare canonically (case, a trailing dot), as the pod's credentialFor does.
    const shouting = validateAgent(agent({ github: { login: 'bot', apiUrl: 'https://GitHub.Example.COM./api/v3' }, egress: { allow: ['github.example.com'], credentials: [gh('ghes', ['github.example.com'])] } }));
    expect(shouting.warnings).toEqual([]);
  });

  it('warns, without blocking, when PR watching has no GitHub credential', () => {
    const v = validateAgent(agent({ github: { login: 'bot' } }));
    expect(v.errors).toEqual([]);
    expect(v.warnings).toEqual([expect.stringContaining('spec.github.watchPullRequests: enabled but no spec.egress.credentials entry covers api.github.com')]);
  });
});
