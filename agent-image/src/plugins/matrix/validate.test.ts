import { describe, expect, it } from 'vitest';
import { clip, eventFault, isEventId, isRoomId, isUserId, MAX_EVENT_BYTES } from './validate.ts';

const ok = { event_id: '$abc', type: 'm.room.message', sender: '@bob:hs', origin_server_ts: 1, content: { msgtype: 'm.text', body: 'hi' } };
const long = (sigil: string) => `${sigil}${'a'.repeat(260)}:hs`;

describe('identifiers', () => {
  it('takes ids up to 255 bytes with their sigil, and nothing malformed', () => {
    expect(isEventId('$abc')).toBe(true);
    expect(isEventId(`$${'a'.repeat(254)}`)).toBe(true);
    expect(isEventId(`$${'a'.repeat(255)}`)).toBe(false); // 256 bytes
    expect(isEventId(`$${'é'.repeat(128)}`)).toBe(false); // 257 bytes in UTF-8, 129 characters
    expect(isEventId('abc')).toBe(false);
    expect(isEventId('$a b')).toBe(false);
    expect(isEventId('$a\u0000')).toBe(false);
    expect(isEventId('$a\ud800')).toBe(false); // a lone surrogate: encodeURIComponent would throw
    expect(isEventId(42)).toBe(false);
    expect(isUserId('@bob:hs')).toBe(true);
    expect(isUserId('@bob')).toBe(false);
    expect(isUserId(long('@'))).toBe(false);
    expect(isRoomId('!r:hs')).toBe(true);
    expect(isRoomId('!opaqueV12RoomIdWithoutDomain')).toBe(true);
    expect(isRoomId(long('!'))).toBe(false);
  });
});

describe('eventFault', () => {
  it('passes a normal message and a redacted one', () => {
    expect(eventFault(ok)).toBeUndefined();
    expect(eventFault({ ...ok, content: {}, unsigned: { redacted_because: {} } })).toBeUndefined();
  });

  it('names the field of an event that cannot be handled, never its value', () => {
    expect(eventFault(null)).toEqual({ reason: 'invalid_content', field: '(event)' });
    expect(eventFault({ ...ok, event_id: long('$') })).toEqual({ reason: 'invalid_id', field: 'event_id' });
    expect(eventFault({ ...ok, sender: long('@') })).toEqual({ reason: 'invalid_id', field: 'sender' });
    expect(eventFault({ ...ok, type: 't'.repeat(256) })).toEqual({ reason: 'invalid_content', field: 'type' });
    expect(eventFault({ ...ok, content: [] })).toEqual({ reason: 'invalid_content', field: 'content' });
    expect(eventFault({ ...ok, content: { body: 42 } })).toEqual({ reason: 'invalid_content', field: 'content.body' });
    expect(eventFault({ ...ok, origin_server_ts: 'now' })).toEqual({ reason: 'invalid_content', field: 'origin_server_ts' });
    expect(eventFault({ ...ok, content: { body: 'x'.repeat(MAX_EVENT_BYTES) } })).toEqual({ reason: 'too_large', field: '(event)' });
  });

  it('refuses relations that are not event ids: too long, wrong type, wrong shape', () => {
    const rel = (r: unknown) => eventFault({ ...ok, content: { body: 'x', 'm.relates_to': r } });
    expect(rel({ 'm.in_reply_to': { event_id: `$${'a'.repeat(20_000)}` } })).toEqual({ reason: 'invalid_relation', field: 'content.m.relates_to.m.in_reply_to.event_id' });
    expect(rel({ rel_type: 'm.thread', event_id: `$${'a'.repeat(300)}` })).toEqual({ reason: 'invalid_relation', field: 'content.m.relates_to.event_id' });
    expect(rel('$abc')).toEqual({ reason: 'invalid_relation', field: 'content.m.relates_to' });
    expect(rel({ rel_type: 7, event_id: '$a' })).toMatchObject({ reason: 'invalid_relation' });
    expect(rel({ 'm.in_reply_to': '$abc' })).toMatchObject({ reason: 'invalid_relation' });
    expect(rel({ 'm.in_reply_to': { event_id: '$a\u0000b' } })).toMatchObject({ reason: 'invalid_relation' });
    expect(rel({ 'm.in_reply_to': [] })).toMatchObject({ reason: 'invalid_relation' });
    expect(rel({ rel_type: 'm.thread', event_id: '$root', 'm.in_reply_to': { event_id: '$root' } })).toBeUndefined();
    expect(rel({ rel_type: 'm.thread' })).toBeUndefined(); // no id: no relation to follow
    expect(rel(null)).toBeUndefined();
  });

  it('clips what a log line quotes', () => {
    expect(clip('a'.repeat(1000), 10)).toBe('aaaaaaaaaa…(1000 chars)');
    expect(clip('$short')).toBe('$short');
  });
});

describe('clip', () => {
  it('never throws on a hostile value: an object without a usable toString is shown by its type', () => {
    expect(clip({ toString: 1 })).toBe('(object)');
    expect(clip(42)).toBe('42');
    expect(clip('x'.repeat(100), 10)).toBe('xxxxxxxxxx…(100 chars)');
  });
});
