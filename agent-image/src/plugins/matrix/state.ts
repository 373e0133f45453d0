/**
 * The bridge's durable state on the home volume (`<stateDir>/matrix/sync.json`): the sync
 * token and what the trigger rules need to remember across restarts. Written atomically
 * (temporary file + rename) after every processed sync batch, and only after each event of
 * the batch is in the inbox, so a restart resumes at the first batch not fully handled.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../../lib/files.ts';

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
  /**
   * Recent threads the agent is in (newest last), by root event id: threads it posted in,
   * threads in which it took a message, and messages it took at the top level (their
   * answer starts a thread rooted at them). A person's follow-up in one of them reaches the agent.
   */
  threads: string[];
  /** Event id of a message the agent took → the thread root its answer goes to (newest last, at most OWN_MEMORY). */
  answerThreads: Record<string, string>;
  /** Encrypted rooms already told (once) that the agent cannot read encrypted messages. */
  encryptedRooms: string[];
}

function strings(x: unknown): string[] {
  return Array.isArray(x) ? x.filter((v): v is string => typeof v === 'string') : [];
}

export class BridgeStateStore {
  readonly file: string;

  constructor(stateDir: string) {
    this.file = path.join(stateDir, 'matrix', 'sync.json');
  }

  /** The saved state for this account, or a fresh one (missing, unreadable or another account's file). */
  async load(homeserverUrl: string, userId: string): Promise<BridgeState> {
    const fresh = freshState(homeserverUrl, userId);
    try {
      const s = JSON.parse(await readFile(this.file, 'utf8')) as Partial<BridgeState>;
      if (s.homeserverUrl !== homeserverUrl || s.userId !== userId) return fresh;
      return {
        ...fresh,
        ...(typeof s.since === 'string' ? { since: s.since } : {}),
        joined: strings(s.joined),
        agentRun: s.agentRun && typeof s.agentRun === 'object' ? s.agentRun : {},
        own: strings(s.own).slice(-OWN_MEMORY),
        threads: strings(s.threads).slice(-OWN_MEMORY),
        answerThreads: Object.fromEntries(
          Object.entries(s.answerThreads && typeof s.answerThreads === 'object' ? s.answerThreads : {})
            .filter((e): e is [string, string] => typeof e[1] === 'string')
            .slice(-OWN_MEMORY),
        ),
        encryptedRooms: strings(s.encryptedRooms).slice(-OWN_MEMORY),
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

/** The state of an account that has not synced yet. */
export function freshState(homeserverUrl: string, userId: string): BridgeState {
  return { homeserverUrl, userId, joined: [], agentRun: {}, own: [], threads: [], answerThreads: {}, encryptedRooms: [] };
}

/** Records that the answer to `eventId` goes to `thread`, keeping the newest OWN_MEMORY entries. */
export function rememberAnswerThread(map: Record<string, string>, eventId: string, thread: string): void {
  delete map[eventId];
  map[eventId] = thread;
  const keys = Object.keys(map);
  for (const k of keys.slice(0, Math.max(0, keys.length - OWN_MEMORY))) delete map[k];
}

/** Appends `id` to a bounded recent list (no duplicates; a known id moves to the end, as the newest). */
export function remember(list: string[], id: string): void {
  const at = list.indexOf(id);
  if (at >= 0) list.splice(at, 1);
  list.push(id);
  if (list.length > OWN_MEMORY) list.splice(0, list.length - OWN_MEMORY);
}
