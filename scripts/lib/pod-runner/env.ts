/**
 * A container's environment as the kubelet builds it (envFrom, then env with `$(VAR)`
 * expansion, valueFrom ConfigMap/Secret keys and the common downward API fields), plus
 * the two rewrites the runner needs because every pod shares this host's file system
 * and network: in-pod paths under a volume mount become paths under the container's root,
 * and the pod's fixed ports on loopback become the free ports the runner gave them. Pure.
 */
import path from 'node:path';
import type { V1Container, V1Pod } from '@kubernetes/client-node';

/** A ConfigMap or Secret the container needs is missing (kubelet: CreateContainerConfigError). */
export class ContainerConfigError extends Error {
  override name = 'ContainerConfigError';
}

/** ConfigMaps and Secrets fetched for the pod: name → decoded data; absent when not found. */
export interface ObjectData {
  configMaps: Map<string, Record<string, string>>;
  secrets: Map<string, Record<string, string>>;
}

/**
 * Kubernetes' `$(VAR)` expansion (third_party/forked/golang/expansion): `$(NAME)` becomes
 * the value of NAME when it is defined, and stays as written otherwise; `$$` is a literal `$`.
 */
export function expand(input: string, lookup: (name: string) => string | undefined): string {
  let out = '';
  for (let i = 0; i < input.length; i++) {
    const ch = input[i];
    if (ch !== '$' || i + 1 >= input.length) {
      out += ch;
      continue;
    }
    const next = input[i + 1];
    if (next === '$') {
      out += '$';
      i++;
    } else if (next === '(') {
      const close = input.indexOf(')', i + 2);
      if (close < 0) {
        out += input.slice(i);
        break;
      }
      const name = input.slice(i + 2, close);
      const value = name ? lookup(name) : undefined;
      out += value ?? `$(${name})`;
      i = close;
    } else {
      out += ch;
    }
  }
  return out;
}

/** Pod status fields the downward API reads that the runner decides. */
export interface PodFacts {
  podIP: string;
  hostIP: string;
}

/**
 * The downward API (`fieldRef.fieldPath`): metadata.name, namespace, uid, labels['k'],
 * annotations['k'], spec.nodeName, spec.serviceAccountName, status.podIP(s), status.hostIP(s).
 * @throws ContainerConfigError for a field the runner does not support
 */
export function fieldValue(pod: V1Pod, fieldPath: string, facts: PodFacts): string {
  const m = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(fieldPath);
  if (m) return (m[1] === 'labels' ? pod.metadata?.labels : pod.metadata?.annotations)?.[m[2] ?? ''] ?? '';
  switch (fieldPath) {
    case 'metadata.name':
      return pod.metadata?.name ?? '';
    case 'metadata.namespace':
      return pod.metadata?.namespace ?? '';
    case 'metadata.uid':
      return pod.metadata?.uid ?? '';
    case 'metadata.labels':
    case 'metadata.annotations': {
      const map = fieldPath === 'metadata.labels' ? pod.metadata?.labels : pod.metadata?.annotations;
      return Object.entries(map ?? {})
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
        .join('\n');
    }
    case 'spec.nodeName':
      return pod.spec?.nodeName ?? '';
    case 'spec.serviceAccountName':
      return pod.spec?.serviceAccountName ?? '';
    case 'status.podIP':
    case 'status.podIPs':
      return facts.podIP;
    case 'status.hostIP':
    case 'status.hostIPs':
      return facts.hostIP;
    default:
      throw new ContainerConfigError(`fieldRef ${fieldPath} is not supported by the pod runner`);
  }
}

/** Environment variable names the kubelet accepts from envFrom (C identifier-ish, as validation allows). */
const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;

/**
 * The container's own environment, in the kubelet's order: envFrom sources in order (later
 * wins), then `env` entries, each expanded against what is defined before it.
 * @throws ContainerConfigError naming a missing ConfigMap, Secret or key that is not optional
 */
