/**
 * Where things are inside the agent pod, resolved once from the environment.
 *
 * Every path the pod contract and the operator name is an absolute in-pod path
 * (`/etc/agent-smith`, `/home/agent`, `/workspace/<repo>`), and the programs use it as it
 * is: the volumes are mounted there (in a pod by the kubelet; in the runtime tests by bind
 * mounts in a mount namespace of the test's own, test/support/pod.ts).
 */
import path from 'node:path';
import { CONFIG_DIR, CONTRACT_FILE, EGRESS_CA_CERT_DIR, EGRESS_CA_CERT_NAME, HOME_DIR, TEAM_DIR, WORKSPACE_DIR } from './contract.ts';
import { POD_ENV } from './pod.ts';

export interface Layout {
  /** Mounted agent ConfigMap: contract.json and the persona files. */
  configDir: string;
  /** The pod contract file (AGENT_SMITH_CONTRACT overrides). */
  contractFile: string;
  /** The agent's home volume (the harness's config lives here). */
  homeDir: string;
  /** The workspace volume (repositories). */
  workspaceDir: string;
  /** The team roster ConfigMap mount (may not exist). */
  teamDir: string;
  /** PEM of the per-agent egress CA certificate (trust only; may not exist). */
  caCertFile: string;
  /** agent-smith's own state on the home volume: session id, inbox, sync tokens. */
  stateDir: string;
}

/**
 * Reads AGENT_SMITH_CONTRACT (the operator sets it to `/etc/agent-smith/contract.json`;
 * default that path) and HOME (the operator sets `/home/agent`; default that path).
 */
export function layoutFromEnv(env: NodeJS.ProcessEnv = process.env): Layout {
  const homeDir = env.HOME || HOME_DIR;
  return {
    configDir: CONFIG_DIR,
    contractFile: env[POD_ENV.contract] || path.join(CONFIG_DIR, CONTRACT_FILE),
    homeDir,
    workspaceDir: WORKSPACE_DIR,
    teamDir: TEAM_DIR,
    caCertFile: path.join(EGRESS_CA_CERT_DIR, EGRESS_CA_CERT_NAME),
    stateDir: path.join(homeDir, '.agent-smith'),
  };
}
