import type {
  KubernetesObject,
  V1ConfigMap,
  V1NetworkPolicy,
  V1Pod,
  V1RoleBinding,
  V1Secret,
  V1Service,
  V1ServiceAccount,
  V1StatefulSet,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { Agent } from '../api/agent.ts';
import { ConditionType, Reason } from '../api/constants.ts';
import { serverSideApply } from '../kube/apply.ts';
import type { Clients } from '../kube/clients.ts';
import { recordEvent } from '../kube/events.ts';
import { applyAgentStatus } from '../kube/status.ts';
import { isSubset } from '../kube/subset.ts';
import { generateEgressCa } from '../pki/egress-ca.ts';
import { renderEgressCaSecret } from '../render/egress-ca-secret.ts';
import { renderAll, type DesiredChildren } from '../render/index.ts';
import { childNames } from '../render/meta.ts';
import { InvalidPersonaError, type SharedRules } from '../render/persona.ts';
import { volumeClaimDrift } from '../render/statefulset.ts';
import type { ReconcileResult } from '../runtime/controller.ts';
import { describeError, httpStatusOf } from '../runtime/errors.ts';
import { findCondition, type ConditionInput } from './conditions.ts';
import { allowlistHash, CA_VALIDITY_DAYS, planEgressCa } from './egress-ca.ts';
import { checkClusterReferences, checkCredentials, resolveApiServer, resolvePersona, resolveServiceAddresses, resolveUpstreamCa } from './references.ts';
import { validateAgent } from './validate.ts';
import { computeStatus, restartNote, sameStatus, type Observed } from './status.ts';

/** Kinds of child the operator keeps an informer cache of, and their types. */
export interface ChildTypes {
  ServiceAccount: V1ServiceAccount;
  ConfigMap: V1ConfigMap;
  Service: V1Service;
  StatefulSet: V1StatefulSet;
  Secret: V1Secret;
  RoleBinding: V1RoleBinding;
  NetworkPolicy: V1NetworkPolicy;
}
export type ChildKind = keyof ChildTypes;

/** Read-only views of the informer caches the reconciler reads from. */
export interface Caches {
  agent(namespace: string, name: string): KubernetesObject | undefined;
  /** Every Agent of a namespace (for the team roster). */
  agents(namespace: string): readonly KubernetesObject[];
  /** A child the operator manages, as last seen (only objects with the managed-by label). */
  child<K extends ChildKind>(kind: K, namespace: string, name: string): ChildTypes[K] | undefined;
  pod(namespace: string, name: string): V1Pod | undefined;
}

export interface AgentReconcilerDeps {
  clients: Clients;
  caches: Caches;
  image: string;
  shared: SharedRules;
  /**
   * Resync period: every Agent is reconciled at least this often, in ms. A backstop: edits
   * of the Secrets and ConfigMaps an Agent names are seen through the operator's watch
   * (operator.ts) within seconds; what is not watched (its ClusterRole, StorageClass, the
   * in-cluster Services of spec.events and spec.matrix, the API server's Service and
   * EndpointSlices for spec.kubernetesAccess) is picked up here.
   */
  resyncMs: number;
  now?: () => Date;
  /** Called with each Agent's phase after its status is computed (metrics). */
  onPhase?: (key: string, phase: string | undefined) => void;
}

/** `spec.team` of an Agent as cached (unparsed). */
function teamOf(o: KubernetesObject): string | undefined {
  return (o as { spec?: { team?: string } }).spec?.team;
}

/**
 * How soon an Agent blocked on a missing reference is looked at again, in ms. A missing
 * Secret or ConfigMap is noticed sooner (its creation is watched); this covers the
 * cluster-scoped references (ClusterRole, StorageClass), which are not.
 */
const BLOCKED_RETRY_MS = 10_000;

/** A readable path of the first zod issue, e.g. `spec.storage.home: must be a positive quantity`. */
function firstIssue(error: { issues: Array<{ path: PropertyKey[]; message: string }> }): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid';
  return `${issue.path.map(String).join('.')}: ${issue.message}`;
}

/**
 * Builds the level-based reconcile of one Agent (DESIGN.md flow 1): read the Agent from
 * the cache -> gather what it refers to (persona, credentials) -> ensure its egress CA
 * -> render the desired children (pure) -> server-side apply them -> gather observed
 * state -> compute conditions -> write status only if it changed. It never asks what
 * event caused it.
 *
 * A broken reference (a missing persona ConfigMap or credential Secret) or a persona
 * that cannot be rendered is shown as a condition naming the field and the fix, and no
 * child is changed, so a pod is never rolled out with a broken config; it is looked at
 * again after BLOCKED_RETRY_MS. API errors are thrown and retried with backoff.
 */
