/**
 * The pure half of `agent-smith attach`: what to attach to, and every message a person
 * reads when it cannot. No I/O here; local.ts and pod.ts do the talking.
 */
import path from 'node:path';
import { AGENT_CONTAINER, agentPodName, TMUX_SESSION } from '../../contract/pod.ts';


/** A failure with the exit code the CLI returns for it (2: bad arguments, 1: anything else). */
export class AttachError extends Error {
  override name = 'AttachError';
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.exitCode = exitCode;
  }
}

/** What `attach` connects to, decided from the flags and the environment. */
export type AttachTarget =
  /** `socket` undefined: tmux's default socket (see defaultTmuxSocket). */
  | { kind: 'local'; socket: string | undefined }
  | { kind: 'pod'; agent: string; namespace: string | undefined; kubeconfig: string | undefined; context: string | undefined };

/** The flags as commander hands them over (`{ agent, ...opts }` in cli.ts). */
export type AttachArgs = { agent?: string | undefined } & Record<string, string | boolean | undefined>;

function stringFlag(args: AttachArgs, name: string): string | undefined {
  const value = args[name];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/**
 * Decides the target from the CLI flags. The local socket is `--socket`, else a non-empty
 * `AGENT_SMITH_TMUX_SOCKET` (what the supervisor was started with), else undefined
 * (tmux's default socket).
 * @throws AttachError (exit code 2) for an Agent name with `--local`, `--socket` without
 *   `--local`, or neither an Agent name nor `--local`.
 */
export function parseAttachArgs(args: AttachArgs, env: NodeJS.ProcessEnv): AttachTarget {
  const agent = stringFlag(args, 'agent');
  const socket = stringFlag(args, 'socket');
  if (args.local === true) {
    if (agent) throw new AttachError(`--local attaches to the supervisor on this machine; drop the Agent name "${agent}" or drop --local`, 2);
    return { kind: 'local', socket: socket ?? (env.AGENT_SMITH_TMUX_SOCKET || undefined) };
  }
  if (socket) throw new AttachError('--socket only applies with --local', 2);
  if (!agent) throw new AttachError('name the Agent to attach to (agent-smith attach NAME), or use --local', 2);
  return {
    kind: 'pod',
    agent,
    namespace: stringFlag(args, 'namespace'),
    kubeconfig: stringFlag(args, 'kubeconfig'),
    context: stringFlag(args, 'context'),
  };
}

/**
 * The socket a tmux client uses when given neither `-S` nor `-L` and not run inside tmux:
 * `${TMUX_TMPDIR:-/tmp}/tmux-<uid>/default` (tmux(1), "-S socket-path" and ENVIRONMENT;
 * tmux 3.3 tmux.c make_label). Used to name the socket in messages only: the client
 * itself is left to find it, so the two cannot disagree about where it connects.
 */
export function defaultTmuxSocket(env: NodeJS.ProcessEnv, uid: number): string {
  return path.join(env.TMUX_TMPDIR || '/tmp', `tmux-${uid}`, 'default');
}

/**
 * The environment of the local `tmux attach` client: the person's own, minus `TMUX`. Inside
 * a tmux session `$TMUX` names that session's server and makes a client without `-S` use
 * it, and `attach` refuses to nest while it is set; the person asked for the supervisor's
 * session, so neither applies.
 */
export function tmuxClientEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const rest = { ...env };
  delete rest.TMUX;
  return rest;
}

/** `tmux [-S socket] attach -t main`, the local client's argv after `tmux`. */
export function localAttachArgs(socket: string | undefined): string[] {
  return [...(socket ? ['-S', socket] : []), 'attach', '-t', TMUX_SESSION];
}

/**
 * `tmux has-session` for exactly session `main`: the `=` prefix turns off tmux's
 * prefix and pattern matching of target sessions (tmux(1), "Commands": target-session),
 * so a session `main2` does not count.
 */
export function hasSessionArgs(socket: string | undefined): string[] {
  return [...(socket ? ['-S', socket] : []), 'has-session', '-t', `=${TMUX_SESSION}`];
}

/** TERM values with terminfo in the agent image's base (Debian bookworm ncurses-base ships all of these). */
const PORTABLE_TERMS = new Set(['xterm-256color', 'xterm', 'screen-256color', 'screen', 'tmux-256color', 'vt100', 'linux']);

