import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { Agent, GROUP, PLURAL, VERSION } from './api/agent.ts';
import { LABEL_COMPONENT, LABEL_INSTANCE, LABEL_SHARD, LABEL_TEAM } from './api/constants.ts';
import type { Clients } from './kube/clients.ts';
import { listAgents, listManaged, listMetadata, NOT_MANAGED_SELECTOR, type ManagedResource } from './kube/lists.ts';
import { identityOnly, PARTIAL_OBJECT_METADATA_ACCEPT } from './kube/metadata.ts';
import { WrittenVersions } from './kube/subset.ts';
import type { OperatorMetrics } from './observability/metrics.ts';
import { makeAgentReconciler, makeRosterReconciler, ROSTER_KEY_PREFIX, rosterKey, WrittenStatuses } from './reconcile/agent.ts';
import type { ChildKind } from './reconcile/observed.ts';
import { referencedObjects, type ObjectReference } from './reconcile/references.ts';
import type { SharedRules } from './render/persona.ts';
import { Controller } from './runtime/controller.ts';
import { ResilientInformer, type InformerOptions } from './runtime/informer.ts';
import { objectKey, ReferenceIndex } from './runtime/reference-index.ts';
import { childCache, podCache, trimMetadata } from './runtime/trim.ts';
import { childSelector } from './sharding.ts';

export interface OperatorOptions {
  clients: Clients;
  log: Logger;
  metrics: OperatorMetrics;
  image: string;
  shared: SharedRules;
  workers: number;
  resyncMs: number;
  /** Label selector limiting the Agents this operator reconciles (sharding, canaries); all when unset. */
  agentSelector?: string;
}

/** Key of an object in the work queue: `namespace/name`. */
function keyOf(obj: KubernetesObject): string {
  return `${obj.metadata?.namespace ?? 'default'}/${obj.metadata?.name ?? ''}`;
}

/** Key of the Agent that owns a child, from its instance label (set by every renderer). */
function ownerKeyOf(obj: KubernetesObject): string | undefined {
  const agent = obj.metadata?.labels?.[LABEL_INSTANCE];
  return agent ? `${obj.metadata?.namespace ?? 'default'}/${agent}` : undefined;
}

/**
 * Agent keys by the Secrets and ConfigMaps their spec names (by name, so one created
 * later is found), re-parsed only when an Agent's generation changed: a status write
 * (most Agent events) changes no spec, so costs no parse.
 */
class AgentReferences {
  private readonly byName = new ReferenceIndex();
  private readonly indexedAt = new Map<string, number | undefined>();

  /** Indexes what the Agent `key` (as cached; undefined when gone) refers to. */
  index(key: string, obj: KubernetesObject | undefined): void {
    const generation = obj?.metadata?.generation;
    if (obj && this.indexedAt.has(key) && generation !== undefined && this.indexedAt.get(key) === generation) return;
    const parsed = obj ? Agent.safeParse(obj) : undefined;
    this.byName.set(key, parsed?.success ? referencedObjects(parsed.data).map((r) => objectKey(r.kind, r.namespace, r.name)) : []);
    if (obj) this.indexedAt.set(key, generation);
    else this.indexedAt.delete(key);
  }

  /** The keys of the Agents that name this object. */
  owners(kind: ObjectReference['kind'], namespace: string, name: string): Iterable<string> {
    return this.byName.owners(objectKey(kind, namespace, name));
  }
}

/**
 * Per Agent key, the roster-relevant fields last seen and its team. A teammate joining,
 * leaving, or changing what the roster shows changes every teammate's roster; a status
 * update does not (queueing the team then would be O(team²) reconciles).
 */
class RosterPrints {
  private readonly prints = new Map<string, string>();
  private readonly teams = new Map<string, string>();

  /** The teams whose roster an event of Agent `key` changed (its old and new team; none when nothing shown changed). */
  changedTeams(key: string, obj: KubernetesObject, gone: boolean): Set<string> {
    const spec = (obj as { spec?: { team?: string; harness?: unknown; github?: unknown; matrix?: unknown; repos?: unknown } }).spec;
    const print = gone ? 'gone' : JSON.stringify([spec?.team, spec?.harness, spec?.github, spec?.matrix, spec?.repos, obj.metadata?.labels?.[LABEL_SHARD]]);
    if (this.prints.get(key) === print) return new Set();
    const teams = new Set([spec?.team, this.teams.get(key)].filter((t): t is string => !!t));
    if (gone) {
      this.prints.delete(key);
      this.teams.delete(key);
    } else {
      this.prints.set(key, print);
      if (spec?.team) this.teams.set(key, spec.team);
      else this.teams.delete(key);
    }
    return teams;
  }
}

/**
 * Agent keys by `namespace/team`, kept from the Agent events, so the roster of a team is
 * rendered from its members without listing the namespace (O(team), not O(N), per roster).
 */