export function makeAgentReconciler(deps: AgentReconcilerDeps) {
  const now = deps.now ?? (() => new Date());
  // Parsed teammates by cached object: the informer replaces an object when it changes,
  // so an entry lives exactly as long as the version it was parsed from.
  const teammates = new WeakMap<KubernetesObject, Agent[]>();
  const parseTeammate = (o: KubernetesObject): Agent[] => {
    let parsed = teammates.get(o);
    if (!parsed) {
      const a = Agent.safeParse(o);
      parsed = a.success ? [a.data] : [];
      teammates.set(o, parsed);
    }
    return parsed;
  };
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

    // Check, and gather references, first; decide after.
    const validation = validateAgent(agent);
    const specValid: ConditionInput = validation.errors.length
      ? { type: ConditionType.SpecValid, status: 'False', reason: Reason.InvalidSpec, message: validation.errors.join('; ') }
      : validation.warnings.length
        ? { type: ConditionType.SpecValid, status: 'True', reason: Reason.ValidWithWarnings, message: validation.warnings.join('; ') }
        : { type: ConditionType.SpecValid, status: 'True', reason: Reason.AsExpected, message: 'spec is valid' };
    const persona = await resolvePersona(deps.clients, agent);
    const credentials = await checkCredentials(deps.clients, agent);
    const upstreamCa = await resolveUpstreamCa(deps.clients, agent);
    const references = await checkClusterReferences(deps.clients, agent, upstreamCa);
    const checks: ConditionInput[] = [specValid, persona.condition, credentials, references];
    const applyChild = async <T extends KubernetesObject>(obj: T): Promise<T> => {
      const live = deps.caches.child(obj.kind as ChildKind, namespace, obj.metadata?.name ?? '') as T | undefined;
      // Nothing to change: no write (an Agent at rest costs no API writes).
      if (live && isSubset(obj, live)) return live;
      return serverSideApply(deps.clients, obj);
    };
    let blocked = checks.find((c) => c.status === 'False');

    let statefulSet: V1StatefulSet | undefined;
    let storageDrift: string | undefined;
    if (!blocked && persona.files) {
      let desired: DesiredChildren | undefined;
      try {
        const ca = await ensureEgressCa(deps, agent, log, now());
        // Only teammates matter (the roster); parsing every Agent of the namespace on every
        // reconcile made a burst of N reconciles cost O(N²) zod parses.
        const team = agent.spec.team;
        const namespaceAgents = team ? deps.caches.agents(namespace).flatMap((o) => (teamOf(o) === team ? parseTeammate(o) : [])) : [];
        const services = await resolveServiceAddresses(deps.clients, agent);
        if (services.unresolved.length) log.warn({ services: services.unresolved }, 'in-cluster Services of spec.events / spec.matrix have no cluster IP yet; the pod cannot reach them under iptables enforcement');
        const api = await resolveApiServer(deps.clients, agent);
        if (api.unresolved.length) log.warn({ apiServer: api.unresolved }, 'the Kubernetes API server is not fully resolved; the agent\'s kubectl (spec.kubernetesAccess) may not reach it until it is');
        desired = renderAll(agent, {
          image: deps.image,
          shared: deps.shared,
          persona: persona.files,
          egressCaCertPem: ca.certPem,
          egressCaKeyPem: ca.keyPem,
          namespaceAgents,
          serviceAddresses: services.addresses,
          ...(api.apiServer ? { apiServer: api.apiServer } : {}),
          ...(upstreamCa.pem !== undefined ? { upstreamCaPem: upstreamCa.pem } : {}),
        });
      } catch (err) {
        if (!(err instanceof InvalidPersonaError)) throw err;
        blocked = { type: ConditionType.Ready, status: 'False', reason: Reason.InvalidSpec, message: err.message };
      }
      if (desired) {
        const live = deps.caches.child('StatefulSet', namespace, names.statefulSet);
        if (live) {
          storageDrift = volumeClaimDrift(desired.statefulSet, live);
          if (storageDrift && desired.statefulSet.spec) {
            // Immutable: re-assert what is there so the rest of the spec still applies.
            desired.statefulSet.spec.volumeClaimTemplates = live.spec?.volumeClaimTemplates;
          }
        }
        await applyChild(desired.serviceAccount);
        if (desired.roleBinding) await applyChild(desired.roleBinding);
        else if (deps.caches.child('RoleBinding', namespace, names.roleBinding)) await deleteRoleBinding(deps.clients, namespace, names.roleBinding);
        await applyChild(desired.configMap);
        if (desired.roster) await applyChild(desired.roster);
        await applyChild(desired.service);
        await applyChild(desired.networkPolicy);
        try {
          statefulSet = await applyChild(desired.statefulSet);
        } catch (err) {
          if (httpStatusOf(err) !== 422) throw err;
          blocked = { type: ConditionType.Ready, status: 'False', reason: Reason.ApplyFailed, message: `StatefulSet ${names.statefulSet} rejected: ${describeError(err)}` };
        }
      }
    }
    if (blocked) log.warn({ reason: blocked.reason, detail: blocked.message }, 'Agent cannot be reconciled as specified');

    const observed: Observed = {
      statefulSet: statefulSet ?? deps.caches.child('StatefulSet', namespace, names.statefulSet),
      pod: deps.caches.pod(namespace, names.pod),
      checks,
      ...(blocked ? { blocked: { reason: blocked.reason, message: blocked.message } } : {}),
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
      await recordTransitions(deps, log, agent, status.conditions ?? []);
      const restarted = restartNote(agent.status?.restarts, observed.pod);
      if (restarted) {
        log.info({ restarts: status.restarts }, restarted);
        await recordEvent(deps.clients, log, agent, 'Warning', Reason.ContainerRestarted, 'Reconcile', restarted);
      }
    }
    return { requeueAfterMs: blocked ? Math.min(deps.resyncMs, BLOCKED_RETRY_MS) : deps.resyncMs };
  };
}

