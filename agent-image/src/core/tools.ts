/**
 * The port through which plug-ins add tools to the supervisor's MCP server
 * (programs/supervise/mcp.ts serves them over MCP Streamable HTTP on the pod's `http`
 * port). A plug-in returns a {@link ToolRegistrar}; the supervisor calls it once per MCP
 * session with that session's server.
 */
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';

/** An extra tool a plug-in (Matrix bridge, event log) registers on the supervisor's MCP server. */
export type ToolRegistrar = (server: McpServer) => void;

/**
 * The counter a tool bumps once per call, labelled by tool name
 * (`agentsmith_supervisor_mcp_tool_calls_total{tool}`, programs/supervise/metrics.ts).
 */
export interface ToolCallMetrics {
  toolCalls: { inc(labels: { tool: string }): void };
}