class TeamIndex {
  private readonly members = new Map<string, Set<string>>();
  private readonly teamOf = new Map<string, string>();

  /** Records Agent `key`'s team (`namespace/team`; undefined: none, or the Agent is gone). */
  set(key: string, team: string | undefined): void {
    const before = this.teamOf.get(key);
    if (before === team) return;
    if (before) {
      const set = this.members.get(before);
      set?.delete(key);
      if (set?.size === 0) this.members.delete(before);
    }
    if (team) {
      this.teamOf.set(key, team);
      let set = this.members.get(team);
      if (!set) this.members.set(team, (set = new Set()));
      set.add(key);
    } else {
      this.teamOf.delete(key);
    }
  }

  /** The Agent keys of `team` in `namespace`. */
  keys(namespace: string, team: string): Iterable<string> {
    return this.members.get(`${namespace}/${team}`) ?? [];
  }
}

/**
 * The resourceVersion of each child as our last apply returned it (`Kind/namespace/name`),
 * so the watch event that merely echoes our own write queues no reconcile: the reconcile
 * that wrote it already knows. An entry lives until the next event of that object. A
 * deletion's event carries a newer resourceVersion, so it is never taken for an echo.
 */
class OwnWrites {
  private readonly rv = new Map<string, string>();

  /** Records an object as our apply returned it. */
  wrote(kind: string, obj: KubernetesObject): void {
    const version = obj.metadata?.resourceVersion;
    if (version) this.rv.set(`${kind}/${obj.metadata?.namespace}/${obj.metadata?.name}`, version);
  }

  /** True when this event shows exactly the version our last apply of it returned (the entry is then dropped). */
  isEcho(kind: string, obj: KubernetesObject): boolean {
    const k = `${kind}/${obj.metadata?.namespace}/${obj.metadata?.name}`;
    const mine = this.rv.get(k);
    if (mine === undefined) return false;
    this.rv.delete(k);
    return mine === obj.metadata?.resourceVersion;
  }
}

/** The Kind of each managed resource's objects (list items carry no kind). */
const KIND_OF: Record<ManagedResource, string> = {
  pods: 'Pod',
  statefulsets: 'StatefulSet',
  secrets: 'Secret',
  configmaps: 'ConfigMap',
  services: 'Service',
  serviceaccounts: 'ServiceAccount',
  rolebindings: 'RoleBinding',
  networkpolicies: 'NetworkPolicy',
};

/**
 * The agents-by-phase gauge, kept in O(1) per reconcile: only the Agent's old and new
 * phase change (a phase left with no Agent reads 0).
 */
function phaseGauge(metrics: OperatorMetrics): (key: string, phase: string | undefined) => void {
  const phases = new Map<string, string>();
  return (key, phase) => {
    const before = phases.get(key);
    if (before === phase) return;
    if (before) metrics.agentsByPhase.dec({ phase: before });
    if (phase) {
      phases.set(key, phase);
      metrics.agentsByPhase.inc({ phase });
    } else {
      phases.delete(key);
    }
  };
}

/**
 * The Agent operator: informers on Agents and on every kind of child it manages (seen
 * through the managed-by label), all feeding one keyed queue of Agent keys, and the
 * Agent reconciler behind it.
 *
 * It also watches the metadata of every Secret and ConfigMap it does not manage (PartialObjectMetadata:
 * never a value, not even over the wire) and, through an index of what each Agent's spec
 * names (references.ts referencedObjects), queues exactly the Agents that refer to one
 * that was created, changed or deleted: a credential key renamed or a persona broken
 * shows in the Agent's conditions within seconds rather than at the next resync. The
 * reconcile still reads the one Secret or ConfigMap it checks with a GET.
 */
export class AgentOperator {
  readonly controller: Controller;
  private readonly informers: ResilientInformer<KubernetesObject>[] = [];
  private readonly informerNames: string[] = [];
  private synced = false;
  private stopping = false;
  /** The version of each child as our last apply returned it (drift is a version we did not write). */
  private readonly written = new WrittenVersions();

  private readonly opts: OperatorOptions;

