/**
 * How settings files are layered: the operator merges the team's shared rules and the
 * agent's persona (operator/src/render/persona.ts), then setup merges agent-smith's own
 * settings over that inside the pod (plugins/harness): one rule for every layer, so a
 * user's settings.json means the same wherever it is merged. Deep merge, the later layer
 * wins; arrays add up without duplicates (hook and permission lists).
 */
import { readFile } from 'node:fs/promises';

/** A JSON value. */
export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** A JSON object (not null, not an array). */
export function isJsonObject(v: unknown): v is { [k: string]: Json } {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Parses text that must hold a JSON object (setup: persona files, the CLI's own state files).
 * @throws the error `toError` makes (default Error) naming `source`: "<source> is not valid
 * JSON: a syntax error at position N (line L column C)" or "<source> must be a JSON object".
 * The parser's own message is not passed on: it quotes the text around the error, which
 * in a settings or MCP file may be a token.
 */
export function parseJsonObject(text: string, source: string, toError: (message: string) => Error = (m) => new Error(m)): { [k: string]: Json } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    const where = /at position \d+(?: \(line \d+ column \d+\))?/.exec((err as Error).message)?.[0];
    throw toError(`${source} is not valid JSON: a syntax error${where ? ` ${where}` : ''}`);
  }
  if (!isJsonObject(value)) throw toError(`${source} must be a JSON object`);
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
  if (isJsonObject(base) && isJsonObject(over)) {
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
