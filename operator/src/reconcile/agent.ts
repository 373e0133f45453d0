/**
 * The level-based reconcile of one Agent (DESIGN.md flow 1) as gather -> plan -> act:
 * gather.ts reads the Agent's world into an `Observed` snapshot; plan.ts decides, purely,
 * the reference conditions, the egress CA and the children to apply; act.ts applies them;
 * report.ts decides, purely, the status and its Events; act.ts writes them. Only kube/
 * talks to the API server. It never asks what event caused it.
 */
import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { Agent } from '../api/agent.ts';
import { ConditionType } from '../api/constants.ts';
import { applyObject } from '../kube/apply.ts';
import type { Clients } from '../kube/clients.ts';
import { readSecret } from '../kube/reads.ts';
import { isSubset } from '../kube/subset.ts';
import { generateEgressCa } from '../pki/egress-ca.ts';
import { childNames } from '../render/meta.ts';
import type { SharedRules } from '../render/persona.ts';
import { renderRoster, rosterMember, rosterName, type RosterMember } from '../render/roster.ts';
import type { ReconcileResult } from '../runtime/controller.ts';
import { TemporaryError, TerminalError } from '../runtime/errors.ts';
import { applyPlan, writeReport } from './act.ts';
import { CA_VALIDITY_DAYS } from './egress-ca.ts';
import { gather } from './gather.ts';
import type { ConditionInput } from './conditions.ts';
import type { Caches, Observed } from './observed.ts';
import { plan, planCa, planChecks, type CaMaterial, type Plan } from './plan.ts';
import { planReport } from './report.ts';

/** Prefix of a team roster's key in the work queue, `roster:<namespace>/<team>` (a namespace has no ':', so it is never an Agent key). */
export const ROSTER_KEY_PREFIX = 'roster:';

/** The queue key of the roster of `team` in `namespace`. */
export function rosterKey(namespace: string, team: string): string {
  return `${ROSTER_KEY_PREFIX}${namespace}/${team}`;
}


/** Reason of the TerminalError for a stored Agent the operator's schema refuses. */
export const SCHEMA_MISMATCH = 'SchemaMismatch';

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
  /**
   * The cached Agents of `team` in `namespace`, from an index the caller keeps (so no
   * namespace is listed per reconcile); without it, the namespace's Agents are filtered.
   */
  teamMembers?: (namespace: string, team: string) => readonly KubernetesObject[];
  /** The statuses written but not yet seen back, shared with the Agent informer, which calls `seen` on each event (a private one when absent). */
  writtenStatuses?: WrittenStatuses;
  /** Called with each child as an apply (or create) returned it, so the caller can tell the watch's echo of it (operator.ts). */
  onApplied?: (obj: KubernetesObject) => void;
}

/** `spec.team` of an Agent as cached (unparsed). */
function teamOf(o: KubernetesObject): string | undefined {
  return (o as { spec?: { team?: string } }).spec?.team;
}

/** A readable path of the first zod issue, e.g. `spec.storage.home: must be a positive quantity`. */
function firstIssue(error: { issues: Array<{ path: PropertyKey[]; message: string }> }): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid';
  return `${issue.path.map(String).join('.')}: ${issue.message}`;
}

/**
 * The teammates of a namespace as roster members (render/roster.ts rosterMember), parsed
 * once per cached object: the informer replaces an object when it changes, so an entry
 * lives exactly as long as the version it was parsed from. Only teammates are parsed
 * (parsing every Agent of the namespace on every reconcile made a burst of N reconciles
 * cost O(N²) zod parses), and only the member is kept, not the parsed Agent.
 */
function teammateParser(caches: Caches, teamMembers?: AgentReconcilerDeps['teamMembers']): (namespace: string, team: string) => RosterMember[] {
  const parsed = new WeakMap<KubernetesObject, RosterMember[]>();
  const parse = (o: KubernetesObject): RosterMember[] => {
    let p = parsed.get(o);
    if (!p) {
      const a = Agent.safeParse(o);
      p = a.success ? [rosterMember(a.data)] : [];
      parsed.set(o, p);
    }
    return p;
  };
  const members = teamMembers ?? ((namespace: string, team: string) => caches.agents(namespace).filter((o) => teamOf(o) === team));
  return (namespace, team) => members(namespace, team).flatMap((o) => (teamOf(o) === team ? parse(o) : []));
}

/**
 * The status each Agent was last written with, while the cache still shows the version it
 * was written over: a reconcile that runs before the watch brings our own write back
 * (a pod event right after it) compares with what we wrote, not with the stale cache, so
 * it neither writes the same status again nor records its Events twice. An entry lives
 * until the Agent's next watch event ({@link WrittenStatuses.seen}, called by the
 * informer), normally milliseconds: a status copy kept per Agent until the next
 * reconcile would cost about 3 kB an Agent at rest.
 */
export class WrittenStatuses {
  private readonly byKey = new Map<string, { over: string | undefined; status: Agent['status'] }>();

