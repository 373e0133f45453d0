import type { V1ConfigMap, V1Service, V1ServiceAccount, V1StatefulSet } from '@kubernetes/client-node';
import type { Agent } from '../api/agent.ts';
import { configHash, renderConfigMap } from './configmap.ts';
import { assemblePersona, type PersonaFiles, type SharedRules } from './persona.ts';
import { childNames } from './meta.ts';
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
}

/** Every child of an Agent, in the order they are applied (the StatefulSet last). */
export interface DesiredChildren {
  serviceAccount: V1ServiceAccount;
  configMap: V1ConfigMap;
  service: V1Service;
  statefulSet: V1StatefulSet;
}

/**
 * Renders the desired children of `agent`. Pure: no I/O, clock or randomness.
 * @throws Error when a persona JSON file is malformed (the message names it).
 */
export function renderAll(agent: Agent, opts: RenderOptions): DesiredChildren {
  const persona = assemblePersona(agent.metadata.name, opts.shared, opts.persona);
  const configMap = renderConfigMap(agent, persona);
  return {
    serviceAccount: renderServiceAccount(agent),
    configMap,
    service: renderService(agent),
    statefulSet: renderStatefulSet(agent, {
      image: opts.image,
      configHash: configHash(configMap, opts.egressCaCertPem),
      egressCaSecret: childNames(agent.metadata.name).egressCa,
    }),
  };
}
