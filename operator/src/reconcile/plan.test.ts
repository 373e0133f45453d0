/**
 * The plan is pure: an `Observed` snapshot in, decisions out. Each case builds the
 * snapshot a cluster would give and checks what a user would see follow from it: which
 * children are written, which condition blocks the Agent and why, whether the CA is
 * replaced, and what is left alone.
 */
import type { V1ConfigMap, V1Secret, V1StatefulSet } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { Agent } from '../api/agent.ts';
import { ANNOTATION_CA_ALLOWLIST, ANNOTATION_CA_NOT_AFTER } from '../render/egress-ca-secret.ts';
import { allowlistHash } from './egress-ca.ts';
import type { Observed, ObservedChildren } from './observed.ts';
import { plan, planCa, planChecks, type CaMaterial, type PlanSettings } from './plan.ts';

const now = new Date('2026-06-01T00:00:00Z');
const settings: PlanSettings = { image: 'example.org/agent:1', shared: { claudeMd: '# Shared rules\n', settingsJson: '{}' } };
const kept: CaMaterial = { action: 'keep', certPem: 'CERT', keyPem: 'KEY' };

function agent(spec: Record<string, unknown>): Agent {
  return Agent.parse({ apiVersion: 'agentsmith.dev/v1alpha1', kind: 'Agent', metadata: { name: 'devbot', namespace: 'team-a', uid: 'u1', generation: 1 }, spec });
}

/** What gather would read for `a`, with `over` on top. */
function observe(a: Agent, over: Partial<Observed> = {}): Observed {
  return { agent: a, configMaps: new Map(), secrets: new Map(), services: [], children: {}, teammates: [], ...over };
}

/** The cache after every planned child was applied as planned. */
function cacheOf(objects: readonly { kind?: string; metadata?: { name?: string } }[]): ObservedChildren {
  const byKind = (kind: string, name?: string) => objects.find((o) => o.kind === kind && (name === undefined || o.metadata?.name === name)) as never;
  return {
    serviceAccount: byKind('ServiceAccount'),
    configMap: byKind('ConfigMap', 'devbot-config'),
    service: byKind('Service'),
    networkPolicy: byKind('NetworkPolicy'),
    statefulSet: byKind('StatefulSet'),
    ...(byKind('RoleBinding') ? { roleBinding: byKind('RoleBinding') } : {}),
  };
}

const inline = agent({ persona: { instructions: 'You are devbot.' }, egress: { allow: ['github.com'] } });

describe('plan: a sound Agent', () => {
  it('applies every child in order, the StatefulSet last, and blocks nothing', () => {
    const p = plan(observe(inline), settings, kept);
    expect(p.blocked).toBeUndefined();
    expect(p.apply.map((o) => o.kind)).toEqual(['ServiceAccount', 'ConfigMap', 'Service', 'NetworkPolicy', 'StatefulSet']);
    expect(p.checks.map((c) => [c.type, c.status, c.reason])).toEqual([
      ['SpecValid', 'True', 'AsExpected'],
      ['PersonaResolved', 'True', 'AsExpected'],
      ['CredentialsResolved', 'True', 'AsExpected'],
      ['ReferencesResolved', 'True', 'AsExpected'],
    ]);
    expect(p.egressCa).toBeUndefined();
    expect(p.events).toEqual([]);
  });

  it('writes nothing when the cache already holds what it renders (an Agent at rest)', () => {
    const first = plan(observe(inline), settings, kept);
    const again = plan(observe(inline, { children: cacheOf(first.apply) }), settings, kept);
    expect(again.apply).toEqual([]);
    expect(again.deleteRoleBinding).toBeUndefined();
  });

  it('mints a CA only when the observed Secret says so; an Event says why only when it replaces one (the first CA is no news)', () => {
    const hash = allowlistHash(inline);
    const valid: V1Secret = {
      metadata: { annotations: { [ANNOTATION_CA_NOT_AFTER]: '2027-01-01T00:00:00Z', [ANNOTATION_CA_ALLOWLIST]: hash } },
      data: { 'ca.crt': Buffer.from('CERT').toString('base64'), 'ca.key': Buffer.from('KEY').toString('base64') },
    };
    expect(planCa(observe(inline, { egressCaSecret: valid }), now)).toEqual(kept);
    expect(planCa(observe(inline), now)).toEqual({ action: 'generate', why: 'no CA yet' });
    const minted: CaMaterial = { action: 'generate', why: 'no CA yet', minted: { certPem: 'NEWCERT', keyPem: 'NEWKEY', notAfter: new Date('2027-06-01T00:00:00Z') } };
    const p = plan(observe(inline), settings, minted);
    expect(p.egressCa?.secret.metadata?.name).toBe('devbot-egress-ca');
    expect(p.egressCa?.secret.metadata?.annotations?.[ANNOTATION_CA_ALLOWLIST]).toBe(hash);
    expect(p.egressCa?.replaces).toBe(false);
    expect(p.events).toEqual([]);
    const expired: V1Secret = { ...valid, metadata: { annotations: { [ANNOTATION_CA_NOT_AFTER]: '2026-01-01T00:00:00Z', [ANNOTATION_CA_ALLOWLIST]: hash } } };
    const rotated = plan(observe(inline, { egressCaSecret: expired }), settings, { ...minted, why: 'the CA expires 2026-01-01T00:00:00.000Z' });
    expect(rotated.egressCa?.replaces).toBe(true);
    expect(rotated.events).toEqual([{ type: 'Normal', reason: 'EgressCaGenerated', note: 'generated the egress CA in Secret devbot-egress-ca: the CA expires 2026-01-01T00:00:00.000Z' }]);
  });

  it('stores no new CA for an Agent whose persona cannot be assembled (it is blocked)', () => {
    const minted: CaMaterial = { action: 'generate', why: 'no CA yet', minted: { certPem: 'NEWCERT', keyPem: 'NEWKEY', notAfter: new Date('2027-06-01T00:00:00Z') } };
    const p = plan(observe(inline), { ...settings, shared: { ...settings.shared, settingsJson: '{not json' } }, minted);
    expect(p.blocked?.reason).toBe('InvalidSpec');
    expect(p.egressCa).toBeUndefined();
    expect(p.events).toEqual([]);
    expect(p.apply).toEqual([]);
  });

  it('deletes the RoleBinding of an earlier spec.kubernetesAccess', () => {
    const withAccess = agent({ persona: { instructions: 'hi' }, kubernetesAccess: { clusterRole: 'view' } });
    const o = observe(withAccess, { clusterRole: { name: 'view', found: true }, apiServer: { slices: [] } });
    const leftover = plan(o, settings, kept).apply.find((c) => c.kind === 'RoleBinding');
    expect(leftover).toBeDefined();
    expect(plan(observe(inline, { children: { roleBinding: leftover as never } }), settings, kept).deleteRoleBinding).toBe('devbot-access');
  });

  it('keeps the live volume claim templates when spec.storage changed, and says what differs', () => {
    const first = plan(observe(inline), settings, kept);
    const live = structuredClone(first.apply.find((c) => c.kind === 'StatefulSet')) as V1StatefulSet;
    const bigger = agent({ persona: { instructions: 'You are devbot.' }, egress: { allow: ['github.com'] }, storage: { home: '9Gi', workspace: '20Gi' } });
    const p = plan(observe(bigger, { children: { statefulSet: live } }), settings, kept);
    expect(p.storageDrift).toMatch(/home/);
    expect(p.statefulSet?.spec?.volumeClaimTemplates).toEqual(live.spec?.volumeClaimTemplates);
  });
});

