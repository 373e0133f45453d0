/**
 * The approval port: a harness CLI asks whether a tool call may run (Claude Code's
 * `PermissionRequest` hook → `agent-smith hook permission-request` → the supervisor's
 * `POST /approvals`), and an Approver (the Matrix plug-in, plugins/matrix/approvals.ts)
 * asks people and answers. The supervisor knows where the current task came from
 * (TaskOrigin); the approver knows the room, the people and the clock.
 *
 * Every path fails closed: no approver, a full queue, a post that cannot be sent, a
 * timeout or a withdrawn request is a deny with a message the model sees.
 */

/** What the CLI asks for (from the hook's stdin JSON: `tool_name`, `tool_input`, `session_id`). */
export interface ApprovalRequest {
  /** The tool, e.g. `Bash`, `Edit`, `mcp__server__tool`, as received (any length up to the request body's bound; the Matrix approver shows and keys at most 200 UTF-16 code units of it, approval-rules.ts MAX_TOOL_CHARS). */
  tool: string;
  /** The tool's input as the CLI sent it (e.g. Bash: `{command, description}`). */
  input: Record<string, unknown>;
  /** The CLI session the request belongs to: an "always" answer is remembered for it only. */
  sessionId: string;
}

/** Where the current task came from: the last Matrix message delivered to the CLI (its room, event and answer thread). */
export interface TaskOrigin {
  room: string;
  event: string;
  thread?: string | undefined;
}

/**
 * Largest `POST /approvals` body the supervisor reads (bytes of the hook's JSON input). The
 * hook denies a larger call itself, saying it is too large to ask about in chat.
 */
export const MAX_APPROVAL_REQUEST_BYTES = 512 * 1024;

/** The deny of a tool call whose approval request is over MAX_APPROVAL_REQUEST_BYTES. */
export const TOO_LARGE_MESSAGE = `Denied: this tool call's input is too large to ask about in chat (over ${MAX_APPROVAL_REQUEST_BYTES / 1024} KiB); nobody was asked. Do it in smaller steps.`;

/** The answer, in the shape of Claude Code's PermissionRequest decision (`behavior`, and the deny `message` the model sees). */
export type ApprovalDecision = { behavior: 'allow' } | { behavior: 'deny'; message: string };

/** Asks people whether a tool call may run. Never throws: a failure is a deny naming it. */
export interface Approver {
  /**
   * Resolves once an approver answered, the timeout passed, or `signal` aborted (the CLI
   * stopped waiting: resolves a deny).
   */
  request(req: ApprovalRequest, origin: TaskOrigin | undefined, signal: AbortSignal): Promise<ApprovalDecision>;
}

/** The deny every approval gets when the Agent has no spec.matrix (nobody to ask). */
export const NO_APPROVER_MESSAGE =
  'This action needs a person\'s approval, and approvals are asked in Matrix: this Agent has no spec.matrix, so nobody can be asked. The request was denied; do it another way or ask the people who run this agent to allow it in spec.permissions.';
