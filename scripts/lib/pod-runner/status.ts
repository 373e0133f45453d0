/**
 * The pod status the runner reports, computed from what it observed of its processes:
 * phase, the conditions PodReadyToStartContainers, Initialized, ContainersReady, Ready
 * (and PodScheduled and any others as the API server has them), init and container
 * statuses, pod and host IP. The rules are the kubelet's
 * (pkg/kubelet/status/generate.go, kubelet_pods.go getPhase). Pure.
 */
import type { V1ContainerState, V1ContainerStatus, V1Pod, V1PodCondition, V1PodStatus } from '@kubernetes/client-node';

export type Role = 'init' | 'sidecar' | 'main';

/** What the runner knows of one container. */
export interface ContainerSnapshot {
  name: string;
  image: string;
  role: Role;
  state: V1ContainerState;
  lastState?: V1ContainerState;
  containerID?: string;
  ready: boolean;
  started: boolean;
  restartCount: number;
}

export interface PodSnapshot {
  /** Volumes and ports are set up (the "sandbox" is ready). */
  sandboxReady: boolean;
  /** Every regular init container completed and every sidecar started. */
  initialized: boolean;
  /** Set once the pod will run nothing more. */
  finished?: 'Succeeded' | 'Failed';
  /** Reason and message of the pod (e.g. the runner stopped). */
  reason?: string;
  message?: string;
  startTime: Date;
  podIP: string;
  containers: ContainerSnapshot[];
}

function condition(type: string, ok: boolean, reason: string | undefined, message: string | undefined, prev: V1PodCondition[], now: Date): V1PodCondition {
  const status = ok ? 'True' : 'False';
  const old = prev.find((c) => c.type === type);
  return {
    type,
    status,
    ...(reason ? { reason } : {}),
    ...(message ? { message } : {}),
    lastProbeTime: null as unknown as undefined,
    lastTransitionTime: old && old.status === status && old.lastTransitionTime ? old.lastTransitionTime : now,
  };
}

function containerStatus(c: ContainerSnapshot): V1ContainerStatus {
  return {
    name: c.name,
    image: c.image,
    imageID: '',
    ...(c.containerID ? { containerID: c.containerID } : {}),
    ready: c.ready,
    started: c.started,
    restartCount: c.restartCount,
    state: c.state,
    lastState: c.lastState ?? {},
  };
}

/**
 * Pod phase: Pending until initialized and a main container has run; Running while any
 * runs or will be restarted; Succeeded or Failed once `finished` is set.
 */
export function podPhase(s: PodSnapshot): string {
  if (s.finished) return s.finished;
  const mains = s.containers.filter((c) => c.role === 'main');
  if (!s.initialized) return 'Pending';
  const ranOnce = mains.some((c) => c.state.running || c.state.terminated || c.lastState?.terminated);
  return ranOnce ? 'Running' : 'Pending';
}

/** The status to write for `pod`, keeping transition times and conditions owned by others. */
export function podStatus(pod: V1Pod, s: PodSnapshot, now: Date): V1PodStatus {
  const prev = pod.status?.conditions ?? [];
  const unready = s.containers.filter((c) => (c.role === 'main' || c.role === 'sidecar') && !c.ready).map((c) => c.name);
  const incomplete = s.containers.filter((c) => (c.role === 'init' && !c.state.terminated) || (c.role === 'sidecar' && !c.started)).map((c) => c.name);
  const finished = s.finished !== undefined;
  const containersReady = !finished && unready.length === 0;
  const gates = (pod.spec?.readinessGates ?? []).map((g) => g.conditionType);
  const missingGates = gates.filter((t) => prev.find((c) => c.type === t)?.status !== 'True');
  const ready = containersReady && missingGates.length === 0;
  const notReadyReason = finished ? 'PodCompleted' : 'ContainersNotReady';
  const notReadyMessage = finished ? undefined : `containers with unready status: [${unready.join(' ')}]`;
  const ours = new Set(['PodReadyToStartContainers', 'Initialized', 'ContainersReady', 'Ready']);
  const conditions: V1PodCondition[] = [
    condition('PodReadyToStartContainers', s.sandboxReady, undefined, undefined, prev, now),
    condition(
      'Initialized',
      s.initialized,
      s.initialized ? undefined : 'ContainersNotInitialized',
      s.initialized ? undefined : `containers with incomplete status: [${incomplete.join(' ')}]`,
      prev,
      now,
    ),
    condition('ContainersReady', containersReady, containersReady ? undefined : notReadyReason, containersReady ? undefined : notReadyMessage, prev, now),
    condition(
      'Ready',
      ready,
      ready ? undefined : !containersReady ? notReadyReason : 'ReadinessGatesNotReady',
      ready ? undefined : !containersReady ? notReadyMessage : `corresponding condition of pod readiness gate "${missingGates[0]}" does not exist.`,
      prev,
      now,
    ),
    ...prev.filter((c) => !ours.has(c.type)),
  ];
  const initStatuses = s.containers.filter((c) => c.role !== 'main').map(containerStatus);
  const mainStatuses = s.containers.filter((c) => c.role === 'main').map(containerStatus);
  return {
    // The kubelet reports the pod generation it acted on (PodObservedGenerationTracking).
    ...(pod.metadata?.generation !== undefined ? { observedGeneration: pod.metadata.generation } : {}),
    phase: podPhase(s),
    conditions,
    ...(s.reason ? { reason: s.reason } : {}),
    ...(s.message ? { message: s.message } : {}),
    hostIP: s.podIP,
    hostIPs: [{ ip: s.podIP }],
    podIP: s.podIP,
    podIPs: [{ ip: s.podIP }],
    startTime: s.startTime,
    ...(initStatuses.length ? { initContainerStatuses: initStatuses } : {}),
    containerStatuses: mainStatuses,
    qosClass: pod.status?.qosClass,
  };
}
