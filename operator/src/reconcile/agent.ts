import type { V1ConfigMap, V1Pod, V1StatefulSet, KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { Agent } from '../api/agent.ts';
import { ConditionType, Reason } from '../api/constants.ts';
import { serverSideApply } from '../kube/apply.ts';
import type { Clients } from '../kube/clients.ts';
import { recordEvent } from '../kube/events.ts';
import { applyAgentStatus } from '../kube/status.ts';
import { renderAll, type DesiredChildren } from '../render/index.ts';
import { childNames } from '../render/meta.ts';
import { volumeClaimDrift } from '../render/statefulset.ts';
import type { PersonaFiles, SharedRules } from '../render/persona.ts';
import type { ReconcileResult } from '../runtime/controller.ts';
import { describeError, httpStatusOf } from '../runtime/errors.ts';
import { findCondition } from './conditions.ts';
import { computeStatus, sameStatus, type Observed } from './status.ts';

/** Read-only views of the informer caches the reconciler reads from. */
export interface Caches {
  agent(namespace: string, name: string): KubernetesObject | undefined;
  statefulSet(namespace: string, name: string): V1StatefulSet | undefined;
  pod(namespace: string, name: string): V1Pod | undefined;
}

export interface AgentReconcilerDeps {
  clients: Clients;
  caches: Caches;
  image: string;
  shared: SharedRules;
  /** Resync period: every Agent is reconciled at least this often, in ms (picks up persona ConfigMap edits). */
  resyncMs: number;
  now?: () => Date;
  /** Called with each Agent's phase after its status is computed (metrics). */
  onPhase?: (key: string, phase: string | undefined) => void;
}

/** Reason and message shown when an Agent cannot be turned into children. */
class Blocked extends Error {
  readonly reason: string;
  constructor(reason: string, message: string) {
    super(message);
    this.reason = reason;
  }
}

/** Persona files from spec.persona: inline instructions, or the referenced ConfigMap's keys. */
async function resolvePersona(clients: Clients, agent: Agent): Promise<PersonaFiles> {
  const { persona } = agent.spec;
  if (!persona.configMapRef) return { ...(persona.instructions ? { claudeMd: persona.instructions } : {}), subagents: {} };
  const namespace = agent.metadata.namespace ?? 'default';
  let cm: V1ConfigMap;
  try {
    cm = await clients.core.readNamespacedConfigMap({ name: persona.configMapRef.name, namespace });
  } catch (err) {
    if (httpStatusOf(err) === 404) {
      throw new Blocked(Reason.PersonaNotFound, `spec.persona.configMapRef: ConfigMap ${namespace}/${persona.configMapRef.name} not found; create it or fix the name`);
    }
    throw err;
  }
  const data = cm.data ?? {};
  const subagents: Record<string, string> = {};
  for (const [key, value] of Object.entries(data)) {
    const m = /^subagent\.(.+)\.md$/.exec(key);
    if (m?.[1]) subagents[m[1]] = value;
  }
  return {
    ...(data['CLAUDE.md'] !== undefined ? { claudeMd: data['CLAUDE.md'] } : {}),
    ...(data['settings.json'] !== undefined ? { settingsJson: data['settings.json'] } : {}),
    ...(data['mcp.json'] !== undefined ? { mcpJson: data['mcp.json'] } : {}),
    subagents,
  };
}

/** A readable path of the first zod issue, e.g. `spec.storage.home: must be a positive quantity`. */
function firstIssue(error: { issues: Array<{ path: PropertyKey[]; message: string }> }): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid';
  return `${issue.path.map(String).join('.')}: ${issue.message}`;
}

/**
 * Builds the level-based reconcile of one Agent (DESIGN.md flow 1): read the Agent from
 * the cache -> resolve its persona -> render the desired children (pure) -> server-side
 * apply them -> gather observed state -> compute conditions -> write status only if it
 * changed. It never asks what event caused it.
 *
 * A spec that cannot be rendered (a missing persona ConfigMap, malformed persona JSON,
 * an immutable field changed) is shown as `Ready=False` with the reason, and retried on
 * the next change or resync; API errors are thrown and retried with backoff.
 */
