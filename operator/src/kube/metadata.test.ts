import { describe, expect, it } from 'vitest';
import { identityOnly } from './metadata.ts';

describe('identityOnly', () => {
  it('keeps name, namespace, uid and resourceVersion, and drops everything else a Secret could carry', () => {
    const secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: {
        name: 'tokens',
        namespace: 'ns',
        uid: 'u-1',
        resourceVersion: '42',
        labels: { a: 'b' },
        // kubectl apply copies the whole object, values included, into this annotation.
        annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"data":{"token":"c2VjcmV0"}}' },
        managedFields: [{ manager: 'kubectl' }],
      },
      data: { token: 'c2VjcmV0' },
    };
    const kept = identityOnly(secret);
    expect(kept).toEqual({ metadata: { name: 'tokens', namespace: 'ns', uid: 'u-1', resourceVersion: '42' } });
    expect(JSON.stringify(kept)).not.toContain('c2VjcmV0');
  });
});
