import type { V1ConfigMap, V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../api/agent.ts';
import { generateEgressCa } from '../pki/egress-ca.ts';
import type { Observed } from './observed.ts';
import { checkClusterReferences, referencedObjects, resolveApiServer, resolveUpstreamCa } from './references.ts';

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

/** An Observed snapshot of `a` holding only what the checks here read. */
function observe(a: Agent, objs: { configMaps?: Record<string, V1ConfigMap>; service?: V1Service; slices?: V1EndpointSlice[] | 'forbidden' } = {}): Observed {
  return {
    agent: a,
    configMaps: new Map(Object.entries(objs.configMaps ?? {})),
    secrets: new Map(),
    services: [],
    ...(a.spec.kubernetesAccess?.clusterRole ? { apiServer: { ...(objs.service ? { service: objs.service } : {}), slices: objs.slices ?? [] } } : {}),
    children: {},
    teammates: [],
  };
}

describe('spec.egress.upstreamCaConfigMapRef', () => {
  const withCa = agent({ persona: { instructions: 'hi' }, egress: { upstreamCaConfigMapRef: { name: 'corp-ca', key: 'ca.crt' } } });
  let pem = '';
  beforeAll(async () => {
    pem = (await generateEgressCa({ agent: 'team-ns/a', allow: ['example.org'], now: new Date(), validityDays: 1 })).certPem;
  });

  it('is a referenced ConfigMap, so an edit of it is watched', () => {
    expect(referencedObjects(withCa)).toEqual([{ kind: 'ConfigMap', namespace: 'team-ns', name: 'corp-ca' }]);
  });

  it('names a missing ConfigMap, a missing key and a bundle that is not PEM in ReferencesResolved, with the fix', () => {
    const cases: Array<[Record<string, V1ConfigMap>, string, string]> = [
      [{}, 'ReferenceNotFound', 'spec.egress.upstreamCaConfigMapRef: ConfigMap team-ns/corp-ca not found; create it (kubectl create configmap corp-ca -n team-ns --from-file=ca.crt=<ca-bundle.pem>) or fix the name'],
      [{ 'corp-ca': { data: { 'bundle.pem': pem } } }, 'ReferenceNotFound', 'spec.egress.upstreamCaConfigMapRef: ConfigMap team-ns/corp-ca has no key "ca.crt" (it has "bundle.pem"); put the PEM bundle under "ca.crt" or fix the key'],
      [{ 'corp-ca': { data: { 'ca.crt': 'not a certificate' } } }, 'ReferenceInvalid', 'spec.egress.upstreamCaConfigMapRef: key "ca.crt" of ConfigMap team-ns/corp-ca: no PEM certificate in it'],
      [
        { 'corp-ca': { data: { 'ca.crt': `${pem}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n` } } },
        'ReferenceInvalid',
        'spec.egress.upstreamCaConfigMapRef: key "ca.crt" of ConfigMap team-ns/corp-ca: certificate 2 of 2 is not a valid certificate',
      ],
    ];
    for (const [configMaps, reason, message] of cases) {
      const o = observe(withCa, { configMaps });
      const resolved = resolveUpstreamCa(o);
      expect(resolved.pem).toBeUndefined();
      const cond = checkClusterReferences(o, resolved);
      expect(cond).toMatchObject({ type: 'ReferencesResolved', status: 'False', reason });
      expect(cond.message).toContain(message);
    }
  });

  it('returns the bundle when every certificate in it parses, and nothing without the field', () => {
    const bundle = `# corporate roots\n${pem}`;
    const o = observe(withCa, { configMaps: { 'corp-ca': { data: { 'ca.crt': bundle } } } });
    const resolved = resolveUpstreamCa(o);
    expect(resolved).toEqual({ pem: bundle });
    expect(checkClusterReferences(o, resolved)).toMatchObject({ status: 'True' });
    expect(resolveUpstreamCa(observe(agent({ persona: { instructions: 'hi' } })))).toEqual({});
  });
});

describe('resolveApiServer (spec.kubernetesAccess)', () => {
  const withAccess = agent({ persona: { instructions: 'hi' }, kubernetesAccess: { clusterRole: 'view' } });
  const service: V1Service = { spec: { clusterIP: '10.0.0.1', clusterIPs: ['10.0.0.1'], ports: [{ name: 'https', port: 443, protocol: 'TCP' }] } };
  const slice = (addresses: string[], ready?: boolean): V1EndpointSlice => ({
    addressType: 'IPv4',
    endpoints: [{ addresses, ...(ready === undefined ? {} : { conditions: { ready } }) }],
    ports: [{ name: 'https', port: 6443, protocol: 'TCP' }],
  });

  it('finds the kubernetes Service IP and the ready API server endpoints', () => {
    expect(resolveApiServer(observe(withAccess, { service, slices: [slice(['192.168.1.10']), slice(['192.168.1.11'], false)] }))).toEqual({
      apiServer: { clusterIPs: ['10.0.0.1'], servicePorts: [443], endpointAddresses: ['192.168.1.10'], endpointPorts: [6443] },
      unresolved: [],
    });
  });

  it('resolves nothing for an Agent without kubernetesAccess', () => {
    expect(resolveApiServer(observe(agent({ persona: { instructions: 'hi' } })))).toEqual({ unresolved: [] });
  });

  it('says what is missing instead of failing the reconcile', () => {
    expect(resolveApiServer(observe(withAccess))).toEqual({ unresolved: ['default/kubernetes (not found)'] });
    expect(resolveApiServer(observe(withAccess, { service, slices: [] })).unresolved).toEqual(['EndpointSlices of default/kubernetes (no ready endpoint)']);
    const forbidden = resolveApiServer(observe(withAccess, { service, slices: 'forbidden' }));
    expect(forbidden.apiServer?.clusterIPs).toEqual(['10.0.0.1']);
    expect(forbidden.unresolved).toEqual(['EndpointSlices of default/kubernetes (forbidden: grant the operator list on discovery.k8s.io endpointslices)']);
  });
});
