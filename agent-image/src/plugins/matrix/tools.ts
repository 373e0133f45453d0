/**
 * The agent's Matrix tools on the supervisor's MCP server (`mcp__agent-smith__matrix_reply`,
 * `mcp__agent-smith__matrix_react`). A message from Matrix reaches the agent with its room,
 * sender, event id and thread (supervisor/inbox.ts renderMessage); the agent answers with
 * these, passing them back.
 */
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import type { ToolCallMetrics, ToolRegistrar } from '../../core/tools.ts';
import type { MatrixBridge } from './bridge.ts';

type ToolResult = { content: Array<{ type: 'text'; text: string }>; isError?: boolean };

function failure(err: unknown): ToolResult {
  return { content: [{ type: 'text', text: `failed: ${(err as Error).message}` }], isError: true };
}

/** Registers matrix_reply and matrix_react, backed by `bridge`. */
export function matrixTools(bridge: Pick<MatrixBridge, 'reply' | 'react'>, metrics: ToolCallMetrics): ToolRegistrar {
  return (server: McpServer) => {
    server.registerTool(
      'matrix_reply',
      {
        description:
          'Answer in a Matrix room (sent as a notice). For a message that came from Matrix, pass its room and its thread (every Matrix message carries the thread its answer goes to), or its event id, so the answer lands in the thread where the question was asked.',
        inputSchema: {
          room: z.string().min(1).max(255).describe('Room id from the message, e.g. !abc:example.org'),
          text: z.string().min(1).max(32_000).describe('The answer, plain text (Markdown is shown as typed)'),
          thread: z.string().min(1).max(255).optional().describe('Thread root event id from the message (its thread attribute): the answer goes in that thread'),
          event: z.string().min(1).max(255).optional().describe('Event id of the message you answer (makes the answer a reply to it)'),
          html: z.string().min(1).max(64_000).optional().describe('The same answer as HTML (org.matrix.custom.html), optional'),
        },
      },
      async (args) => {
        metrics.toolCalls.inc({ tool: 'matrix_reply' });
        try {
          const id = await bridge.reply(args);
          return { content: [{ type: 'text', text: `sent ${id}` }] };
        } catch (err) {
          return failure(err);
        }
      },
    );
    server.registerTool(
      'matrix_react',
      {
        description: 'React to a Matrix message with an emoji (e.g. ✅ when done, 👍 to agree).',
        inputSchema: {
          room: z.string().min(1).max(255).describe('Room id'),
          event: z.string().min(1).max(255).describe('Event id of the message'),
          key: z.string().min(1).max(64).describe('The reaction, usually one emoji'),
        },
      },
      async (args) => {
        metrics.toolCalls.inc({ tool: 'matrix_react' });
        try {
          const id = await bridge.react(args);
          return { content: [{ type: 'text', text: id ? `reacted ${id}` : 'that reaction is there already' }] };
        } catch (err) {
          return failure(err);
        }
      },
    );
  };
}