export function makeAgentReconciler(deps: AgentReconcilerDeps) {
  const now = deps.now ?? (() => new Date());
  return async function reconcileAgent(key: string, log: Logger): Promise<ReconcileResult> {
    const [namespace = 'default', name = ''] = key.split('/');
    const raw = deps.caches.agent(namespace, name);
    if (!raw) {
      // Deleted: owner references let the garbage collector remove the children.
      deps.onPhase?.(key, undefined);
      return {};
    }
    if (raw.metadata?.deletionTimestamp) return {};
    const parsed = Agent.safeParse(raw);
    if (!parsed.success) {
      // The API server validated it, so this is a schema drift between CRD and operator.
      log.error({ issue: firstIssue(parsed.error) }, 'stored Agent does not match the operator schema');
      return {};
    }
    const agent = parsed.data;
    const names = childNames(name);

    let blocked: Observed['blocked'];
    let statefulSet: V1StatefulSet | undefined;
    let storageDrift: string | undefined;
    try {
      const persona = await resolvePersona(deps.clients, agent);
      let desired: DesiredChildren;
      try {
        desired = renderAll(agent, { image: deps.image, shared: deps.shared, persona });
      } catch (err) {
        throw new Blocked(Reason.InvalidSpec, (err as Error).message);
      }
      const live = deps.caches.statefulSet(namespace, names.statefulSet);
      if (live) {
        storageDrift = volumeClaimDrift(desired.statefulSet, live);
        if (storageDrift && desired.statefulSet.spec) {
          // Immutable: re-assert what is there so the rest of the spec still applies.
          desired.statefulSet.spec.volumeClaimTemplates = live.spec?.volumeClaimTemplates;
        }
      }
      await serverSideApply(deps.clients, desired.serviceAccount);
      await serverSideApply(deps.clients, desired.configMap);
      await serverSideApply(deps.clients, desired.service);
      try {
        statefulSet = await serverSideApply(deps.clients, desired.statefulSet);
      } catch (err) {
        if (httpStatusOf(err) === 422) {
          throw new Blocked(Reason.ApplyFailed, `StatefulSet ${names.statefulSet} rejected: ${describeError(err)}`);
        }
        throw err;
      }
    } catch (err) {
      if (!(err instanceof Blocked)) throw err;
      blocked = { reason: err.reason, message: err.message };
      log.warn({ reason: err.reason, msg: err.message }, 'Agent cannot be reconciled as specified');
    }

    const observed: Observed = {
      statefulSet: statefulSet ?? deps.caches.statefulSet(namespace, names.statefulSet),
      pod: deps.caches.pod(namespace, names.pod),
      ...(blocked ? { blocked } : {}),
      ...(storageDrift ? { storageDrift } : {}),
    };
    const status = computeStatus(agent, observed, now().toISOString());
    deps.onPhase?.(key, status.phase);
    if (!sameStatus(agent.status, status)) {
      try {
        await applyAgentStatus(deps.clients, namespace, name, status);
      } catch (err) {
        if (httpStatusOf(err) === 404) return {};
        throw err;
      }
      const storageBefore = findCondition(agent.status?.conditions, ConditionType.StorageInSync);
      const storageAfter = findCondition(status.conditions, ConditionType.StorageInSync);
      if (storageAfter?.status === 'False' && storageBefore?.status !== 'False') {
        await recordEvent(deps.clients, log, agent, 'Warning', storageAfter.reason, 'Reconcile', storageAfter.message);
      }
      const before = findCondition(agent.status?.conditions, ConditionType.Ready);
      const after = findCondition(status.conditions, ConditionType.Ready);
      if (after && (before?.status !== after.status || before.reason !== after.reason)) {
        log.info({ ready: after.status, reason: after.reason, phase: status.phase }, after.message);
        await recordEvent(deps.clients, log, agent, after.status === 'True' ? 'Normal' : blocked ? 'Warning' : 'Normal', after.reason, 'Reconcile', after.message);
      }
    }
    return { requeueAfterMs: blocked ? Math.min(deps.resyncMs, 60_000) : deps.resyncMs };
  };
}
