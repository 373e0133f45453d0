import type { KubernetesObject } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { PodContract } from '../../../agent-image/src/contract/contract.ts';
import { Agent, type AgentSpec } from '../api/agent.ts';
import { ANNOTATION_CONFIG_HASH } from '../api/constants.ts';
import { renderAll, type RenderOptions } from './index.ts';
import { UPSTREAM_CA_FILE } from '../../../agent-image/src/contract/ca-bundle.ts';
import { layoutFromEnv } from '../../../agent-image/src/contract/layout.ts';
import { caBundleFile, TRUST_VARIABLES, trustEnv } from '../../../agent-image/src/contract/trust.ts';
import { volumeClaimDrift } from './statefulset.ts';

/** An Agent as the API server would store it: defaults applied by the schema. */
function agent(spec: Record<string, unknown>, name = 'devbot'): Agent {
  return Agent.parse({
    apiVersion: 'agentsmith.dev/v1alpha1',
    kind: 'Agent',
    metadata: { name, namespace: 'team-a', uid: '0b5a6c2e-1111-2222-3333-444455556666', generation: 1 },
    spec,
  });
}

const opts: RenderOptions = {
  image: 'example.org/agent:1',
  shared: { claudeMd: '# Shared rules\n', settingsJson: '{"permissions":{"allow":["Read"]}}' },
  egressCaCertPem: '-----BEGIN CERTIFICATE-----\nTEST\n-----END CERTIFICATE-----\n',
  egressCaKeyPem: '-----BEGIN PRIVATE KEY-----\nTEST\n-----END PRIVATE KEY-----\n',
  namespaceAgents: [],
  persona: { claudeMd: 'You are devbot.', mcpJson: '{"mcpServers":{"x":{"command":"x"}}}', subagents: { reviewer: '---\nname: reviewer\n---\n' } },
};

const devbot: Partial<AgentSpec> = {
  team: 'homelab',
  repos: [{ name: 'agent-smith/agent-smith' }, { name: 'agent-smith/homelab-apps', branch: 'main' }],
  primaryRepo: 'homelab-apps',
  egress: { allow: ['github.com'], allowCidrs: [], credentials: [], enforcement: 'iptables' },
};

