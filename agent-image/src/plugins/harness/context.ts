import { SUPERVISOR_LOCAL_PORT, type PodContract } from '../../contract/contract.ts';
import type { Layout } from '../../contract/layout.ts';
import type { HarnessContext } from './adapter.ts';

/**
 * Port of the supervisor's loopback server: AGENT_SMITH_LOCAL_PORT, default
 * SUPERVISOR_LOCAL_PORT (15090). setup and supervise must agree (both read the same env).
 * @throws Error naming the variable when it is not a port number.
 */
export function localPort(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.AGENT_SMITH_LOCAL_PORT;
  if (raw === undefined || raw === '') return SUPERVISOR_LOCAL_PORT;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`AGENT_SMITH_LOCAL_PORT must be a port number (1-65535), got "${raw}"`);
  return n;
}

/** The context setup and the supervisor hand a harness adapter. */
export function harnessContext(contract: PodContract, layout: Layout, env: NodeJS.ProcessEnv = process.env): HarnessContext {
  const script = process.argv[1];
  return {
    contract,
    layout,
    workdir: contract.workdir,
    supervisorUrl: `http://127.0.0.1:${localPort(env)}`,
    // How hooks call back into this program: the same Node and entry point as now.
    selfCommand: script ? [process.execPath, script] : ['agent-smith'],
  };
}
