/**
 * The team roster: a ConfigMap the operator renders per team and namespace
 * (operator/src/render/roster.ts) and mounts live at TEAM_DIR (contract.ts) in every
 * teammate's pod, where the review fan-out and the Matrix bridge read its JSON and the
 * harness's instructions import its Markdown.
 */

/** ConfigMap key (and file name under TEAM_DIR) of the roster as Markdown, imported by every teammate's CLAUDE.md. */
export const ROSTER_MARKDOWN = 'roster.md';
/** ConfigMap key (and file name under TEAM_DIR) of the roster as JSON ({@link Roster}), for the pod's programs. */
export const ROSTER_JSON = 'roster.json';

/** One teammate as the roster lists it. */
export interface RosterEntry {
  /** The Agent's name. */
  name: string;
  /** `spec.harness.kind`. */
  harness: string;
  /** `spec.github.login`, when set. */
  github?: string;
  /** `spec.matrix.userId`, when set. */
  matrix?: string;
  /** Names of `spec.repos`. */
  repos: string[];
}

/** roster.json: the team's agents, sorted by name. */
export interface Roster {
  team: string;
  agents: RosterEntry[];
}

/** A teammate as the pod's programs read it from roster.json: its name and, when it has them, its Matrix and GitHub ids. */
export type Teammate = Pick<RosterEntry, 'name' | 'matrix' | 'github'>;

/**
 * The teammates of a roster.json text. An entry that is not an object with a string `name`
 * is skipped (one bad entry never hides the others), and `matrix`/`github` are kept only
 * when they are strings.
 * @throws SyntaxError when the text is not JSON
 */
export function parseRoster(text: string): Teammate[] {
  const agents = (JSON.parse(text) as { agents?: unknown } | null)?.agents;
  if (!Array.isArray(agents)) return [];
  return agents.flatMap((a: unknown): Teammate[] => {
    if (typeof a !== 'object' || a === null || typeof (a as Teammate).name !== 'string') return [];
    const { name, matrix, github } = a as Record<string, unknown>;
    return [{ name: name as string, ...(typeof matrix === 'string' ? { matrix } : {}), ...(typeof github === 'string' ? { github } : {}) }];
  });
}
