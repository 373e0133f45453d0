/**
 * Writes the generated pages of docs/: today the Agent field reference
 * (docs/reference/agent.md) from the CRD schema (scripts/lib/agent-reference.ts).
 * Run with `npm run gen:docs` after changing operator/src/api/agent.ts; a unit test
 * (scripts/lib/agent-reference.test.ts) fails when the committed page is stale.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AGENT_REFERENCE_FILE, renderAgentReference } from './lib/agent-reference.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const file = join(root, AGENT_REFERENCE_FILE);
mkdirSync(dirname(file), { recursive: true });
writeFileSync(file, renderAgentReference());
console.log(`wrote ${AGENT_REFERENCE_FILE}`);