describe('renderAll', () => {
  it('matches the golden children of a typical agent', async () => {
    const children = renderAll(agent(devbot), opts);
    await expect(stringify(children, { lineWidth: 0 })).toMatchFileSnapshot('__golden__/devbot.yaml');
  });

  it("gives the agent's commits the spec's git identity, with defaults that reach nobody by accident", () => {
    const gitOf = (spec: Partial<AgentSpec>) => PodContract.parse(JSON.parse(renderAll(agent(spec), opts).configMap.data?.['contract.json'] ?? '')).git;
    expect(gitOf(devbot)).toEqual({ name: 'devbot', email: 'devbot@team-a.agents.invalid' });
    expect(gitOf({ ...devbot, github: { login: 'devbot-gh', watchPullRequests: { enabled: false, intervalSeconds: 60, maxConsecutiveRewakes: 3 } } })).toEqual({ name: 'devbot', email: 'devbot-gh@users.noreply.github.com' });
    expect(gitOf({ ...devbot, git: { name: 'Dev Bot', email: 'devbot@example.org' } })).toEqual({ name: 'Dev Bot', email: 'devbot@example.org' });
  });

  it('refuses a git identity that is not one line or not an address', () => {
    const bad = (git: Record<string, string>) => Agent.safeParse({ apiVersion: 'agentsmith.dev/v1alpha1', kind: 'Agent', metadata: { name: 'a' }, spec: { git } }).error?.issues[0]?.message;
    expect(bad({ name: 'Dev\n[core]' })).toMatch(/one line/);
    expect(bad({ email: 'devbot' })).toMatch(/e-mail address/);
    expect(bad({ email: 'a b@example.org' })).toMatch(/e-mail address/);
  });

  it("passes a credential's allowWebSocket to the pod's proxy, and leaves the contract as it was without it", () => {
    const credential = { name: 'github', hosts: ['github.com'], secretRef: { name: 'gh', key: 'token' } };
    const contractOf = (c: Record<string, unknown>) =>
      PodContract.parse(JSON.parse(renderAll(agent({ ...devbot, egress: { allow: ['github.com'], allowCidrs: [], enforcement: 'iptables', credentials: [c] } }), opts).configMap.data?.['contract.json'] ?? ''));
    expect(contractOf({ ...credential, allowWebSocket: true }).egress.credentials[0]?.allowWebSocket).toBe(true);
    const off = renderAll(agent({ ...devbot, egress: { allow: ['github.com'], allowCidrs: [], enforcement: 'iptables', credentials: [credential] } }), opts).configMap.data?.['contract.json'] ?? '';
    expect(off).not.toContain('allowWebSocket');
    expect(contractOf(credential).egress.credentials[0]?.allowWebSocket).toBe(false);
  });

  it('lets the supervisor reach the in-cluster NATS and Matrix Services without DNS under iptables enforcement', () => {
    const spec = {
      ...devbot,
      events: { natsUrl: 'nats://nats.messaging.svc.cluster.local:4222', subjectPrefix: 'agents' },
      matrix: { homeserverUrl: 'http://synapse.chat.svc:8008', userId: '@devbot:example.org', accessTokenSecretRef: { name: 'm', key: 'token' } },
    };
    const serviceAddresses = [
      { host: 'nats.messaging.svc.cluster.local', addresses: ['10.96.0.20'] },
      { host: 'synapse.chat.svc', addresses: ['10.96.0.30', 'fd00::30'] },
    ];
    const { configMap, statefulSet, networkPolicy } = renderAll(agent(spec), { ...opts, serviceAddresses });
    const contract = PodContract.parse(JSON.parse(configMap.data?.['contract.json'] ?? ''));
    // egress-init lets these addresses through; /etc/hosts names them (resolvable while the proxy, the pod's DNS, is not ready).
    expect(contract.egress.allowCidrs).toEqual(['10.96.0.20/32', '10.96.0.30/32', 'fd00::30/128']);
    // The proxy's DNS listener resolves these names for the CLI (programs/proxy/dns.ts).
    expect(contract.egress.inClusterHosts).toEqual(['nats.messaging.svc.cluster.local', 'synapse.chat.svc']);
    expect(statefulSet.spec?.template.spec?.hostAliases).toEqual([
      { ip: '10.96.0.20', hostnames: ['nats.messaging.svc.cluster.local', 'nats.messaging.svc'] },
      { ip: '10.96.0.30', hostnames: ['synapse.chat.svc', 'synapse.chat.svc.cluster.local'] },
      { ip: 'fd00::30', hostnames: ['synapse.chat.svc', 'synapse.chat.svc.cluster.local'] },
    ]);
    expect(JSON.stringify(networkPolicy.spec?.egress)).toContain('"messaging"');
    // proxy-env keeps DNS: the addresses are allowed, no /etc/hosts entries.
    const proxyEnv = renderAll(agent({ ...spec, egress: { ...devbot.egress!, enforcement: 'proxy-env' } }), { ...opts, serviceAddresses });
    expect(proxyEnv.statefulSet.spec?.template.spec?.hostAliases).toBeUndefined();
    expect(PodContract.parse(JSON.parse(proxyEnv.configMap.data?.['contract.json'] ?? '')).egress.inClusterHosts).toBeUndefined();
    // Without resolved addresses nothing changes.
    const unresolved = renderAll(agent(spec), opts);
    expect(unresolved.statefulSet.spec?.template.spec?.hostAliases).toBeUndefined();
    expect(PodContract.parse(JSON.parse(unresolved.configMap.data?.['contract.json'] ?? '')).egress.inClusterHosts).toBeUndefined();
  });

  it('owns every child through a controller owner reference and carries the standard labels', () => {
    const { roster, ...children } = renderAll(agent(devbot), opts);
    expect(roster).toBeDefined(); // shared by the team: checked in its own test
    for (const child of Object.values(children) as KubernetesObject[]) {
      expect(child.metadata?.ownerReferences).toEqual([
        expect.objectContaining({ kind: 'Agent', name: 'devbot', controller: true, uid: '0b5a6c2e-1111-2222-3333-444455556666' }),
      ]);
      expect(child.metadata?.labels).toMatchObject({
        'app.kubernetes.io/name': 'agent',
        'app.kubernetes.io/instance': 'devbot',
        'app.kubernetes.io/managed-by': 'agent-smith',
      });
    }
  });

  it('assembles the persona after the shared rules and points the CLI at the primary repo', () => {
    const { configMap } = renderAll(agent(devbot), opts);
    const claude = configMap.data?.['CLAUDE.md'] ?? '';
    expect(claude.indexOf('# Shared rules')).toBeLessThan(claude.indexOf('You are devbot.'));
    const contract = JSON.parse(configMap.data?.['contract.json'] ?? '{}') as { workdir: string; repos: { url: string }[] };
    expect(contract.workdir).toBe('/workspace/homelab-apps');
    expect(contract.repos[0]?.url).toBe('https://github.com/agent-smith/agent-smith.git');
    expect(configMap.data?.['subagent.reviewer.md']).toContain('name: reviewer');
  });

  it('scales to zero when suspended and keeps everything else', () => {
    const running = renderAll(agent(devbot), opts).statefulSet;
    const suspended = renderAll(agent({ ...devbot, suspend: true }), opts).statefulSet;
    expect(running.spec?.replicas).toBe(1);
    expect(suspended.spec?.replicas).toBe(0);
    expect(suspended.spec?.volumeClaimTemplates).toEqual(running.spec?.volumeClaimTemplates);
  });

  it('follows storage.retainOnDelete in the PVC retention policy', () => {
    const keep = renderAll(agent(devbot), opts).statefulSet;
    const drop = renderAll(agent({ ...devbot, storage: { retainOnDelete: false } }), opts).statefulSet;
    expect(keep.spec?.persistentVolumeClaimRetentionPolicy?.whenDeleted).toBe('Retain');
    expect(drop.spec?.persistentVolumeClaimRetentionPolicy?.whenDeleted).toBe('Delete');
    expect(drop.spec?.volumeClaimTemplates?.map((v) => v.spec?.resources?.requests?.storage)).toEqual(['5Gi', '20Gi']);
  });

  it('changes the config hash when the persona changes, and only then', () => {
    const hash = (o: RenderOptions, spec = devbot) =>
      renderAll(agent(spec), o).statefulSet.spec?.template.metadata?.annotations?.[ANNOTATION_CONFIG_HASH];
    const base = hash(opts);
    expect(hash(opts)).toBe(base);
    expect(hash({ ...opts, persona: { ...opts.persona, claudeMd: 'You are someone else.' } })).not.toBe(base);
    expect(hash(opts, { ...devbot, suspend: true })).toBe(base);
  });

  it('mounts the CA key and the real credentials into the egress proxy and nowhere else', () => {
    const withCreds = agent({
      ...devbot,
      egress: { allow: ['github.com', 'api.github.com'], credentials: [{ name: 'github', hosts: ['api.github.com'], secretRef: { name: 'gh', key: 'token' } }] },
    });
    const pod = renderAll(withCreds, opts).statefulSet.spec!.template.spec!;
    const all = [...(pod.initContainers ?? []), ...pod.containers];
    const byName = Object.fromEntries(all.map((c) => [c.name, c]));
    expect(Object.keys(byName)).toEqual(['egress-init', 'egress-proxy', 'setup', 'agent']);
    const secretVolumes = new Set(['egress-ca', 'credentials']);
    for (const c of all) {
      const mountsSecret = (c.volumeMounts ?? []).some((m) => secretVolumes.has(m.name));
      expect(mountsSecret, c.name).toBe(c.name === 'egress-proxy');
      expect(JSON.stringify(c.env ?? [])).not.toContain('secretKeyRef');
    }
    const creds = pod.volumes?.find((v) => v.name === 'credentials');
    expect(creds?.projected?.sources).toEqual([{ secret: { name: 'gh', items: [{ key: 'token', path: 'github' }] } }]);
    expect(byName['egress-proxy']?.restartPolicy).toBe('Always');
    expect(byName['egress-proxy']?.securityContext?.runAsUser).toBe(1337);
  });

  it('gives the agent a stub per credential in the contract, derived from the CA key, never the Secret reference', () => {
    const cred = { name: 'github', hosts: ['api.github.com'], secretRef: { name: 'gh', key: 'token' }, require: true, env: ['GITHUB_TOKEN', 'GH_TOKEN'] };
    const withCreds = agent({ ...devbot, egress: { allow: ['github.com', 'api.github.com'], credentials: [cred] } });
    const contractOf = (o: typeof opts) => JSON.parse(renderAll(withCreds, o).configMap.data?.['contract.json'] ?? '{}') as { egress: { credentials: Array<Record<string, unknown>> } };
    const [c] = contractOf(opts).egress.credentials;
    expect(c).toMatchObject({ name: 'github', hosts: ['api.github.com'], require: true, env: ['GITHUB_TOKEN', 'GH_TOKEN'] });
    expect(String(c?.stub)).toMatch(/^agent-smith-stub-[\w-]{43}$/);
    expect(JSON.stringify(c)).not.toContain('"gh"');
    // Stable for the same CA; a new CA key gives new stubs (and rolls the pod).
    expect(contractOf(opts).egress.credentials[0]?.stub).toBe(c?.stub);
    expect(contractOf({ ...opts, egressCaKeyPem: 'OTHER KEY' }).egress.credentials[0]?.stub).not.toBe(c?.stub);
  });

  it('gives NET_ADMIN to egress-init only, and runs everything else non-root without capabilities', () => {
    const pod = renderAll(agent(devbot), opts).statefulSet.spec!.template.spec!;
    for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
      const sc = c.securityContext!;
      expect(sc.allowPrivilegeEscalation, c.name).toBe(false);
      expect(sc.capabilities?.drop).toEqual(['ALL']);
      expect(sc.seccompProfile?.type).toBe('RuntimeDefault');
      if (c.name === 'egress-init') expect(sc.capabilities?.add).toEqual(['NET_ADMIN', 'NET_RAW']);
      else expect([sc.runAsNonRoot, sc.capabilities?.add]).toEqual([true, undefined]);
    }
  });

  it('has no egress-init in proxy-env mode and points the agent at the proxy instead', () => {
    const pod = renderAll(agent({ ...devbot, egress: { allow: ['github.com'], enforcement: 'proxy-env' } }), opts).statefulSet.spec!.template.spec!;
    expect(pod.initContainers?.map((c) => c.name)).toEqual(['egress-proxy', 'setup']);
    const env = Object.fromEntries((pod.containers[0]?.env ?? []).map((e) => [e.name, e.value]));
    expect(env.HTTPS_PROXY).toBe('http://127.0.0.1:15001');
    expect(env.NODE_EXTRA_CA_CERTS).toBe('/etc/agent-smith/egress-ca-cert/ca.crt');
  });

  // Bug fixed: the operator named the egress CA alone in GIT_SSL_CAINFO and REQUESTS_CA_BUNDLE,
  // the supervisor the bundle (system roots + egress CA): git and Python requests in
  // `kubectl exec` distrusted a direct TLS peer that the same tools in the tmux panes trusted.
  it('gives setup and agent the trust variables the supervisor gives the tmux panes (replacing ones name the bundle)', () => {
    const pod = renderAll(agent(devbot), opts).statefulSet.spec!.template.spec!;
    const layout = layoutFromEnv({ HOME: '/home/agent', AGENT_SMITH_CONTRACT: '/etc/agent-smith/contract.json' });
    const panes = trustEnv({ caCert: layout.caCertFile, bundle: caBundleFile(layout) });
    for (const c of [pod.containers[0], pod.initContainers?.find((i) => i.name === 'setup')]) {
      const env = Object.fromEntries((c?.env ?? []).filter((e) => TRUST_VARIABLES.includes(e.name)).map((e) => [e.name, e.value]));
      expect(env, c?.name).toEqual(panes);
    }
    expect(panes.GIT_SSL_CAINFO).toBe('/home/agent/.agent-smith/ca-bundle.pem');
    expect(panes.REQUESTS_CA_BUNDLE).toBe('/home/agent/.agent-smith/ca-bundle.pem');
    expect(panes.NODE_EXTRA_CA_CERTS).toBe('/etc/agent-smith/egress-ca-cert/ca.crt');
  });

  it('names the proxy in iptables mode too (its DNS resolves allowed names only) and lets allowCidrs go direct', () => {
    const pod = renderAll(agent({ ...devbot, egress: { allow: ['github.com'], allowCidrs: ['10.96.0.0/12'], enforcement: 'iptables' } }), opts).statefulSet.spec!.template.spec!;
    expect(pod.initContainers?.map((c) => c.name)).toEqual(['egress-init', 'egress-proxy', 'setup']);
    const env = Object.fromEntries((pod.containers[0]?.env ?? []).map((e) => [e.name, e.value]));
    expect(env.HTTPS_PROXY).toBe('http://127.0.0.1:15001');
    expect(env.NO_PROXY).toBe('localhost,127.0.0.1,::1,.svc,.cluster.local,10.96.0.0/12');
  });

  it('rolls the pod when the egress CA changes', () => {
    const hash = (pem: string) => renderAll(agent(devbot), { ...opts, egressCaCertPem: pem }).statefulSet.spec?.template.metadata?.annotations?.[ANNOTATION_CONFIG_HASH];
    expect(hash('a')).not.toBe(hash('b'));
  });

  it('lists every teammate in one roster owned by all of them, and imports it into CLAUDE.md', () => {
    const infrabot = agent({ team: 'homelab', github: { login: 'infrabot-agent' } }, 'infrabot');
    const other = agent({ team: 'other' }, 'stranger');
    const me = agent(devbot);
    const { roster, configMap } = renderAll(me, { ...opts, namespaceAgents: [infrabot, me, other] });
    expect(roster?.metadata?.name).toBe('team-homelab-roster');
    expect(roster?.metadata?.ownerReferences?.map((o) => [o.name, o.controller])).toEqual([['devbot', false], ['infrabot', false]]);
    expect(roster?.data?.['roster.md']).toContain('- **infrabot** (claude) — GitHub @infrabot-agent');
    expect(roster?.data?.['roster.md']).not.toContain('stranger');
    expect(configMap.data?.['CLAUDE.md']).toContain('@/etc/agent-smith/team/roster.md');
    // Every teammate renders the same roster, whatever order the cache lists them in.
    expect(renderAll(infrabot, { ...opts, namespaceAgents: [me, infrabot] }).roster).toEqual(roster);
  });

  it('binds the asked ClusterRole in the namespace only when kubernetesAccess asks', () => {
    expect(renderAll(agent(devbot), opts).roleBinding).toBeUndefined();
    const rb = renderAll(agent({ ...devbot, kubernetesAccess: { clusterRole: 'view' } }), opts).roleBinding;
    expect(rb?.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'view' });
    expect(rb?.subjects).toEqual([{ kind: 'ServiceAccount', name: 'devbot', namespace: 'team-a' }]);
  });

  it('lets the pod reach DNS, 80/443, the in-cluster services it names, and nothing else', () => {
    const np = renderAll(agent({ ...devbot, events: { natsUrl: 'nats://nats.infra.svc:4222' } }), opts).networkPolicy;
    expect(np.spec?.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(np.spec?.egress).toEqual([
      { ports: [{ protocol: 'UDP', port: 53 }, { protocol: 'TCP', port: 53 }] },
      { ports: [{ protocol: 'TCP', port: 80 }, { protocol: 'TCP', port: 443 }] },
      { to: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'infra' } } }], ports: [{ protocol: 'TCP', port: 4222 }] },
    ]);
  });

  it('gives the pod the event log settings with their defaults, in a contract the pod accepts', () => {
    const withEvents = agent({ ...devbot, events: { natsUrl: 'nats://nats.infra.svc:4222', maxAgeSeconds: 86_400 } });
    const raw = renderAll(withEvents, opts).configMap.data?.['contract.json'] ?? '{}';
    expect(PodContract.parse(JSON.parse(raw)).events).toEqual({
      natsUrl: 'nats://nats.infra.svc:4222',
      subjectPrefix: 'agents',
      stream: 'AGENT_EVENTS',
      maxAgeSeconds: 86_400,
      maxMessages: 1_000_000,
      maxBytes: 1024 ** 3,
      duplicateWindowSeconds: 3600,
      outboxMaxEvents: 10_000,
    });
  });

  it('gives the pod the PR rewake settings (API URL, interval, rewake limit) with their defaults, in a contract the pod accepts', () => {
    const contractOf = (github: Record<string, unknown>) => PodContract.parse(JSON.parse(renderAll(agent({ ...devbot, github }), opts).configMap.data?.['contract.json'] ?? '{}')).github;
    expect(contractOf({ login: 'devbot-agent' })).toEqual({ login: 'devbot-agent', watchPullRequests: { enabled: true, intervalSeconds: 300, maxConsecutiveRewakes: 3 } });
    const ghes = { login: 'devbot', apiUrl: 'https://github.example.com/api/v3', watchPullRequests: { intervalSeconds: 60, maxConsecutiveRewakes: 5 } };
    expect(contractOf(ghes)).toEqual({ login: 'devbot', apiUrl: 'https://github.example.com/api/v3', watchPullRequests: { enabled: true, intervalSeconds: 60, maxConsecutiveRewakes: 5 } });
  });

  it('clones from the GitHub of spec.github.apiUrl when a repository names no url: GitHub.com, or the Enterprise host', () => {
    const urlsOf = (spec: Record<string, unknown>) => PodContract.parse(JSON.parse(renderAll(agent({ ...devbot, ...spec }), opts).configMap.data?.['contract.json'] ?? '{}')).repos.map((r) => r.url);
    const repos = [{ name: 'acme/app' }, { name: 'acme/lib', url: 'https://git.example.org/acme/lib.git' }];
    expect(urlsOf({ repos, github: { login: 'devbot' } })).toEqual(['https://github.com/acme/app.git', 'https://git.example.org/acme/lib.git']);
    expect(urlsOf({ repos, github: { login: 'devbot', apiUrl: 'https://github.example.com/api/v3' } })).toEqual(['https://github.example.com/acme/app.git', 'https://git.example.org/acme/lib.git']);
    expect(urlsOf({ repos })).toEqual(['https://github.com/acme/app.git', 'https://git.example.org/acme/lib.git']);
  });

  it('reports a storage change the live StatefulSet cannot take, and nothing otherwise', () => {
    const live = renderAll(agent(devbot), opts).statefulSet;
    expect(volumeClaimDrift(renderAll(agent({ ...devbot, suspend: true }), opts).statefulSet, live)).toBeUndefined();
    const bigger = renderAll(agent({ ...devbot, storage: { home: '10Gi' } }), opts).statefulSet;
    expect(volumeClaimDrift(bigger, live)).toBe('home=5Gi -> home=10Gi');
  });

  it('rejects a malformed persona settings.json with a message naming the file', () => {
    expect(() => renderAll(agent(devbot), { ...opts, persona: { settingsJson: '{not json', subagents: {} } })).toThrow(/persona settings.json is not valid JSON/);
  });
});

