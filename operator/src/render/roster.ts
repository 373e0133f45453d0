import type { V1ConfigMap, V1OwnerReference } from '@kubernetes/client-node';
import type { Agent } from '../api/agent.ts';
import { LABEL_COMPONENT, LABEL_MANAGED_BY, LABEL_PART_OF, LABEL_SHARD, LABEL_TEAM, MANAGED_BY } from '../api/constants.ts';
import { ownerReference } from './meta.ts';
import { ROSTER_JSON, ROSTER_MARKDOWN, type Roster, type RosterEntry } from '../../../agent-image/src/contract/roster.ts';


/** Name of a team's roster ConfigMap. */
export function rosterName(team: string): string {
  return `team-${team}-roster`;
}

/**
 * What a roster reads of a teammate: its name, uid (the owner reference), deletion mark,
 * shard label and the fields the roster shows. An Agent is one; {@link rosterMember} makes
 * the smallest one, for caches that keep a member per teammate.
 */
export interface RosterMember {
  metadata: { name: string; uid?: string | undefined; deletionTimestamp?: unknown; labels?: Record<string, string> | undefined };
  spec: { team?: string | undefined; harness: { kind: string }; github?: { login: string } | undefined; matrix?: { userId: string } | undefined; repos: readonly { name: string }[] };
}

/** The {@link RosterMember} of an Agent: a copy of only what the roster reads (about a tenth of the parsed Agent). */
export function rosterMember(a: Agent): RosterMember {
  const shard = a.metadata.labels?.[LABEL_SHARD];
  return {
    metadata: { name: a.metadata.name, uid: a.metadata.uid, ...(a.metadata.deletionTimestamp ? { deletionTimestamp: a.metadata.deletionTimestamp } : {}), ...(shard !== undefined ? { labels: { [LABEL_SHARD]: shard } } : {}) },
    spec: {
      team: a.spec.team,
      harness: { kind: a.spec.harness.kind },
      ...(a.spec.github ? { github: { login: a.spec.github.login } } : {}),
      ...(a.spec.matrix ? { matrix: { userId: a.spec.matrix.userId } } : {}),
      repos: a.spec.repos.map((r) => ({ name: r.name })),
    },
  };
}

function entry(a: RosterMember): RosterEntry {
  return {
    name: a.metadata.name,
    harness: a.spec.harness.kind,
    ...(a.spec.github ? { github: a.spec.github.login } : {}),
    ...(a.spec.matrix ? { matrix: a.spec.matrix.userId } : {}),
    repos: a.spec.repos.map((r) => r.name),
  };
}

/**
 * The roster of `team` in one namespace, from every Agent of that team there (sorted by
 * name, so every teammate renders the same object). Owned by all of them without a
 * controller, so it is garbage-collected when the last one goes. Pure.
 *
 * It is mounted (not copied) into each pod, so a teammate joining or leaving updates the
 * file in place without restarting anyone. It carries the teammates' shard label when they
 * all have the same one (a sharded operator watches only its shard's children; a team
 * split across shards is not supported, docs/operations.md#sharding).
 */
export function renderRoster(team: string, namespace: string, teammates: readonly RosterMember[]): V1ConfigMap {
  const agents = [...teammates].filter((a) => a.spec.team === team && !a.metadata.deletionTimestamp).sort((x, y) => x.metadata.name.localeCompare(y.metadata.name));
  const entries = agents.map(entry);
  const lines = entries.map((e) => {
    const ids = [e.github ? `GitHub @${e.github}` : undefined, e.matrix ? `Matrix ${e.matrix}` : undefined].filter(Boolean).join(', ');
    return `- **${e.name}** (${e.harness})${ids ? ` — ${ids}` : ''}${e.repos.length ? `; repos: ${e.repos.join(', ')}` : ''}`;
  });
  const owners: V1OwnerReference[] = agents.map((a) => ({ ...ownerReference(a), controller: false }));
  const shards = new Set(agents.map((a) => a.metadata.labels?.[LABEL_SHARD]));
  const [shard] = shards;
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: rosterName(team),
      namespace,
      labels: { [LABEL_MANAGED_BY]: MANAGED_BY, [LABEL_PART_OF]: 'agent-smith', [LABEL_COMPONENT]: 'team-roster', [LABEL_TEAM]: team, ...(shards.size === 1 && shard !== undefined ? { [LABEL_SHARD]: shard } : {}) },
      ownerReferences: owners,
    },
    data: {
      [ROSTER_MARKDOWN]: `# Team ${team}\n\nThe agents of your team (you are among them). Mention a teammate by name to ask for help or a review.\n\n${lines.join('\n')}\n`,
      [ROSTER_JSON]: JSON.stringify({ team, agents: entries } satisfies Roster, null, 2) + '\n',
    },
  };
}
