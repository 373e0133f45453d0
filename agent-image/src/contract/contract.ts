/**
 * The pod contract: the one JSON document the operator renders into the agent's
 * ConfigMap (key `contract.json`, mounted at `/etc/agent-smith/contract.json`) and every
 * program in the pod reads. The operator imports this schema; this package never
 * imports the operator.
 *
 * Versioned by `version`: a pod refuses a contract whose version it does not know.
 */
import { z } from 'zod';

export const CONTRACT_VERSION = 1;
/** Where the contract and the persona files are mounted in every container. */
export const CONFIG_DIR = '/etc/agent-smith';
export const CONTRACT_FILE = 'contract.json';
export const HOME_DIR = '/home/agent';
export const WORKSPACE_DIR = '/workspace';

export const PodContract = z.object({
  version: z.literal(CONTRACT_VERSION),
  agent: z.object({ name: z.string(), namespace: z.string(), team: z.string().optional() }),
  harness: z.object({
    kind: z.enum(['claude', 'codex', 'opencode', 'custom']),
    model: z.string().optional(),
    args: z.array(z.string()),
    command: z.array(z.string()).optional(),
  }),
  repos: z.array(z.object({ name: z.string(), url: z.string(), branch: z.string().optional(), dir: z.string() })),
  /** Absolute working directory of the CLI (the primary repo, or the workspace root). */
  workdir: z.string(),
  /** ConfigMap keys, relative to CONFIG_DIR, of the assembled persona files. */
  files: z.object({
    claudeMd: z.string(),
    settingsJson: z.string(),
    mcpJson: z.string().optional(),
    subagents: z.record(z.string(), z.string()),
  }),
  matrix: z
    .object({ homeserverUrl: z.string(), userId: z.string(), allowedUsers: z.array(z.string()), rooms: z.array(z.string()) })
    .optional(),
  github: z.object({ login: z.string(), watchPullRequests: z.object({ enabled: z.boolean(), intervalSeconds: z.number() }) }).optional(),
  events: z.object({ natsUrl: z.string(), subjectPrefix: z.string() }).optional(),
  egress: z.object({ allow: z.array(z.string()), enforcement: z.enum(['iptables', 'proxy-env']) }),
});
export type PodContract = z.infer<typeof PodContract>;