  constructor(opts: OperatorOptions) {
    this.opts = opts;
    const references = new AgentReferences();
    const teams = new TeamIndex();
    const own = new OwnWrites();
    const statuses = new WrittenStatuses();
    const agents = this.watchAgents(references, teams, statuses);
    const { pods, children } = this.watchManaged(own);
    this.watchReferenced(references);
    // Counted at scrape time only (list() copies the cache into an array).
    opts.metrics.observeInformers(() => this.informers.map((inf, i) => [this.informerNames[i]!, inf.cache.list().length]));
    const reconcile = makeAgentReconciler({
      clients: opts.clients,
      image: opts.image,
      shared: opts.shared,
      resyncMs: opts.resyncMs,
      caches: {
        agent: (ns, name) => agents.cache.get(name, ns),
        agents: (ns) => agents.cache.list(ns),
        // Each informer lists exactly its kind, so the cast holds.
        child: (kind, ns, name) => children[kind].cache.get(name, ns) as never,
        pod: (ns, name) => pods.cache.get(name, ns),
        written: this.written.lookup,
      },
      onPhase: phaseGauge(opts.metrics),
      writtenStatuses: statuses,
      onApplied: (obj) => {
        own.wrote(obj.kind ?? '', obj);
        this.written.record(obj);
      },
    });
    const reconcileRoster = makeRosterReconciler({
      clients: opts.clients,
      caches: { agent: () => undefined, agents: () => [], child: (kind, ns, name) => children[kind].cache.get(name, ns) as never, pod: () => undefined },
      teamMembers: (ns, team) => [...teams.keys(ns, team)].flatMap((k) => agents.cache.get(k.slice(ns.length + 1), ns) ?? []),
      onApplied: (obj) => {
        own.wrote(obj.kind ?? '', obj);
        this.written.record(obj);
      },
    });
    this.controller = new Controller({
      name: 'agent',
      // One queue for Agents and team rosters (`roster:<namespace>/<team>`), so a roster is applied once per team change.
      reconcile: (key, log, how) => (key.startsWith(ROSTER_KEY_PREFIX) ? reconcileRoster(key) : reconcile(key, log, how)),
      workers: opts.workers,
      // One more worker that takes only status changes (the high lane): an Agent turning Ready never waits for a burst's full reconciles.
      priorityWorkers: 1,
      // An Agent blocked on its spec is still resynced, as every Agent is.
      terminalRecheckMs: opts.resyncMs,
      log: opts.log,
      metrics: opts.metrics,
      waitForCacheSync: async () => {
        await Promise.all(this.informers.map((i) => i.waitForSync()));
      },
    });
  }

  /**
   * The Agent informer: queues the Agent when it is new, gone, or its generation or shard
   * label changed (controller-runtime's GenerationChangedPredicate, plus the one label that
   * is rendered onto the children: our own status writes, which change neither, queue nothing), re-indexes what it references and its team, and queues
   * its team's roster (one key per team) when what the roster shows of it changed.
   */
  private watchAgents(references: AgentReferences, teams: TeamIndex, statuses: WrittenStatuses): ResilientInformer<KubernetesObject> {
    const agentSelector = this.opts.agentSelector || undefined;
    const roster = new RosterPrints();
    // What a reconcile renders from: the spec (its generation) and the shard label (copied onto children).
    const inputs = new Map<string, string>();
    const agents = this.informer({
      name: 'agents',
      path: `/apis/${GROUP}/${VERSION}/${PLURAL}`,
      list: () => listAgents(this.opts.clients, agentSelector),
      onChange: (obj) => {
        const key = keyOf(obj);
        const namespace = obj.metadata?.namespace ?? 'default';
        const cached = agents.cache.get(obj.metadata?.name ?? '', obj.metadata?.namespace);
        statuses.seen(key, cached?.metadata?.resourceVersion);
        const input = cached ? `${cached.metadata?.generation}/${cached.metadata?.labels?.[LABEL_SHARD] ?? ''}` : undefined;
        if (input === undefined || inputs.get(key) !== input) this.controller.enqueue(key);
        if (input !== undefined) inputs.set(key, input);
        else inputs.delete(key);
        references.index(key, cached);
        const team = (cached as { spec?: { team?: string } } | undefined)?.spec?.team;
        teams.set(key, team ? `${namespace}/${team}` : undefined);
        for (const changed of roster.changedTeams(key, obj, cached === undefined)) this.controller.enqueue(rosterKey(namespace, changed));
      },
      ...(agentSelector ? { labelSelector: agentSelector } : {}),
    });
    return agents;
  }

