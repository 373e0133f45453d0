/**
 * The real-node cluster of the tests: `localcluster up --real-node` (scripts/lib/cluster.ts), a
 * tiny image (Debian's static busybox in a scratch image) imported with ctr, and a look
 * at what a run leaves on the host (bridge, iptables chains, mounts, cgroups, shims,
 * sysctls).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { CACHE_BIN, startLocalCluster, type LocalCluster, type RealNode } from '../../scripts/lib/cluster.ts';

const run = promisify(execFile);

/** A run of `localcluster up --real-node --nodes=0`: the cluster, its real node's facts flattened in, and what `up` said. */
export interface RealNodeCluster extends Omit<LocalCluster, 'real'>, RealNode {
  /** Every line `up` wrote on stderr so far. */
  log: string[];
}

/**
 * Starts `localcluster up --real-node --nodes=0` (scripts/lib/cluster.ts) and waits for its
 * ready line.
 * @throws Error with the tail of its stderr if it exits or is not ready in time
 */
export async function startRealNode(): Promise<RealNodeCluster> {
  const log: string[] = [];
  const c = await startLocalCluster({ nodes: 0, realNode: true, onLog: (line) => log.push(line) });
  const { real, ...rest } = c;
  if (!real) throw new Error('startLocalCluster gave no real node');
  return { ...rest, ...real, log };
}

/** Name of the busybox test image. */
export const BUSYBOX_IMAGE = 'localhost/agent-smith-test/busybox:1';

/**
 * Imports Debian's static busybox (/bin/busybox, package busybox-static) as BUSYBOX_IMAGE,
 * a one-layer scratch image in docker-archive form, with
 * `ctr --address SOCKET -n k8s.io images import`.
 */
export async function importBusybox(containerdAddress: string): Promise<void> {
  const busybox = '/bin/busybox';
  if (!existsSync(busybox)) throw new Error('/bin/busybox is missing: install Debian\'s busybox-static (scripts/lib/tools.sh ensure_node_runtime does)');
  const work = mkdtempSync(join(tmpdir(), 'busybox-image-'));
  try {
    mkdirSync(join(work, 'rootfs', 'bin'), { recursive: true });
    mkdirSync(join(work, 'rootfs', 'tmp'), { recursive: true });
    copyFileSync(busybox, join(work, 'rootfs', 'bin', 'busybox'));
    await run('tar', ['--numeric-owner', '--owner=0', '--group=0', '--mtime=@0', '-C', join(work, 'rootfs'), '-cf', join(work, 'layer.tar'), 'bin', 'tmp']);
    const diffId = 'sha256:' + createHash('sha256').update(readFileSync(join(work, 'layer.tar'))).digest('hex');
    writeFileSync(join(work, 'config.json'), JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Entrypoint: ['/bin/busybox'] }, rootfs: { type: 'layers', diff_ids: [diffId] } }));
    writeFileSync(join(work, 'manifest.json'), JSON.stringify([{ Config: 'config.json', RepoTags: [BUSYBOX_IMAGE], Layers: ['layer.tar'] }]));
    await run('tar', ['-C', work, '-cf', join(work, 'image.tar'), 'manifest.json', 'config.json', 'layer.tar']);
    await run(join(CACHE_BIN, 'ctr'), ['--address', containerdAddress, '-n', 'k8s.io', 'images', 'import', join(work, 'image.tar')]);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** The sysctls a real-node run changes and must restore. */
export const WATCHED_SYSCTLS = ['kernel/panic', 'kernel/panic_on_oops', 'vm/overcommit_memory', 'net/ipv4/ip_forward', 'net/bridge/bridge-nf-call-iptables'];

export function readSysctls(): Record<string, string> {
  return Object.fromEntries(WATCHED_SYSCTLS.map((n) => [n, readFileSync(join('/proc/sys', n), 'utf8').trim()]));
}

/**
 * What a real-node run left on the host: the bridge, iptables chains (KUBE-*, ours), mounts
 * under its dir or the image store, kubepods cgroups, shim processes of its socket, and
 * sysctls that differ from `sysctlsBefore`. Empty when the host is clean.
 */
export async function hostLeftovers(c: { dir: string; imageStore: string; containerdAddress: string }, sysctlsBefore: Record<string, string>): Promise<string[]> {
  const left: string[] = [];
  if (existsSync('/sys/class/net/asbr0')) left.push('bridge asbr0');
  for (const save of ['iptables-save', 'ip6tables-save']) {
    const { stdout } = await run(save);
    const chains = stdout.split('\n').filter((l) => /^:(KUBE-|AS-LOCALCLUSTER)/.test(l));
    if (chains.length > 0) left.push(`${save}: ${chains.join(' ')}`);
  }
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '')
    .filter((mp) => mp.startsWith(c.dir) || mp.startsWith(c.imageStore));
  if (mounts.length > 0) left.push(`mounts: ${mounts.join(' ')}`);
  for (const ctl of readdirSync('/sys/fs/cgroup')) {
    if (existsSync(join('/sys/fs/cgroup', ctl, 'kubepods'))) left.push(`cgroup ${ctl}/kubepods`);
  }
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let cmdline = '';
    try {
      cmdline = readFileSync(join('/proc', pid, 'cmdline'), 'utf8');
    } catch {
      continue;
    }
    const argv0 = cmdline.split('\0')[0] ?? '';
    if (basename(argv0).startsWith('containerd') && cmdline.includes(c.containerdAddress)) left.push(`process ${pid}: ${cmdline.replaceAll('\0', ' ')}`);
  }
  const now = readSysctls();
  for (const [k, v] of Object.entries(sysctlsBefore)) {
    if (now[k] !== v) left.push(`sysctl ${k}=${now[k]} (was ${v})`);
  }
  return left;
}