export function containerEnv(pod: V1Pod, container: V1Container, objects: ObjectData, facts: PodFacts): Record<string, string> {
  const env: Record<string, string> = {};
  const source = (kind: 'configMap' | 'secret', name: string) => (kind === 'configMap' ? objects.configMaps : objects.secrets).get(name);
  for (const from of container.envFrom ?? []) {
    const ref = from.configMapRef ? { kind: 'configMap' as const, ...from.configMapRef } : from.secretRef ? { kind: 'secret' as const, ...from.secretRef } : undefined;
    if (!ref) continue;
    const data = source(ref.kind, ref.name ?? '');
    if (!data) {
      if (ref.optional) continue;
      throw new ContainerConfigError(`${ref.kind} "${ref.name}" not found`);
    }
    for (const [k, v] of Object.entries(data)) {
      const name = `${from.prefix ?? ''}${k}`;
      if (ENV_NAME.test(name)) env[name] = v;
    }
  }
  for (const e of container.env ?? []) {
    if (e.valueFrom) {
      const vf = e.valueFrom;
      const keyRef = vf.configMapKeyRef ? { kind: 'configMap' as const, ...vf.configMapKeyRef } : vf.secretKeyRef ? { kind: 'secret' as const, ...vf.secretKeyRef } : undefined;
      if (keyRef) {
        const data = source(keyRef.kind, keyRef.name ?? '');
        const value = data?.[keyRef.key];
        if (value === undefined) {
          if (keyRef.optional) continue;
          throw new ContainerConfigError(data ? `couldn't find key ${keyRef.key} in ${keyRef.kind} ${pod.metadata?.namespace}/${keyRef.name}` : `${keyRef.kind} "${keyRef.name}" not found`);
        }
        env[e.name] = value;
      } else if (vf.fieldRef) {
        env[e.name] = fieldValue(pod, vf.fieldRef.fieldPath, facts);
      } else if (vf.resourceFieldRef) {
        const res = vf.resourceFieldRef.resource;
        const [kind, name] = res.split('.') as ['limits' | 'requests', string];
        env[e.name] = String(container.resources?.[kind]?.[name] ?? '');
      }
    } else {
      env[e.name] = expand(e.value ?? '', (n) => env[n]);
    }
  }
  return env;
}

/** Where the runner put one pod: the container's root and the pod's port map. */
export interface Relocation {
  /** Host directory that stands for the container's `/`. */
  rootfs: string;
  /** The container's volume mount paths (absolute, in-pod). */
  mountPaths: readonly string[];
  /** In-pod port → host port, for every port of the pod the runner remapped. */
  ports: ReadonlyMap<number, number>;
}

/** Whether `p` is `mount` or below it. */
function under(p: string, mount: string): boolean {
  return p === mount || p.startsWith(mount.endsWith('/') ? mount : `${mount}/`);
}

/**
 * The host path of an in-pod path when it lies in one of the container's volumes
 * (`/etc/agent-smith/egress-ca-cert/ca.crt` → `<rootfs>/etc/agent-smith/egress-ca-cert/ca.crt`);
 * undefined otherwise (the image's own files, which are the host's here).
 */
export function relocatePath(value: string, r: Relocation): string | undefined {
  if (!value.startsWith('/')) return undefined;
  const clean = path.posix.normalize(value);
  return r.mountPaths.some((m) => under(clean, path.posix.normalize(m))) ? path.join(r.rootfs, clean) : undefined;
}

/**
 * Rewrites one environment value or argument for this host:
 * - an absolute in-pod path under a volume mount (or a `:`-list of absolute paths) is
 *   relocated under the container's root;
 * - `127.0.0.1:<port>`, `localhost:<port>` and `[::1]:<port>` with a remapped port get the
 *   host port (HTTPS_PROXY=http://127.0.0.1:15001 → the proxy's real port).
 */
export function relocateValue(value: string, r: Relocation): string {
  let out = value;
  if (out.startsWith('/')) {
    const parts = out.split(':');
    if (parts.every((p) => p.startsWith('/'))) out = parts.map((p) => relocatePath(p, r) ?? p).join(':');
  }
  return out.replace(/(127\.0\.0\.1|localhost|\[::1\]):(\d{1,5})(?!\d)/g, (all, host: string, port: string) => {
    const mapped = r.ports.get(Number(port));
    return mapped === undefined ? all : `${host}:${mapped}`;
  });
}
