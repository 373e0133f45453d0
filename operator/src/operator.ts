import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { Agent, GROUP, PLURAL, VERSION } from './api/agent.ts';
import { LABEL_INSTANCE, MANAGED_SELECTOR } from './api/constants.ts';
import type { Clients } from './kube/clients.ts';
import { identityOnly, listObjectMetadata, PARTIAL_OBJECT_METADATA_ACCEPT } from './kube/metadata.ts';
import type { OperatorMetrics } from './observability/metrics.ts';
import { makeAgentReconciler, type ChildKind } from './reconcile/agent.ts';
import { referencedObjects, type ObjectReference } from './reconcile/references.ts';
import type { SharedRules } from './render/persona.ts';
import { Controller } from './runtime/controller.ts';
import { ResilientInformer } from './runtime/informer.ts';
import { objectKey, ReferenceIndex } from './runtime/reference-index.ts';
import { statusOnly, trimMetadata } from './runtime/trim.ts';

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
 * The Agent operator: informers on Agents and on every kind of child it manages (seen
 * through the managed-by label), all feeding one keyed queue of Agent keys, and the
 * Agent reconciler behind it.
 *
 * It also watches the metadata of every Secret and ConfigMap (PartialObjectMetadata:
 * never a value, not even over the wire) and, through an index of what each Agent's spec
 * names (references.ts referencedObjects), queues exactly the Agents that refer to one
 * that was created, changed or deleted: a credential key renamed or a persona broken
 * shows in the Agent's conditions within seconds rather than at the next resync. The
 * reconcile still reads the one Secret or ConfigMap it checks with a GET.
 */
export class AgentOperator {
  readonly controller: Controller;
  private readonly informers: ResilientInformer<KubernetesObject>[] = [];
  private synced = false;
  private stopping = false;

  private readonly opts: OperatorOptions;

