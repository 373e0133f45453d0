import type { V1Container, V1PersistentVolumeClaim, V1StatefulSet, V1Volume, V1VolumeMount } from '@kubernetes/client-node';
import { CONFIG_DIR, CONTRACT_FILE, HOME_DIR, WORKSPACE_DIR } from '../../../agent-image/src/contract/contract.ts';
import type { Agent } from '../api/agent.ts';
import { ANNOTATION_CONFIG_HASH } from '../api/constants.ts';
import { childMeta, childNames, selectorLabels, standardLabels } from './meta.ts';
import { SUPERVISOR_PORT } from './service.ts';

/** Inputs of the StatefulSet renderer that do not come from the Agent. */
export interface StatefulSetOptions {
  /** Default agent image (spec.pod.image overrides it). */
  image: string;
  /** Hash of the rendered ConfigMap (`configHash`); a change rolls the pod. */
  configHash: string;
}

/** UID and GID the agent's processes run as. */
export const AGENT_UID = 1000;

const VOLUME_CONFIG = 'config';
const VOLUME_HOME = 'home';
const VOLUME_WORKSPACE = 'workspace';

function mounts(): V1VolumeMount[] {
  return [
    { name: VOLUME_CONFIG, mountPath: CONFIG_DIR, readOnly: true },
    { name: VOLUME_HOME, mountPath: HOME_DIR },
    { name: VOLUME_WORKSPACE, mountPath: WORKSPACE_DIR },
  ];
}

const restrictedSecurityContext = {
  runAsNonRoot: true,
  runAsUser: AGENT_UID,
  runAsGroup: AGENT_UID,
  allowPrivilegeEscalation: false,
  capabilities: { drop: ['ALL'] },
  seccompProfile: { type: 'RuntimeDefault' },
};

function volumeClaim(name: string, size: string, storageClassName: string | undefined): V1PersistentVolumeClaim {
  return {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name },
    spec: {
      accessModes: ['ReadWriteOnce'],
      resources: { requests: { storage: size } },
      ...(storageClassName ? { storageClassName } : {}),
    },
  };
}

/**
 * What differs between the volume claim templates of `desired` and those of the live
 * StatefulSet (name, size, StorageClass), as one line; `undefined` when they agree.
 * A StatefulSet's volumeClaimTemplates are immutable, so the reconciler keeps the live
 * ones and reports this instead of failing the whole apply. Pure.
 */
export function volumeClaimDrift(desired: V1StatefulSet, live: V1StatefulSet): string | undefined {
  const describe = (t: V1PersistentVolumeClaim) =>
    `${t.metadata?.name}=${t.spec?.resources?.requests?.storage ?? '?'}${t.spec?.storageClassName ? `(${t.spec.storageClassName})` : ''}`;
  const liveByName = new Map((live.spec?.volumeClaimTemplates ?? []).map((t) => [t.metadata?.name, t]));
  const diffs: string[] = [];
  for (const want of desired.spec?.volumeClaimTemplates ?? []) {
    const have = liveByName.get(want.metadata?.name);
    if (!have) {
      diffs.push(`${describe(want)} is new`);
      continue;
    }
    const sizeDiffers = have.spec?.resources?.requests?.storage !== want.spec?.resources?.requests?.storage;
    // An unset class in the spec means "the cluster default", which the API server may have filled in.
    const classDiffers = want.spec?.storageClassName !== undefined && have.spec?.storageClassName !== want.spec.storageClassName;
    if (sizeDiffers || classDiffers) diffs.push(`${describe(have)} -> ${describe(want)}`);
  }
  return diffs.length ? diffs.join(', ') : undefined;
}

/**
 * The agent's StatefulSet: one replica (zero when suspended), the `setup` init container
 * and the `agent` container (tini -> `agent-smith supervise`), the config ConfigMap and
 * the `home` and `workspace` volume claim templates, whose PVCs are kept or deleted with
 * the StatefulSet as `spec.storage.retainOnDelete` says. Pure.
 */
export function renderStatefulSet(agent: Agent, opts: StatefulSetOptions): V1StatefulSet {
  const { spec } = agent;
  const names = childNames(agent.metadata.name);
  const image = spec.pod?.image ?? opts.image;
  const env = [
    { name: 'HOME', value: HOME_DIR },
    { name: 'AGENT_SMITH_CONTRACT', value: `${CONFIG_DIR}/${CONTRACT_FILE}` },
    { name: 'AGENT_SMITH_POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
    { name: 'AGENT_SMITH_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
  ];
  const setup: V1Container = {
    name: 'setup',
    image,
    command: ['agent-smith', 'setup'],
    env,
    volumeMounts: mounts(),
    securityContext: restrictedSecurityContext,
  };
  const agentContainer: V1Container = {
    name: 'agent',
    image,
    command: ['tini', '--', 'agent-smith', 'supervise'],
    env,
    workingDir: WORKSPACE_DIR,
    ports: [{ name: 'http', containerPort: SUPERVISOR_PORT, protocol: 'TCP' }],
    volumeMounts: mounts(),
    securityContext: restrictedSecurityContext,
    readinessProbe: { httpGet: { path: '/readyz', port: 'http' }, periodSeconds: 10, failureThreshold: 3 },
    livenessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 20, failureThreshold: 6, initialDelaySeconds: 10 },
    ...(spec.pod?.resources ? { resources: spec.pod.resources } : {}),
    stdin: true,
    tty: true,
  };
  const volumes: V1Volume[] = [{ name: VOLUME_CONFIG, configMap: { name: names.configMap } }];
  const retain = spec.storage.retainOnDelete ? 'Retain' : 'Delete';
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: childMeta(agent, names.statefulSet, 'agent'),
    spec: {
      replicas: spec.suspend ? 0 : 1,
      serviceName: names.service,
      selector: { matchLabels: selectorLabels(agent) },
      persistentVolumeClaimRetentionPolicy: { whenDeleted: retain, whenScaled: 'Retain' },
      template: {
        metadata: {
          labels: { ...(spec.pod?.labels ?? {}), ...standardLabels(agent, 'agent') },
          annotations: { ...(spec.pod?.annotations ?? {}), [ANNOTATION_CONFIG_HASH]: opts.configHash },
        },
        spec: {
          serviceAccountName: names.serviceAccount,
          automountServiceAccountToken: agent.spec.kubernetesAccess?.clusterRole !== undefined,
          securityContext: { runAsNonRoot: true, runAsUser: AGENT_UID, runAsGroup: AGENT_UID, fsGroup: AGENT_UID, seccompProfile: { type: 'RuntimeDefault' } },
          terminationGracePeriodSeconds: 60,
          initContainers: [setup],
          containers: [agentContainer],
          volumes,
          ...(spec.pod?.nodeSelector ? { nodeSelector: spec.pod.nodeSelector } : {}),
          ...(spec.pod?.tolerations ? { tolerations: spec.pod.tolerations } : {}),
          ...(spec.pod?.affinity ? { affinity: spec.pod.affinity } : {}),
          ...(spec.pod?.imagePullSecrets ? { imagePullSecrets: spec.pod.imagePullSecrets } : {}),
        },
      },
      volumeClaimTemplates: [
        volumeClaim(VOLUME_HOME, spec.storage.home, spec.storage.storageClassName),
        volumeClaim(VOLUME_WORKSPACE, spec.storage.workspace, spec.storage.storageClassName),
      ],
    },
  };
}
