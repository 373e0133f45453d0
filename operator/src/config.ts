import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SharedRules } from './render/persona.ts';

/** Default agent image; a release sets it to the image built from this tree's Dockerfile. */
export const DEFAULT_AGENT_IMAGE = 'ghcr.io/agent-smith/agent:0.1.0';

/** `agents/_shared` of this repository (also where the operator image puts it). */
export const DEFAULT_SHARED_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../agents/_shared');

/**
 * Reads the shared rules every agent inherits: `CLAUDE.md` and `settings.json` in `dir`.
 * @throws Error naming the missing file and the flag that sets the directory.
 */
export function loadSharedRules(dir: string): SharedRules {
  const read = (file: string) => {
    try {
      return readFileSync(join(dir, file), 'utf8');
    } catch {
      throw new Error(`cannot read ${join(dir, file)}: point --shared-dir at a folder with CLAUDE.md and settings.json`);
    }
  };
  return { claudeMd: read('CLAUDE.md'), settingsJson: read('settings.json') };
}
