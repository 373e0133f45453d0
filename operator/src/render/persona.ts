import { TEAM_DIR } from '../../../agent-image/src/contract/contract.ts';
import { ROSTER_MARKDOWN } from '../../../agent-image/src/contract/roster.ts';
import { isJsonObject, mergeJson, parseJsonObject, type Json } from '../../../agent-image/src/contract/settings.ts';

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
 * Parses a JSON object from a persona file.
 * @throws InvalidPersonaError naming `source`: "<source> is not valid JSON: ..." or
 *   "<source> must be a JSON object".
 */
function parsePersonaJson(text: string, source: string): { [k: string]: Json } {
  return parseJsonObject(text, source, (message) => new InvalidPersonaError(message));
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
      const settings = parsePersonaJson(files.settingsJson, 'key "settings.json"');
      for (const field of SETTINGS_OBJECT_FIELDS) {
        const v = settings[field];
        if (v !== undefined && !isJsonObject(v)) return `key "settings.json": field ${field} must be an object`;
      }
      for (const [k, v] of Object.entries(isJsonObject(settings.env) ? settings.env : {})) {
        if (typeof v !== 'string') return `key "settings.json": field env.${k} must be a string`;
      }
    }
    if (files.mcpJson !== undefined) {
      const mcp = parsePersonaJson(files.mcpJson, 'key "mcp.json"');
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
    parsePersonaJson(shared.settingsJson, 'agents/_shared/settings.json'),
    persona.settingsJson ? parsePersonaJson(persona.settingsJson, 'persona settings.json') : {},
  );
  const mcp = persona.mcpJson ? parsePersonaJson(persona.mcpJson, 'persona mcp.json') : { mcpServers: {} };
  return {
    claudeMd: parts.join('\n\n') + '\n',
    settingsJson: JSON.stringify(settings, null, 2) + '\n',
    mcpJson: JSON.stringify(mcp, null, 2) + '\n',
    subagents: { ...persona.subagents },
  };
}
