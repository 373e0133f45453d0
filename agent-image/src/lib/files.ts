/**
 * Small file helpers: atomic writes (a crash never leaves half a file) and shell quoting.
 * The JSON layering of settings files is the contract's (contract/settings.ts).
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** Writes `data` to `file` through a temporary sibling and a rename; creates parent folders. */
export async function writeFileAtomic(file: string, data: string, mode = 0o644): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, data, { mode });
  await rename(tmp, file);
}

/** Quotes one argument for a POSIX shell (hook commands are run through `sh -c`). */
export function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}
