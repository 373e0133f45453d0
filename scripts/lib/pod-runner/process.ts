/**
 * Container processes on this host. Each container runs in its own session and process
 * group (as under `tini -g`), under the pod's UID/GID when the runner is root
 * (util-linux `setpriv`, which also sets the supplementary groups, e.g. fsGroup, that
 * Node's spawn cannot), with its stdout and stderr appended to a log file.
 *
 * A container has no PID namespace or cgroup here, and a daemon it starts (the tmux
 * server) leaves its process group. So every process carries a marker in its environment
 * (`AGENT_SMITH_POD_RUNNER=<runner>:<pod uid>:<container>`), inherited by everything it
 * starts, and the runner finds a container's processes by scanning /proc: when a
 * container's main process exits, what is left of it is killed, as the kernel does when a
 * PID namespace's init exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { constants } from 'node:os';

/** The environment variable that tags every process of a container. */
export const MARKER_ENV = 'AGENT_SMITH_POD_RUNNER';

export interface Identity {
  uid: number;
  gid: number;
  /** Supplementary groups (fsGroup, supplementalGroups). */
  groups: number[];
  noNewPrivs: boolean;
  /** Drop every capability from the bounding set (securityContext.capabilities.drop: [ALL]). */
  dropAllCaps: boolean;
  /** Capabilities kept in the bounding set when dropping all (lower case, e.g. net_admin). */
  addCaps: string[];
}

export interface SpawnSpec {
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  /** Run as this identity (needs root); undefined: as the runner. */
  identity?: Identity;
  logFile: string;
  marker: string;
}

/** `setpriv` arguments that switch to `id` before exec (setpriv(1)). */
export function setprivArgs(id: Identity): string[] {
  const args = ['--reuid', String(id.uid), '--regid', String(id.gid)];
  args.push(...(id.groups.length ? ['--groups', id.groups.join(',')] : ['--clear-groups']));
  if (id.noNewPrivs) args.push('--no-new-privs');
  if (id.dropAllCaps) {
    const set = ['-all', ...id.addCaps.map((c) => `+${c}`)].join(',');
    args.push('--bounding-set', set, '--inh-caps', '-all');
  }
  return [...args, '--'];
}

/** Starts a container process (detached: its own session and process group). */
export function spawnContainer(spec: SpawnSpec): ChildProcess {
  const fd = openSync(spec.logFile, 'a', 0o640);
  try {
    const [file, ...args] = spec.identity ? ['setpriv', ...setprivArgs(spec.identity), ...spec.argv] : spec.argv;
    return spawn(file ?? '', args, {
      cwd: spec.cwd,
      env: { ...spec.env, [MARKER_ENV]: spec.marker },
      stdio: ['ignore', fd, fd],
      detached: true,
    });
  } finally {
    closeSync(fd);
  }
}

/** Exit code as a container runtime reports it: the code, or 128 + signal number. */
export function exitCodeOf(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  return 128 + (signal ? (constants.signals[signal] ?? 0) : 0);
}

function markerOf(environ: Buffer): string | undefined {
  const prefix = `${MARKER_ENV}=`;
  for (const entry of environ.toString('utf8').split('\0')) if (entry.startsWith(prefix)) return entry.slice(prefix.length);
  return undefined;
}

/** PIDs whose marker starts with `prefix` (processes we cannot read are skipped). */
export async function findMarked(prefix: string): Promise<number[]> {
  const out: number[] = [];
  const self = process.pid;
  await Promise.all(
    (await readdir('/proc')).filter((d) => /^\d+$/.test(d) && Number(d) !== self).map(async (d) => {
      try {
        const m = markerOf(await readFile(`/proc/${d}/environ`));
        if (m?.startsWith(prefix)) out.push(Number(d));
      } catch {
        // Gone, or not ours to read.
      }
    }),
  );
  return out;
}

/** Sends `signal` to every process marked with a marker starting with `prefix`. @returns how many were signalled */
export async function signalMarked(prefix: string, signal: NodeJS.Signals): Promise<number> {
  let n = 0;
  for (const pid of await findMarked(prefix)) {
    try {
      process.kill(pid, signal);
      n++;
    } catch {
      // Already gone.
    }
  }
  return n;
}

/** Synchronous SIGKILL of every marked process (for process 'exit', where nothing async runs). */
export function killMarkedSync(prefix: string): void {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      if (markerOf(readFileSync(`/proc/${d}/environ`))?.startsWith(prefix)) process.kill(Number(d), 'SIGKILL');
    } catch {
      // Gone, or not ours.
    }
  }
}

/** Signals a process group; false when it no longer exists. */
export function signalGroup(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false;
  }
}
