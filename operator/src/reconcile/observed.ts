/**
 * What the Agent reconciler sees of the world before deciding anything: the `Observed`
 * snapshot gather.ts builds and plan.ts decides from. Types only.
 */
import type {
  KubernetesObject,
  V1ConfigMap,
  V1EndpointSlice,
  V1NetworkPolicy,
  V1Pod,
  V1RoleBinding,
  V1Secret,
  V1Service,
  V1ServiceAccount,
  V1StatefulSet,
} from '@kubernetes/client-node';
import type { Agent } from '../api/agent.ts';
import type { WrittenLookup } from '../kube/subset.ts';
import type { InClusterService } from '../render/networkpolicy.ts';

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
  /** The version of a child as this process last applied it (kube/subset.ts WrittenVersions); absent: none known. */
  written?: WrittenLookup;
}

/** An Agent's children as the caches last saw them (render/meta.ts childNames; the roster of its team). */
export interface ObservedChildren {
  serviceAccount?: V1ServiceAccount;
  roleBinding?: V1RoleBinding;
  configMap?: V1ConfigMap;
  roster?: V1ConfigMap;
  service?: V1Service;
  networkPolicy?: V1NetworkPolicy;
  statefulSet?: V1StatefulSet;
}

/** An in-cluster Service the spec names (spec.events, spec.matrix) and what the API server holds of it. */
export interface ObservedService {
  ref: InClusterService;
  /** Undefined when it does not exist. */
  live?: V1Service;
}

/**
 * One Agent's world, read before anything is decided (gather.ts). Referenced objects are
 * keyed by name in the Agent's namespace; a name mapped to `undefined` was looked up and
 * not found. What the spec does not name is not read (and absent here).
 */
export interface Observed {
  agent: Agent;
  /** The ConfigMaps the spec names (spec.persona.configMapRef, spec.egress.upstreamCaConfigMapRef). */
  configMaps: ReadonlyMap<string, V1ConfigMap | undefined>;
  /** The Secrets the spec names (credentials, the Matrix token, image pull Secrets). Values are never logged or copied. */
  secrets: ReadonlyMap<string, V1Secret | undefined>;
  /** spec.kubernetesAccess.clusterRole and whether it exists. */
  clusterRole?: { name: string; found: boolean };
  /** spec.storage.storageClassName and whether it exists. */
  storageClass?: { name: string; found: boolean };
  /** The in-cluster Services of spec.events / spec.matrix; read under iptables enforcement only (else empty). */
  services: readonly ObservedService[];
  /** default/kubernetes and its EndpointSlices; read for an Agent with spec.kubernetesAccess.clusterRole only. */
  apiServer?: { service?: V1Service; slices: readonly V1EndpointSlice[] | 'forbidden' };
  /** `<agent>-egress-ca` as cached, or as read live when the cached one would be replaced. */
  egressCaSecret?: V1Secret;
  children: ObservedChildren;
  /** The agent's pod (`<agent>-0`), metadata and status only. */
  pod?: V1Pod;
  /** The version of each child as this process last applied it (Caches.written): tells drift from our own writes. */
  written?: WrittenLookup;
  /** The parsed Agents of the same spec.team in the namespace (the roster); empty without a team. */
  teammates: readonly Agent[];
}
