/**
 * The supervisor's MCP server: the agent's own tools, served over MCP Streamable HTTP
 * (stateless: a fresh server and transport per request, as the SDK documents for
 * servers without sessions) on the loopback listener at `/mcp`. Claude Code reaches it
 * through the `agent-smith` entry of the MCP config setup wrote; the tools appear to the
 * model as `mcp__agent-smith__<tool>`.
 *
 * Tools now: `status`, `notify`. The Matrix and event-log tools join the same server.
 *
 * The SDK is imported on the first request, not at start: it is the largest part of the
 * supervisor's memory (~11 MB of heap, ~15 MB of RSS with its validators),
 * and a harness without MCP (codex, opencode, custom) never calls it
 * (test/bench/supervisor-soak.ts).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import type { Logger } from '../../lib/log.ts';
import type { SupervisorMetrics } from './metrics.ts';
import type { SupervisorStatus } from './supervisor.ts';
import type { ToolRegistrar } from '../../core/tools.ts';

export interface Notification {
  text: string;
  level: 'info' | 'warning' | 'urgent';
  at: string;
}

/** What the tools need from the supervisor. */
export interface McpToolDeps {
  status(): SupervisorStatus;
  /** Records a notification for people (log line, event; later the Matrix room). */
  notify(n: Notification): Promise<void>;
  /** Recent notifications, newest last. */
  recentNotifications(): Notification[];
  metrics: SupervisorMetrics;
  log: Logger;
  version: string;
}


type Sdk = [typeof import('@modelcontextprotocol/sdk/server/mcp.js'), typeof import('@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js')];
let sdk: Promise<Sdk> | undefined;

function buildServer(McpServer: Sdk[0]['McpServer'], deps: McpToolDeps, extra: ToolRegistrar[]): McpServer {
  const server = new McpServer({ name: 'agent-smith', version: deps.version });
  const call = (tool: string) => deps.metrics.toolCalls.inc({ tool });
  server.registerTool(
    'status',
    {
      description: "This agent's supervisor status: harness state, session id, restarts, crash loop, pending inbox messages, recent notifications.",
      inputSchema: {},
    },
    () => {
      call('status');
      const body = { ...deps.status(), notifications: deps.recentNotifications() };
      return { content: [{ type: 'text', text: JSON.stringify(body, null, 2) }], structuredContent: body };
    },
  );
  server.registerTool(
    'notify',
    {
      description: 'Tell the people who run this agent something that needs their attention (a blocker, a finished long task, a question). Logged and published as an event.',
      inputSchema: {
        text: z.string().min(1).max(4000).describe('What to tell them, in one or two sentences'),
        level: z.enum(['info', 'warning', 'urgent']).default('info').describe('How urgent it is'),
      },
    },
    async ({ text, level }) => {
      call('notify');
      await deps.notify({ text, level, at: new Date().toISOString() });
      return { content: [{ type: 'text', text: `notified (${level})` }] };
    },
  );
  for (const register of extra) register(server);
  return server;
}

/**
 * Serves one MCP HTTP request (POST /mcp). GET and DELETE get 405, as a stateless server
 * has no stream or session to offer (MCP spec 2025-06-18, Streamable HTTP transport).
 */
export async function handleMcp(req: IncomingMessage, res: ServerResponse, body: unknown, deps: McpToolDeps, extra: ToolRegistrar[] = []): Promise<void> {
  if (req.method !== 'POST') {
    res.writeHead(405, { 'content-type': 'application/json', allow: 'POST' }).end(
      JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: 'Method not allowed: this MCP server is stateless (POST only)' }, id: null }),
    );
    return;
  }
  sdk ??= Promise.all([import('@modelcontextprotocol/sdk/server/mcp.js'), import('@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js')]);
  const [{ McpServer }, { WebStandardStreamableHTTPServerTransport }] = await sdk;
  const server = buildServer(McpServer, deps, extra);
  // The SDK's web-standard transport (Request in, Response out), not its Node one, which
  // wraps it in @hono/node-server for ~12 MB more RSS; the adaptation is the few lines here.
  const transport = new WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: false });
  const abort = new AbortController();
  res.on('close', () => {
    abort.abort();
    void transport.close();
    void server.close();
  });
  await server.connect(transport);
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(', ') : value);
  }
  const request = new Request(`http://${req.headers.host ?? '127.0.0.1'}${req.url ?? '/mcp'}`, { method: 'POST', headers, signal: abort.signal });
  const response = await transport.handleRequest(request, { parsedBody: body });
  res.writeHead(response.status, Object.fromEntries(response.headers));
  if (!response.body) {
    res.end();
    return;
  }
  // Streamed (SSE): each chunk goes out as the server writes it.
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) res.write(chunk);
  res.end();
}
