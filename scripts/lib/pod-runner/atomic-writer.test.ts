import { lstat, mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeAtomic, type FileProjection } from './atomic-writer.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'atomic-writer-'));
});
afterEach(async () => rm(dir, { recursive: true, force: true }));

const files = (entries: Record<string, [string, number]>) => new Map<string, FileProjection>(Object.entries(entries).map(([p, [d, mode]]) => [p, { data: Buffer.from(d), mode }]));

describe('writeAtomic (the kubelet AtomicWriter layout)', () => {
  it('writes a timestamped directory behind ..data and one visible symlink per first path segment, with the modes asked for', async () => {
    expect(await writeAtomic(dir, files({ 'a.txt': ['A', 0o644], 'sub/b.json': ['B', 0o400] }), undefined, new Date('2026-12-06T13:06:29Z'))).toBe(true);
    const ts = await readlink(path.join(dir, '..data'));
    expect(ts).toMatch(/^\.\.2026_12_06_13_06_29\.\d+$/);
    expect((await readdir(dir)).sort()).toEqual([ts, '..data', 'a.txt', 'sub'].sort());
    expect(await readlink(path.join(dir, 'a.txt'))).toBe('..data/a.txt');
    expect(await readlink(path.join(dir, 'sub'))).toBe('..data/sub');
    expect(await readFile(path.join(dir, 'sub/b.json'), 'utf8')).toBe('B');
    expect((await lstat(path.join(dir, ts, 'sub/b.json'))).mode & 0o7777).toBe(0o400);
    expect((await lstat(path.join(dir, ts))).mode & 0o7777).toBe(0o755);
  });

  it('does nothing when the payload is unchanged, swaps ..data when it changes, and removes names that left', async () => {
    await writeAtomic(dir, files({ 'a.txt': ['A', 0o644], 'b.txt': ['B', 0o644] }));
    const first = await readlink(path.join(dir, '..data'));
    expect(await writeAtomic(dir, files({ 'a.txt': ['A', 0o644], 'b.txt': ['B', 0o644] }))).toBe(false);
    expect(await writeAtomic(dir, files({ 'a.txt': ['A2', 0o644] }))).toBe(true);
    const second = await readlink(path.join(dir, '..data'));
    expect(second).not.toBe(first);
    expect(await readFile(path.join(dir, 'a.txt'), 'utf8')).toBe('A2');
    expect((await readdir(dir)).sort()).toEqual([second, '..data', 'a.txt'].sort());
  });

  it('refuses absolute paths, .. elements and names starting with ..', async () => {
    for (const bad of ['/etc/passwd', 'a/../b', '..data/x']) await expect(writeAtomic(dir, files({ [bad]: ['x', 0o644] }))).rejects.toThrow('invalid path');
  });
});
