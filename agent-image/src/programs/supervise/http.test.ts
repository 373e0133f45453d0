import { connect } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { makeLogger } from '../../lib/log.ts';
import type { ApprovalDecision, ApprovalRequest, Approver } from '../../core/approval.ts';
import { serveSupervisor, type SupervisorHttp } from './http.ts';
import type { Supervisor } from './supervisor.ts';

let http: SupervisorHttp | undefined;
afterEach(async () => {
  await http?.close();
  http = undefined;
});

describe('POST /approvals', () => {
  it('withdraws the request when the hook goes right after sending it', async () => {
    const asked: Array<{ req: ApprovalRequest; signal: AbortSignal }> = [];
    const approver: Approver = {
      request: (req, _origin, signal) => {
        asked.push({ req, signal });
        return new Promise<ApprovalDecision>((resolve) => signal.addEventListener('abort', () => resolve({ behavior: 'deny', message: 'withdrawn' })));
      },
    };
    const supervisor = { generation: 1, sessionId: 's', courier: { lastMatrixTask: undefined } } as unknown as Supervisor;
    http = await serveSupervisor({ supervisor, inbox: {} as never, metrics: {} as never, mcp: {} as never, approver, log: makeLogger('test', 'silent'), publicPort: 0, publicHost: '127.0.0.1', localPort: 0 });
    const body = JSON.stringify({ tool_name: 'Bash', tool_input: { command: 'ls' }, session_id: 's1' });
    // The whole body is sent, then the connection is closed at once without waiting for the answer.
    const sock = connect(http.localPort, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    sock.end(`POST /approvals HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    sock.destroy();
    // Either nobody was asked, or the request asked is withdrawn: none waits out the timeout.
    await new Promise((r) => setTimeout(r, 200));
    await vi.waitFor(() => expect(asked.every((a) => a.signal.aborted)).toBe(true));
  });
});
