/**
 * The bridge's durable state on the home volume (`<stateDir>/matrix/sync.json`): the sync
 * token and what the trigger rules need to remember across restarts. Written atomically
 * (temporary file + rename) after every processed sync batch, and only after each event of
 * the batch is in the inbox, so a restart resumes at the first batch not fully handled.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../harness/files.ts';

/** How many of the agent's own event ids and thread roots are remembered (for "a reply to the agent"). */
export const OWN_MEMORY = 1000;

export interface BridgeState {
  /** Account the state belongs to; a different homeserver or user starts afresh. */
  homeserverUrl: string;
  userId: string;
  /** `next_batch` of the last fully handled /sync response; absent before the first. */
  since?: string;
  /** Rooms the agent was joined to at `since`: events of other rooms before the agent's own join are history. */
  joined: string[];
  /** Per room: agent messages in a row without a person's message in between. */
  agentRun: Record<string, number>;
  /** Recent event ids the agent sent (newest last). */
  own: string[];
  /** Recent thread roots the agent posted in (newest last). */
  threads: string[];
}

export class BridgeStateStore {
  readonly file: string;

  constructor(stateDir: string) {
    this.file = path.join(stateDir, 'matrix', 'sync.json');
  }

  /** The saved state for this account, or a fresh one (missing, unreadable or another account's file). */
  async load(homeserverUrl: string, userId: string): Promise<BridgeState> {
    const fresh: BridgeState = { homeserverUrl, userId, joined: [], agentRun: {}, own: [], threads: [] };
    try {
      const s = JSON.parse(await readFile(this.file, 'utf8')) as Partial<BridgeState>;
      if (s.homeserverUrl !== homeserverUrl || s.userId !== userId) return fresh;
      return {
        ...fresh,
        ...(typeof s.since === 'string' ? { since: s.since } : {}),
        joined: Array.isArray(s.joined) ? s.joined : [],
        agentRun: s.agentRun && typeof s.agentRun === 'object' ? s.agentRun : {},
        own: Array.isArray(s.own) ? s.own.slice(-OWN_MEMORY) : [],
        threads: Array.isArray(s.threads) ? s.threads.slice(-OWN_MEMORY) : [],
      };
    } catch {
      return fresh;
    }
  }

  /** Writes the state atomically (mode 0600). @throws on a full or read-only volume */
  async save(state: BridgeState): Promise<void> {
    await writeFileAtomic(this.file, JSON.stringify({ ...state, savedAt: new Date().toISOString() }) + '\n', 0o600);
  }
}

/** Appends `id` to a bounded recent list (no duplicates). */
export function remember(list: string[], id: string): void {
  if (list.includes(id)) return;
  list.push(id);
  if (list.length > OWN_MEMORY) list.splice(0, list.length - OWN_MEMORY);
}
