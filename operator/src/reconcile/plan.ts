/**
 * Plan: what one reconcile of an Agent should do, decided from the `Observed` snapshot
 * (gather.ts) alone. Pure: no I/O, clock or randomness (the time and a freshly minted CA
 * are passed in). act.ts carries the plan out; report.ts decides the status after.
 *
 * The reference checks form a policy chain in cert-manager's style
 * (pkg/controller/certificates/trigger/policies): pure functions over the snapshot, each
 * giving a condition with a reason and message; the first that fails blocks the Agent,
 * and every one is shown, so a user sees each broken reference at once.
 */
import type { KubernetesObject, V1Secret, V1StatefulSet } from '@kubernetes/client-node';
import { ConditionType, FIELD_MANAGER, Reason } from '../api/constants.ts';
import type { EgressCa } from '../pki/egress-ca.ts';
import { renderEgressCaSecret } from '../render/egress-ca-secret.ts';
import { renderAll, type DesiredChildren } from '../render/index.ts';
import { childNames } from '../render/meta.ts';
import { InvalidPersonaError, type PersonaFiles, type SharedRules } from '../render/persona.ts';
import { volumeClaimDrift } from '../render/statefulset.ts';
import type { AgentEvent } from '../kube/events.ts';
import { needsApply, withAppliedHash } from '../kube/subset.ts';
import type { ConditionInput } from './conditions.ts';
import { allowlistHash, planEgressCa, type CaPlan } from './egress-ca.ts';
import type { Observed } from './observed.ts';
import { checkClusterReferences, checkCredentials, resolveApiServer, resolvePersona, resolveServiceAddresses, resolveUpstreamCa } from './references.ts';
import { validateAgent } from './validate.ts';

/** Operator-wide settings the plan renders with. */
export interface PlanSettings {
  /** Default agent image. */
  image: string;
  shared: SharedRules;
}

/**
 * Why the Agent's children cannot be changed, shown in its conditions. `retry` says what
 * can end it: `poll`, a referenced object appearing or changing (some, such as a
 * ClusterRole, are not watched, so the Agent is looked at again soon); `on-change`, only
 * a change of the Agent's spec or persona (both watched), so no timed retry helps.
 */
export interface Blocked {
  reason: string;
  message: string;
  retry: 'poll' | 'on-change';
}

/** A Kubernetes Event to record on the Agent (kube/events.ts); the actor adds the action. */
export type PlannedEvent = Omit<AgentEvent, 'action'>;

/** A log line the actor writes: what was decided and why (never a secret value). */
export interface LogNote {
  level: 'info' | 'warn';
  fields: Record<string, unknown>;
  msg: string;
}

/** The egress CA a reconcile renders with: the kept one, or one minted now because `why`. */
export type CaMaterial = { action: 'keep'; certPem: string; keyPem: string } | { action: 'generate'; why: string; minted: EgressCa };

/** What to do for one Agent. */
export interface Plan {
  /** The conditions of the reference checks (SpecValid, PersonaResolved, CredentialsResolved, ReferencesResolved). */
  checks: ConditionInput[];
  /** Set when nothing may be changed (no child is applied: a pod is never rolled out with a broken config). */
  blocked?: Blocked;
  /**
   * A new egress CA Secret to write before the children, and why. `replaces`: the cache
   * held one (rotation: applied over it); otherwise it is created, and a 409 means one
   * exists that the cache has not seen yet (act.ts never overwrites it).
   */
  egressCa?: { secret: V1Secret; why: string; notAfter: Date; replaces: boolean };
  /** The children to server-side apply, in order, the StatefulSet last; those the cache already holds are left out (an Agent at rest costs no write). */
  apply: KubernetesObject[];
  /** A RoleBinding left from an earlier spec.kubernetesAccess, to delete. */
  deleteRoleBinding?: string;
  /** The desired StatefulSet (in `apply` when it differs from the cached one). */
  statefulSet?: V1StatefulSet;
  /** What spec.storage asks that the StatefulSet's immutable volume claim templates cannot take. */
  storageDrift?: string;
  events: PlannedEvent[];
  notes: LogNote[];
}

