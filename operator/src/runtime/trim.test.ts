import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { childCache, LAST_APPLIED_ANNOTATION, podCache, trimMetadata } from './trim.ts';

const pod = (): V1Pod => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: {
    name: 'a-0',
    namespace: 'ns',
    resourceVersion: '42',
    labels: { 'app.kubernetes.io/instance': 'a' },
    annotations: { [LAST_APPLIED_ANNOTATION]: '{"huge":true}', keep: 'me' },
    managedFields: [{ manager: 'kubelet', operation: 'Update', fieldsType: 'FieldsV1', fieldsV1: { 'f:status': {} } }],
  },
  spec: { containers: [{ name: 'agent', image: 'x' }] },
  status: { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] },
});

describe('trimMetadata', () => {
  it('drops managed fields and the last-applied annotation, keeps the rest, leaves the input alone', () => {
    const input = pod();
    const out = trimMetadata(input);
    expect(out.metadata).toEqual({ name: 'a-0', namespace: 'ns', resourceVersion: '42', labels: { 'app.kubernetes.io/instance': 'a' }, annotations: { keep: 'me' } });
    expect(out.spec).toBe(input.spec);
    expect(out.status).toBe(input.status);
    expect(input).toEqual(pod());
  });

  it('returns an object with nothing to drop as it is', () => {
    const input: V1Pod = { metadata: { name: 'b', annotations: { keep: 'me' } } };
    expect(trimMetadata(input)).toBe(input);
  });
});

describe('childCache', () => {
  const meta = {
    name: 'a',
    namespace: 'ns',
    uid: 'u',
    resourceVersion: '9',
    generation: 2,
    labels: { 'app.kubernetes.io/instance': 'a' },
    annotations: { 'agentsmith.dev/applied-hash': 'h' },
    ownerReferences: [{ apiVersion: 'agentsmith.dev/v1alpha1', kind: 'Agent', name: 'a', uid: 'x' }],
    managedFields: [{ manager: 'agent-smith', operation: 'Apply', apiVersion: 'v1', time: new Date('2026-12-01T10:00:00Z'), fieldsType: 'FieldsV1', fieldsV1: { 'f:data': {} } }],
  };
  const kept = { name: 'a', namespace: 'ns', uid: 'u', resourceVersion: '9', generation: 2, labels: meta.labels, annotations: meta.annotations, managedFields: [{ manager: 'agent-smith', operation: 'Apply', time: new Date('2026-12-01T10:00:00Z') }] };

  it("keeps of an Agent's ConfigMap its identity, labels, annotations and who wrote it when, not its data", () => {
    expect(childCache.configMap({ apiVersion: 'v1', kind: 'ConfigMap', metadata: meta, data: { 'CLAUDE.md': 'x'.repeat(5000) } })).toEqual({ apiVersion: 'v1', kind: 'ConfigMap', metadata: kept });
  });

  it('keeps a team roster whole but for managed fields', () => {
    const roster = { metadata: { ...meta, labels: { 'app.kubernetes.io/component': 'team-roster' } }, data: { 'roster.md': 'r' } };
    expect(childCache.configMap(roster).data).toEqual({ 'roster.md': 'r' });
    expect(childCache.configMap(roster).metadata?.managedFields).toBeUndefined();
  });

  it("keeps a StatefulSet's status and claim templates, not the rest of its spec", () => {
    const sts = { metadata: meta, spec: { replicas: 1, template: { spec: { containers: [] } }, volumeClaimTemplates: [{ metadata: { name: 'home' } }] }, status: { readyReplicas: 1 } };
    expect(childCache.statefulSet(sts)).toEqual({ metadata: kept, spec: { volumeClaimTemplates: [{ metadata: { name: 'home' } }] }, status: { readyReplicas: 1 } });
  });

  it("keeps the egress CA Secret's data", () => {
    expect(childCache.secret({ metadata: meta, type: 'Opaque', data: { 'ca.crt': 'Y2E=' } })).toEqual({ metadata: kept, type: 'Opaque', data: { 'ca.crt': 'Y2E=' } });
  });
});

describe('podCache', () => {
  it("keeps what an Agent's status reads of its pod: labels, phase, conditions, container states and restarts", () => {
    const input: V1Pod = {
      ...pod(),
      status: {
        phase: 'Running',
        podIP: '10.0.0.1',
        qosClass: 'Burstable',
        conditions: [{ type: 'Ready', status: 'False', reason: 'ContainersNotReady', message: 'containers with unready status: [agent]', lastTransitionTime: new Date() }],
        containerStatuses: [{ name: 'agent', ready: false, restartCount: 3, image: 'agent:1', imageID: 'sha256:x', containerID: 'containerd://y', state: { waiting: { reason: 'CrashLoopBackOff' } }, lastState: { terminated: { exitCode: 137 } } }],
      },
    };
    expect(podCache(input)).toEqual({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'a-0', namespace: 'ns', resourceVersion: '42', labels: { 'app.kubernetes.io/instance': 'a' } },
      status: {
        phase: 'Running',
        conditions: [{ type: 'Ready', status: 'False', reason: 'ContainersNotReady', message: 'containers with unready status: [agent]' }],
        containerStatuses: [{ name: 'agent', ready: false, restartCount: 3, image: '', imageID: '', state: { waiting: { reason: 'CrashLoopBackOff' } }, lastState: { terminated: { exitCode: 137 } } }],
      },
    });
  });
});
