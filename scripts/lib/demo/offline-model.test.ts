import { describe, expect, it } from 'vitest';
import { hasTool, isSideRequest, lastUserText, toolResults, type Helpers, type MessageIn, type RecordedRequest, type Turn } from '../fakes/anthropic-api.ts';
import { offlineResponder, parseAgentSmithMessage } from './offline-model.ts';

const h: Helpers = {
  lastUserText,
  toolResults,
  hasTool,
  isSideRequest,
  text: (text) => ({ content: [{ type: 'text', text }] }),
  toolUse: (name, input) => ({ content: [{ type: 'tool_use', name, input }] }),
};
const tools = [{ name: 'mcp__agent-smith__matrix_reply' }, { name: 'mcp__agent-smith__publish_event' }, { name: 'Bash' }];
const request = (messages: MessageIn[]): RecordedRequest => ({ path: '/v1/messages', query: {}, headers: {}, body: { model: 'm', max_tokens: 10, messages, tools }, side: false, at: 0 });
const textOf = (turn: Turn) => turn.content.map((b) => (b.type === 'text' ? b.text : `<${b.name}>`)).join('');
const rendered =
  'A message for you arrived through agent-smith from matrix.\n<agent-smith-message id="$e1" source="matrix" room="!r:localhost" sender="@demo:localhost" thread="$t1">\ndevbot: deploy the "app"\n</agent-smith-message>';

describe('the offline demo model', () => {
  it('parses the message agent-smith renders', () => {
    expect(parseAgentSmithMessage(rendered)).toEqual({
      attrs: { id: '$e1', source: 'matrix', room: '!r:localhost', sender: '@demo:localhost', thread: '$t1' },
      body: 'devbot: deploy the "app"',
    });
    expect(parseAgentSmithMessage('no message here')).toBeUndefined();
  });

  it('echoes a Matrix message with matrix_reply in its thread, then publishes task_done, then ends the turn', () => {
    // The message may come inside the Stop hook's feedback (a tool result) rather than as a prompt.
    const first: MessageIn[] = [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 'x', content: [{ type: 'text', text: rendered }] }] }];
    const reply = offlineResponder(request(first), h);
    expect(reply.content).toEqual([
      { type: 'tool_use', name: 'mcp__agent-smith__matrix_reply', input: { room: '!r:localhost', thread: '$t1', text: '[offline demo] you said: devbot: deploy the "app"' } },
    ]);

    const second: MessageIn[] = [
      ...first,
      { role: 'assistant', content: [{ type: 'tool_use', id: 't1', name: 'mcp__agent-smith__matrix_reply', input: {} }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: 'sent' }] },
    ];
    const event = offlineResponder(request(second), h);
    expect(event.content).toEqual([
      { type: 'tool_use', name: 'mcp__agent-smith__publish_event', input: { type: 'task_done', data: { summary: '[offline demo] answered a Matrix message from @demo:localhost' } } },
    ]);

    const third: MessageIn[] = [
      ...second,
      { role: 'assistant', content: [{ type: 'tool_use', id: 't2', name: 'mcp__agent-smith__publish_event', input: {} }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't2', content: 'published' }] },
    ];
    const done = offlineResponder(request(third), h);
    expect(done.content).toHaveLength(1);
    expect(textOf(done)).toContain('[offline demo] answered in Matrix and published task_done');
  });

  it('echoes what a person types in the pane as text, saying it is the offline demo', () => {
    const turn = offlineResponder(request([{ role: 'user', content: 'hello there' }]), h);
    expect(textOf(turn)).toMatch(/^\[offline demo\] you said: hello there\n.*anthropic credential/);
  });
});