describe('renderAll: spec.egress.upstreamCaConfigMapRef', () => {
  const spec = { ...devbot, egress: { ...devbot.egress!, upstreamCaConfigMapRef: { name: 'corp-ca', key: 'bundle.pem' } } };
  const pem = '-----BEGIN CERTIFICATE-----\nCORP\n-----END CERTIFICATE-----\n';

  it('mounts that one ConfigMap key read-only into the egress proxy only and tells the proxy where it is', () => {
    const pod = renderAll(agent(spec), { ...opts, upstreamCaPem: pem }).statefulSet.spec!.template.spec!;
    expect(pod.volumes).toContainEqual({ name: 'upstream-ca', configMap: { name: 'corp-ca', items: [{ key: 'bundle.pem', path: 'ca.crt' }], defaultMode: 0o444 } });
    expect(`/etc/agent-smith/upstream-ca/ca.crt`).toBe(UPSTREAM_CA_FILE);
    for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
      const mount = c.volumeMounts?.find((m) => m.name === 'upstream-ca');
      const env = c.env?.find((e) => e.name === 'AGENT_SMITH_UPSTREAM_CA');
      if (c.name === 'egress-proxy') {
        expect(mount).toEqual({ name: 'upstream-ca', mountPath: '/etc/agent-smith/upstream-ca', readOnly: true });
        expect(env).toEqual({ name: 'AGENT_SMITH_UPSTREAM_CA', value: UPSTREAM_CA_FILE });
      } else {
        expect(mount, c.name).toBeUndefined();
        expect(env, c.name).toBeUndefined();
      }
    }
  });

  it('has no such volume or variable without the field', () => {
    const pod = renderAll(agent(devbot), opts).statefulSet.spec!.template.spec!;
    expect(JSON.stringify(pod)).not.toContain('upstream-ca');
    expect(JSON.stringify(pod)).not.toContain('AGENT_SMITH_UPSTREAM_CA');
  });

  it('rolls the pod when the bundle changes (the proxy reads it once at start)', () => {
    const hash = (o: RenderOptions) => renderAll(agent(spec), o).statefulSet.spec?.template.metadata?.annotations?.[ANNOTATION_CONFIG_HASH];
    const base = hash({ ...opts, upstreamCaPem: pem });
    expect(hash({ ...opts, upstreamCaPem: pem })).toBe(base);
    expect(hash({ ...opts, upstreamCaPem: pem + pem.replace('CORP', 'CORP2') })).not.toBe(base);
  });
});