describe('plan: the policy chain', () => {
  const persona = agent({ persona: { configMapRef: { name: 'persona' } }, egress: { allow: ['github.com'] } });

  it('blocks on a missing persona ConfigMap, applies nothing and needs no CA; polls for its creation', () => {
    const o = observe(persona, { configMaps: new Map([['persona', undefined]]) });
    const p = plan(o, settings);
    expect(p.blocked).toEqual({
      reason: 'PersonaNotFound',
      message: 'spec.persona.configMapRef: ConfigMap team-a/persona not found; create it or fix the name',
      retry: 'poll',
    });
    expect(p.apply).toEqual([]);
    expect(planCa(o, now)).toBeUndefined();
  });

  it('renders the persona ConfigMap\'s files once it is there', () => {
    const cm: V1ConfigMap = { data: { 'CLAUDE.md': 'You are the persona.' } };
    const p = plan(observe(persona, { configMaps: new Map([['persona', cm]]) }), settings, kept);
    expect(p.blocked).toBeUndefined();
    const config = p.apply.find((c) => c.kind === 'ConfigMap') as V1ConfigMap;
    expect(Object.values(config.data ?? {}).join('\n')).toContain('You are the persona.');
  });

  it('names every failing check, blocks on the first, and retries on a timer only when a reference is at fault', () => {
    const bad = agent({
      persona: { instructions: 'hi' },
      egress: { allow: ['*.com'], credentials: [{ name: 'gh', hosts: ['x.com'], secretRef: { name: 'tokens', key: 'token' } }] },
    });
    const onlySpec = planChecks(observe(bad, { secrets: new Map([['tokens', { data: { token: 'dA==' } }]]) }));
    expect(onlySpec.blocked).toMatchObject({ reason: 'InvalidSpec', retry: 'on-change' });
    const both = planChecks(observe(bad, { secrets: new Map([['tokens', undefined]]) }));
    expect(both.blocked).toMatchObject({ reason: 'InvalidSpec', retry: 'poll' });
    expect(both.checks.filter((c) => c.status === 'False').map((c) => c.reason)).toEqual(['InvalidSpec', 'CredentialsMissing']);
  });

  it('blocks on a missing ClusterRole or StorageClass, naming the field and the fix', () => {
    const refs = agent({ persona: { instructions: 'hi' }, kubernetesAccess: { clusterRole: 'nope' }, storage: { storageClassName: 'fast' } });
    const p = plan(observe(refs, { clusterRole: { name: 'nope', found: false }, storageClass: { name: 'fast', found: false } }), settings);
    expect(p.blocked?.reason).toBe('ReferenceNotFound');
    expect(p.blocked?.message).toContain('spec.kubernetesAccess.clusterRole: ClusterRole "nope" not found');
    expect(p.blocked?.message).toContain('spec.storage.storageClassName: StorageClass "fast" not found');
  });

  it('blocks, until the configuration changes, when the persona cannot be assembled', () => {
    const broken: PlanSettings = { ...settings, shared: { ...settings.shared, settingsJson: '[1]' } };
    const p = plan(observe(inline), broken, kept);
    expect(p.blocked).toMatchObject({ reason: 'InvalidSpec', retry: 'on-change' });
    expect(p.apply).toEqual([]);
  });

  it('says which in-cluster Service has no cluster IP, and still renders', () => {
    const nats = agent({ persona: { instructions: 'hi' }, egress: { enforcement: 'iptables' }, events: { natsUrl: 'nats://nats.messaging.svc:4222', subjects: ['x'] } });
    const o = observe(nats, { services: [{ ref: { host: 'nats.messaging.svc', name: 'nats', namespace: 'messaging', port: 4222 } }] });
    const p = plan(o, settings, kept);
    expect(p.blocked).toBeUndefined();
    expect(p.notes).toEqual([expect.objectContaining({ level: 'warn', fields: { services: ['messaging/nats (not found)'] } })]);
  });
});