/** SpecValid, from the pure validation of the spec (validate.ts). */
function specValid(o: Observed): ConditionInput {
  const validation = validateAgent(o.agent);
  const type = ConditionType.SpecValid;
  if (validation.errors.length) return { type, status: 'False', reason: Reason.InvalidSpec, message: validation.errors.join('; ') };
  if (validation.warnings.length) return { type, status: 'True', reason: Reason.ValidWithWarnings, message: validation.warnings.join('; ') };
  return { type, status: 'True', reason: Reason.AsExpected, message: 'spec is valid' };
}

/** The policy chain, in the order a failure blocks: the spec itself first, then each kind of reference. */
const CHECKS: ReadonlyArray<{ retry: Blocked['retry']; check: (o: Observed) => ConditionInput }> = [
  { retry: 'on-change', check: specValid },
  { retry: 'poll', check: (o) => resolvePersona(o).condition },
  { retry: 'poll', check: checkCredentials },
  { retry: 'poll', check: (o) => checkClusterReferences(o, resolveUpstreamCa(o)) },
];

/**
 * Every reference check's condition, and what blocks the Agent: the first failing
 * check's reason and message; `poll` when any failing check is about a reference (its
 * fix need not change the Agent), `on-change` when only the spec is wrong.
 */
export function planChecks(o: Observed): { checks: ConditionInput[]; blocked?: Blocked } {
  const results = CHECKS.map(({ retry, check }) => ({ retry, condition: check(o) }));
  const failed = results.filter((r) => r.condition.status === 'False');
  const first = failed[0];
  const checks = results.map((r) => r.condition);
  if (!first) return { checks };
  const retry = failed.some((r) => r.retry === 'poll') ? 'poll' : 'on-change';
  return { checks, blocked: { reason: first.condition.reason, message: first.condition.message, retry } };
}

/**
 * What to do about the egress CA (egress-ca.ts planEgressCa over the observed Secret):
 * nothing while the Agent is blocked (no CA is needed until its children can be rendered).
 */
export function planCa(o: Observed, now: Date, checks: ReturnType<typeof planChecks> = planChecks(o)): CaPlan | undefined {
  if (checks.blocked) return undefined;
  return planEgressCa(o.egressCaSecret, allowlistHash(o.agent), now);
}

/** The children, rendered; an InvalidPersonaError (a persona that cannot be assembled) is `blocked`. */
function render(o: Observed, settings: PlanSettings, persona: PersonaFiles, ca: CaMaterial): { desired?: DesiredChildren; blocked?: Blocked; notes: LogNote[] } {
  const services = resolveServiceAddresses(o);
  const api = resolveApiServer(o);
  const upstreamCa = resolveUpstreamCa(o);
  const notes: LogNote[] = [];
  if (services.unresolved.length) notes.push({ level: 'warn', fields: { services: services.unresolved }, msg: 'in-cluster Services of spec.events / spec.matrix have no cluster IP yet; the pod cannot reach them under iptables enforcement' });
  if (api.unresolved.length) notes.push({ level: 'warn', fields: { apiServer: api.unresolved }, msg: "the Kubernetes API server is not fully resolved; the agent's kubectl (spec.kubernetesAccess) may not reach it until it is" });
  const pems = ca.action === 'keep' ? ca : ca.minted;
  try {
    const desired = renderAll(o.agent, {
      image: settings.image,
      shared: settings.shared,
      persona,
      egressCaCertPem: pems.certPem,
      egressCaKeyPem: pems.keyPem,
      namespaceAgents: o.teammates,
      serviceAddresses: services.addresses,
      ...(api.apiServer ? { apiServer: api.apiServer } : {}),
      ...(upstreamCa.pem !== undefined ? { upstreamCaPem: upstreamCa.pem } : {}),
    });
    return { desired, notes };
  } catch (err) {
    if (!(err instanceof InvalidPersonaError)) throw err;
    return { blocked: { reason: Reason.InvalidSpec, message: err.message, retry: 'on-change' }, notes };
  }
}

/**
 * The new CA Secret when `ca` was minted now, and its Event when it replaces one (a
 * rotation a human may want to see); the first CA of a new Agent is no news, so no Event.
 */