  constructor(opts: OperatorOptions) {
    this.opts = opts;
    const { clients, log } = opts;
    const enqueueOwner = (obj: KubernetesObject) => {
      const key = ownerKeyOf(obj);
      if (key) this.controller.enqueue(key);
    };
    const agentSelector = opts.agentSelector || undefined;
    /** Agent keys by the Secrets and ConfigMaps their spec names (by name, so one created later is found). */
    const references = new ReferenceIndex();
    /** The generation each Agent's references were indexed at: a status write (most Agent events) changes no spec, so no parse. */
    const indexedAt = new Map<string, number | undefined>();
    const indexReferences = (key: string, obj: KubernetesObject | undefined) => {
      const generation = obj?.metadata?.generation;
      if (obj && indexedAt.has(key) && generation !== undefined && indexedAt.get(key) === generation) return;
      const parsed = obj ? Agent.safeParse(obj) : undefined;
      references.set(key, parsed?.success ? referencedObjects(parsed.data).map((r) => objectKey(r.kind, r.namespace, r.name)) : []);
      if (obj) indexedAt.set(key, generation);
      else indexedAt.delete(key);
    };
    /** Per Agent key: the roster-relevant fields last seen, and its team (to notice a team change). */
    const rosterPrints = new Map<string, string>();
    const rosterTeams = new Map<string, string>();
    const agents = this.informer('agents', `/apis/${GROUP}/${VERSION}/${PLURAL}`, () =>
      clients.custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, ...(agentSelector ? { labelSelector: agentSelector } : {}) }) as never,
      (obj) => {
        const key = keyOf(obj);
        this.controller.enqueue(key);
        // A teammate joining, leaving, or changing what the roster shows changes every
        // teammate's roster; a status update does not (that would be O(team²) reconciles).
        const spec = (obj as { spec?: { team?: string; harness?: unknown; github?: unknown; matrix?: unknown; repos?: unknown } }).spec;
        const cached = agents.cache.get(obj.metadata?.name ?? '', obj.metadata?.namespace);
        indexReferences(key, cached);
        const gone = cached === undefined;
        const print = gone ? 'gone' : JSON.stringify([spec?.team, spec?.harness, spec?.github, spec?.matrix, spec?.repos]);
        if (rosterPrints.get(key) === print) return;
        const teams = new Set([spec?.team, rosterTeams.get(key)].filter((t): t is string => !!t));
        if (gone) {
          rosterPrints.delete(key);
          rosterTeams.delete(key);
        } else {
          rosterPrints.set(key, print);
          if (spec?.team) rosterTeams.set(key, spec.team);
          else rosterTeams.delete(key);
        }
        for (const other of agents.cache.list(obj.metadata?.namespace)) {
          const team = (other as { spec?: { team?: string } }).spec?.team;
          if (team && teams.has(team)) this.controller.enqueue(keyOf(other));
        }
      },
      agentSelector,
    );
    // The caches keep what reconcile reads: children whole but for managed fields (their
    // spec is compared with the desired one), pods' metadata and status only.
    const managed = (name: string, path: string, list: () => Promise<unknown>, transform = trimMetadata) =>
      this.informer(name, path, list as () => Promise<never>, enqueueOwner, MANAGED_SELECTOR, transform);
    const sel = { labelSelector: MANAGED_SELECTOR };
    const pods = managed('pods', '/api/v1/pods', () => clients.core.listPodForAllNamespaces(sel), statusOnly);
    const children: Record<ChildKind, ResilientInformer<KubernetesObject>> = {
      StatefulSet: managed('statefulsets', '/apis/apps/v1/statefulsets', () => clients.apps.listStatefulSetForAllNamespaces(sel)),
      Secret: managed('secrets', '/api/v1/secrets', () => clients.core.listSecretForAllNamespaces(sel)),
      ConfigMap: managed('configmaps', '/api/v1/configmaps', () => clients.core.listConfigMapForAllNamespaces(sel)),
      Service: managed('services', '/api/v1/services', () => clients.core.listServiceForAllNamespaces(sel)),
      ServiceAccount: managed('serviceaccounts', '/api/v1/serviceaccounts', () => clients.core.listServiceAccountForAllNamespaces(sel)),
      RoleBinding: managed('rolebindings', '/apis/rbac.authorization.k8s.io/v1/rolebindings', () => clients.rbac.listRoleBindingForAllNamespaces(sel)),
      NetworkPolicy: managed('networkpolicies', '/apis/networking.k8s.io/v1/networkpolicies', () => clients.networking.listNetworkPolicyForAllNamespaces(sel)),
    };

    // Metadata only, identity kept (name, namespace, uid, resourceVersion): the value of a
    // referenced Secret or ConfigMap is read by the reconcile that this event queues.
    const referenced = (kind: ObjectReference['kind'], name: string, path: string) =>
      this.informer(
        name,
        path,
        () => listObjectMetadata(clients.kc, path) as never,
        (obj) => {
          const namespace = obj.metadata?.namespace ?? '';
          for (const key of references.owners(objectKey(kind, namespace, obj.metadata?.name ?? ''))) {
            opts.metrics.referenceReconciles.inc({ kind });
            this.controller.enqueue(key);
          }
        },
        undefined,
        identityOnly,
        PARTIAL_OBJECT_METADATA_ACCEPT,
      );
    referenced('Secret', 'secret-metadata', '/api/v1/secrets');
    referenced('ConfigMap', 'configmap-metadata', '/api/v1/configmaps');

    const phases = new Map<string, string>();
    const reconcile = makeAgentReconciler({
      clients,
      image: opts.image,
      shared: opts.shared,
      resyncMs: opts.resyncMs,
      caches: {
        agent: (ns, name) => agents.cache.get(name, ns),
        agents: (ns) => agents.cache.list(ns),
        // Each informer lists exactly its kind, so the cast holds.
        child: (kind, ns, name) => children[kind].cache.get(name, ns) as never,
        pod: (ns, name) => pods.cache.get(name, ns),
      },
      // O(1) per reconcile: only the Agent's old and new phase change (a phase left
      // with no Agent reads 0).
      onPhase: (key, phase) => {
        const before = phases.get(key);
        if (before === phase) return;
        if (before) opts.metrics.agentsByPhase.dec({ phase: before });
        if (phase) {
          phases.set(key, phase);
          opts.metrics.agentsByPhase.inc({ phase });
        } else {
          phases.delete(key);
        }
      },
    });
    this.controller = new Controller({
      name: 'agent',
      reconcile,
      workers: opts.workers,
      log,
      metrics: opts.metrics,
      waitForCacheSync: async () => {
        await Promise.all(this.informers.map((i) => i.waitForSync()));
      },
    });
  }

  private informer(
    name: string,
    path: string,
    list: () => Promise<never>,
    onChange: (obj: KubernetesObject) => void,
    labelSelector?: string,
    transform: (obj: KubernetesObject) => KubernetesObject = trimMetadata,
    watchAccept?: string,
  ): ResilientInformer<KubernetesObject> {
    const inf = new ResilientInformer<KubernetesObject>(this.opts.clients.kc, {
      name,
      path,
      list,
      onChange,
      transform,
      log: this.opts.log,
      ...(labelSelector ? { labelSelector } : {}),
      ...(watchAccept ? { watchAccept } : {}),
    });
    this.informers.push(inf);
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
