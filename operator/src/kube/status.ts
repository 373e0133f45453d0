import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { API_VERSION, GROUP, KIND, PLURAL, VERSION } from '../api/agent.ts';
import type { AgentStatus } from '../api/status.ts';
import { FIELD_MANAGER } from '../api/constants.ts';
import { httpStatusOf } from '../runtime/errors.ts';
import type { Clients } from './clients.ts';
import { toReconcileError } from './errors.ts';

/**
 * Writes an Agent's status through the status subresource with server-side apply (so
 * spec writes and status writes never conflict, and `metadata.generation` is untouched).
 *
 * @returns false when the Agent is gone (404: deleted since it was read), true when written
 * @throws a `TemporaryError` (or `RetryAfter` on a 429) on any other failure (kube/errors.ts)
 */
export async function applyAgentStatus(clients: Clients, namespace: string, name: string, status: AgentStatus): Promise<boolean> {
  try {
    await writeStatus(clients, namespace, name, status);
    return true;
  } catch (err) {
    if (httpStatusOf(err) === 404) return false;
    throw toReconcileError(`writing the status of Agent ${namespace}/${name}`, err);
  }
}

async function writeStatus(clients: Clients, namespace: string, name: string, status: AgentStatus): Promise<void> {
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
