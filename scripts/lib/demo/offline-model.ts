/**
 * The "offline demo" model: what scripts/lib/fakes/anthropic-api.ts answers when the demo runs
 * without a model key. It is deliberately obvious: a message from agent-smith's Matrix
 * bridge is echoed back in the room with `matrix_reply` ("[offline demo] you said: …"),
 * then a `task_done` event is published with `publish_event`, then the turn ends with a
 * short text. Anything else (a person typing in the tmux pane) is echoed as text.
 *
 * The message arrives as the text agent-smith renders (agent-image/src/core/inbox.ts
 * renderMessage): `<agent-smith-message id=".." source="matrix" room=".." ...>\n<text>\n</agent-smith-message>`,
 * either as the prompt or inside the Stop hook's feedback, so every string of the last
 * user message is searched.
 */
import type { ContentBlockIn, Helpers, MessageIn, RecordedRequest, Turn } from '../fakes/anthropic-api.ts';

export const OFFLINE_PREFIX = '[offline demo]';
const REPLY_TOOL = 'mcp__agent-smith__matrix_reply';
const EVENT_TOOL = 'mcp__agent-smith__publish_event';

/** Every string in a message's content (text blocks, tool results, nested). */
function strings(content: MessageIn['content'] | ContentBlockIn[] | string | undefined): string[] {
  if (content === undefined) return [];
  if (typeof content === 'string') return [content];
  return content.flatMap((b) => [...(typeof b.text === 'string' ? [b.text] : []), ...(b.content === undefined ? [] : strings(b.content))]);
}

/** The last agent-smith message in `text`: its attributes and body. */
export function parseAgentSmithMessage(text: string): { attrs: Record<string, string>; body: string } | undefined {
  const at = text.lastIndexOf('<agent-smith-message ');
  if (at < 0) return undefined;
  const headerEnd = text.indexOf('>', at);
  const end = text.indexOf('</agent-smith-message>', headerEnd);
  if (headerEnd < 0) return undefined;
  const attrs = Object.fromEntries([...text.slice(at, headerEnd).matchAll(/([\w-]+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
  return { attrs, body: text.slice(headerEnd + 1, end < 0 ? undefined : end).trim() };
}

/** The tool the assistant called last, when the last user message carries its result. */
function answeredTool(req: RecordedRequest): string | undefined {
  const msgs = req.body.messages;
  const last = msgs.at(-1);
  if (!last || typeof last.content === 'string' || !last.content.some((b) => b.type === 'tool_result')) return undefined;
  const prev = msgs.at(-2);
  if (!prev || prev.role !== 'assistant' || typeof prev.content === 'string') return undefined;
  return prev.content.filter((b) => b.type === 'tool_use').at(-1)?.name;
}

/** The first line of `s`, at most `max` characters. */
const short = (s: string, max = 200) => {
  const line = s.split('\n')[0] ?? '';
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
};

/** The offline demo's responder (see the file comment). */
export function offlineResponder(req: RecordedRequest, h: Helpers): Turn {
  const tool = answeredTool(req);
  if (tool === REPLY_TOOL) {
    const msg = findMessage(req);
    const summary = `${OFFLINE_PREFIX} answered a Matrix message${msg ? ` from ${msg.attrs.sender ?? 'someone'}` : ''}`;
    if (h.hasTool(req, EVENT_TOOL)) return h.toolUse(EVENT_TOOL, { type: 'task_done', data: { summary } });
    return h.text(`${OFFLINE_PREFIX} answered in Matrix.`);
  }
  if (tool === EVENT_TOOL) return h.text(`${OFFLINE_PREFIX} answered in Matrix and published task_done. (This is the fake model of the offline demo; on a cluster with a way out, give the Agent an anthropic credential for the real one.)`);
  if (tool !== undefined) return h.text(`${OFFLINE_PREFIX} done.`);

  const last = req.body.messages.at(-1);
  const msg = parseAgentSmithMessage(strings(last?.content).join('\n'));
  if (msg && msg.attrs.source === 'matrix' && msg.attrs.room && h.hasTool(req, REPLY_TOOL)) {
    return h.toolUse(REPLY_TOOL, { room: msg.attrs.room, ...(msg.attrs.thread ? { thread: msg.attrs.thread } : {}), text: `${OFFLINE_PREFIX} you said: ${short(msg.body, 500)}` });
  }
  const typed = h.lastUserText(req);
  return h.text(`${OFFLINE_PREFIX} you said: ${short(typed)}\nThis is the offline demo's fake model: it echoes. On a cluster with a way out, give the Agent an anthropic credential for the real one.`);
}

/** The agent-smith message the current turn answers: the newest one in the request's user messages. */
function findMessage(req: RecordedRequest): ReturnType<typeof parseAgentSmithMessage> {
  for (const m of [...req.body.messages].reverse()) {
    if (m.role !== 'user') continue;
    const found = parseAgentSmithMessage(strings(m.content).join('\n'));
    if (found) return found;
  }
  return undefined;
}
