import type { V1ServiceAccount } from '@kubernetes/client-node';
import type { Agent } from '../api/agent.ts';
import { childMeta, childNames } from './meta.ts';

/** The agent's ServiceAccount. Its token is mounted only when spec.kubernetesAccess asks for API access. Pure. */
export function renderServiceAccount(agent: Agent): V1ServiceAccount {
  return {
    apiVersion: 'v1',
    kind: 'ServiceAccount',
    metadata: childMeta(agent, childNames(agent.metadata.name).serviceAccount, 'agent'),
    automountServiceAccountToken: agent.spec.kubernetesAccess?.clusterRole !== undefined,
  };
}
