import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Inbox, renderMessage, renderedMessageId } from './inbox.ts';

describe('Inbox', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'inbox-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps messages in order across a restart until they are acknowledged', async () => {
    const a = new Inbox(dir);
    await a.open();
    await a.put({ id: 'm1', source: 'matrix', text: 'first', meta: { room: '!r:hs' } });
    await a.put({ id: 'm2', source: 'matrix', text: 'second' });
    await a.ack('m1');
    const b = new Inbox(dir);
    await b.open();
    expect(b.size).toBe(1);
    expect(b.peek()).toMatchObject({ id: 'm2', text: 'second' });
    await b.put({ id: 'm3', source: 'api', text: 'third' });
    expect(b.peek()?.id).toBe('m2');
  });

  it('never stores an id twice: not while pending, not after delivery, not after a restart', async () => {
    const a = new Inbox(dir);
    await a.open();
    expect((await a.put({ id: 'e1', source: 'matrix', text: 'x' })).duplicate).toBe(false);
    expect((await a.put({ id: 'e1', source: 'matrix', text: 'x' })).duplicate).toBe(true);
    await a.ack('e1');
    expect((await a.put({ id: 'e1', source: 'matrix', text: 'x' })).duplicate).toBe(true);
    const b = new Inbox(dir);
    await b.open();
    expect((await b.put({ id: 'e1', source: 'matrix', text: 'x' })).duplicate).toBe(true);
    expect(b.size).toBe(0);
  });

  it('refuses an invalid message naming the field, and skips a torn file on open', async () => {
    const a = new Inbox(dir);
    await a.open();
    await expect(a.put({ source: 'api', text: '' })).rejects.toThrow(/text/);
    await writeFile(join(dir, 'pending', '000000000009-x.json'), '{"id": "x", "tex');
    const b = new Inbox(dir);
    await b.open();
    expect(b.size).toBe(0);
    expect(await readdir(join(dir, 'pending'))).toContain('000000000009-x.json.corrupt');
  });
});

describe('renderMessage', () => {
  it('tags the message with its id, source and context, and the id can be read back', () => {
    const text = renderMessage({ id: '$ev:hs', source: 'matrix', text: 'hi "there"', meta: { room: '!r:hs', sender: '@alice:hs' } });
    expect(text).toContain('<agent-smith-message id="$ev:hs" source="matrix" room="!r:hs" sender="@alice:hs">');
    expect(text).toContain('hi "there"');
    expect(renderedMessageId(`some prompt ${text}`)).toBe('$ev:hs');
    expect(renderedMessageId('plain prompt')).toBeUndefined();
  });
});
