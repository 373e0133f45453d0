import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AGENT_REFERENCE_FILE, GEN_DOCS_COMMAND, renderAgentReference } from './agent-reference.ts';

const root = join(import.meta.dirname, '../..');

describe('the Agent field reference', () => {
  it(`is up to date in ${AGENT_REFERENCE_FILE} (run \`${GEN_DOCS_COMMAND}\` after changing the schema)`, () => {
    let committed: string;
    try {
      committed = readFileSync(join(root, AGENT_REFERENCE_FILE), 'utf8');
    } catch {
      throw new Error(`${AGENT_REFERENCE_FILE} is missing: run \`${GEN_DOCS_COMMAND}\` and commit it`);
    }
    expect(committed, `${AGENT_REFERENCE_FILE} is stale: run \`${GEN_DOCS_COMMAND}\` and commit it`).toBe(renderAgentReference());
  });

  it('names every spec field with its type, default and description, as kubectl explain would', () => {
    const page = renderAgentReference();
    expect(page).toContain('| `spec.egress.enforcement` | string | `"iptables"` | iptables: transparent redirect');
    expect(page).toContain('One of `iptables`, `proxy-env`.');
    expect(page).toContain('| `spec.egress.credentials[].secretRef.key` | string | **required** |');
    expect(page).toContain('| `spec.github.watchPullRequests.intervalSeconds` | integer | `300` | Seconds between polls while the CLI is idle. 30 to 86400. |');
    // A CEL rule's message, and a pipe inside a pattern that must not split the table cell.
    expect(page).toContain('Rule: set either persona.instructions or persona.configMapRef, not both.');
    expect(page).toContain('Pattern `^(https?\\|ssh\\|git\\|file):\\/\\/\\S+$`');
    for (const line of page.split('\n').filter((l) => l.startsWith('| `spec'))) {
      expect(line.replace(/\\\|/g, '').split('|').length, line).toBe(6);
      expect(line.split('|')[4]!.trim(), `${line}: no description`).not.toBe('');
    }
  });
});
