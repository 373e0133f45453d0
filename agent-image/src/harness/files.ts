/**
 * Small file helpers for setup: atomic writes (a crash never leaves half a file) and
 * JSON merges that keep what the CLI wrote itself.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** Writes `data` to `file` through a temporary sibling and a rename; creates parent folders. */
export async function writeFileAtomic(file: string, data: string, mode = 0o644): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, data, { mode });
  await rename(tmp, file);
}

/** Reads a JSON object; a missing file is `{}`. @throws Error naming the file when it is not a JSON object. */
export async function readJsonObject(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw err;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file} is not valid JSON (${(err as Error).message}); fix or delete it`);
  }
  if (!isObject(value)) throw new Error(`${file} must hold a JSON object`);
  return value;
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Deep merge: `over` wins on scalars, objects merge, arrays concatenate without duplicates. */
export function mergeJson(base: unknown, over: unknown): unknown {
  if (isObject(base) && isObject(over)) {
    const out: Record<string, unknown> = { ...base };
    for (const [k, v] of Object.entries(over)) out[k] = k in out ? mergeJson(out[k], v) : v;
    return out;
  }
  if (Array.isArray(base) && Array.isArray(over)) {
    const seen = new Set(base.map((x: unknown) => JSON.stringify(x)));
    return [...(base as unknown[]), ...(over as unknown[]).filter((x) => !seen.has(JSON.stringify(x)))];
  }
  return over;
}

/** Quotes one argument for a POSIX shell (hook commands are run through `sh -c`). */
export function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}
