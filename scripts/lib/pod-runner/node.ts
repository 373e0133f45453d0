/**
 * The runner's Node, kept alive like a kubelet keeps its own: the Node object (labels,
 * taint, capacity, addresses 127.0.0.1, condition Ready=True refreshed every 40 s) and a
 * Lease `kube-node-lease/<node>` renewed every 10 s (duration 40 s), which is what the
 * node lifecycle controller watches (https://kubernetes.io/docs/concepts/architecture/nodes/#node-heartbeats).
 *
 * The Node has no kwok annotation (kwok.x-k8s.io/node=fake), so kwok leaves it alone. It
 * carries the label and NoSchedule taint `agentsmith.dev/pod-runner=<node>`: only pods that
 * select it and tolerate the taint land here, and nothing else in the cluster does.
 * On stop the Node's Ready condition turns False (reason PodRunnerStopped); the Node stays.
 */
import { cpus, hostname, release, totalmem } from 'node:os';
import { CoordinationV1Api, CoreV1Api, PatchStrategy, setHeaderOptions, V1MicroTime, VersionApi, type KubeConfig, type V1Node, type V1NodeCondition } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { describeError, httpStatusOf } from '../../../operator/src/runtime/errors.ts';
import { POD_IP } from './pod-worker.ts';

/** Label (and taint key) that marks the runner's Node; the value is the node name. */
export const POD_RUNNER_LABEL = 'agentsmith.dev/pod-runner';
/** Annotations of the runner's Node: the machine it runs on, and its state directory (where `<pods>/<ns>_<pod>_<uid>/pod.json` are, for `agent-smith attach`). */
export const POD_RUNNER_HOST_ANNOTATION = 'agentsmith.dev/pod-runner-host';
export const POD_RUNNER_STATE_DIR_ANNOTATION = 'agentsmith.dev/pod-runner-state-dir';

const LEASE_NAMESPACE = 'kube-node-lease';
const LEASE_SECONDS = 40;
const RENEW_MS = 10_000;
const STATUS_MS = 40_000;
const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

function conditions(ready: boolean, now: Date, message: string): V1NodeCondition[] {
  const ok = (type: string, reason: string, msg: string): V1NodeCondition => ({ type, status: 'False', reason, message: msg, lastHeartbeatTime: now, lastTransitionTime: now });
  return [
    ok('MemoryPressure', 'KubeletHasSufficientMemory', 'not measured by the pod runner'),
    ok('DiskPressure', 'KubeletHasNoDiskPressure', 'not measured by the pod runner'),
    ok('PIDPressure', 'KubeletHasSufficientPID', 'not measured by the pod runner'),
    { type: 'Ready', status: ready ? 'True' : 'False', reason: ready ? 'KubeletReady' : 'PodRunnerStopped', message, lastHeartbeatTime: now, lastTransitionTime: now },
  ];
}

function nodeObject(name: string, version: string, stateDir: string): V1Node {
  const capacity = { cpu: String(cpus().length), memory: `${Math.floor(totalmem() / 1024)}Ki`, pods: '110', 'ephemeral-storage': '100Gi' };
  const now = new Date();
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name,
      labels: {
        [POD_RUNNER_LABEL]: name,
        'kubernetes.io/hostname': name,
        'kubernetes.io/os': 'linux',
        'kubernetes.io/arch': process.arch === 'x64' ? 'amd64' : process.arch,
      },
      annotations: { [POD_RUNNER_HOST_ANNOTATION]: hostname(), [POD_RUNNER_STATE_DIR_ANNOTATION]: stateDir },
    },
    spec: { taints: [{ key: POD_RUNNER_LABEL, value: name, effect: 'NoSchedule' }] },
    status: {
      capacity,
      allocatable: capacity,
      addresses: [
        { type: 'InternalIP', address: POD_IP },
        { type: 'Hostname', address: name },
      ],
      conditions: conditions(true, now, 'pod-runner (development) is running pods as local processes'),
      daemonEndpoints: { kubeletEndpoint: { Port: 0 } },
      nodeInfo: {
        machineID: '',
        systemUUID: '',
        bootID: '',
        kernelVersion: release(),
        osImage: 'agent-smith pod-runner (development)',
        containerRuntimeVersion: 'pod-runner://0 (local processes)',
        kubeletVersion: version,
        kubeProxyVersion: '',
        operatingSystem: 'linux',
        architecture: process.arch === 'x64' ? 'amd64' : process.arch,
      },
    },
  };
}

export interface NodeHandle {
  /** Turns Ready False and stops the heartbeats. */
  stop(): Promise<void>;
}

/**
 * Creates (or takes over) Node `name` and keeps it Ready.
 * @throws the API error when the Node cannot be created or updated
 */
export async function registerNode(kc: KubeConfig, name: string, log: Logger, stateDir: string): Promise<NodeHandle> {
  const core = kc.makeApiClient(CoreV1Api);
  const coordination = kc.makeApiClient(CoordinationV1Api);
  // The API server's version (kubectl get nodes shows it; version skew checks read it), marked as ours.
  const version = await kc
    .makeApiClient(VersionApi)
    .getCode()
    .then((v) => `${v.gitVersion}-pod-runner`)
    .catch(() => 'v0.0.0-pod-runner');
  const desired = nodeObject(name, version, stateDir);
  let node: V1Node;
  try {
    node = await core.createNode({ body: desired });
    log.info({ node: name }, 'node registered');
  } catch (err) {
    if (httpStatusOf(err) !== 409) throw err;
    node = await core.patchNode({ name, body: { metadata: { labels: desired.metadata?.labels, annotations: desired.metadata?.annotations }, spec: desired.spec } }, mergePatch);
    log.info({ node: name }, 'node exists; taking it over');
  }
  const heartbeat = async (ready: boolean, message: string) => {
    await core.patchNodeStatus({ name, body: { status: { ...desired.status, conditions: conditions(ready, new Date(), message) } } }, mergePatch);
  };
  await heartbeat(true, 'pod-runner (development) is running pods as local processes');

  const renew = async () => {
    const now = new V1MicroTime(Date.now());
    try {
      const lease = await coordination.readNamespacedLease({ name, namespace: LEASE_NAMESPACE });
      await coordination.replaceNamespacedLease({ name, namespace: LEASE_NAMESPACE, body: { ...lease, spec: { ...lease.spec, holderIdentity: name, leaseDurationSeconds: LEASE_SECONDS, renewTime: now } } });
    } catch (err) {
      if (httpStatusOf(err) !== 404) throw err;
      await coordination.createNamespacedLease({
        namespace: LEASE_NAMESPACE,
        body: {
          metadata: { name, namespace: LEASE_NAMESPACE, ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name, uid: node.metadata?.uid ?? '' }] },
          spec: { holderIdentity: name, leaseDurationSeconds: LEASE_SECONDS, renewTime: now },
        },
      });
    }
  };
  await renew();
  const leaseTimer = setInterval(() => void renew().catch((err: unknown) => log.warn({ err: describeError(err) }, 'node lease renewal failed')), RENEW_MS);
  const statusTimer = setInterval(
    () => void heartbeat(true, 'pod-runner (development) is running pods as local processes').catch((err: unknown) => log.warn({ err: describeError(err) }, 'node status update failed')),
    STATUS_MS,
  );
  leaseTimer.unref();
  statusTimer.unref();
  return {
    async stop() {
      clearInterval(leaseTimer);
      clearInterval(statusTimer);
      await heartbeat(false, 'pod-runner stopped; its pods are not running').catch((err: unknown) => log.warn({ err: describeError(err) }, 'could not mark the node not ready'));
    },
  };
}
