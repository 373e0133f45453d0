/**
 * A container's root on this host: a directory that stands for the container's `/`, in
 * which each volume mount is a symlink to the volume's host directory
 * (`<rootfs>/home/agent -> <the PV's hostPath>`). The agent image's programs find their
 * files under it through AGENT_SMITH_ROOT (agent-image/src/layout.ts).
 *
 * A mount with other mounts below it (the agent's `/etc/agent-smith` with
 * `/etc/agent-smith/egress-ca-cert` inside) cannot be one symlink without writing into the
 * volume: it becomes a real directory holding a symlink per entry of the volume, and the
 * inner mounts shadow entries of the same name, as a mount would. `relink` adds entries
 * that appeared in such a volume since (a key added to a ConfigMap).
 *
 * Each container gets its own root, so a container sees only its own mounts (the proxy's
 * CA key is not under the agent container's root).
 */
import { existsSync } from 'node:fs';
import { chmod, lstat, mkdir, readdir, readlink, rm, symlink } from 'node:fs/promises';
import path from 'node:path';

export interface Mount {
  mountPath: string;
  /** Host path of what is mounted (the volume's directory, or a subPath inside it). */
  source: string;
}

function isBelow(inner: string, outer: string): boolean {
  return inner !== outer && inner.startsWith(outer === '/' ? '/' : `${outer}/`);
}

/** Links each entry of `source` into `target` (a real directory), except names shadowed by inner mounts. */
async function linkEntries(source: string, target: string, shadowed: Set<string>): Promise<void> {
  const names = existsSync(source) ? await readdir(source) : [];
  for (const name of names) {
    if (shadowed.has(name)) continue;
    const link = path.join(target, name);
    const want = path.join(source, name);
    const have = await readlink(link).catch(() => undefined);
    if (have === want) continue;
    await rm(link, { recursive: true, force: true });
    await symlink(want, link);
  }
  // Drop links to entries the volume no longer has.
  for (const name of await readdir(target)) {
    if (shadowed.has(name)) continue;
    const have = await readlink(path.join(target, name)).catch(() => undefined);
    if (have && !names.includes(name)) await rm(path.join(target, name), { force: true });
  }
}

/** The first path segment of each mount below `outer`, relative to it. */
function shadowedBy(outer: string, mounts: readonly Mount[]): Set<string> {
  const out = new Set<string>();
  for (const m of mounts) if (isBelow(m.mountPath, outer)) out.add(m.mountPath.slice(outer.length).replace(/^\//, '').split('/')[0] ?? '');
  return out;
}

/**
 * (Re)builds `rootfs` for `mounts`: `/tmp` as a symlink to `tmp` (made empty, 1777), and
 * every mount as described above. Safe to call again for the same container (it starts
 * from an empty root).
 *
 * `tmp` lives outside the root with a short path because Unix socket paths are limited to
 * 107 bytes: tmux puts its socket in $TMUX_TMPDIR/tmux-<uid>/default, and a root deep in the
 * state dir would not fit.
 */
export async function buildRootfs(rootfs: string, mounts: readonly Mount[], tmp: string): Promise<void> {
  await rm(rootfs, { recursive: true, force: true });
  await mkdir(rootfs, { recursive: true, mode: 0o755 });
  await chmod(rootfs, 0o755);
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  await chmod(tmp, 0o1777);
  await symlink(tmp, path.join(rootfs, 'tmp'));
  const sorted = [...mounts].map((m) => ({ ...m, mountPath: path.posix.normalize(m.mountPath).replace(/\/$/, '') || '/' })).sort((a, b) => a.mountPath.length - b.mountPath.length);
  for (const m of sorted) {
    const target = path.join(rootfs, m.mountPath);
    const shadowed = shadowedBy(m.mountPath, sorted);
    await mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
    if (shadowed.size === 0) {
      await rm(target, { recursive: true, force: true });
      await symlink(m.source, target);
    } else {
      await mkdir(target, { recursive: true, mode: 0o755 });
      await linkEntries(m.source, target, shadowed);
    }
  }
}

/** Re-links the entries of mounts that have inner mounts (see buildRootfs). */
export async function relink(rootfs: string, mounts: readonly Mount[]): Promise<void> {
  for (const m of mounts) {
    const shadowed = shadowedBy(m.mountPath, mounts);
    if (!shadowed.size) continue;
    const target = path.join(rootfs, m.mountPath);
    if ((await lstat(target).catch(() => undefined))?.isDirectory()) await linkEntries(m.source, target, shadowed);
  }
}
