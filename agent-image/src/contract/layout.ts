/**
 * Where things are inside the agent pod, resolved once from the environment.
 *
 * Every path the pod contract and the operator name is an absolute in-pod path
 * (`/etc/agent-smith`, `/home/agent`, `/workspace/<repo>`). `AGENT_SMITH_ROOT` prefixes
 * all of them, so the same programs run unchanged in a container (root unset: `/`) and in
 * the runtime tests, which run them on the host (root: a scratch folder).
 */
import path from 'node:path';
import { CONFIG_DIR, CONTRACT_FILE, EGRESS_CA_CERT_DIR, HOME_DIR, TEAM_DIR, WORKSPACE_DIR } from './contract.ts';

export interface Layout {
  /** Prefix of every in-pod path ('' in a real pod). */
  root: string;
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
  /** PEM of the per-agent egress CA certificate (trust only; may not exist in tests). */
  caCertFile: string;
  /** agent-smith's own state on the home volume: session id, inbox, sync tokens. */
  stateDir: string;
  /** Maps an absolute in-pod path (e.g. the contract's `workdir`) to the real path. */
  resolve: (podPath: string) => string;
}

/**
 * Reads AGENT_SMITH_ROOT (default ''), AGENT_SMITH_CONTRACT and HOME. In a real pod HOME
 * is `/home/agent` (set by the operator); when a root is set, HOME is ignored and the
 * home is `<root>/home/agent`, so a test cannot write into the real user's home.
 */
export function layoutFromEnv(env: NodeJS.ProcessEnv = process.env): Layout {
  const root = env.AGENT_SMITH_ROOT ? path.resolve(env.AGENT_SMITH_ROOT) : '';
  const resolve = (podPath: string) => (root ? path.join(root, podPath) : podPath);
  const homeDir = root ? resolve(HOME_DIR) : (env.HOME ?? HOME_DIR);
  const configDir = resolve(CONFIG_DIR);
  return {
    root,
    configDir,
    contractFile: env.AGENT_SMITH_CONTRACT && !root ? env.AGENT_SMITH_CONTRACT : path.join(configDir, CONTRACT_FILE),
    homeDir,
    workspaceDir: resolve(WORKSPACE_DIR),
    teamDir: resolve(TEAM_DIR),
    caCertFile: path.join(resolve(EGRESS_CA_CERT_DIR), 'ca.crt'),
    stateDir: path.join(homeDir, '.agent-smith'),
    resolve,
  };
}
