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
