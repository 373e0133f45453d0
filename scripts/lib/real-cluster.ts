/**
 * A local cluster as a user's cluster looks to agent-smith: the local control plane with
 * its real node (`localcluster up --real-node`: kubelet, containerd, CNI, kube-proxy,
 * CoreDNS), our images built from the Dockerfile and imported into the node's containerd,
 * and the operator installed in the cluster from its image with our Helm chart
 * (leader-elected, as `helm install` gives anyone). Used by the main job (scripts/demo) and
 * by the tests that run agent pods for real (test/node).
 *
 *   const dev = await startDevCluster({ kwokNodes: 2 });
 *   // dev.kubeconfig, dev.real.podGateway, dev.images.agent ...
 *   await dev.stop();
 *
 * The real node is one per machine (localcluster takes a lock); starting a second one fails
 * with a message naming the first.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CACHE_BIN, startLocalCluster, type LocalCluster, type RealNode } from './cluster.ts';
import { ensureImages, importImages, type Images } from './images.ts';
import { ROOT } from './paths.ts';

const run = promisify(execFile);

/** The Helm release, and namespace, of the operator. */
export const OPERATOR_RELEASE = 'agent-smith';
export const OPERATOR_NAMESPACE = 'agent-smith-system';

export interface DevCluster extends Omit<LocalCluster, 'real'> {
  real: RealNode;
  images: Images;
  /** Runs kubectl with the cluster's admin credentials; resolves to stdout, rejects with stderr in the message. */
  kubectl: (args: string[], input?: string) => Promise<string>;
}

export interface DevClusterOptions {
  /** kwok fake nodes beside the real node (default 0). */
  kwokNodes?: number;
  /** Progress lines. */
  log?: (line: string) => void;
  /** Helm values for the operator's release beyond the image settings (e.g. `{agentSelector: 'x=y'}`); false installs no operator. */
  operator?: Record<string, unknown> | false;
}

/**
 * Builds (or finds in the cache) the images, starts the cluster with its real node, imports
 * the images and installs the operator. Whatever fails, nothing is left running.
 * @throws Error naming the step that failed (image build, cluster start, import, helm)
 */
export async function startDevCluster(opts: DevClusterOptions = {}): Promise<DevCluster> {
  const log = opts.log ?? (() => undefined);
  log('building the operator and agent images from the Dockerfile (cached by a hash of their inputs)');
  const images = await ensureImages(log);
  log(`images: ${images.operator}, ${images.agent}`);
  const cluster = await startLocalCluster({ nodes: opts.kwokNodes ?? 0, realNode: true });
  try {
    const real = cluster.real;
    if (!real) throw new Error('localcluster started no real node');
    await importImages(real.containerdAddress, images, log);
    const kubectl = async (args: string[], input?: string) => {
      const p = run(join(CACHE_BIN, 'kubectl'), ['--kubeconfig', cluster.kubeconfig, ...args], { maxBuffer: 64 << 20 });
      if (input !== undefined) p.child.stdin?.end(input);
      try {
        return (await p).stdout;
      } catch (err) {
        const e = err as { stderr?: string; message: string };
        throw new Error(`kubectl ${args.join(' ')}: ${e.stderr?.trim() || e.message}`);
      }
    };
    if (opts.operator !== false) {
      log(`installing the operator with charts/agent-smith (release ${OPERATOR_RELEASE} in ${OPERATOR_NAMESPACE})`);
      await helmInstallOperator(cluster.kubeconfig, real, images, opts.operator ?? {});
    }
    return { ...cluster, real, images, kubectl };
  } catch (err) {
    await cluster.stop();
    throw err;
  }
}

/**
 * `helm install` of charts/agent-smith with the local operator image (pulled never: it is
 * in the node's containerd) on the real node, and the local agent image as the default of
 * agent pods; waits until the Deployment is available.
 * @throws Error with helm's output
 */
export async function helmInstallOperator(kubeconfig: string, real: RealNode, images: Images, values: Record<string, unknown>, release = OPERATOR_RELEASE, namespace = OPERATOR_NAMESPACE): Promise<void> {
  const [repository, tag] = splitImage(images.operator);
  const all = {
    image: { repository, tag, pullPolicy: 'Never' },
    agentImage: images.agent,
    nodeSelector: { 'kubernetes.io/hostname': real.name },
    ...values,
  };
  const helm = existsSync(join(CACHE_BIN, 'helm')) ? join(CACHE_BIN, 'helm') : 'helm';
  const p = run(helm, ['install', release, join(ROOT, 'charts/agent-smith'), '--kubeconfig', kubeconfig, '--namespace', namespace, '--create-namespace', '--values', '-', '--wait', '--timeout', '4m']);
  p.child.stdin?.end(JSON.stringify(all));
  try {
    await p;
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`helm install ${release}: ${e.stderr?.trim() || e.stdout?.trim() || e.message}`);
  }
}

/** `registry/name:tag` → [`registry/name`, `tag`]. */
function splitImage(image: string): [string, string] {
  const at = image.lastIndexOf(':');
  if (at <= image.lastIndexOf('/')) throw new Error(`image "${image}" has no tag`);
  return [image.slice(0, at), image.slice(at + 1)];
}