  /** The Agent with the status we last wrote, when the cached `raw` is still the version that write replaced. */
  latest(key: string, raw: KubernetesObject, agent: Agent): Agent {
    const w = this.byKey.get(key);
    if (!w) return agent;
    if (w.over !== undefined && w.over === raw.metadata?.resourceVersion) return { ...agent, status: w.status };
    this.byKey.delete(key);
    return agent;
  }

  /** The cache now holds version `resourceVersion` of Agent `key` (undefined: gone): drops an entry that it has overtaken. */
  seen(key: string, resourceVersion: string | undefined): void {
    const w = this.byKey.get(key);
    if (w && w.over !== resourceVersion) this.byKey.delete(key);
  }

  /** Forgets a deleted Agent. */
  forget(key: string): void {
    this.byKey.delete(key);
  }

  /**
   * Records that the status of `report` was written over the cached version `over`, unless
   * the cache has already moved past it (`cached`: the version it holds now; the watch
   * event of the write came first), when there is nothing to bridge and nothing is kept.
   */
  record(key: string, over: { metadata?: { resourceVersion?: string } }, report: { write: boolean; status: Agent['status'] }, cached: string | undefined): void {
    const version = over.metadata?.resourceVersion;
    if (report.write && version !== undefined && version === cached) this.byKey.set(key, { over: version, status: report.status });
  }
}

/** The CA to render with: the kept one, or one minted now (key generation: no API call). */
async function caMaterial(agent: Agent, decision: ReturnType<typeof planCa>, at: Date): Promise<CaMaterial | undefined> {
  if (!decision) return undefined;
  if (decision.action === 'keep') return decision;
  const namespace = agent.metadata.namespace ?? 'default';
  const minted = await generateEgressCa({ agent: `${namespace}/${agent.metadata.name}`, allow: agent.spec.egress.allow, now: at, validityDays: CA_VALIDITY_DAYS });
  return { action: 'generate', why: decision.why, minted };
}

/**
 * Builds the reconcile of one Agent key (`namespace/name`).
 *
 * A broken reference (a missing persona ConfigMap or credential Secret) or a spec that
 * cannot be rendered is shown as a condition naming the field and the fix, and no child
 * is changed, so a pod is never rolled out with a broken config. A missing reference is
 * looked at again after BLOCKED_RETRY_MS (report.ts); a spec that only its owner can fix
 * (SpecValid False, a persona that cannot be assembled, a StatefulSet the API server
 * refuses) ends in a TerminalError once its status is written: no timed retry but the
 * resync (the controller's terminalRecheckMs), and at once when the Agent changes. API failures are thrown as kube/ types them (TemporaryError: backoff;
 * RetryAfter: the server's delay).
 */
export function makeAgentReconciler(deps: AgentReconcilerDeps) {
  const now = deps.now ?? (() => new Date());
  // The roster is applied once per team change by its own key (makeRosterReconciler), not by every teammate.
  const sources = { clients: deps.clients, caches: deps.caches, teammates: () => [] };
  const written = deps.writtenStatuses ?? new WrittenStatuses();
  return async function reconcileAgent(key: string, log: Logger, how: { light: boolean } = { light: false }): Promise<ReconcileResult> {
    const [namespace = 'default', name = ''] = key.split('/');
    const raw = deps.caches.agent(namespace, name);
    if (!raw) {
      // Deleted: owner references let the garbage collector remove the children.
      deps.onPhase?.(key, undefined);
      written.forget(key);
      return {};
    }
    if (raw.metadata?.deletionTimestamp) return {};
    const parsed = Agent.safeParse(raw);
    // The API server validated it, so this is a schema drift between CRD and operator.
    if (!parsed.success) throw new TerminalError(SCHEMA_MISMATCH, `stored Agent does not match the operator schema: ${firstIssue(parsed.error)}`);
    const agent = written.latest(key, raw, parsed.data);
    const at = now();

    if (how.light) {
      const quick = await statusOnly(deps, log, agent, at, written);
      if (quick) return quick;
    }
    let observed = await gather(sources, agent, at);
    const checked = planChecks(observed);
    let decided = plan(observed, deps, await caMaterial(agent, planCa(observed, at, checked), at), checked);
    let outcome = await applyPlan(deps.clients, log, agent, decided, deps.onApplied);
    if (outcome.caExists) {
      // Our own CA made a moment ago (the cache lags the write) or another writer's: use it, never replace it.
      const egressCaSecret = await readSecret(deps.clients, namespace, childNames(agent.metadata.name).egressCa);
      if (!egressCaSecret) throw new TemporaryError(`Secret ${childNames(agent.metadata.name).egressCa} exists (409 on create) but could not be read back`);
      observed = { ...observed, egressCaSecret };
      decided = plan(observed, deps, await caMaterial(agent, planCa(observed, at, checked), at), checked);
      // A CA that must be replaced is applied over (decided.egressCa.replaces), so this cannot loop.
      outcome = await applyPlan(deps.clients, log, agent, decided, deps.onApplied);
    }
    const report = planReport(observed, decided, outcome, at, deps.resyncMs);

    deps.onPhase?.(key, report.status.phase);
    if (!(await writeReport(deps.clients, log, agent, report))) return {};
    written.record(key, raw, report, deps.caches.agent(namespace, name)?.metadata?.resourceVersion);
    if (report.blocked?.retry === 'on-change') throw new TerminalError(report.blocked.reason, report.blocked.message);
    if (report.blocked) log.warn({ reason: report.blocked.reason, detail: report.blocked.message }, 'Agent cannot be reconciled as specified');
    return { requeueAfterMs: report.requeueAfterMs };
  };
}

