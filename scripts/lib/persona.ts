/**
 * Turns a persona folder (agents/<name>/: CLAUDE.md, settings.json, mcp.json,
 * subagents/*.md) into the ConfigMap an Agent's `spec.persona.configMapRef` names.
 * ConfigMap keys cannot hold `/`, so `subagents/x.md` becomes the key `subagent.x.md`.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { V1ConfigMap } from '@kubernetes/client-node';

/**
 * @param folder persona folder
 * @param name ConfigMap name
 * @throws Error when the folder has no CLAUDE.md
 */
export function personaConfigMap(folder: string, name: string, namespace?: string): V1ConfigMap {
  const data: Record<string, string> = {};
  const claude = join(folder, 'CLAUDE.md');
  if (!existsSync(claude)) throw new Error(`${folder} has no CLAUDE.md; a persona folder needs one`);
  data['CLAUDE.md'] = readFileSync(claude, 'utf8');
  for (const file of ['settings.json', 'mcp.json']) {
    const path = join(folder, file);
    if (existsSync(path)) data[file] = readFileSync(path, 'utf8');
  }
  const subDir = join(folder, 'subagents');
  if (existsSync(subDir)) {
    for (const file of readdirSync(subDir).sort()) {
      if (file.endsWith('.md')) data[`subagent.${file}`] = readFileSync(join(subDir, file), 'utf8');
    }
  }
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name, ...(namespace ? { namespace } : {}), labels: { 'agentsmith.dev/persona': 'true' } },
    data,
  };
}