  /**
   * The informers of the kinds the operator manages (managed-by label), each queueing the
   * owning Agent. The caches keep what reconcile reads (runtime/trim.ts childCache): a
   * child's metadata (its applied-hash annotation says what was rendered, its version who
   * wrote it last), a StatefulSet's status and claim templates, the CA Secret's data, a
   * roster whole; of pods, what their Agent's status reads (runtime/trim.ts podCache).
   */
  private watchManaged(own: OwnWrites): { pods: ResilientInformer<KubernetesObject>; children: Record<ChildKind, ResilientInformer<KubernetesObject>> } {
    // A pod's or StatefulSet's change goes first and asks only for the Agent's status
    // (queue.ts: high lane, light); the echo of our own apply queues nothing; any other
    // child change (drift, a deletion) queues a full reconcile; a roster's, its team's key.
    const enqueueOwner = (resource: ManagedResource, obj: KubernetesObject) => {
      if (own.isEcho(KIND_OF[resource], obj)) return;
      const labels = obj.metadata?.labels;
      const team = labels?.[LABEL_COMPONENT] === 'team-roster' ? labels[LABEL_TEAM] : undefined;
      if (team) return this.controller.enqueue(rosterKey(obj.metadata?.namespace ?? 'default', team));
      const key = ownerKeyOf(obj);
      if (!key) return;
      if (resource === 'pods' || resource === 'statefulsets') this.controller.enqueue(key, { priority: 'high', light: true });
      else this.controller.enqueue(key);
    };
    // A shard (--agent-selector on agentsmith.dev/shard) caches only its own children (sharding.ts).
    const scope = childSelector(this.opts.agentSelector);
    if (this.opts.agentSelector && !scope.sharded) this.opts.log.info({ agentSelector: this.opts.agentSelector }, 'the Agent selector names labels the children do not carry: every managed child is cached (select on agentsmith.dev/shard to split them too)');
    const managed = (resource: ManagedResource, path: string, transform: (obj: KubernetesObject) => KubernetesObject) =>
      this.informer({
        name: resource,
        path,
        list: () => listManaged(this.opts.clients, resource, scope.selector),
        onChange: (obj) => enqueueOwner(resource, obj),
        onDelete: (obj) => this.written.forget(KIND_OF[resource], obj.metadata?.namespace ?? '', obj.metadata?.name ?? ''),
        labelSelector: scope.selector,
        transform,
      });
    return {
      pods: managed('pods', '/api/v1/pods', podCache),
      children: {
        StatefulSet: managed('statefulsets', '/apis/apps/v1/statefulsets', childCache.statefulSet),
        Secret: managed('secrets', '/api/v1/secrets', childCache.secret),
        ConfigMap: managed('configmaps', '/api/v1/configmaps', childCache.configMap),
        Service: managed('services', '/api/v1/services', childCache.metadata),
        ServiceAccount: managed('serviceaccounts', '/api/v1/serviceaccounts', childCache.metadata),
        RoleBinding: managed('rolebindings', '/apis/rbac.authorization.k8s.io/v1/rolebindings', childCache.metadata),
        NetworkPolicy: managed('networkpolicies', '/apis/networking.k8s.io/v1/networkpolicies', childCache.metadata),
      },
    };
  }

  /**
   * Metadata-only informers on every Secret and ConfigMap the operator does not manage
   * (kube/lists.ts NOT_MANAGED_SELECTOR: its own are in the child caches already; identity
   * kept: name, namespace, uid, resourceVersion), queueing the Agents that name the one
   * that changed; the value is read by the reconcile that this queues.
   */
  private watchReferenced(references: AgentReferences): void {
    const referenced = (kind: ObjectReference['kind'], name: string, path: string) =>
      this.informer({
        name,
        path,
        list: () => listMetadata(this.opts.clients, path, NOT_MANAGED_SELECTOR),
        onChange: (obj) => {
          const namespace = obj.metadata?.namespace ?? '';
          for (const key of references.owners(kind, namespace, obj.metadata?.name ?? '')) {
            this.opts.metrics.referenceReconciles.inc({ kind });
            this.controller.enqueue(key);
          }
        },
        transform: identityOnly,
        watchAccept: PARTIAL_OBJECT_METADATA_ACCEPT,
        labelSelector: NOT_MANAGED_SELECTOR,
      });
    referenced('Secret', 'secret-metadata', '/api/v1/secrets');
    referenced('ConfigMap', 'configmap-metadata', '/api/v1/configmaps');
  }

  /** A ResilientInformer with the operator's logger (cached objects trimmed by `trimMetadata` unless `transform` says otherwise). */
  private informer(opts: Omit<InformerOptions<KubernetesObject>, 'log'>): ResilientInformer<KubernetesObject> {
    const inf = new ResilientInformer<KubernetesObject>(this.opts.clients.kc, { transform: trimMetadata, ...opts, log: this.opts.log });
    this.informers.push(inf);
    this.informerNames.push(opts.name);
    return inf;
  }

  /**
   * Starts the informers and resolves once every cache has synced. A standby replica
   * (leader election) runs only this, so it can take over with warm caches.
   */
  async startInformers(): Promise<void> {
    for (const inf of this.informers) inf.start();
    await Promise.all(this.informers.map((i) => i.waitForSync()));
    this.synced = true;
  }

  /** Starts the reconcile workers (after the caches have synced). */
  async startWorkers(): Promise<void> {
    await this.controller.start();
  }

  /** Ready: caches synced (leader or standby alike, as controller-runtime reports it). */
  isReady(): boolean {
    return this.synced && !this.stopping;
  }

  /** Stops workers (letting in-flight reconciles finish), then the informers. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.controller.stop();
    await Promise.all(this.informers.map((i) => i.stop()));
  }
}
