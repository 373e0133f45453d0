import { describe, expect, it } from 'vitest';
import { decide, linkedUserId, mentions, pillUserIds, threadOf, type Who } from './triggers.ts';

const who: Who = {
  userId: '@testbot:hs',
  names: ['testbot', 'Tess'],
  allowedUsers: new Set(['@alice:hs']),
  agents: new Set(['@otherbot:hs']),
};

const msg = (sender: string, body: string, extra: Record<string, unknown> = {}) => ({ type: 'm.room.message', sender, content: { msgtype: 'm.text', body, ...extra } });

describe('mentions', () => {
  it('finds m.mentions, the user id, a pill link and the names as words only', () => {
    expect(mentions({ body: 'hi', 'm.mentions': { user_ids: ['@testbot:hs'] } }, who)).toBe(true);
    expect(mentions({ body: 'ping @testbot:hs please' }, who)).toBe(true);
    expect(mentions({ body: 'x', formatted_body: '<a href="https://matrix.to/#/%40testbot%3Ahs">bot</a>' }, who)).toBe(true);
    expect(mentions({ body: 'TestBot, look' }, who)).toBe(true);
    expect(mentions({ body: 'ask tess about it' }, who)).toBe(true);
    expect(mentions({ body: 'testbots are fun' }, who)).toBe(false);
    expect(mentions({ body: 'my-testbot-2 broke' }, who)).toBe(false);
    expect(mentions({ body: 'hi', 'm.mentions': { user_ids: ['@other:hs'] } }, who)).toBe(false);
  });
});

describe('mentions: pills, whole words, m.mentions', () => {
  const devbot = { userId: '@devbot:localhost', names: ['devbot'] };
  const pill = (href: string) => ({ body: 'devbot: look', format: 'org.matrix.custom.html', formatted_body: `<a href=${href}>devbot</a>: look` });

  it('counts a pill of its full user id in any valid encoding', () => {
    for (const href of [
      '"https://matrix.to/#/@devbot:localhost"',
      '"https://matrix.to/#/%40devbot%3Alocalhost"',
      '"https://matrix.to/#/%40devbot%3alocalhost"',
      "'https://matrix.to/#/%40devbot:localhost?via=localhost&amp;via=example.org'",
      'https://matrix.to/#/@devbot:LOCALHOST',
      '"matrix:u/devbot:localhost?action=chat"',
      '"https://matrix.to/#/&#64;devbot:localhost"',
    ]) {
      expect(mentions({ ...pill(href), body: 'look' }, devbot), href).toBe(true);
    }
    expect(pillUserIds('<a href="https://matrix.to/#/%40a%3Ahs">a</a> <a href="https://example.org/">x</a>')).toEqual(['@a:hs']);
    expect(linkedUserId('https://matrix.to/#/%E0%A4%A')).toBeUndefined(); // a broken escape is no link
    expect(linkedUserId('https://matrix.to/#/!room:hs')).toBeUndefined();
  });

  it('does not count a pill or an id of another user, on another server or with a longer name', () => {
    expect(mentions({ body: 'ask them', formatted_body: '<a href="https://matrix.to/#/@devbot:evil.example">devbot</a>' }, devbot)).toBe(false);
    expect(mentions({ body: 'ask them', formatted_body: '<a href="https://matrix.to/#/%40devbot2%3Alocalhost">x</a>' }, devbot)).toBe(false);
    expect(mentions({ body: 'ping @devbot:evil.example please' }, devbot)).toBe(false);
    expect(mentions({ body: 'ping @devbot2:localhost please' }, devbot)).toBe(false);
    expect(mentions({ body: 'ping @devbot:localhost.evil.example' }, devbot)).toBe(false);
    expect(mentions({ body: 'ping @devbot:localhost:8448' }, devbot)).toBe(false);
    expect(mentions({ body: 'ping @devbot:localhost.' }, devbot)).toBe(true);
    expect(mentions({ body: '@devbot: help' }, devbot)).toBe(true);
  });

  it('counts a plain-text name only as a whole word, never inside a URL, a path, a host or glued to letters of any script', () => {
    for (const body of ['devbot: deploy', 'hey devbot, deploy', 'DevBot?', '(devbot)', '«devbot»', 'devbot.', '@devbot deploy', 'ask devbot\'s opinion']) {
      expect(mentions({ body }, devbot), body).toBe(true);
    }
    for (const body of [
      'see https://git.example/agents/devbot/README',
      'see git.example/devbot/README',
      'agents/devbot',
      'www.devbot.example',
      'xdevbotx',
      'devbots are fun',
      'my-devbot-2',
      'devbot_old',
      'édevbot',
      'devbotй',
      'devbot名',
      '数devbot',
      'devbot.yaml',
      'mail devbot@example.org',
      '#devbot:localhost',
    ]) {
      expect(mentions({ body }, devbot), body).toBe(false);
    }
  });

  it('judges an event with m.mentions by it alone (v1.7), also when its shape is wrong', () => {
    expect(mentions({ body: 'devbot: deploy', 'm.mentions': {} }, devbot)).toBe(false);
    expect(mentions({ body: 'hi', 'm.mentions': { user_ids: ['@devbot:localhost'] } }, devbot)).toBe(true);
    expect(mentions({ body: 'hi', 'm.mentions': { user_ids: ['@devbot:evil.example'] } }, devbot)).toBe(false);
    expect(mentions({ body: 'devbot', 'm.mentions': { room: true } }, devbot)).toBe(false);
    expect(mentions({ body: 'devbot', 'm.mentions': { user_ids: '@devbot:localhost' } }, devbot)).toBe(false);
    expect(mentions({ body: 'devbot', 'm.mentions': { user_ids: [7, null, '@devbot:localhost'] } }, devbot)).toBe(true);
    expect(mentions({ body: 'devbot', 'm.mentions': 'devbot' }, devbot)).toBe(false);
    expect(mentions({ body: 42, formatted_body: ['x'] }, devbot)).toBe(false);
  });
});

