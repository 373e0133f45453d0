/**
 * Sharding: several operators, each started with its own `--agent-selector` (and its own
 * leader Lease), split the Agents of a cluster. The Agent informer takes the selector as
 * it is. The children's informers can take it too only when it speaks of labels the
 * children carry with the Agent's value: the shard label (constants.ts LABEL_SHARD), which
 * render/meta.ts copies from the Agent onto every child and its pod. Then each operator
 * caches its own shard's children and pods, so memory splits with the Agents; with any
 * other selector each operator caches every managed child (correct, but it does not split).
 */
import { LABEL_SHARD, MANAGED_SELECTOR } from './api/constants.ts';

/** The requirements of a label selector: split at the commas outside `in (...)` lists. */
function requirements(selector: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < selector.length; i++) {
    const ch = selector[i];
    if (ch === '(') depth++;
    else if (ch === ')') depth--;
    else if (ch === ',' && depth === 0) {
      out.push(selector.slice(start, i).trim());
      start = i + 1;
    }
  }
  out.push(selector.slice(start).trim());
  return out.filter(Boolean);
}

const SHARD = LABEL_SHARD.replace(/[./]/g, (c) => `\\${c}`);
/** One requirement on the shard label, in any of the selector grammar's forms (exists, !exists, =, ==, !=, in, notin). */
const SHARD_REQUIREMENT = new RegExp(`^(?:!\\s*${SHARD}|${SHARD}(?:\\s*(?:==?|!=)\\s*[A-Za-z0-9._-]*|\\s+(?:in|notin)\\s*\\([^()]*\\))?)$`);

/**
 * The label selector for the managed children (and pods) of the Agents `agentSelector`
 * selects: `MANAGED_SELECTOR,<agentSelector>` when every requirement of it is on the
 * shard label; `MANAGED_SELECTOR` (every managed child) otherwise, or when it is empty.
 * Grammar: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors
 */
export function childSelector(agentSelector: string | undefined): { selector: string; sharded: boolean } {
  const reqs = requirements(agentSelector ?? '');
  if (!reqs.length || !reqs.every((r) => SHARD_REQUIREMENT.test(r))) return { selector: MANAGED_SELECTOR, sharded: false };
  return { selector: `${MANAGED_SELECTOR},${reqs.join(',')}`, sharded: true };
}
