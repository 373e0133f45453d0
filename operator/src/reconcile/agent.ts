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
import type { Clients } from '../kube/clients.ts';
import { generateEgressCa } from '../pki/egress-ca.ts';
import type { SharedRules } from '../render/persona.ts';
import type { ReconcileResult } from '../runtime/controller.ts';
import { TerminalError } from '../runtime/errors.ts';
import { applyPlan, writeReport } from './act.ts';
import { CA_VALIDITY_DAYS } from './egress-ca.ts';
import { gather } from './gather.ts';
import type { Caches } from './observed.ts';
import { plan, planCa, planChecks, type CaMaterial } from './plan.ts';
import { planReport } from './report.ts';


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
 * The parsed teammates of a namespace, memoised per cached object: the informer replaces
 * an object when it changes, so an entry lives exactly as long as the version it was
 * parsed from. Only teammates are parsed (parsing every Agent of the namespace on every
 * reconcile made a burst of N reconciles cost O(N²) zod parses).
 */
function teammateParser(caches: Caches): (namespace: string, team: string) => Agent[] {
  const parsed = new WeakMap<KubernetesObject, Agent[]>();
  const parse = (o: KubernetesObject): Agent[] => {
    let p = parsed.get(o);
    if (!p) {
      const a = Agent.safeParse(o);
      p = a.success ? [a.data] : [];
      parsed.set(o, p);
    }
    return p;
  };
  return (namespace, team) => caches.agents(namespace).flatMap((o) => (teamOf(o) === team ? parse(o) : []));
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
  const sources = { clients: deps.clients, caches: deps.caches, teammates: teammateParser(deps.caches) };
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
    // The API server validated it, so this is a schema drift between CRD and operator.
    if (!parsed.success) throw new TerminalError(SCHEMA_MISMATCH, `stored Agent does not match the operator schema: ${firstIssue(parsed.error)}`);
    const agent = parsed.data;
    const at = now();

    const observed = await gather(sources, agent, at);
    const checked = planChecks(observed);
    const decided = plan(observed, deps, await caMaterial(agent, planCa(observed, at, checked), at), checked);
    const outcome = await applyPlan(deps.clients, log, agent, decided);
    const report = planReport(observed, decided, outcome, at, deps.resyncMs);

    deps.onPhase?.(key, report.status.phase);
    if (!(await writeReport(deps.clients, log, agent, report))) return {};
    if (report.blocked?.retry === 'on-change') throw new TerminalError(report.blocked.reason, report.blocked.message);
    if (report.blocked) log.warn({ reason: report.blocked.reason, detail: report.blocked.message }, 'Agent cannot be reconciled as specified');
    return { requeueAfterMs: report.requeueAfterMs };
  };
}
