import {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  DiscoveryV1Api,
  EventsV1Api,
  KubernetesObjectApi,
  type KubeConfig,
  NetworkingV1Api,
  RbacAuthorizationV1Api,
  StorageV1Api,
} from '@kubernetes/client-node';
import { PooledKubeConfig } from './kubeconfig.ts';

/** The API clients the operator uses. Only the `kube/` layer and `main.ts` touch these. */
export interface Clients {
  kc: KubeConfig;
  core: CoreV1Api;
  apps: AppsV1Api;
  custom: CustomObjectsApi;
  /** EndpointSlices: where the `kubernetes` Service's API servers are (spec.kubernetesAccess). */
  discovery: DiscoveryV1Api;
  events: EventsV1Api;
  objects: KubernetesObjectApi;
  rbac: RbacAuthorizationV1Api;
  networking: NetworkingV1Api;
  storage: StorageV1Api;
}

/**
 * Loads a kubeconfig the usual way (`$KUBECONFIG`, `~/.kube/config`, or the in-cluster
 * service account) unless `kubeconfigPath` names one. Every client shares one pool of
 * keep-alive connections (PooledKubeConfig).
 */
export function makeClients(kubeconfigPath?: string): Clients {
  const kc = new PooledKubeConfig();
  if (kubeconfigPath) kc.loadFromFile(kubeconfigPath);
  else kc.loadFromDefault();
  return {
    kc,
    core: kc.makeApiClient(CoreV1Api),
    apps: kc.makeApiClient(AppsV1Api),
    custom: kc.makeApiClient(CustomObjectsApi),
    discovery: kc.makeApiClient(DiscoveryV1Api),
    events: kc.makeApiClient(EventsV1Api),
    objects: KubernetesObjectApi.makeApiClient(kc),
    rbac: kc.makeApiClient(RbacAuthorizationV1Api),
    networking: kc.makeApiClient(NetworkingV1Api),
    storage: kc.makeApiClient(StorageV1Api),
  };
}
