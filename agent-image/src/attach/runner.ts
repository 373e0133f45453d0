/**
 * `agent-smith attach` for a pod run by the development pod runner (scripts/lib/pod-runner):
 * that "node" implements no exec API, but its pods are processes on this machine, so the
 * attach goes to the agent container's tmux socket directly (still under our PTY, local.ts).
 *
 * The runner's Node carries the label `agentsmith.dev/pod-runner`, the annotation
 * `agentsmith.dev/pod-runner-host` (the machine) and `agentsmith.dev/pod-runner-state-dir`;
 * each running pod is described in `<state dir>/pods/<namespace>_<pod>_<uid>/pod.json`,
 * whose `containers.agent.tmp` is the container's /tmp, where its tmux server (TMUX_TMPDIR)
 * keeps `tmux-<uid>/default`.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { CoreV1Api, type KubeConfig, type V1Node, type V1Pod } from '@kubernetes/client-node';
import { AGENT_CONTAINER, AttachError } from './resolve.ts';

const RUNNER_LABEL = 'agentsmith.dev/pod-runner';
const HOST_ANNOTATION = 'agentsmith.dev/pod-runner-host';
const STATE_DIR_ANNOTATION = 'agentsmith.dev/pod-runner-state-dir';

/**
 * The tmux socket of the agent container when `pod` runs on a development pod runner
 * Node; undefined for any other node (then the exec API is used).
 * @throws AttachError when the pod is on a runner of another machine, or its files or
 *   tmux socket are missing
 */
export async function runnerTmuxSocket(kc: KubeConfig, pod: V1Pod): Promise<string | undefined> {
  const nodeName = pod.spec?.nodeName;
  if (!nodeName) return undefined;
  let node: V1Node;
  try {
    node = await kc.makeApiClient(CoreV1Api).readNode({ name: nodeName });
  } catch {
    // No right to read Nodes, or it is gone: fall back to the exec API, whose errors say more.
    return undefined;
  }
  if (node.metadata?.labels?.[RUNNER_LABEL] === undefined) return undefined;
  const where = `pod ${pod.metadata?.namespace}/${pod.metadata?.name} runs on the development pod runner's node ${nodeName}`;
  const host = node.metadata.annotations?.[HOST_ANNOTATION];
  const stateDir = node.metadata.annotations?.[STATE_DIR_ANNOTATION];
  if (host !== undefined && host !== hostname()) throw new AttachError(`${where} on machine ${host}, and the runner has no exec API: run agent-smith attach on ${host}`);
  if (!stateDir) throw new AttachError(`${where}, whose Node does not name its state directory (${STATE_DIR_ANNOTATION}); restart the runner`);
  const podFile = path.join(stateDir, 'pods', `${pod.metadata?.namespace}_${pod.metadata?.name}_${pod.metadata?.uid}`, 'pod.json');
  let described: { containers?: Record<string, { tmp?: string }> };
  try {
    described = JSON.parse(readFileSync(podFile, 'utf8')) as typeof described;
  } catch (err) {
    throw new AttachError(`${where}, but ${podFile} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  const tmp = described.containers?.[AGENT_CONTAINER]?.tmp;
  if (!tmp) throw new AttachError(`${where}, but ${podFile} names no /tmp of container ${AGENT_CONTAINER}`);
  const sockets = entries(tmp)
    .filter((d) => d.startsWith('tmux-'))
    .map((d) => path.join(tmp, d, 'default'))
    .filter((s) => {
      try {
        return statSync(s).isSocket();
      } catch {
        return false;
      }
    });
  if (!sockets[0]) throw new AttachError(`${where}, but its agent container has no tmux server yet (no socket under ${tmp}); is the pod Ready?`);
  return sockets[0];
}

/** The names in `dir`, none when it does not exist yet (a container that has not started). */
function entries(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
