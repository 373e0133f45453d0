/**
 * `agent-smith attach NAME`: `tmux attach -t main` in the `agent` container of the
 * Agent's pod, through the pods/exec subresource (what `kubectl exec -it` does), with
 * client-node's Exec.
 *
 * Protocol facts (k8s.io/apimachinery pkg/util/remotecommand, client-node exec.ts and
 * web-socket-handler.ts, 2.0.1): one WebSocket, each message prefixed with its channel:
 * 0 stdin, 1 stdout, 2 stderr, 3 status (a metav1.Status, sent once at the end), 4 resize
 * (JSON `{width, height}`). With tty the server merges stderr into stdout, so stderr is
 * not requested (kubectl does the same). client-node sends the initial size and every
 * later one on channel 4 when the stdout it is given has `columns`, `rows` and 'resize'
 * events (its TerminalSizeQueue).
 */
import { PassThrough, type Readable, Writable } from 'node:stream';
import { CoreV1Api, CustomObjectsApi, Exec, KubeConfig, type V1Pod, type V1Status } from '@kubernetes/client-node';
import { AGENT_API, AGENT_CONTAINER } from '../../contract/pod.ts';
import {
  AttachError,
  type AgentLike,
  agentNotFoundMessage,
  apiErrorMessage,
  execErrorMessage,
  exitCodeFromStatus,
  noPodSessionMessage,
  podAttachCommand,
  podHasSessionCommand,
  podNameForAgent,
  podNotFoundMessage,
  podProblem,
  resolveNamespace,
} from './resolve.ts';
import { enterRawMode, onTerminationSignal, signalExitCode, terminalSize, type TerminalIO } from './terminal.ts';

/** Where to attach in the cluster (AttachTarget of kind 'pod'). */
export interface PodTarget {
  agent: string;
  namespace: string | undefined;
  kubeconfig: string | undefined;
  context: string | undefined;
}

/** The part of client-node's WebSocket (ws 8) we use; isomorphic-ws ships no types without @types/ws. */
interface ExecSocket {
  readonly readyState: number;
  on(event: 'close', listener: () => void): void;
  close(): void;
}
const WS_CLOSED = 3;

/**
 * Loads the kubeconfig like kubectl: `--kubeconfig`, else $KUBECONFIG, ~/.kube/config or
 * the in-cluster service account; `--context` picks a context.
 * @throws AttachError (exit code 2) for an unknown context or a kubeconfig without a cluster.
 */
export function loadKubeConfig(target: Pick<PodTarget, 'kubeconfig' | 'context'>): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (target.kubeconfig) kc.loadFromFile(target.kubeconfig);
    else kc.loadFromDefault();
  } catch (err) {
    throw new AttachError(`cannot load the kubeconfig${target.kubeconfig ? ` ${target.kubeconfig}` : ''}: ${(err as Error).message}`, 2);
  }
  if (target.context) {
    if (!kc.getContextObject(target.context)) throw new AttachError(`context "${target.context}" is not in the kubeconfig`, 2);
    kc.setCurrentContext(target.context);
  }
  if (!kc.getCurrentCluster()) throw new AttachError('the kubeconfig has no current cluster (kubectl config current-context)', 2);
  return kc;
}

/**
 * Runs `command` in the agent container and waits for it to end.
 * @returns the exit code, or the status message when the status carries no exit code,
 *   or undefined for both when the connection closed without a status.
 * @throws AttachError when the exec handshake fails (403: names `create` on `pods/exec`).
 */
async function execAndWait(
  exec: Exec,
  namespace: string,
  podName: string,
  command: string[],
  streams: { stdout: Writable | null; stderr: Writable | null; stdin: Readable | null; tty: boolean },
  onStarted?: (socket: ExecSocket) => void,
): Promise<{ exitCode: number | undefined; message: string | undefined }> {
  let status: V1Status | undefined;
  // Typed `unknown` first: the declared WebSocket type needs @types/ws, which we do not have.
  let opened: unknown;
  try {
    opened = await exec.exec(
      namespace,
      podName,
      AGENT_CONTAINER,
      command,
      streams.stdout,
      streams.stderr,
      streams.stdin,
      streams.tty,
      (s) => {
        status = s;
      },
    );
  } catch (err) {
    throw new AttachError(execErrorMessage(err, namespace, podName));
  }
  const socket = opened as ExecSocket;
  onStarted?.(socket);
  if (socket.readyState !== WS_CLOSED) await new Promise<void>((resolve) => socket.on('close', resolve));
  if (!status) return { exitCode: undefined, message: undefined };
  return { exitCode: exitCodeFromStatus(status), message: status.message };
}

/**
 * A Writable over the person's stdout that client-node sees as resizable (`columns`,
 * `rows`, 'resize'), so it opens the resize channel and sends the size on start and on
 * every SIGWINCH. A wrapper rather than stdout itself: client-node ends any stdout other
 * than process.stdout when the command ends, and never removes its 'resize' listener.
 */
