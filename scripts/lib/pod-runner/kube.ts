/**
 * The pod runner's only talk with the API server: the reads volumes and env need, pod
 * status writes, pod deletion, events. (node.ts owns the Node and its Lease.)
 */
import { CoreV1Api, PatchStrategy, setHeaderOptions, type KubeConfig, type V1Pod, type V1PodStatus } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { describeError, httpStatusOf } from '../../../operator/src/runtime/errors.ts';
import type { PodApi } from './pod-worker.ts';
import { VolumeError } from './volumes.ts';

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

async function orUndefined<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (err) {
    if (httpStatusOf(err) === 404) return undefined;
    throw err;
  }
}

/** The PodApi of a runner registered as `nodeName`. */
export function makePodApi(kc: KubeConfig, nodeName: string, log: Logger): PodApi {
  const core = kc.makeApiClient(CoreV1Api);
  return {
    async configMap(namespace, name) {
      const cm = await orUndefined(core.readNamespacedConfigMap({ name, namespace }));
      if (!cm) return undefined;
      return {
        ...Object.fromEntries(Object.entries(cm.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'utf8')])),
        ...Object.fromEntries(Object.entries(cm.binaryData ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')])),
      };
    },
    async secret(namespace, name) {
      const s = await orUndefined(core.readNamespacedSecret({ name, namespace }));
      if (!s) return undefined;
      return Object.fromEntries(Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')]));
    },
    async claim(namespace, name) {
      const pvc = await orUndefined(core.readNamespacedPersistentVolumeClaim({ name, namespace }));
      if (!pvc) throw new VolumeError(`persistentvolumeclaim "${name}" not found`);
      const volumeName = pvc.spec?.volumeName;
      if (!volumeName || pvc.status?.phase !== 'Bound') throw new VolumeError(`persistentvolumeclaim "${name}" is not bound yet`);
      const pv = await orUndefined(core.readPersistentVolume({ name: volumeName }));
      return { volumeName, ...(pv?.spec?.hostPath?.path ? { hostPath: pv.spec.hostPath.path } : {}) };
    },
    async token(pod, audience, expirationSeconds) {
      const sa = pod.spec?.serviceAccountName ?? 'default';
      const tr = await core.createNamespacedServiceAccountToken({
        name: sa,
        namespace: pod.metadata?.namespace ?? 'default',
        body: {
          spec: {
            audiences: audience ? [audience] : [],
            expirationSeconds,
            boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: pod.metadata?.name, uid: pod.metadata?.uid },
          },
        },
      });
      const expiresAt = tr.status?.expirationTimestamp ? new Date(tr.status.expirationTimestamp).getTime() : Date.now() + expirationSeconds * 1000;
      return { token: tr.status?.token ?? '', expiresAt };
    },
    async writeStatus(pod, status: V1PodStatus) {
      try {
        await core.patchNamespacedPodStatus({ name: pod.metadata?.name ?? '', namespace: pod.metadata?.namespace ?? '', body: { status } }, mergePatch);
      } catch (err) {
        // The pod is gone: nothing to report to.
        if (httpStatusOf(err) !== 404) throw err;
      }
    },
    async deletePod(pod: V1Pod) {
      try {
        await core.deleteNamespacedPod({
          name: pod.metadata?.name ?? '',
          namespace: pod.metadata?.namespace ?? '',
          gracePeriodSeconds: 0,
          body: { gracePeriodSeconds: 0, preconditions: { uid: pod.metadata?.uid } },
        });
      } catch (err) {
        const code = httpStatusOf(err);
        // 404: already gone; 409: a newer pod of that name (its UID differs), not ours to delete.
        if (code !== 404 && code !== 409) throw err;
      }
    },
    event(pod, type, reason, message, container) {
      const now = new Date();
      core
        .createNamespacedEvent({
          namespace: pod.metadata?.namespace ?? 'default',
          body: {
            metadata: { generateName: `${pod.metadata?.name}.`, namespace: pod.metadata?.namespace },
            involvedObject: {
              apiVersion: 'v1',
              kind: 'Pod',
              name: pod.metadata?.name,
              namespace: pod.metadata?.namespace,
              uid: pod.metadata?.uid,
              ...(container ? { fieldPath: `spec.containers{${container}}` } : {}),
            },
            type,
            reason,
            message,
            source: { component: 'pod-runner', host: nodeName },
            reportingComponent: 'pod-runner',
            reportingInstance: nodeName,
            firstTimestamp: now,
            lastTimestamp: now,
            count: 1,
          },
        })
        .catch((err: unknown) => log.debug({ err: describeError(err) }, 'event not recorded'));
    },
  };
}