describe('decide', () => {
  it('takes mentions and allow-listed senders; 👀s other people and stays silent', () => {
    expect(decide(msg('@bob:hs', 'testbot: help'), who, 0)).toEqual({ action: 'deliver', reason: 'mention', agent: false });
    expect(decide(msg('@alice:hs', 'anything'), who, 0)).toEqual({ action: 'deliver', reason: 'allowlist', agent: false });
    expect(decide(msg('@bob:hs', 'lunch?'), who, 0)).toEqual({ action: 'ignore', reason: 'not_triggered', agent: false, react: true });
  });

  it('ignores its own events, edits, redactions and redacted or encrypted events without a 👀', () => {
    expect(decide(msg('@testbot:hs', 'my answer'), who, 0)).toMatchObject({ action: 'ignore', reason: 'own', agent: true, react: false });
    const edit = msg('@alice:hs', '* fixed', { 'm.relates_to': { rel_type: 'm.replace', event_id: '$a' } });
    expect(decide(edit, who, 0)).toMatchObject({ action: 'ignore', reason: 'edit', react: false });
    expect(decide({ type: 'm.room.redaction', sender: '@alice:hs', content: {} }, who, 0)).toMatchObject({ action: 'ignore', reason: 'redaction' });
    expect(decide({ type: 'm.room.message', sender: '@alice:hs', content: {}, unsigned: { redacted_because: {} } }, who, 0)).toMatchObject({ reason: 'redacted' });
    expect(decide({ type: 'm.room.encrypted', sender: '@alice:hs', content: {} }, who, 0)).toMatchObject({ reason: 'encrypted' });
    expect(decide(msg('@alice:hs', '  '), who, 0)).toMatchObject({ action: 'ignore', reason: 'empty' });
  });

  it('answers another agent only when named, and never a 4th agent message in a row', () => {
    expect(decide(msg('@otherbot:hs', 'done deploying'), who, 0)).toMatchObject({ action: 'ignore', reason: 'agent_not_named', agent: true, react: false });
    expect(decide(msg('@otherbot:hs', 'testbot, your turn'), who, 2)).toEqual({ action: 'deliver', reason: 'mention', agent: true });
    expect(decide(msg('@otherbot:hs', 'testbot, your turn'), who, 3)).toMatchObject({ action: 'ignore', reason: 'loop_guard' });
    // An unknown bot is recognised by its m.notice; an allow-listed agent still needs to name it.
    expect(decide(msg('@alice:hs', 'build green', { msgtype: 'm.notice' }), who, 0)).toMatchObject({ reason: 'agent_not_named', agent: true });
  });

  it('asks for a reply check only for a person replying to something, and takes a reply to the agent', () => {
    const threaded = msg('@bob:hs', 'why?', { 'm.relates_to': { rel_type: 'm.thread', event_id: '$root', 'm.in_reply_to': { event_id: '$root' } } });
    expect(threadOf(threaded.content)).toBe('$root');
    expect(decide(threaded, who, 0)).toEqual({ action: 'need_reply_check' });
    expect(decide(threaded, who, 0, true)).toEqual({ action: 'deliver', reason: 'thread', agent: false });
    expect(decide(threaded, who, 0, false)).toMatchObject({ action: 'ignore', reason: 'not_triggered', react: true });
  });
});
