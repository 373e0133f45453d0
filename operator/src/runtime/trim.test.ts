import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { LAST_APPLIED_ANNOTATION, statusOnly, trimMetadata } from './trim.ts';

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

describe('statusOnly', () => {
  it('keeps kind, trimmed metadata and status, and drops the spec', () => {
    const out = statusOnly(pod());
    expect(out).toEqual({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'a-0', namespace: 'ns', resourceVersion: '42', labels: { 'app.kubernetes.io/instance': 'a' }, annotations: { keep: 'me' } },
      status: { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] },
    });
  });
});