/** The conditions of the reference checks (plan.ts planChecks), carried over as they are by a status-only reconcile. */
const CHECK_TYPES: ReadonlySet<string> = new Set([ConditionType.SpecValid, ConditionType.PersonaResolved, ConditionType.CredentialsResolved, ConditionType.ReferencesResolved]);

/**
 * The light reconcile of an Agent whose pod or StatefulSet status changed: its status
 * recomputed from the caches (no API read, no render, no apply) and written only if it
 * changed. Only for an Agent fully reconciled at its current generation whose checks all
 * passed and whose storage is in sync (so the last full reconcile's plan still holds);
 * otherwise undefined, and the caller does the full reconcile.
 */
async function statusOnly(deps: AgentReconcilerDeps, log: Logger, agent: Agent, at: Date, written: WrittenStatuses): Promise<ReconcileResult | undefined> {
  const status = agent.status;
  const conditions = status?.conditions ?? [];
  if (!status || status.observedGeneration !== (agent.metadata.generation ?? 0) || status.phase === 'Failed') return undefined;
  if (conditions.some((c) => (CHECK_TYPES.has(c.type) || c.type === ConditionType.StorageInSync) && c.status !== 'True')) return undefined;
  const checks: ConditionInput[] = conditions.filter((c) => CHECK_TYPES.has(c.type)).map((c) => ({ type: c.type, status: c.status, reason: c.reason, message: c.message }));
  if (checks.length !== CHECK_TYPES.size) return undefined;
  const namespace = agent.metadata.namespace ?? 'default';
  const names = childNames(agent.metadata.name);
  const statefulSet = deps.caches.child('StatefulSet', namespace, names.statefulSet);
  // Gone (deleted by someone): only the full reconcile puts it back.
  if (!statefulSet) return undefined;
  const pod = deps.caches.pod(namespace, names.pod);
  const observed: Observed = { agent, configMaps: new Map(), secrets: new Map(), services: [], children: { statefulSet }, ...(pod ? { pod } : {}), teammates: [] };
  const kept: Plan = { checks, apply: [], events: [], notes: [] };
  const report = planReport(observed, kept, {}, at, deps.resyncMs);
  deps.onPhase?.(`${namespace}/${agent.metadata.name}`, report.status.phase);
  if (await writeReport(deps.clients, log, agent, report)) written.record(`${namespace}/${agent.metadata.name}`, agent, report, deps.caches.agent(namespace, agent.metadata.name)?.metadata?.resourceVersion);
  return { requeueAfterMs: report.requeueAfterMs };
}

/** Where the roster reconciler reads from and what it writes with. */
export interface RosterReconcilerDeps {
  clients: Clients;
  caches: Caches;
  teamMembers?: AgentReconcilerDeps['teamMembers'];
  onApplied?: AgentReconcilerDeps['onApplied'];
}

/**
 * Builds the reconcile of one team roster key (`roster:<namespace>/<team>`, {@link rosterKey}):
 * the roster ConfigMap rendered from the team's cached Agents and applied when the cached
 * one differs. Queued once per change of what the roster shows (a teammate joining,
 * leaving or changing), however many teammates there are. A team with no Agent left
 * writes nothing: its roster's owners are gone, so the garbage collector removes it.
 * @throws TemporaryError when the API server refuses the roster (a rendering bug), and what kube/ throws
 */
export function makeRosterReconciler(deps: RosterReconcilerDeps) {
  const teammates = teammateParser(deps.caches, deps.teamMembers);
  return async function reconcileRoster(key: string): Promise<ReconcileResult> {
    const rest = key.slice(ROSTER_KEY_PREFIX.length);
    const slash = rest.indexOf('/');
    const namespace = rest.slice(0, slash);
    const team = rest.slice(slash + 1);
    const members = teammates(namespace, team).filter((a) => !a.metadata.deletionTimestamp);
    if (!members.length) return {};
    const desired = renderRoster(team, namespace, members);
    const live = deps.caches.child('ConfigMap', namespace, rosterName(team));
    if (live && isSubset(desired, live)) return {};
    const done = await applyObject(deps.clients, desired);
    if ('rejected' in done) throw new TemporaryError(`ConfigMap ${rosterName(team)} rejected: ${done.rejected}`);
    deps.onApplied?.({ ...done.applied, kind: 'ConfigMap' });
    return {};
  };
}
