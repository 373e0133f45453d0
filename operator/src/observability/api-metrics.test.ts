import { describe, expect, it } from 'vitest';
import { classifyRequest } from './api-metrics.ts';

describe('classifyRequest', () => {
  it.each([
    ['GET', '/api/v1/namespaces/a/pods/p', 'get', 'pods'],
    ['GET', '/api/v1/pods?labelSelector=x', 'list', 'pods'],
    ['GET', '/apis/apps/v1/statefulsets?watch=true&resourceVersion=1', 'watch', 'statefulsets'],
    ['PATCH', '/apis/apps/v1/namespaces/a/statefulsets/s?fieldManager=agent-smith', 'patch', 'statefulsets'],
    ['PATCH', '/apis/agentsmith.dev/v1alpha1/namespaces/a/agents/x/status', 'patch', 'agents/status'],
    ['POST', '/apis/events.k8s.io/v1/namespaces/a/events', 'create', 'events'],
    ['PUT', '/apis/coordination.k8s.io/v1/namespaces/a/leases/l', 'update', 'leases'],
    ['DELETE', '/apis/rbac.authorization.k8s.io/v1/namespaces/a/rolebindings/r', 'delete', 'rolebindings'],
  ])('%s %s is %s of %s', (method, path, verb, resource) => {
    expect(classifyRequest(method, path)).toEqual({ verb, resource });
  });
});
