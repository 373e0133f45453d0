import type { V1ConfigMap, V1NetworkPolicy, V1RoleBinding, V1Service, V1ServiceAccount, V1StatefulSet } from '@kubernetes/client-node';
import type { Agent } from '../api/agent.ts';
import { configHash, renderConfigMap } from './configmap.ts';
import { assemblePersona, type PersonaFiles, type SharedRules } from './persona.ts';
import { childNames } from './meta.ts';
import { renderNetworkPolicy, type ApiServerAddress, type ServiceAddress } from './networkpolicy.ts';
import { renderRoleBinding } from './rbac.ts';
import { renderRoster } from './roster.ts';
import { renderService } from './service.ts';
import { renderServiceAccount } from './serviceaccount.ts';
import { renderStatefulSet } from './statefulset.ts';

export interface RenderOptions {
  /** Default agent image. */
  image: string;
  shared: SharedRules;
  /** The agent's persona files, resolved from spec.persona by the reconciler. */
  persona: PersonaFiles;
  /** PEM of the current egress CA certificate; a new CA rolls the pod so it is trusted. */
  egressCaCertPem: string;
  /** PEM of the egress CA's private key: the credential stubs are derived from it (render/stubs.ts). */
  egressCaKeyPem: string;
  /** The Agents of the namespace (from the cache) for the team roster; those of other teams are ignored. */
  namespaceAgents: readonly Agent[];
  /**
   * The cluster IPs of the in-cluster Services the supervisor talks to itself (NATS, a
   * Matrix homeserver; render/networkpolicy.ts inClusterServices), looked up by the
   * reconciler: they join allowCidrs and, in iptables mode, the pod's hostAliases
   * (render/statefulset.ts serviceHostAliases), so a changed cluster IP rolls the pod.
   * Default none.
   */
  serviceAddresses?: readonly ServiceAddress[];
  /**
   * The Kubernetes API server as the pod reaches it (reconcile/references.ts
   * resolveApiServer), for an Agent with spec.kubernetesAccess.clusterRole: its cluster IPs
   * join NO_PROXY and allowCidrs, its endpoints a NetworkPolicy rule. Default none.
   */
  apiServer?: ApiServerAddress;
  /**
   * The PEM bundle of spec.egress.upstreamCaConfigMapRef as the reconciler read and checked
   * it: part of the pod's config hash, so a changed bundle rolls the pod (the proxy reads
   * it once at start). Unset when the field is.
   */
  upstreamCaPem?: string;
}

/** Every child of an Agent, in the order they are applied (the StatefulSet last). */
export interface DesiredChildren {
  serviceAccount: V1ServiceAccount;
  /** Absent when spec.kubernetesAccess asks for no namespaced access (a leftover is deleted). */
  roleBinding?: V1RoleBinding;
  configMap: V1ConfigMap;
  /** The team's roster, when spec.team is set. */
  roster?: V1ConfigMap;
  service: V1Service;
  networkPolicy: V1NetworkPolicy;
  statefulSet: V1StatefulSet;
}

/**
 * Renders the desired children of `agent`. Pure: no I/O, clock or randomness.
 * @throws Error when a persona JSON file is malformed (the message names it).
 */
export function renderAll(agent: Agent, opts: RenderOptions): DesiredChildren {
  const persona = assemblePersona(agent.metadata.name, opts.shared, opts.persona, agent.spec.team);
  const configMap = renderConfigMap(agent, persona, opts.egressCaKeyPem, opts.serviceAddresses, opts.apiServer);
  const roleBinding = renderRoleBinding(agent);
  const team = agent.spec.team;
  return {
    serviceAccount: renderServiceAccount(agent),
    ...(roleBinding ? { roleBinding } : {}),
    configMap,
    ...(team ? { roster: renderRoster(team, agent.metadata.namespace ?? 'default', opts.namespaceAgents) } : {}),
    service: renderService(agent),
    networkPolicy: renderNetworkPolicy(agent, opts.apiServer),
    statefulSet: renderStatefulSet(agent, {
      image: opts.image,
      // The upstream CA bundle only when set, so the hash of an Agent without it is unchanged.
      configHash: configHash(configMap, opts.egressCaCertPem, ...(opts.upstreamCaPem !== undefined ? [opts.upstreamCaPem] : [])),
      egressCaSecret: childNames(agent.metadata.name).egressCa,
      serviceAddresses: opts.serviceAddresses ?? [],
      ...(opts.apiServer ? { apiServer: opts.apiServer } : {}),
    }),
  };
}