function resizableOutput(out: NodeJS.WriteStream): { stream: Writable; dispose: () => void } {
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      out.write(chunk, (err) => callback(err ?? null));
    },
  });
  Object.defineProperty(stream, 'columns', { get: () => terminalSize(out).cols });
  Object.defineProperty(stream, 'rows', { get: () => terminalSize(out).rows });
  const onResize = (): boolean => stream.emit('resize');
  out.on('resize', onResize);
  return { stream, dispose: () => out.off('resize', onResize) };
}

/**
 * Attaches the person's terminal to session `main` in the Agent's pod.
 * Steps: read the Agent (pod: `status.podName`, else `<agent>-0`), read the pod (Running,
 * container `agent` running); check the session with `tmux has-session` over exec, then
 * `tmux attach -t main` over exec with a TTY, stdin raw, resizes forwarded.
 * @returns the remote exit status (0 after a detach), 128 + n when stopped by signal n,
 *   1 when the connection ended without one.
 * @throws AttachError before the terminal is touched: Agent not found (names the
 *   namespace), pod not found or not running (shows its phase), RBAC denied (names the
 *   verb and resource: `get` on `agents`/`pods`, `create` on `pods/exec`), no session.
 */
export async function attachPod(target: PodTarget, io: TerminalIO, env: NodeJS.ProcessEnv): Promise<number> {
  const kc = loadKubeConfig(target);
  const namespace = resolveNamespace(target.namespace, kc.getContextObject(kc.getCurrentContext())?.namespace);
  const server = kc.getCurrentCluster()?.server ?? '(unknown)';

  let agent: AgentLike;
  try {
    agent = (await kc.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
      group: AGENT_API.group,
      version: AGENT_API.version,
      namespace,
      plural: AGENT_API.plural,
      name: target.agent,
    })) as AgentLike;
  } catch (err) {
    throw new AttachError(
      apiErrorMessage(err, { verb: 'get', resource: `${AGENT_API.plural}.${AGENT_API.group}`, namespace, notFound: agentNotFoundMessage(target.agent, namespace), server }),
    );
  }
  const podName = podNameForAgent(agent, target.agent);

  let pod: V1Pod;
  try {
    pod = await kc.makeApiClient(CoreV1Api).readNamespacedPod({ name: podName, namespace });
  } catch (err) {
    throw new AttachError(apiErrorMessage(err, { verb: 'get', resource: 'pods', namespace, notFound: podNotFoundMessage(target.agent, namespace, podName), server }));
  }
  const problem = podProblem(pod, podName);
  if (problem) throw new AttachError(problem);

  const exec = new Exec(kc);
  // Checked before the terminal goes raw so a missing session (or a 403 on pods/exec) is a
  // one-line error rather than tmux's message inside a raw-mode screen.
  const probe = await execAndWait(exec, namespace, podName, podHasSessionCommand(), {
    stdout: null,
    stderr: discard(),
    stdin: null,
    tty: false,
  });
  if (probe.exitCode === undefined) throw new AttachError(`checking for tmux in pod ${namespace}/${podName} failed: ${probe.message ?? 'the connection closed'}`);
  if (probe.exitCode !== 0) throw new AttachError(noPodSessionMessage(namespace, podName));

  const output = resizableOutput(io.stdout);
  // client-node never removes its listeners from the stdin it is given: give it our own
  // stream and unhook that from the person's stdin when the session ends.
  const input = new PassThrough();
  const forward = (data: Buffer | string): boolean => input.write(data);
  io.stdin.on('data', forward);
  const restore = enterRawMode(io.stdin);
  let stoppedBy: NodeJS.Signals | undefined;
  let removeSignals = (): void => {};
  try {
    io.stdin.resume();
    const result = await execAndWait(exec, namespace, podName, podAttachCommand(env.TERM), { stdout: output.stream, stderr: null, stdin: input, tty: true }, (socket) => {
      removeSignals = onTerminationSignal((signal) => {
        stoppedBy = signal;
        socket.close();
      });
      // The person's terminal went away (EPIPE, EIO): hang up like a closed terminal would.
      output.stream.on('error', () => {
        stoppedBy ??= 'SIGHUP';
        socket.close();
      });
    });
    if (stoppedBy) return signalExitCode(stoppedBy);
    if (result.exitCode !== undefined) return result.exitCode;
    restore();
    io.stderr.write(`agent-smith attach: ${result.message ?? `the connection to pod ${namespace}/${podName} closed before tmux exited`}\n`);
    return 1;
  } finally {
    removeSignals();
    io.stdin.off('data', forward);
    output.dispose();
    restore();
    io.stdin.pause();
  }
}

/** A Writable that drops everything (the server needs at least one stream requested). */
function discard(): Writable {
  return new Writable({
    write(_chunk, _encoding, callback) {
      callback();
    },
  });
}
