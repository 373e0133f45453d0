/**
 * `agent-smith attach`: a person's terminal on an agent's tmux session `main`, either in
 * the Agent's pod (pods/exec, pod.ts) or on this machine (`--local`, local.ts). Detach
 * with C-b d; the session and the agent keep running.
 *
 * Every failure that can be foreseen (bad flags, Agent or pod missing, pod not running,
 * RBAC, no session) is reported as one line on stderr before the terminal is put in raw
 * mode; resolve.ts has the texts.
 */
import { attachLocal } from './local.ts';
import { attachPod } from './pod.ts';
import { AttachError, parseAttachArgs, type AttachArgs } from './resolve.ts';
import { processTerminal, type TerminalIO } from './terminal.ts';

export type { AttachArgs } from './resolve.ts';

/**
 * Runs an attach until tmux exits (normally on detach).
 * @param args the CLI flags: `agent` (Agent name), `namespace`, `kubeconfig`, `context`,
 *   `local` (boolean), `socket` (tmux socket path; default $AGENT_SMITH_TMUX_SOCKET, else
 *   tmux's default socket). Unknown keys are ignored.
 * @param io the person's terminal (default process.stdin/stdout/stderr).
 * @param env environment (default process.env): TERM, KUBECONFIG, TMUX_TMPDIR, AGENT_SMITH_TMUX_SOCKET.
 * @returns the exit code for the CLI: tmux's own (0 after a detach); 128 + n after signal
 *   n; 2 for bad flags or kubeconfig; 1 for every other failure, after writing
 *   `agent-smith attach: <reason>` to stderr. Never throws for an expected failure.
 */
export async function runAttach(args: AttachArgs, io: TerminalIO = processTerminal(), env: NodeJS.ProcessEnv = process.env): Promise<number> {
  try {
    const target = parseAttachArgs(args, env);
    if (target.kind === 'local') return await attachLocal(target.socket, io, env);
    return await attachPod(target, io, env);
  } catch (err) {
    if (!(err instanceof AttachError)) throw err;
    io.stderr.write(`agent-smith attach: ${err.message}\n`);
    return err.exitCode;
  }
}
