import { describe, expect, it } from 'vitest';
import { canonicalQueryName, compileDnsPolicy, decideName, parseResolvConf } from './dns-policy.ts';

const SEARCH = ['agents.svc.cluster.local', 'svc.cluster.local', 'cluster.local'];
const policy = compileDnsPolicy(['api.github.com', '*.github.dev', 'git.example.com:8443'], ['nats.infra.svc', 'kubernetes.default.svc'], SEARCH);

describe('decideName', () => {
  it('resolves allowed names, wildcards and entries with a port, in any case and with a trailing dot', () => {
    expect(decideName('api.github.com', policy)).toEqual({ action: 'resolve', reason: 'allowed', name: 'api.github.com', rule: 'api.github.com' });
    expect(decideName('API.GitHub.com.', policy)).toMatchObject({ action: 'resolve', name: 'api.github.com' });
    expect(decideName('codespaces.github.dev', policy)).toMatchObject({ action: 'resolve', rule: '*.github.dev' });
    expect(decideName('git.example.com', policy)).toMatchObject({ action: 'resolve', rule: 'git.example.com:8443' });
  });

  it('resolves the declared in-cluster Services in their .svc and .svc.<cluster domain> forms', () => {
    for (const n of ['nats.infra.svc', 'nats.infra.svc.cluster.local', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local']) {
      expect(decideName(n, policy), n).toEqual({ action: 'resolve', reason: 'in_cluster', name: n });
    }
    // The cluster domain as the pod's search list names it.
    const other = compileDnsPolicy([], ['nats.infra.svc.cluster.local'], ['agents.svc.k8s.example', 'svc.k8s.example', 'k8s.example']);
    expect(decideName('nats.infra.svc.k8s.example', other)).toMatchObject({ action: 'resolve', reason: 'in_cluster' });
    expect(decideName('nats.infra.svc', other)).toMatchObject({ action: 'resolve', reason: 'in_cluster' });
  });

  it('answers the search-list expansions of an allowed or declared name NXDOMAIN without resolving', () => {
    expect(decideName('api.github.com.agents.svc.cluster.local', policy)).toEqual({ action: 'nxdomain', reason: 'search_expansion', meant: 'api.github.com' });
    expect(decideName('api.github.com.cluster.local', policy)).toEqual({ action: 'nxdomain', reason: 'search_expansion', meant: 'api.github.com' });
    expect(decideName('kubernetes.default.svc.agents.svc.cluster.local', policy)).toEqual({ action: 'nxdomain', reason: 'search_expansion', meant: 'kubernetes.default.svc' });
  });

  it('refuses every other name, naming the name the client meant for each expansion', () => {
    for (const q of ['evil.example.agents.svc.cluster.local', 'evil.example.svc.cluster.local', 'evil.example.cluster.local', 'evil.example']) {
      expect(decideName(q, policy), q).toEqual({ action: 'nxdomain', reason: 'not_allowed', meant: 'evil.example' });
    }
    // An undeclared Service of the cluster, and names that only look like allowed ones.
    expect(decideName('postgres.agents.svc.cluster.local', policy)).toMatchObject({ action: 'nxdomain', reason: 'not_allowed' });
    expect(decideName('github.com', policy)).toMatchObject({ action: 'nxdomain', reason: 'not_allowed' });
    expect(decideName('api.github.com.evil.example', policy)).toMatchObject({ action: 'nxdomain', reason: 'not_allowed' });
    expect(decideName('github.dev', policy)).toMatchObject({ action: 'nxdomain', reason: 'not_allowed' });
    // A label carrying data under a domain nobody allowed: refused (and, dns.test.ts shows, never sent upstream).
    expect(decideName('c2VjcmV0.evil.example', policy)).toMatchObject({ action: 'nxdomain', reason: 'not_allowed', meant: 'c2vjcmv0.evil.example' });
  });

  it('refuses names that are not canonical host names as bad_name', () => {
    for (const q of ['', '.', '1.2.3.4', 'a..b', 'api.github.com\u0000', 'api\\.github.com', 'bücher.example', `${'a'.repeat(64)}.example`, `${'a.'.repeat(130)}com`, '4.3.2.1.in-addr.arpa ']) {
      expect(decideName(q, policy).reason, JSON.stringify(q)).toBe('bad_name');
      expect(decideName(q, policy).action).toBe('nxdomain');
    }
    // A reverse lookup is a name like any other: refused unless allowed.
    expect(decideName('4.3.2.1.in-addr.arpa', policy)).toMatchObject({ action: 'nxdomain', reason: 'not_allowed' });
  });
});

describe('compileDnsPolicy', () => {
  it('refuses a bad allow entry as the proxy allowlist does, and skips declared names that are not hosts', () => {
    expect(() => compileDnsPolicy(['*.com'], [], [])).toThrow(/public suffix/);
    expect(compileDnsPolicy([], ['not a host', '10.0.0.1'], []).inCluster.size).toBe(0);
  });

  it('orders the search list longest first', () => {
    expect(compileDnsPolicy([], [], ['cluster.local', 'agents.svc.cluster.local', 'svc.cluster.local']).search).toEqual(SEARCH);
  });
});

describe('canonicalQueryName', () => {
  it('lower-cases and drops one trailing dot', () => {
    expect(canonicalQueryName('Api.GitHub.COM.')).toBe('api.github.com');
    expect(canonicalQueryName('api.github.com..')).toBeUndefined();
  });
});

describe('parseResolvConf', () => {
  it('reads the nameservers and the last search line of a pod resolv.conf', () => {
    const text = 'search old.example\n# comment\nsearch agents.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\nnameserver fd00::a ; x\noptions ndots:5\n';
    expect(parseResolvConf(text)).toEqual({ nameservers: ['10.96.0.10', 'fd00::a'], search: SEARCH });
  });
});
