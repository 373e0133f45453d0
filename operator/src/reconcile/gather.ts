/**
 * Gather: everything one Agent's reconcile decides from, read before anything is decided
 * (the `Observed` snapshot, observed.ts). Children, pods and Agents come from the
 * informer caches; what the spec names from the API server through kube/reads.ts (a
 * missing object is an answer; any other failure is thrown as kube/errors.ts says).
 */
import type { V1ConfigMap, V1Secret } from '@kubernetes/client-node';
import type { Agent } from '../api/agent.ts';
import type { Clients } from '../kube/clients.ts';
import { clusterRoleExists, listServiceEndpointSlices, readConfigMap, readSecret, readService, storageClassExists } from '../kube/reads.ts';
import { childNames } from '../render/meta.ts';
import { inClusterServices } from '../render/networkpolicy.ts';
import { rosterName } from '../render/roster.ts';
import { allowlistHash, planEgressCa } from './egress-ca.ts';
import type { Caches, Observed, ObservedChildren, ObservedService } from './observed.ts';
import { API_SERVER_SERVICE, referencedObjects } from './references.ts';

/** Where gather reads from. */
export interface GatherSources {
  clients: Clients;
  caches: Caches;
  /** The parsed Agents of `team` in `namespace` (the reconciler memoises the parse per cached object). */
  teammates(namespace: string, team: string): readonly Agent[];
}

/** The Secrets and ConfigMaps the spec names, each read once (references.ts referencedObjects). */
async function gatherReferenced(clients: Clients, agent: Agent): Promise<Pick<Observed, 'configMaps' | 'secrets'>> {
  const configMaps = new Map<string, V1ConfigMap | undefined>();
  const secrets = new Map<string, V1Secret | undefined>();
  await Promise.all(
    referencedObjects(agent).map(async (r) => {
      if (r.kind === 'Secret') secrets.set(r.name, await readSecret(clients, r.namespace, r.name));
      else configMaps.set(r.name, await readConfigMap(clients, r.namespace, r.name));
    }),
  );
  return { configMaps, secrets };
}

/** The cluster-scoped objects the spec names: whether each exists. */
async function gatherClusterScoped(clients: Clients, agent: Agent): Promise<Pick<Observed, 'clusterRole' | 'storageClass'>> {
  const role = agent.spec.kubernetesAccess?.clusterRole;
  const sc = agent.spec.storage.storageClassName;
  const [roleFound, scFound] = await Promise.all([role ? clusterRoleExists(clients, role) : false, sc ? storageClassExists(clients, sc) : false]);
  return { ...(role ? { clusterRole: { name: role, found: roleFound } } : {}), ...(sc ? { storageClass: { name: sc, found: scFound } } : {}) };
}

/**
 * The in-cluster Services the supervisor dials itself, under iptables enforcement only
 * (references.ts resolveServiceAddresses says why): 0 to 2 GETs (the child caches hold
 * only managed objects).
 */
async function gatherServices(clients: Clients, agent: Agent): Promise<ObservedService[]> {
  if (agent.spec.egress.enforcement !== 'iptables') return [];
  return Promise.all(inClusterServices(agent).map(async (ref) => {
    const live = await readService(clients, ref.namespace, ref.name);
    return live ? { ref, live } : { ref };
  }));
}

/** default/kubernetes and its EndpointSlices, for an Agent with spec.kubernetesAccess.clusterRole: one GET and one LIST. */
async function gatherApiServer(clients: Clients, agent: Agent): Promise<Observed['apiServer']> {
  if (!agent.spec.kubernetesAccess?.clusterRole) return undefined;
  const { name, namespace } = API_SERVER_SERVICE;
  const [service, slices] = await Promise.all([readService(clients, namespace, name), listServiceEndpointSlices(clients, namespace, name)]);
  return service ? { service, slices } : { slices };
}

/**
 * The egress CA Secret. The cache may lag our own last write (a CA made a moment ago, not
 * yet seen by the watch): when a cached one would be replaced, it is confirmed with a
 * live read, or a burst of reconciles would mint a new CA each time and roll the pod.
 * When the cache holds none, no read: the new one is created (POST), and a 409 says one
 * exists after all (agent.ts reads it then), so a first reconcile costs no GET.
 */
async function gatherEgressCa(sources: GatherSources, agent: Agent, now: Date): Promise<V1Secret | undefined> {
  const namespace = agent.metadata.namespace ?? 'default';
  const name = childNames(agent.metadata.name).egressCa;
  const cached = sources.caches.child('Secret', namespace, name);
  if (!cached || planEgressCa(cached, allowlistHash(agent), now).action === 'keep') return cached;
  return readSecret(sources.clients, namespace, name);
}

/** The Agent's children as cached. */
function gatherChildren(caches: Caches, agent: Agent): ObservedChildren {
  const namespace = agent.metadata.namespace ?? 'default';
  const names = childNames(agent.metadata.name);
  const team = agent.spec.team;
  const children: ObservedChildren = {
    serviceAccount: caches.child('ServiceAccount', namespace, names.serviceAccount),
    roleBinding: caches.child('RoleBinding', namespace, names.roleBinding),
    configMap: caches.child('ConfigMap', namespace, names.configMap),
    roster: team ? caches.child('ConfigMap', namespace, rosterName(team)) : undefined,
    service: caches.child('Service', namespace, names.service),
    networkPolicy: caches.child('NetworkPolicy', namespace, names.networkPolicy),
    statefulSet: caches.child('StatefulSet', namespace, names.statefulSet),
  };
  return Object.fromEntries(Object.entries(children).filter(([, v]) => v !== undefined));
}

/**
 * Reads one Agent's world (the API reads in parallel). Per reconcile: one GET per
 * Secret and ConfigMap the spec names, one per ClusterRole and StorageClass it names, 0
 * to 2 Services (iptables), a GET and a LIST for spec.kubernetesAccess, and a live GET of
 * the egress CA Secret only when a cached one would be replaced.
 * @throws TemporaryError or RetryAfter from kube/ when a read fails other than with 404
 */
export async function gather(sources: GatherSources, agent: Agent, now: Date): Promise<Observed> {
  const { clients, caches } = sources;
  const namespace = agent.metadata.namespace ?? 'default';
  const [referenced, clusterScoped, services, apiServer, egressCaSecret] = await Promise.all([
    gatherReferenced(clients, agent),
    gatherClusterScoped(clients, agent),
    gatherServices(clients, agent),
    gatherApiServer(clients, agent),
    gatherEgressCa(sources, agent, now),
  ]);
  const pod = caches.pod(namespace, childNames(agent.metadata.name).pod);
  return {
    agent,
    ...referenced,
    ...clusterScoped,
    services,
    ...(apiServer ? { apiServer } : {}),
    ...(egressCaSecret ? { egressCaSecret } : {}),
    children: gatherChildren(caches, agent),
    ...(pod ? { pod } : {}),
    ...(caches.written ? { written: caches.written } : {}),
    teammates: agent.spec.team ? sources.teammates(namespace, agent.spec.team) : [],
  };
}
