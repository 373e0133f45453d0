import type { V1ObjectMeta, V1OwnerReference } from '@kubernetes/client-node';
import { agentPodName } from '../../../agent-image/src/contract/pod.ts';
import { API_VERSION, KIND, type Agent } from '../api/agent.ts';
import { LABEL_AGENT, LABEL_COMPONENT, LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_NAME, LABEL_PART_OF, LABEL_SHARD, LABEL_TEAM, MANAGED_BY } from '../api/constants.ts';

/** Names of an Agent's children. Pure functions of the Agent's name. */
export function childNames(agentName: string) {
  return {
    serviceAccount: agentName,
    configMap: `${agentName}-config`,
    service: agentName,
    egressCa: `${agentName}-egress-ca`,
    roleBinding: `${agentName}-access`,
    networkPolicy: agentName,
    statefulSet: agentName,
    /** A StatefulSet of one replica always names its pod `<name>-0`. */
    pod: agentPodName(agentName),
  };
}

/** Labels that select an Agent's pod (immutable once the StatefulSet exists). */
export function selectorLabels(agent: Agent): Record<string, string> {
  return { [LABEL_NAME]: 'agent', [LABEL_INSTANCE]: agent.metadata.name };
}

/** The standard labels every child carries (and the Agent's shard label, when it has one). */
export function standardLabels(agent: Agent, component: string): Record<string, string> {
  const labels: Record<string, string> = {
    ...selectorLabels(agent),
    [LABEL_COMPONENT]: component,
    [LABEL_MANAGED_BY]: MANAGED_BY,
    [LABEL_PART_OF]: 'agent-smith',
    [LABEL_AGENT]: agent.metadata.name,
  };
  if (agent.spec.team) labels[LABEL_TEAM] = agent.spec.team;
  const shard = agent.metadata.labels?.[LABEL_SHARD];
  if (shard !== undefined) labels[LABEL_SHARD] = shard;
  return labels;
}

/** The controller owner reference to the Agent; garbage collection removes children with it. */
export function ownerReference(agent: { metadata: { name: string; uid?: string | undefined } }): V1OwnerReference {
  if (!agent.metadata.uid) throw new Error(`Agent ${agent.metadata.name} has no uid; render only objects read from the API server`);
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    name: agent.metadata.name,
    uid: agent.metadata.uid,
    controller: true,
    blockOwnerDeletion: true,
  };
}

/** Object metadata of a child: name, namespace, standard labels, owner reference. */
export function childMeta(agent: Agent, name: string, component: string): V1ObjectMeta {
  return {
    name,
    namespace: agent.metadata.namespace,
    labels: standardLabels(agent, component),
    ownerReferences: [ownerReference(agent)],
  };
}
