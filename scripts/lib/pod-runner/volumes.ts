/**
 * A pod's volumes as host directories, laid out as the kubelet lays them out:
 *
 * - configMap, secret, downwardAPI, projected: the kubelet's atomic writer (atomic-writer.ts)
 *   under `<podDir>/volumes/<name>`: all keys, or `items` with `path` and `mode`;
 *   `defaultMode` (default 0644); `optional` (a missing object or key is an empty volume or
 *   a skipped item, otherwise an error the pod waits on); refreshed while the pod runs.
 * - emptyDir: `<podDir>/volumes/<name>`, mode 0777 (the kubelet's), gone with the pod.
 *   `medium: Memory` is a plain directory too.
 * - persistentVolumeClaim: the bound PV's hostPath (what the local cluster's provisioner
 *   makes) when it is a path on this machine; else `<stateDir>/claims/<namespace>/<claim>`.
 *   Either way it outlives the pod.
 * - hostPath: the path itself.
 *
 * With an fsGroup, ownership is set as the kubelet's SetVolumeOwnership does: read-only
 * projections get mode |= 0440, emptyDirs and claims |= 0660 (recursively for claims unless
 * fsGroupChangePolicy is OnRootMismatch and the root already matches), directories setgid.
 */
import { existsSync } from 'node:fs';
import { chmod, lstat, mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { V1KeyToPath, V1Pod, V1Volume } from '@kubernetes/client-node';
import { setVolumeOwnership, writeAtomic, type FileProjection } from './atomic-writer.ts';
import { fieldValue, type PodFacts } from './env.ts';

/** The API reads volumes need (the runner's kube layer implements it). */
export interface VolumeApi {
  /** data and binaryData as bytes; undefined when the ConfigMap does not exist. */
  configMap(namespace: string, name: string): Promise<Record<string, Buffer> | undefined>;
  /** data as bytes; undefined when the Secret does not exist. */
  secret(namespace: string, name: string): Promise<Record<string, Buffer> | undefined>;
  /** The PV bound to the claim and its hostPath, if any. @throws VolumeError while the claim is unbound */
  claim(namespace: string, name: string): Promise<{ volumeName: string; hostPath?: string }>;
  /**
   * A TokenRequest for the pod's service account, bound to the pod, valid for
   * `expirationSeconds` (s); `expiresAt` is epoch ms (the API server may shorten it).
   * @throws the API error (e.g. 404 for a missing service account)
   */
  token(pod: V1Pod, audience: string | undefined, expirationSeconds: number): Promise<{ token: string; expiresAt: number }>;
}

/** A volume cannot be set up (yet): the pod waits in ContainerCreating with this message. */
export class VolumeError extends Error {
  override name = 'VolumeError';
}

const DEFAULT_MODE = 0o644;

function itemsPayload(
  data: Record<string, Buffer> | undefined,
  items: V1KeyToPath[] | undefined,
  defaultMode: number,
  optional: boolean,
  what: string,
): Map<string, FileProjection> {
  const out = new Map<string, FileProjection>();
  if (!data) {
    if (optional) return out;
    throw new VolumeError(`${what} not found`);
  }
  if (!items?.length) {
    for (const [k, v] of Object.entries(data)) out.set(k, { data: v, mode: defaultMode });
    return out;
  }
  for (const item of items) {
    const v = data[item.key];
    if (v === undefined) {
      if (optional) continue;
      throw new VolumeError(`${what}: configured to use key ${item.key} but the key is not present`);
    }
    out.set(item.path, { data: v, mode: item.mode ?? defaultMode });
  }
  return out;
}

/** Tokens minted for projected serviceAccountToken sources, per pod uid + volume + path. */
const tokens = new Map<string, { token: string; issuedAt: number; expiresAt: number }>();

/** The files of a configMap, secret, downwardAPI or projected volume. */
async function projection(pod: V1Pod, vol: V1Volume, api: VolumeApi, facts: PodFacts): Promise<Map<string, FileProjection> | undefined> {
  const ns = pod.metadata?.namespace ?? 'default';
  if (vol.configMap) {
    const cm = vol.configMap;
    return itemsPayload(await api.configMap(ns, cm.name ?? ''), cm.items, cm.defaultMode ?? DEFAULT_MODE, cm.optional ?? false, `configmap "${cm.name}"`);
  }
  if (vol.secret) {
    const s = vol.secret;
    return itemsPayload(await api.secret(ns, s.secretName ?? ''), s.items, s.defaultMode ?? DEFAULT_MODE, s.optional ?? false, `secret "${s.secretName}"`);
  }
  if (vol.downwardAPI) {
    const out = new Map<string, FileProjection>();
    for (const item of vol.downwardAPI.items ?? []) {
      if (item.fieldRef) out.set(item.path, { data: Buffer.from(fieldValue(pod, item.fieldRef.fieldPath, facts)), mode: item.mode ?? vol.downwardAPI.defaultMode ?? DEFAULT_MODE });
    }
    return out;
  }
  if (vol.projected) {
    const defaultMode = vol.projected.defaultMode ?? DEFAULT_MODE;
    const out = new Map<string, FileProjection>();
    for (const src of vol.projected.sources ?? []) {
      let part: Map<string, FileProjection> = new Map();
      if (src.configMap) {
        part = itemsPayload(await api.configMap(ns, src.configMap.name ?? ''), src.configMap.items, defaultMode, src.configMap.optional ?? false, `configmap "${src.configMap.name}"`);
      } else if (src.secret) {
        part = itemsPayload(await api.secret(ns, src.secret.name ?? ''), src.secret.items, defaultMode, src.secret.optional ?? false, `secret "${src.secret.name}"`);
      } else if (src.downwardAPI) {
        for (const item of src.downwardAPI.items ?? []) {
          if (item.fieldRef) part.set(item.path, { data: Buffer.from(fieldValue(pod, item.fieldRef.fieldPath, facts)), mode: item.mode ?? defaultMode });
        }
      } else if (src.serviceAccountToken) {
        const t = src.serviceAccountToken;
        const key = `${pod.metadata?.uid}/${vol.name}/${t.path}`;
        let cached = tokens.get(key);
        // The kubelet renews at 80% of the token's lifetime.
        if (!cached || Date.now() > cached.issuedAt + 0.8 * (cached.expiresAt - cached.issuedAt)) {
          const minted = await api.token(pod, t.audience, t.expirationSeconds ?? 3607);
          cached = { ...minted, issuedAt: Date.now() };
          tokens.set(key, cached);
        }
        part.set(t.path, { data: Buffer.from(cached.token), mode: defaultMode });
      }
      for (const [k, v] of part) out.set(k, v);
    }
    return out;
  }
  return undefined;
}

/** Sets fsGroup ownership on a writable volume (emptyDir, claim) as the kubelet does; with `onRootMismatch`, only when the root's group or setgid bit is off. */
async function ownWritable(dir: string, fsGroup: number, onRootMismatch: boolean): Promise<void> {
  const root = await lstat(dir);
  if (onRootMismatch && root.gid === fsGroup && (root.mode & 0o2000) !== 0) return;
  await setVolumeOwnership(dir, fsGroup, false);
}

export interface PreparedVolume {
  /** Host path standing for the volume's root. */
  hostPath: string;
  kind: 'projection' | 'emptyDir' | 'claim' | 'hostPath';
}

export interface VolumeContext {
  pod: V1Pod;
  /** This pod's directory (`<stateDir>/pods/<namespace>_<name>_<uid>`). */
  podDir: string;
  /** The runner's state directory (fallback home of claims). */
  stateDir: string;
  api: VolumeApi;
  facts: PodFacts;
  /** Whether the runner may chown (it is root). */
  canChown: boolean;
  /** Told when a volume is set up differently from what its object says. */
  warn?: (message: string) => void;
}

/**
 * The ancestors of `p` that other users cannot traverse (no o+x), nearest first; empty when
 * every UID can reach `p` (which matters here because pods run as their own UIDs).
 * @throws the stat error of a missing ancestor
 */
export async function untraversable(p: string): Promise<string[]> {
  const out: string[] = [];
  for (let d = path.dirname(p); ; d = path.dirname(d)) {
    if (((await stat(d)).mode & 0o001) === 0) out.push(d);
    if (d === '/') return out;
  }
}

/**
 * Sets up every volume of the pod, or with `refresh` re-projects only the configMap,
 * secret, downwardAPI and projected ones (the kubelet's periodic sync; claims are not
 * walked again for ownership).
 * @returns volume name → where it is on this host (with `refresh`: the projections only)
 * @throws VolumeError (missing object or key, unbound claim, unsupported volume type)
 */
export async function prepareVolumes(ctx: VolumeContext, refresh = false): Promise<Map<string, PreparedVolume>> {
  const { pod, podDir, stateDir, api } = ctx;
  const fsGroup = ctx.canChown ? pod.spec?.securityContext?.fsGroup : undefined;
  const onRootMismatch = pod.spec?.securityContext?.fsGroupChangePolicy === 'OnRootMismatch';
  const out = new Map<string, PreparedVolume>();
  for (const vol of pod.spec?.volumes ?? []) {
    const dir = path.join(podDir, 'volumes', vol.name);
    const files = await projection(pod, vol, api, ctx.facts);
    if (files) {
      const fresh = !existsSync(dir);
      await mkdir(dir, { recursive: true });
      // The kubelet wraps these in an emptyDir, whose root is 0777.
      if (fresh) await chmod(dir, 0o777);
      await writeAtomic(dir, files, fsGroup);
      out.set(vol.name, { hostPath: dir, kind: 'projection' });
    } else if (refresh) {
      continue;
    } else if (vol.emptyDir) {
      if (!existsSync(dir)) {
        await mkdir(dir, { recursive: true });
        await chmod(dir, 0o777);
        if (fsGroup !== undefined) await ownWritable(dir, fsGroup, false);
      }
      out.set(vol.name, { hostPath: dir, kind: 'emptyDir' });
    } else if (vol.persistentVolumeClaim) {
      const ns = pod.metadata?.namespace ?? 'default';
      const claim = vol.persistentVolumeClaim.claimName;
      const bound = await api.claim(ns, claim);
      let hostPath = bound.hostPath;
      if (hostPath) {
        try {
          await mkdir(hostPath, { recursive: true });
          // A kubelet bind-mounts the PV, so its parents' modes do not matter; our symlink
          // must be followed by the pod's UIDs (the local cluster keeps volumes in a 0700 dir).
          if (ctx.canChown && (await untraversable(hostPath)).length) {
            ctx.warn?.(`PV ${bound.volumeName} of claim ${ns}/${claim}: ${hostPath} is inside a directory other users cannot enter; using the runner's own directory for the claim instead`);
            hostPath = undefined;
          }
        } catch {
          hostPath = undefined;
        }
      }
      hostPath ??= path.join(stateDir, 'claims', ns, claim);
      await mkdir(hostPath, { recursive: true });
      if (fsGroup !== undefined) await ownWritable(hostPath, fsGroup, onRootMismatch);
      out.set(vol.name, { hostPath, kind: 'claim' });
    } else if (vol.hostPath) {
      if (vol.hostPath.type === 'DirectoryOrCreate' || !vol.hostPath.type) await mkdir(vol.hostPath.path, { recursive: true });
      if (!existsSync(vol.hostPath.path)) throw new VolumeError(`hostPath ${vol.hostPath.path} does not exist`);
      out.set(vol.name, { hostPath: vol.hostPath.path, kind: 'hostPath' });
    } else {
      const kind = Object.keys(vol).find((k) => k !== 'name') ?? 'unknown';
      throw new VolumeError(`volume ${vol.name}: type ${kind} is not supported by the pod runner (configMap, secret, downwardAPI, projected, emptyDir, persistentVolumeClaim and hostPath are)`);
    }
  }
  return out;
}

/** Forgets the service account tokens minted for a pod. */
export function forgetPodTokens(uid: string): void {
  for (const key of tokens.keys()) if (key.startsWith(`${uid}/`)) tokens.delete(key);
}