/**
 * TERM for the tmux client in the pod. An exec session does not inherit the person's
 * TERM (the container runtime sets plain `xterm` at best: 8 colours), so we pass it; a TERM the image may lack
 * terminfo for (kitty, alacritty, ...) becomes `xterm-256color`, which those terminals
 * emulate, because tmux refuses a terminal it cannot describe.
 */
export function remoteTerm(localTerm: string | undefined): string {
  return localTerm && PORTABLE_TERMS.has(localTerm) ? localTerm : 'xterm-256color';
}

/** The command run in the agent container: `env TERM=<term> tmux attach -t main`. */
export function podAttachCommand(localTerm: string | undefined): string[] {
  return ['env', `TERM=${remoteTerm(localTerm)}`, 'tmux', 'attach', '-t', TMUX_SESSION];
}

/** The command that checks for the session in the agent container before attaching. */
export function podHasSessionCommand(): string[] {
  return ['tmux', 'has-session', '-t', `=${TMUX_SESSION}`];
}

/** The part of an Agent object attach reads. */
export interface AgentLike {
  metadata?: { name?: string };
  status?: { podName?: unknown };
}

/**
 * The pod of an Agent: `status.podName` when the operator has set it, else `<name>-0`
 * (the only pod of the Agent's StatefulSet, which is named after the Agent).
 * @param agentName the name asked for, used when the object has no metadata.name.
 */
export function podNameForAgent(agent: AgentLike, agentName: string): string {
  const fromStatus = agent.status?.podName;
  if (typeof fromStatus === 'string' && fromStatus !== '') return fromStatus;
  return agentPodName(agent.metadata?.name || agentName);
}

/** The part of a Pod attach reads (V1Pod fits). */
export interface PodLike {
  metadata?: { name?: string; deletionTimestamp?: unknown };
  spec?: { containers?: { name: string }[] };
  status?: {
    phase?: string;
    reason?: string;
    message?: string;
    conditions?: { type: string; status: string; reason?: string }[];
    containerStatuses?: {
      name: string;
      state?: { running?: unknown; waiting?: { reason?: string; message?: string }; terminated?: { reason?: string; exitCode?: number } };
    }[];
  };
}

/**
 * Why `tmux attach` cannot run in this pod now, or undefined when it can: the pod must be
 * Running and its `agent` container running (an exec into a waiting or terminated
 * container fails with a less helpful error from the kubelet).
 */
export function podProblem(pod: PodLike, podName: string): string | undefined {
  const phase = pod.status?.phase ?? 'Unknown';
  if (phase !== 'Running') {
    const why = [pod.status?.reason, pod.status?.message].filter(Boolean).join(': ');
    const waiting = pod.status?.containerStatuses?.find((c) => c.name === AGENT_CONTAINER)?.state?.waiting?.reason;
    const unscheduled = pod.status?.conditions?.find((c) => c.type === 'PodScheduled' && c.status === 'False')?.reason;
    const detail = why || (waiting ? `container "${AGENT_CONTAINER}" ${waiting}` : '') || (unscheduled ? `not scheduled: ${unscheduled}` : '');
    return `pod ${podName} is ${phase}, not Running${detail ? ` (${detail})` : ''}`;
  }
  if (pod.spec?.containers && !pod.spec.containers.some((c) => c.name === AGENT_CONTAINER)) {
    return `pod ${podName} has no container "${AGENT_CONTAINER}"`;
  }
  const state = pod.status?.containerStatuses?.find((c) => c.name === AGENT_CONTAINER)?.state;
  if (state?.waiting) return `container "${AGENT_CONTAINER}" of pod ${podName} is waiting${state.waiting.reason ? ` (${state.waiting.reason})` : ''}`;
  if (state?.terminated) {
    const t = state.terminated;
    return `container "${AGENT_CONTAINER}" of pod ${podName} has terminated${t.reason ? ` (${t.reason}, exit code ${t.exitCode ?? '?'})` : ''}`;
  }
  return undefined;
}

/** The exec status message: a `metav1.Status` sent on channel 3 when the command ends. */
export interface ExecStatusLike {
  status?: string;
  reason?: string;
  message?: string;
  details?: { causes?: { reason?: string; message?: string }[] };
}

