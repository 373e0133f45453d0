import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BridgeStateStore, freshState, OWN_MEMORY, remember, rememberAnswerThread } from './state.ts';

describe('bridge state', () => {
  let dir: string | undefined;
  afterEach(async () => dir && rm(dir, { recursive: true, force: true }));

  it('keeps thread memory, answer threads and told encrypted rooms across a save and load, bounded', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'matrix-state-'));
    const store = new BridgeStateStore(dir);
    const s = freshState('https://hs', '@bot:hs');
    for (let i = 0; i < OWN_MEMORY + 5; i++) {
      remember(s.threads, `$t${i}`);
      rememberAnswerThread(s.answerThreads, `$e${i}`, `$t${i}`);
    }
    remember(s.encryptedRooms, '!enc:hs');
    await store.save(s);
    const loaded = await store.load('https://hs', '@bot:hs');
    expect(loaded.threads).toHaveLength(OWN_MEMORY);
    expect(loaded.threads.at(-1)).toBe(`$t${OWN_MEMORY + 4}`);
    expect(Object.keys(loaded.answerThreads)).toHaveLength(OWN_MEMORY);
    expect(loaded.answerThreads[`$e${OWN_MEMORY + 4}`]).toBe(`$t${OWN_MEMORY + 4}`);
    expect(loaded.answerThreads.$e0).toBeUndefined();
    expect(loaded.encryptedRooms).toEqual(['!enc:hs']);
    // Another account's file starts afresh.
    expect((await store.load('https://hs', '@other:hs')).threads).toEqual([]);
  });

  it('reads an older or damaged file leniently', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'matrix-state-'));
    const store = new BridgeStateStore(dir);
    await mkdir(path.dirname(store.file), { recursive: true });
    await writeFile(store.file, JSON.stringify({ homeserverUrl: 'https://hs', userId: '@bot:hs', since: 's9', threads: ['$a', 7], answerThreads: { $x: '$a', $y: 3 }, encryptedRooms: 'nope' }));
    const loaded = await store.load('https://hs', '@bot:hs');
    expect(loaded).toMatchObject({ since: 's9', threads: ['$a'], answerThreads: { $x: '$a' }, encryptedRooms: [], own: [] });
  });

  it('moves a remembered id to the end', () => {
    const list = ['$a', '$b'];
    remember(list, '$a');
    expect(list).toEqual(['$b', '$a']);
  });
});
