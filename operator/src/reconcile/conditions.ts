import type { Condition } from '../api/status.ts';
import { cutToBytes } from '../runtime/text.ts';

/** The longest condition message the CRD accepts (metav1.Condition: 32768); a longer one would make the whole status write fail. */
const MAX_CONDITION_MESSAGE = 32768;

/** A condition before it is stamped with times and generation: `{type, status, reason, message}`. */
export interface ConditionInput {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
}

/**
 * Merges computed conditions into the existing list the way apimachinery's
 * `meta.SetStatusCondition` does: `lastTransitionTime` moves only when `status` changes;
 * `observedGeneration` is set on all. Conditions of other types are kept. Pure.
 *
 * @param now RFC 3339 timestamp used for changed conditions
 */
export function setConditions(existing: Condition[] | undefined, computed: ConditionInput[], generation: number, now: string): Condition[] {
  const out = [...(existing ?? [])];
  for (const c of computed) {
    const i = out.findIndex((e) => e.type === c.type);
    const prev = i >= 0 ? out[i] : undefined;
    const next: Condition = {
      type: c.type,
      status: c.status,
      reason: c.reason,
      message: cutToBytes(c.message, MAX_CONDITION_MESSAGE),
      observedGeneration: generation,
      lastTransitionTime: prev && prev.status === c.status ? prev.lastTransitionTime : now,
    };
    if (i >= 0) out[i] = next;
    else out.push(next);
  }
  return out;
}

/** The condition of `type`, if present. */
export function findCondition(conditions: Condition[] | undefined, type: string): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}