/**
 * The remote command's exit code from the exec status: 0 for `Success`; for `Failure`
 * with reason `NonZeroExitCode`, the `ExitCode` cause's message (k8s.io/apimachinery
 * remotecommand, `errorDecoderV4`); undefined when the status carries no code (the
 * command could not start, or the stream failed: show `status.message` instead).
 */
export function exitCodeFromStatus(status: ExecStatusLike): number | undefined {
  if (status.status === 'Success') return 0;
  if (status.reason === 'NonZeroExitCode') {
    const cause = status.details?.causes?.find((c) => c.reason === 'ExitCode');
    const code = Number.parseInt(cause?.message ?? '', 10);
    if (Number.isInteger(code)) return code;
  }
  return undefined;
}

export function noSessionMessage(socket: string): string {
  return `no tmux session '${TMUX_SESSION}' on socket ${socket}: is the supervisor running?`;
}

export function noPodSessionMessage(namespace: string, podName: string): string {
  return `no tmux session '${TMUX_SESSION}' in pod ${namespace}/${podName} (container "${AGENT_CONTAINER}"): is the supervisor running?`;
}

export function agentNotFoundMessage(agent: string, namespace: string): string {
  return `Agent "${agent}" not found in namespace "${namespace}" (kubectl get agents -n ${namespace})`;
}

export function podNotFoundMessage(agent: string, namespace: string, podName: string): string {
  return `pod ${podName} of Agent "${agent}" not found in namespace "${namespace}": its StatefulSet has not created it (yet)`;
}

/** RBAC the person lacks, named the way a Role rule names it. */
export function forbiddenMessage(verb: string, resource: string, namespace: string, detail?: string): string {
  return `forbidden: attaching needs RBAC verb "${verb}" on "${resource}" in namespace "${namespace}"${detail ? ` (${detail})` : ''}`;
}

/**
 * Turns a failed exec handshake into a message. client-node rejects with the WebSocket
 * error event, whose message is ws's `Unexpected server response: <HTTP status>` when
 * the API server refused the upgrade.
 */
export function execErrorMessage(err: unknown, namespace: string, podName: string): string {
  const message = errorText(err);
  const status = /Unexpected server response: (\d{3})/.exec(message)?.[1];
  if (status === '403') return forbiddenMessage('create', 'pods/exec', namespace);
  if (status === '401') return `the API server did not accept your credentials (401): check the kubeconfig's user`;
  if (status === '404') return `pod ${namespace}/${podName} not found (it was deleted while attaching?)`;
  if (status) return `exec into pod ${namespace}/${podName} failed: the API server answered ${status}`;
  return `exec into pod ${namespace}/${podName} failed: ${message}`;
}

/** The message of an Error, a WebSocket ErrorEvent (`{message}`), or anything else. */
export function errorText(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (typeof err === 'object' && err !== null && 'message' in err && typeof err.message === 'string' && err.message) return err.message;
  return String(err);
}

/**
 * The namespace of the Agent: `--namespace`, else the kubeconfig context's namespace,
 * else `default` (kubectl's order).
 */
export function resolveNamespace(flag: string | undefined, contextNamespace: string | undefined): string {
  return flag || contextNamespace || 'default';
}

/** HTTP status of an error thrown by client-node (`ApiException.code`), if any. */
export function httpStatusOf(err: unknown): number | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'number') return err.code;
  return undefined;
}

/**
 * A message for a failed API read: `notFound` for 404, the RBAC rule for 403, and the
 * server's address when it could not be reached at all (no HTTP status).
 */
export function apiErrorMessage(
  err: unknown,
  what: { verb: string; resource: string; namespace: string; notFound: string; server: string },
): string {
  const status = httpStatusOf(err);
  if (status === 404) return what.notFound;
  if (status === 403) return forbiddenMessage(what.verb, what.resource, what.namespace);
  if (status === 401) return `the API server did not accept your credentials (401): check the kubeconfig's user`;
  if (status === undefined) return `cannot reach the API server at ${what.server}: ${errorText(err)}`;
  return `${what.verb} ${what.resource} in namespace "${what.namespace}" failed: the API server answered ${status}`;
}
