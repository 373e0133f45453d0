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

/** A JSON value. */
export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export function isObject(v: unknown): v is { [k: string]: Json } {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Parses text that must hold a JSON object (setup: persona files, the CLI's own state files).
 * @throws the error `toError` makes (default Error) naming `source`: "<source> is not valid
 * JSON: ..." or "<source> must be a JSON object".
 */
export function parseJsonObject(text: string, source: string, toError: (message: string) => Error = (m) => new Error(m)): { [k: string]: Json } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw toError(`${source} is not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(value)) throw toError(`${source} must be a JSON object`);
  return value;
}

/** Reads a file that must hold a JSON object; a missing file is `{}`. @throws Error naming the file otherwise. */
export async function readJsonObject(file: string): Promise<{ [k: string]: Json }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw err;
  }
  return parseJsonObject(text, file);
}

/** Deep merge of JSON objects: `over` wins; arrays are concatenated without duplicates (hook and permission lists add up). */
export function mergeJson(base: Json, over: Json): Json {
  if (isObject(base) && isObject(over)) {
    const out: { [k: string]: Json } = { ...base };
    for (const [k, v] of Object.entries(over)) out[k] = k in out ? mergeJson(out[k] as Json, v) : v;
    return out;
  }
  if (Array.isArray(base) && Array.isArray(over)) {
    const seen = new Set(base.map((x) => JSON.stringify(x)));
    return [...base, ...over.filter((x) => !seen.has(JSON.stringify(x)))];
  }
  return over;
}

/** Quotes one argument for a POSIX shell (hook commands are run through `sh -c`). */
export function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}
