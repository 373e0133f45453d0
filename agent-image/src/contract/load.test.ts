import { describe, expect, it } from 'vitest';
import { ContractError, parseContract } from './load.ts';

const good = {
  version: 1,
  agent: { name: 'devbot', namespace: 'default' },
  harness: { kind: 'claude', args: [] },
  repos: [],
  workdir: '/workspace',
  files: { claudeMd: 'CLAUDE.md', settingsJson: 'settings.json', subagents: {} },
  egress: { allow: [], allowCidrs: [], enforcement: 'iptables', proxyPort: 15001, credentials: [] },
};

describe('parseContract', () => {
  it('accepts a contract as the operator renders it and fills the supervisor defaults', () => {
    const c = parseContract(JSON.stringify(good));
    expect(c.supervisor).toMatchObject({ restartInitialDelayMs: 250, crashLoopRestarts: 5 });
  });

  it('names every bad field by its path', () => {
    const bad = { ...good, harness: { kind: 'vim', args: [] }, egress: { ...good.egress, proxyPort: 'x' } };
    expect(() => parseContract(JSON.stringify(bad), 'contract.json')).toThrow(ContractError);
    expect(() => parseContract(JSON.stringify(bad), 'contract.json')).toThrow(/contract\.json: invalid pod contract: harness\.kind: .*; egress\.proxyPort: /);
  });

  it('says what to do about a contract version it does not know, and about text that is not JSON', () => {
    expect(() => parseContract(JSON.stringify({ ...good, version: 2 }))).toThrow(/version: this image understands contract version 1, got 2; run an agent image that matches the operator/);
    expect(() => parseContract('{', 'contract.json')).toThrow(/contract\.json: not valid JSON/);
  });
});
