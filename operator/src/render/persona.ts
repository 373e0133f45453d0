import { TEAM_DIR } from '../../../agent-image/src/contract/contract.ts';
import { ROSTER_MARKDOWN } from '../../../agent-image/src/contract/roster.ts';

/**
 * Persona assembly: the team's shared rules first, then the agent's own persona. The
 * result is what the setup init container writes into the harness's home (CLAUDE.md,
 * settings.json, .mcp.json, agents/*.md for Claude Code).
 */

/** Files every agent inherits (agents/_shared in this repository, shipped in the operator image). */
export interface SharedRules {
  /** Markdown of the base rules. */
  claudeMd: string;
  /** settings.json text (a JSON object). */
  settingsJson: string;
}

/** An agent's own persona files, from spec.persona.instructions or its ConfigMap. */
export interface PersonaFiles {
  claudeMd?: string;
  settingsJson?: string;
  mcpJson?: string;
  /** Subagent definitions by name (without `.md`). */
  subagents: Record<string, string>;
}

export interface AssembledPersona {
  claudeMd: string;
  settingsJson: string;
  mcpJson: string;
  subagents: Record<string, string>;
}

/** A persona file that cannot be used (not JSON, not an object); the message names the file. */
export class InvalidPersonaError extends Error {
  override readonly name = 'InvalidPersonaError';
}

/**
 * A JSON value. The JSON helpers here are the operator's own: how the operator layers the
 * shared rules and a persona is its business (the pod reads the result as one JSON object
 * and layers its own settings on top with agent-image/src/lib/files.ts), so it is no rule
 * the two must agree on, and the operator imports only the pod contract.
 */
export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function isJsonObject(v: unknown): v is { [k: string]: Json } {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Deep merge of JSON values: `over` wins; objects merge key by key; arrays are concatenated
 * without duplicates (the shared rules' hooks and permissions add up with the persona's).
 */
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

/**
 * Parses a JSON object from a persona file.
 * @throws InvalidPersonaError naming `source`: "<source> is not valid JSON: ..." or
 *   "<source> must be a JSON object".
 */
export function parseJsonObject(text: string, source: string): { [k: string]: Json } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new InvalidPersonaError(`${source} is not valid JSON: ${(err as Error).message}`);
  }
  if (!isJsonObject(value)) throw new InvalidPersonaError(`${source} must be a JSON object`);
  return value;
}

/** Fields of settings.json that Claude Code and setup's merge need as JSON objects. */
const SETTINGS_OBJECT_FIELDS = ['env', 'hooks', 'permissions'] as const;

/**
 * The first reason a persona's settings.json or mcp.json cannot be used, naming the key and
 * the field: `key "settings.json" is not valid JSON: ...`, `key "settings.json": field env.FOO
 * must be a string`, `key "mcp.json": field mcpServers.github must be an object`. Undefined
 * when both are usable (or absent). Pure. Field shapes: Claude Code's settings and
 * `.mcp.json` documentation (env: string values; hooks, permissions, mcpServers: objects).
 */
export function personaJsonProblem(files: Pick<PersonaFiles, 'settingsJson' | 'mcpJson'>): string | undefined {
  try {
    if (files.settingsJson !== undefined) {
      const settings = parseJsonObject(files.settingsJson, 'key "settings.json"');
      for (const field of SETTINGS_OBJECT_FIELDS) {
        const v = settings[field];
        if (v !== undefined && !isJsonObject(v)) return `key "settings.json": field ${field} must be an object`;
      }
      for (const [k, v] of Object.entries(isJsonObject(settings.env) ? settings.env : {})) {
        if (typeof v !== 'string') return `key "settings.json": field env.${k} must be a string`;
      }
    }
    if (files.mcpJson !== undefined) {
      const mcp = parseJsonObject(files.mcpJson, 'key "mcp.json"');
      if (mcp.mcpServers !== undefined && !isJsonObject(mcp.mcpServers)) return 'key "mcp.json": field mcpServers must be an object';
      for (const [k, v] of Object.entries(isJsonObject(mcp.mcpServers) ? mcp.mcpServers : {})) {
        if (!isJsonObject(v)) return `key "mcp.json": field mcpServers.${k} must be an object`;
      }
    }
  } catch (err) {
    if (err instanceof InvalidPersonaError) return err.message;
    throw err;
  }
  return undefined;
}

/**
 * Shared rules + the agent's persona (+ an import of the team roster when `team` is set)
 * → the files the pod gets. Pure.
 * @throws InvalidPersonaError when a settings.json or mcp.json is not a JSON object (the message names the file).
 */
export function assemblePersona(agentName: string, shared: SharedRules, persona: PersonaFiles, team?: string): AssembledPersona {
  const parts = [shared.claudeMd.trimEnd()];
  parts.push(`# You are ${agentName}\n\n${(persona.claudeMd ?? '').trim() || '_No persona was given for this agent._'}`);
  if (team) {
    // A Claude Code import of the mounted roster: it stays current without a restart.
    parts.push(`# Your team: ${team}\n\n@${TEAM_DIR}/${ROSTER_MARKDOWN}`);
  }
  const settings = mergeJson(
    parseJsonObject(shared.settingsJson, 'agents/_shared/settings.json'),
    persona.settingsJson ? parseJsonObject(persona.settingsJson, 'persona settings.json') : {},
  );
  const mcp = persona.mcpJson ? parseJsonObject(persona.mcpJson, 'persona mcp.json') : { mcpServers: {} };
  return {
    claudeMd: parts.join('\n\n') + '\n',
    settingsJson: JSON.stringify(settings, null, 2) + '\n',
    mcpJson: JSON.stringify(mcp, null, 2) + '\n',
    subagents: { ...persona.subagents },
  };
}