/**
 * Ensures `<agent>-egress-ca` holds a valid CA for the current allowlist and returns its
 * certificate and key PEM. Generates one only when planEgressCa says so.
 */
async function ensureEgressCa(deps: AgentReconcilerDeps, agent: Agent, log: Logger, at: Date): Promise<{ certPem: string; keyPem: string }> {
  const namespace = agent.metadata.namespace ?? 'default';
  const secretName = childNames(agent.metadata.name).egressCa;
  const wantHash = allowlistHash(agent);
  let plan = planEgressCa(deps.caches.child('Secret', namespace, secretName), wantHash, at);
  if (plan.action === 'generate') {
    // The cache may lag our own last write (a CA made a moment ago, not yet seen by the
    // watch): confirm with a live read before replacing a CA, or a burst of reconciles
    // would mint a new CA each time and roll the pod with it.
    const live = await deps.clients.core.readNamespacedSecret({ name: secretName, namespace }).catch((err: unknown) => {
      if (httpStatusOf(err) === 404) return undefined;
      throw err;
    });
    plan = planEgressCa(live, wantHash, at);
  }
  if (plan.action === 'keep') return { certPem: plan.certPem, keyPem: plan.keyPem };
  const ca = await generateEgressCa({ agent: `${namespace}/${agent.metadata.name}`, allow: agent.spec.egress.allow, now: at, validityDays: CA_VALIDITY_DAYS });
  await serverSideApply(deps.clients, renderEgressCaSecret(agent, ca, wantHash));
  log.info({ secret: secretName, why: plan.why, notAfter: ca.notAfter.toISOString() }, 'generated the egress CA');
  await recordEvent(deps.clients, log, agent, 'Normal', 'EgressCaGenerated', 'Reconcile', `generated the egress CA in Secret ${secretName}: ${plan.why}`);
  return { certPem: ca.certPem, keyPem: ca.keyPem };
}

/** Deletes the RoleBinding left from an earlier spec.kubernetesAccess (404 is fine). */
async function deleteRoleBinding(clients: Clients, namespace: string, name: string): Promise<void> {
  try {
    await clients.rbac.deleteNamespacedRoleBinding({ name, namespace });
  } catch (err) {
    if (httpStatusOf(err) !== 404) throw err;
  }
}

/** Records an Event for each condition whose status or reason changed (transitions only). */
async function recordTransitions(deps: AgentReconcilerDeps, log: Logger, agent: Agent, after: NonNullable<Agent['status']>['conditions'] & object): Promise<void> {
  for (const cond of after) {
    const before = findCondition(agent.status?.conditions, cond.type);
    if (before && before.status === cond.status && before.reason === cond.reason) continue;
    // Ready and the reference checks are worth an event; the rest follow from them.
    const healthy = cond.status === (cond.type === 'Degraded' ? 'False' : 'True');
    if (cond.type === ConditionType.Ready) {
      log.info({ ready: cond.status, reason: cond.reason }, cond.message);
      await recordEvent(deps.clients, log, agent, 'Normal', cond.reason, 'Reconcile', cond.message);
    } else if (!healthy && cond.type !== ConditionType.Progressing) {
      await recordEvent(deps.clients, log, agent, 'Warning', cond.reason, 'Reconcile', cond.message);
    }
  }
}
