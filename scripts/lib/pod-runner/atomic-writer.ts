/**
 * The kubelet's AtomicWriter (pkg/volume/util/atomic_writer.go), which lays out every
 * ConfigMap, Secret, downward API and projected volume:
 *
 *   <dir>/..2026_12_06_13_06_29.123456789/   the files (mode per item), dirs 0755
 *   <dir>/..data -> ..2026_12_06_13_06_29.123456789
 *   <dir>/<first path segment> -> ..data/<first path segment>   one per visible name
 *
 * An update writes a new timestamped directory and renames a `..data_tmp` symlink over
 * `..data`, so readers see the old or the new set of files, never a mix; names that left
 * the payload are removed afterwards. With an fsGroup, the volume's ownership is then set
 * as the kubelet's SetVolumeOwnership does for a read-only volume (pkg/volume/volume_linux.go):
 * group fsGroup, mode |= 0440, directories also setgid and g+x.
 */
import { randomInt } from 'node:crypto';
import { chmod, lchown, lstat, mkdir, readdir, readFile, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';

export interface FileProjection {
  data: Buffer;
  /** Permission bits, e.g. 0o644. */
  mode: number;
}

const DATA = '..data';
const DATA_TMP = '..data_tmp';

/** @throws Error for an absolute path, a `..` element, or a path starting with `..` (the writer's reserved names). */
function validate(p: string): string {
  if (!p || path.isAbsolute(p)) throw new Error(`invalid path ${JSON.stringify(p)}: must be a relative path`);
  const parts = p.split('/');
  if (parts.includes('..')) throw new Error(`invalid path ${JSON.stringify(p)}: must not contain '..'`);
  if (parts[0]?.startsWith('..')) throw new Error(`invalid path ${JSON.stringify(p)}: must not start with '..'`);
  return path.normalize(p);
}

function timestampName(now: Date): string {
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  const ts = `${now.getUTCFullYear()}_${pad(now.getUTCMonth() + 1)}_${pad(now.getUTCDate())}_${pad(now.getUTCHours())}_${pad(now.getUTCMinutes())}_${pad(now.getUTCSeconds())}`;
  return `..${ts}.${randomInt(1e9)}`;
}

async function sameContent(dir: string, payload: Map<string, FileProjection>): Promise<boolean> {
  for (const [p, f] of payload) {
    try {
      const st = await lstat(path.join(dir, p));
      if ((st.mode & 0o7777) !== f.mode && (st.mode & 0o7777) !== (f.mode | 0o440)) return false;
      if (!(await readFile(path.join(dir, p))).equals(f.data)) return false;
    } catch {
      return false;
    }
  }
  return true;
}

async function listFiles(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    out.push(rel);
    if (e.isDirectory()) out.push(...(await listFiles(path.join(dir, e.name), rel)));
  }
  return out;
}

/**
 * Kubelet-style ownership for a volume: every entry gets group `fsGroup`; mode |= `mask`
 * (0440 read-only volumes, 0660 writable ones); directories also get setgid and 0110.
 * Symlinks get the group but no chmod. Walks the whole tree under `dir`.
 */
export async function setVolumeOwnership(dir: string, fsGroup: number, readOnly: boolean): Promise<void> {
  const mask = readOnly ? 0o440 : 0o660;
  const walk = async (p: string): Promise<void> => {
    const st = await lstat(p);
    await lchown(p, st.uid, fsGroup);
    if (st.isSymbolicLink()) return;
    if (st.isDirectory()) {
      await chmod(p, (st.mode & 0o7777) | mask | 0o2000 | 0o110);
      for (const name of await readdir(p)) await walk(path.join(p, name));
    } else {
      await chmod(p, (st.mode & 0o7777) | mask);
    }
  };
  await walk(dir);
}

/**
 * Projects `payload` (relative path → content and mode) into `dir` atomically.
 * @returns whether anything changed on disk
 * @throws Error on an invalid path (nothing written) or a file system error
 */
export async function writeAtomic(dir: string, payload: Map<string, FileProjection>, fsGroup?: number, now = new Date()): Promise<boolean> {
  const clean = new Map([...payload].map(([p, f]) => [validate(p), f]));
  await mkdir(dir, { recursive: true });
  let oldTs: string | undefined;
  try {
    oldTs = await readlink(path.join(dir, DATA));
  } catch {
    oldTs = undefined;
  }
  let toRemove: string[] = [];
  if (oldTs) {
    const oldPaths = await listFiles(path.join(dir, oldTs)).catch(() => [] as string[]);
    const keep = new Set<string>();
    for (const p of clean.keys()) for (let s = p; s && s !== '.'; s = path.dirname(s)) keep.add(s);
    toRemove = oldPaths.filter((p) => !keep.has(p));
    if (!toRemove.length && (await sameContent(path.join(dir, oldTs), clean))) return false;
  }
  const tsName = timestampName(now);
  const tsDir = path.join(dir, tsName);
  await mkdir(tsDir);
  await chmod(tsDir, 0o755);
  for (const [p, f] of clean) {
    const full = path.join(tsDir, p);
    await mkdir(path.dirname(full), { recursive: true, mode: 0o755 });
    await writeFile(full, f.data, { mode: f.mode });
    await chmod(full, f.mode);
  }
  if (fsGroup !== undefined) await setVolumeOwnership(tsDir, fsGroup, true);
  for (const p of clean.keys()) {
    const first = p.split('/')[0] ?? p;
    const visible = path.join(dir, first);
    try {
      await readlink(visible);
    } catch {
      await symlink(path.join(DATA, first), visible);
      if (fsGroup !== undefined) await lchown(visible, process.getuid?.() ?? 0, fsGroup).catch(() => undefined);
    }
  }
  const tmp = path.join(dir, DATA_TMP);
  await rm(tmp, { force: true });
  await symlink(tsName, tmp);
  await rename(tmp, path.join(dir, DATA));
  for (const p of toRemove) if (!p.includes('/')) await rm(path.join(dir, p), { force: true });
  if (oldTs) await rm(path.join(dir, oldTs), { recursive: true, force: true });
  if (fsGroup !== undefined) {
    const st = await lstat(dir);
    await lchown(dir, st.uid, fsGroup);
    await chmod(dir, (st.mode & 0o7777) | 0o2000 | 0o550);
  }
  return true;
}
