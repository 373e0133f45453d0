import type { V1ConfigMap } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { ANNOTATION_APPLIED_HASH, appliedHash, isSubset, needsApply, withAppliedHash, WrittenVersions } from './subset.ts';

describe('isSubset', () => {
  it('ignores fields the server added and compares the ones we set', () => {
    const desired = { metadata: { name: 'a', labels: { x: '1' } }, spec: { containers: [{ name: 'c', image: 'i' }] } };
    const live = { metadata: { name: 'a', labels: { x: '1', other: '2' }, uid: 'u' }, spec: { containers: [{ name: 'c', image: 'i', imagePullPolicy: 'Always' }] }, status: {} };
    expect(isSubset(desired, live)).toBe(true);
  });

  it('sees drift in a value, a missing key, or a list of another length', () => {
    const base = { spec: { replicas: 1, list: [1, 2] } };
    expect(isSubset(base, { spec: { replicas: 0, list: [1, 2] } })).toBe(false);
    expect(isSubset(base, { spec: { list: [1, 2] } })).toBe(false);
    expect(isSubset(base, { spec: { replicas: 1, list: [1] } })).toBe(false);
    expect(isSubset(base, { spec: { replicas: 1, list: [1, 2, 3] } })).toBe(false);
  });
});

describe('needsApply', () => {
  const desired: V1ConfigMap = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'a-config', namespace: 'ns' }, data: { 'CLAUDE.md': 'You are a.' } };
  const applied = withAppliedHash(desired);
  /** The cache's view of the applied ConfigMap (runtime/trim.ts keeps metadata only), at `resourceVersion`, with managed-fields times. */
  const cached = (resourceVersion: string, managedFields: Array<{ manager: string; time: string; subresource?: string }> = []): V1ConfigMap => ({
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'a-config', namespace: 'ns', resourceVersion, annotations: applied.metadata?.annotations, managedFields: managedFields.map((f) => ({ ...f, time: new Date(f.time) })) },
  });

  it('applies a child that is missing, or whose rendering changed', () => {
    expect(needsApply(desired, undefined, undefined, 'agent-smith')).toBe(true);
    expect(needsApply({ ...desired, data: { 'CLAUDE.md': 'You are b.' } } as V1ConfigMap, cached('5'), { resourceVersion: '5' }, 'agent-smith')).toBe(true);
  });

  it('leaves alone the version it wrote itself, and applies over one someone else wrote since (drift)', () => {
    expect(needsApply(desired, cached('5'), { resourceVersion: '5' }, 'agent-smith')).toBe(false);
    expect(needsApply(desired, cached('6'), { resourceVersion: '5' }, 'agent-smith')).toBe(true);
  });

  it('tells a StatefulSet by its generation, so its controller\'s status writes are not drift', () => {
    const sts = { kind: 'StatefulSet', metadata: { name: 'a', resourceVersion: '9', generation: 2, annotations: { [ANNOTATION_APPLIED_HASH]: appliedHash({ kind: 'StatefulSet' }) } } };
    expect(needsApply({ kind: 'StatefulSet' }, sts, { resourceVersion: '7', generation: 2 }, 'agent-smith')).toBe(false);
    expect(needsApply({ kind: 'StatefulSet' }, { ...sts, metadata: { ...sts.metadata, generation: 3 } }, { resourceVersion: '7', generation: 2 }, 'agent-smith')).toBe(true);
  });

  it('after a restart (no version recorded), reads who changed it last from the managed-fields times', () => {
    const ours = { manager: 'agent-smith', time: '2026-12-01T10:00:00Z' };
    expect(needsApply(desired, cached('5', [ours, { manager: 'kube-controller-manager', subresource: 'status', time: '2026-12-01T11:00:00Z' }]), undefined, 'agent-smith')).toBe(false);
    expect(needsApply(desired, cached('5', [ours, { manager: 'kubectl-edit', time: '2026-12-01T09:00:00Z' }]), undefined, 'agent-smith')).toBe(false);
    expect(needsApply(desired, cached('5', [ours, { manager: 'kubectl-edit', time: '2026-12-01T10:00:01Z' }]), undefined, 'agent-smith')).toBe(true);
  });

  it('compares content for a child written before the operator kept hashes', () => {
    expect(needsApply(desired, { ...desired, metadata: { ...desired.metadata, resourceVersion: '3' } }, undefined, 'agent-smith')).toBe(false);
    expect(needsApply(desired, { ...desired, data: { 'CLAUDE.md': 'tampered' } } as V1ConfigMap, undefined, 'agent-smith')).toBe(true);
  });
});

describe('WrittenVersions', () => {
  it('remembers what an apply returned until the child is gone', () => {
    const w = new WrittenVersions();
    w.record({ kind: 'StatefulSet', metadata: { name: 'a', namespace: 'ns', resourceVersion: '7', generation: 2 } });
    expect(w.lookup('StatefulSet', 'ns', 'a')).toEqual({ resourceVersion: '7', generation: 2 });
    w.forget('StatefulSet', 'ns', 'a');
    expect(w.lookup('StatefulSet', 'ns', 'a')).toBeUndefined();
  });
});
