import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { API_VERSION, GROUP, KIND, PLURAL, VERSION, type AgentStatus } from '../api/agent.ts';
import { FIELD_MANAGER } from '../api/constants.ts';
import type { Clients } from './clients.ts';

/**
 * Writes an Agent's status through the status subresource with server-side apply (so
 * spec writes and status writes never conflict, and `metadata.generation` is untouched).
 *
 * @throws ApiException (404 when the Agent is gone, which callers ignore)
 */
export async function applyAgentStatus(clients: Clients, namespace: string, name: string, status: AgentStatus): Promise<void> {
  await clients.custom.patchNamespacedCustomObjectStatus(
    {
      group: GROUP,
      version: VERSION,
      namespace,
      plural: PLURAL,
      name,
      body: { apiVersion: API_VERSION, kind: KIND, metadata: { name, namespace }, status },
      fieldManager: FIELD_MANAGER,
      force: true,
    },
    setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
  );
}