describe('renderAll: spec.kubernetesAccess reaches the API server directly', () => {
  const spec = { ...devbot, kubernetesAccess: { clusterRole: 'view' } };
  const apiServer = { clusterIPs: ['10.0.0.1'], servicePorts: [443], endpointAddresses: ['192.168.1.10', '192.168.1.11'], endpointPorts: [6443] };

  it('puts the kubernetes Service IP in NO_PROXY and allowCidrs, and admits the API server endpoints in the NetworkPolicy', () => {
    for (const enforcement of ['iptables', 'proxy-env'] as const) {
      const { configMap, statefulSet, networkPolicy } = renderAll(agent({ ...spec, egress: { ...devbot.egress!, enforcement } }), { ...opts, apiServer });
      const pod = statefulSet.spec!.template.spec!;
      for (const c of [...(pod.initContainers ?? []), ...pod.containers].filter((x) => x.name === 'setup' || x.name === 'agent')) {
        for (const name of ['NO_PROXY', 'no_proxy']) expect(c.env?.find((e) => e.name === name)?.value?.split(','), `${c.name} ${name}`).toContain('10.0.0.1');
      }
      const contract = PodContract.parse(JSON.parse(configMap.data?.['contract.json'] ?? ''));
      expect(contract.egress.allowCidrs).toEqual(['10.0.0.1/32']);
      // Under iptables the proxy's DNS answers for the API server's name as well.
      expect(contract.egress.inClusterHosts).toEqual(enforcement === 'iptables' ? ['kubernetes.default.svc'] : undefined);
      expect(networkPolicy.spec?.egress).toContainEqual({
        to: [{ ipBlock: { cidr: '192.168.1.10/32' } }, { ipBlock: { cidr: '192.168.1.11/32' } }],
        ports: [{ protocol: 'TCP', port: 6443 }],
      });
      expect(networkPolicy.spec?.egress).toContainEqual({ to: [{ ipBlock: { cidr: '10.0.0.1/32' } }], ports: [{ protocol: 'TCP', port: 443 }] });
      // The API server needs no name: the pod dials KUBERNETES_SERVICE_HOST, an address.
      expect(pod.hostAliases).toBeUndefined();
    }
  });

  it('adds nothing without a resolved API server', () => {
    const { configMap, statefulSet, networkPolicy } = renderAll(agent(spec), opts);
    const plain = renderAll(agent(devbot), opts);
    expect(networkPolicy.spec).toEqual(plain.networkPolicy.spec);
    expect(configMap.data?.['contract.json']).toBe(plain.configMap.data?.['contract.json']);
    expect(statefulSet.spec?.template.spec?.containers[0]?.env).toEqual(plain.statefulSet.spec?.template.spec?.containers[0]?.env);
  });

  it('matches the golden children of an agent with both fields', async () => {
    const opsbot = { ...spec, egress: { ...devbot.egress!, upstreamCaConfigMapRef: { name: 'corp-ca', key: 'ca.crt' } } };
    const children = renderAll(agent(opsbot, 'opsbot'), { ...opts, apiServer, upstreamCaPem: '-----BEGIN CERTIFICATE-----\nCORP\n-----END CERTIFICATE-----\n' });
    await expect(stringify(children, { lineWidth: 0 })).toMatchFileSnapshot('__golden__/opsbot.yaml');
  });
});
