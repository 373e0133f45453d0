/**
 * Writes crds/agents.agentsmith.dev.yaml from the zod schema (operator/src/api).
 * Run with `npm run gen:crds`; a test fails when the committed file is stale.
 * The Helm chart's crds/ folder is written too, so the two never disagree.
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderCrdYaml, CRD_FILES } from '../operator/src/api/crd-yaml.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const text = renderCrdYaml();
for (const rel of CRD_FILES) {
  const file = join(root, rel);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, text);
  console.log(`wrote ${rel}`);
}
