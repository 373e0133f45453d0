import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cutText, deliveryText, INLINE_MAX_CHARS, pasteSafe } from './delivery.ts';
import { Inbox, InboxFullError, MAX_MESSAGE_CHARS, MAX_PENDING, renderedMessageId, type InboxMessage } from './inbox.ts';

const message = (text: string, over: Partial<InboxMessage> = {}): InboxMessage => ({ id: '$ev1', source: 'matrix', text, meta: { room: '!r:hs' }, receivedAt: '', seq: 7, ...over });

describe('delivery text', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'delivery-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('cuts between characters, never inside a surrogate pair', () => {
    expect(cutText('ab😀c', 3)).toBe('ab');
    expect(cutText('ab😀c', 4)).toBe('ab😀');
    expect(cutText('short', 10)).toBe('short');
  });

  it('shows control characters as escapes, keeps tabs and newlines, mends lone surrogates', () => {
    expect(pasteSafe('a\u001b[201~b\u0003\u0000\tc\r\nd\re\u009b')).toBe('a\\u{1b}[201~b\\u{3}\\u{0}\tc\nd\ne\\u{9b}');
    expect(pasteSafe('x\ud83dy')).toBe('x\ufffdy');
  });

  it('hands a short message over whole, and a long one cut with a pointer to a file holding all of it', async () => {
    const short = await deliveryText(message('hello'), dir);
    expect(short.file).toBeUndefined();
    expect(short.text).toContain('\nhello\n');

    const text = `${'😀'.repeat(30_000)}THE-END`;
    const long = await deliveryText(message(text), dir);
    expect(long.text.length).toBeLessThanOrEqual(INLINE_MAX_CHARS);
    expect(long.text).toContain(`[message is ${Math.ceil(Buffer.byteLength(text) / 1024)} KB; full text in ${long.file}]`);
    expect(long.text).not.toContain('THE-END');
    expect(long.text.toWellFormed()).toBe(long.text);
    expect(renderedMessageId(long.text)).toBe('$ev1');
    expect(await readFile(long.file!, 'utf8')).toContain(`${text}\n</agent-smith-message>`);
    expect(long.file!.startsWith(dir)).toBe(true);
  });
});

describe('Inbox bounds and dead letters', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'inbox-bounds-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('takes text up to MAX_MESSAGE_CHARS code units in any script, refuses more, and bounds the context', async () => {
    const inbox = new Inbox(dir);
    await inbox.open();
    await inbox.put({ source: 'test', text: '😀'.repeat(MAX_MESSAGE_CHARS / 2) });
    await expect(inbox.put({ source: 'test', text: 'x'.repeat(MAX_MESSAGE_CHARS + 1) })).rejects.toThrow();
    const meta = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v']));
    await expect(inbox.put({ source: 'test', text: 'x', meta })).rejects.toThrow(/at most 16/);
    const { message } = await inbox.put({ source: 'test', text: `half \ud83d` });
    expect(message.text).toBe('half \ufffd');
  });

  it('refuses messages beyond MAX_PENDING waiting, and takes them again once one is delivered', async () => {
    const inbox = new Inbox(dir);
    await inbox.open();
    for (let i = 0; i < MAX_PENDING; i++) await inbox.put({ id: `m${i}`, source: 'test', text: 'x' });
    await expect(inbox.put({ id: 'one-more', source: 'test', text: 'x' })).rejects.toBeInstanceOf(InboxFullError);
    expect((await inbox.put({ id: 'm3', source: 'test', text: 'x' })).duplicate).toBe(true);
    await inbox.ack('m0');
    expect((await inbox.put({ id: 'one-more', source: 'test', text: 'x' })).duplicate).toBe(false);
  });

  it('sets a message aside: kept in dead/ with its reason, gone from pending, its id not taken again, across a restart', async () => {
    const inbox = new Inbox(dir);
    await inbox.open();
    await inbox.put({ id: 'bad', source: 'test', text: 'poison' });
    await inbox.put({ id: 'good', source: 'test', text: 'fine' });
    const file = await inbox.deadLetter('bad', 'cli_exited: the CLI exited', 3);
    expect(file).toBeDefined();
    expect(JSON.parse(await readFile(file!, 'utf8'))).toMatchObject({ id: 'bad', text: 'poison', reason: 'cli_exited: the CLI exited', attempts: 3 });
    expect(inbox.peek()?.id).toBe('good');
    expect((await inbox.put({ id: 'bad', source: 'test', text: 'poison' })).duplicate).toBe(true);
    const again = new Inbox(dir);
    await again.open();
    expect(again.deadLetters).toBe(1);
    expect(again.size).toBe(1);
    expect(await readdir(join(dir, 'dead'))).toHaveLength(1);
  });
});
