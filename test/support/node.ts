/**
 * What the real node's containers are, seen from the host: their processes, found by the
 * cgroups the kubelet puts them in (cgroupfs driver: `.../kubepods[/<qos>]/pod<uid>/<container id>`).
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { V1Pod } from '@kubernetes/client-node';

/** One live process of a pod, seen from the host. */
export interface PodProcess {
  pid: number;
  /** The container's name (from the pod's status), or its id when the status does not name it (the sandbox's pause). */
  container: string;
  /** Command line, arguments joined by spaces. */
  cmd: string;
  /** /proc/<pid>/environ, NUL-separated. */
  environ: string;
}

/**
 * The live processes (zombies excluded) in the cgroups of pod `pod` (by UID), with the
 * container each belongs to. An empty list means nothing of the pod runs on this machine.
 */
export function podProcesses(pod: V1Pod): PodProcess[] {
  const uid = pod.metadata?.uid ?? '';
  if (!uid) throw new Error('podProcesses: the pod has no UID');
  const names = new Map<string, string>();
  for (const s of [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])]) {
    const id = s.containerID?.replace(/^[a-z]+:\/\//, '');
    if (id) names.set(id, s.name);
  }
  // The cgroupfs driver writes the UID as is; the systemd driver with _ for -.
  const marks = [`/pod${uid}/`, `/pod${uid.replaceAll('-', '_')}`];
  const out: PodProcess[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cgroup = readFileSync(`/proc/${entry}/cgroup`, 'utf8');
      const line = cgroup.split('\n').find((l) => marks.some((m) => l.includes(m)));
      if (!line) continue;
      if (/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${entry}/stat`, 'utf8'))) continue;
      const id = line.split('/').pop() ?? '';
      out.push({
        pid: Number(entry),
        container: names.get(id) ?? id,
        cmd: readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ').trim(),
        environ: readFileSync(`/proc/${entry}/environ`, 'utf8'),
      });
    } catch {
      // exited meanwhile
    }
  }
  return out;
}
