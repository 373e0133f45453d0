import { describe, expect, it } from 'vitest';
import { Agent } from './api/agent.ts';
import { LABEL_SHARD, MANAGED_SELECTOR } from './api/constants.ts';
import { renderAll } from './render/index.ts';
import { childSelector } from './sharding.ts';

function agent(name: string, shard?: string): Agent {
  return Agent.parse({
    apiVersion: 'agentsmith.dev/v1alpha1',
    kind: 'Agent',
    metadata: { name, namespace: 'ns', uid: `00000000-0000-0000-0000-${name.padStart(12, '0')}`, generation: 1, ...(shard ? { labels: { [LABEL_SHARD]: shard } } : {}) },
    spec: { team: 'core', repos: [{ name: 'acme/app' }] },
  });
}

function render(a: Agent, team: Agent[]) {
  return renderAll(a, { image: 'x/agent:1', shared: { claudeMd: '', settingsJson: '{}' }, egressCaCertPem: 'C', egressCaKeyPem: 'K', namespaceAgents: team, persona: { claudeMd: '', subagents: {} } });
}

describe('childSelector', () => {
  it('narrows the children to the shard when the Agent selector speaks only of the shard label', () => {
    for (const sel of ['agentsmith.dev/shard=a', 'agentsmith.dev/shard==a', 'agentsmith.dev/shard!=a', 'agentsmith.dev/shard in (a, b)', 'agentsmith.dev/shard notin (a)', 'agentsmith.dev/shard', '!agentsmith.dev/shard', 'agentsmith.dev/shard in (a,b), agentsmith.dev/shard!=c']) {
      const got = childSelector(sel);
      expect(got.sharded, sel).toBe(true);
      expect(got.selector.startsWith(`${MANAGED_SELECTOR},`), sel).toBe(true);
    }
    expect(childSelector(' agentsmith.dev/shard = a ').selector).toBe(`${MANAGED_SELECTOR},agentsmith.dev/shard = a`);
  });

  it('keeps every managed child when the selector names any other label (the children do not carry it)', () => {
    for (const sel of [undefined, '', 'shard=a', '!canary', 'agentsmith.dev/shard=a,tier=gold', 'agentsmith.dev/shardx=a', 'x.agentsmith.dev/shard=a', 'agentsmith.dev/team in (a)']) {
      expect(childSelector(sel), String(sel)).toEqual({ selector: MANAGED_SELECTOR, sharded: false });
    }
  });
});

describe('the shard label on children', () => {
  it("is copied from the Agent onto every child and the pod, so a shard's selector finds them", () => {
    const a = agent('a1', 'a');
    const d = render(a, [a, agent('a2', 'a')]);
    for (const o of [d.serviceAccount, d.configMap, d.roster, d.service, d.networkPolicy, d.statefulSet]) expect(o?.metadata?.labels?.[LABEL_SHARD], o?.kind).toBe('a');
    expect(d.statefulSet.spec?.template.metadata?.labels?.[LABEL_SHARD]).toBe('a');
    expect(render(agent('u1'), []).statefulSet.metadata?.labels?.[LABEL_SHARD]).toBeUndefined();
  });

  it('is left off a roster whose team is split across shards (not supported; no shard claims it)', () => {
    const a = agent('a1', 'a');
    expect(render(a, [a, agent('b1', 'b')]).roster?.metadata?.labels?.[LABEL_SHARD]).toBeUndefined();
  });
});