function caSecret(o: Observed, ca: CaMaterial): Pick<Plan, 'egressCa' | 'events'> {
  if (ca.action === 'keep') return { events: [] };
  const secret = renderEgressCaSecret(o.agent, ca.minted, allowlistHash(o.agent));
  const name = childNames(o.agent.metadata.name).egressCa;
  const replaces = o.egressCaSecret !== undefined;
  return {
    egressCa: { secret, why: ca.why, notAfter: ca.minted.notAfter, replaces },
    events: replaces ? [{ type: 'Normal', reason: 'EgressCaGenerated', note: `generated the egress CA in Secret ${name}: ${ca.why}` }] : [],
  };
}

/**
 * Which children differ from the cache, in apply order, and the storage drift (the team
 * roster is not among them: it is applied once per team change by its own queue key,
 * agent.ts makeRosterReconciler, rather than by every teammate's reconcile). A
 * StatefulSet's volume claim templates are immutable: on drift the live ones are
 * re-asserted so the rest of its spec still applies.
 */
function childChanges(o: Observed, desired: DesiredChildren): Pick<Plan, 'apply' | 'deleteRoleBinding' | 'statefulSet' | 'storageDrift'> {
  const live = o.children;
  const storageDrift = live.statefulSet ? volumeClaimDrift(desired.statefulSet, live.statefulSet) : undefined;
  if (storageDrift && desired.statefulSet.spec) desired.statefulSet.spec.volumeClaimTemplates = live.statefulSet?.spec?.volumeClaimTemplates;
  const pairs: Array<[KubernetesObject | undefined, KubernetesObject | undefined]> = [
    [desired.serviceAccount, live.serviceAccount],
    [desired.roleBinding, live.roleBinding],
    [desired.configMap, live.configMap],
    [desired.service, live.service],
    [desired.networkPolicy, live.networkPolicy],
    [desired.statefulSet, live.statefulSet],
  ];
  // Nothing changed in the rendering and nobody else changed the child: no write (an
  // Agent at rest costs no API writes). Each child is applied with the hash of its
  // rendering, which the cache keeps instead of its spec (kube/subset.ts needsApply).
  const namespace = o.agent.metadata.namespace ?? 'default';
  const written = (want: KubernetesObject) => o.written?.(want.kind ?? '', namespace, want.metadata?.name ?? '');
  const hashed = new Map<KubernetesObject, V1StatefulSet>();
  const apply = pairs
    .filter(([want, have]) => want && needsApply(want, have, written(want), FIELD_MANAGER))
    .map(([want]) => {
      const out = withAppliedHash(want as KubernetesObject);
      hashed.set(want as KubernetesObject, out);
      return out;
    });
  return {
    apply,
    ...(!desired.roleBinding && live.roleBinding ? { deleteRoleBinding: childNames(o.agent.metadata.name).roleBinding } : {}),
    statefulSet: hashed.get(desired.statefulSet) ?? desired.statefulSet,
    ...(storageDrift ? { storageDrift } : {}),
  };
}

/**
 * Plans one reconcile. `ca` is the CA to render with ({@link planCa} said keep, or one
 * was minted because it said generate); it may be absent only when the checks block the Agent.
 * @throws Error without `ca` for an Agent that is not blocked, or when rendering fails
 *   other than with an InvalidPersonaError (both bugs)
 */
export function plan(o: Observed, settings: PlanSettings, ca?: CaMaterial, checked: ReturnType<typeof planChecks> = planChecks(o)): Plan {
  const { checks, blocked } = checked;
  const persona = resolvePersona(o).files;
  if (blocked || !persona) return { checks, ...(blocked ? { blocked } : {}), apply: [], events: [], notes: [] };
  if (!ca) throw new Error('plan: an Agent whose checks pass needs its egress CA (planCa says which)');
  const rendered = render(o, settings, persona, ca);
  // A persona that cannot be assembled blocks the Agent: no CA is stored for it yet.
  if (!rendered.desired) return { checks, ...(rendered.blocked ? { blocked: rendered.blocked } : {}), apply: [], events: [], notes: rendered.notes };
  const { egressCa, events } = caSecret(o, ca);
  return { checks, ...(egressCa ? { egressCa } : {}), events, notes: rendered.notes, ...childChanges(o, rendered.desired) };
}
