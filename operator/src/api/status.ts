/**
 * The Agent's `status` (written by the operator through the status subresource): its
 * conditions (metav1.Condition), phase and pod facts. Part of the Agent schema (agent.ts).
 */
import { z } from 'zod';
import { mapList } from './schema.ts';

/** metav1.Condition, as the API conventions define it. */
export const Condition = z.object({
  type: z.string().max(316).describe('Type of condition in CamelCase.'),
  status: z.enum(['True', 'False', 'Unknown']).describe('Status of the condition.'),
  observedGeneration: z.number().int().min(0).optional().describe('The .metadata.generation the condition was set from.'),
  lastTransitionTime: z.string().max(64).describe('Last time the condition changed status (RFC 3339).'),
  reason: z.string().max(1024).describe('Machine-readable reason in CamelCase.'),
  message: z.string().max(32768).describe('Human-readable detail.'),
});
export type Condition = z.infer<typeof Condition>;

export const Phase = z.enum(['Pending', 'Progressing', 'Ready', 'Suspended', 'Degraded', 'Failed']);
export type Phase = z.infer<typeof Phase>;

export const AgentStatus = z
  .object({
    observedGeneration: z.number().int().min(0).optional().describe('The .metadata.generation the status was computed from.'),
    phase: Phase.optional().describe('Summary of the conditions: Pending, Progressing, Ready, Suspended, Degraded or Failed.'),
    conditions: mapList(z.array(Condition).max(32), 'type').optional().describe('Current conditions (Ready, Progressing, ...).'),
    podName: z.string().max(253).optional().describe('Name of the agent\'s pod.'),
    statefulSetName: z.string().max(253).optional().describe('Name of the agent\'s StatefulSet.'),
    restarts: z.number().int().min(0).optional().describe('Restarts of the agent container of the current pod.'),
  })
  .describe('Observed state of an agent, written by the operator.');
export type AgentStatus = z.infer<typeof AgentStatus>;
