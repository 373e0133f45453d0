import type { KubernetesObject } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { Agent } from '../api/agent.ts';
import { renderRoster, rosterMember } from '../render/roster.ts';
import { WrittenStatuses } from './agent.ts';

function agent(name: string, resourceVersion: string, phase?: string): Agent {
  return Agent.parse({
    apiVersion: 'agentsmith.dev/v1alpha1',
    kind: 'Agent',
    metadata: { name, namespace: 'ns', uid: `uid-${name}`, generation: 1, resourceVersion, labels: { 'agentsmith.dev/shard': 'a', other: 'x' } },
    spec: { team: 'core', repos: [{ name: 'acme/app' }], github: { login: `${name}-bot` } },
    ...(phase ? { status: { phase } } : {}),
  });
}

/** The Agent as the informer caches it, at `resourceVersion`. */
const cached = (resourceVersion: string): KubernetesObject => ({ apiVersion: 'agentsmith.dev/v1alpha1', kind: 'Agent', metadata: { name: 'a', namespace: 'ns', resourceVersion } });

describe('WrittenStatuses', () => {
  const written = { write: true, status: { phase: 'Ready' } } as const;

  it('bridges a written status until the watch brings the Agent back, then keeps nothing', () => {
    const w = new WrittenStatuses();
    const before = agent('a', '10', 'Pending');
    w.record('ns/a', before, written, '10');
    expect(w.latest('ns/a', cached('10'), before).status?.phase).toBe('Ready');
    w.seen('ns/a', '11'); // our write's echo
    expect(w.latest('ns/a', cached('10'), before).status?.phase).toBe('Pending');
  });

  it('keeps nothing when the cache has already moved past the version written over', () => {
    const w = new WrittenStatuses();
    const before = agent('a', '10', 'Pending');
    w.record('ns/a', before, written, '11');
    expect(w.latest('ns/a', cached('10'), before).status?.phase).toBe('Pending');
  });
});

describe('rosterMember', () => {
  it('renders the same roster as the whole Agent, from a copy of only what the roster reads', () => {
    const team = [agent('a', '1'), agent('b', '2')];
    expect(renderRoster('core', 'ns', team.map(rosterMember))).toEqual(renderRoster('core', 'ns', team));
    expect(rosterMember(team[0]!)).toEqual({
      metadata: { name: 'a', uid: 'uid-a', labels: { 'agentsmith.dev/shard': 'a' } },
      spec: { team: 'core', harness: { kind: team[0]!.spec.harness.kind }, github: { login: 'a-bot' }, repos: [{ name: 'acme/app' }] },
    });
  });
});
