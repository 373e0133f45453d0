/**
 * A stand-in for the supervisor's MCP server (`agent-smith`) for runtime tests that run
 * Claude Code without a supervisor: a stdio MCP server offering `matrix_reply` {room, text,
 * thread?} and `publish_event` {type, data} (validated with the real event schema, as the
 * supervisor's tool does), each call appended as one JSON line to the file named by argv[2].
 *
 *   {"mcpServers": {"agent-smith": {"command": "node", "args": ["test/support/mcp-recorder.ts", "/tmp/calls.jsonl"], "alwaysLoad": true}}}
 */
import { appendFileSync } from 'node:fs';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { z } from 'zod';
import { validateAgentEvent } from '../../agent-image/src/core/event-schema.ts';

const file = process.argv[2];
if (!file) throw new Error('usage: node mcp-recorder.ts <calls.jsonl>');
const record = (tool: string, input: unknown) => appendFileSync(file, JSON.stringify({ tool, input, at: Date.now() }) + '\n');

const server = new McpServer({ name: 'agent-smith', version: '0.0.0' });
server.registerTool(
  'matrix_reply',
  { description: 'Answer in a Matrix room (sent as a notice).', inputSchema: { room: z.string().min(1), text: z.string().min(1), thread: z.string().min(1).optional() } },
  (input) => {
    record('matrix_reply', input);
    return { content: [{ type: 'text', text: `sent $event${Date.now()}` }] };
  },
);
server.registerTool(
  'publish_event',
  { description: "Publish an event to the team's event log.", inputSchema: { type: z.string(), data: z.record(z.string(), z.unknown()) } },
  ({ type, data }) => {
    const v = validateAgentEvent(type, data);
    record('publish_event', { type, data, ok: v.ok });
    return v.ok ? { content: [{ type: 'text', text: `published ${type}` }] } : { content: [{ type: 'text', text: `refused: ${v.error}` }], isError: true };
  },
);
await server.connect(new StdioServerTransport());
