/**
 * The supervisor's two HTTP listeners.
 *
 * Public (the pod's `http` port, probes and Prometheus): `GET /healthz`, `GET /readyz`,
 * `GET /metrics`. Nothing here changes state.
 *
 * Loopback only (127.0.0.1; other pods and nodes cannot reach it): the MCP server
 * (`POST /mcp`), the harness hooks (`POST /hooks/<event>`, `GET /inbox/next`,
 * `POST /inbox/ack`), `POST /inbox` to queue a message, `GET /status`, and
 * `POST /approvals` (the PermissionRequest hook: body the hook's input, held open until
 * the approver decides; answers 200 `{behavior: "allow"}` or `{behavior: "deny", message}`).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ZodError } from 'zod';
import type { Logger } from '../../lib/log.ts';
import { InboxFullError, type Inbox } from '../../core/inbox.ts';
import type { ToolRegistrar } from '../../core/tools.ts';
import { MAX_APPROVAL_REQUEST_BYTES, NO_APPROVER_MESSAGE, type ApprovalDecision, type Approver } from '../../core/approval.ts';
import { handleMcp, type McpToolDeps } from './mcp.ts';
import type { SupervisorMetrics } from './metrics.ts';
import type { Supervisor } from './supervisor.ts';
import { PROBE_PATHS } from '../../contract/pod.ts';

/**
 * Largest request body accepted (bytes): an inbox message at its bounds (inbox.ts: 64 Ki
 * code units of text, 16 context entries) written with every character as a JSON `\u`
 * escape (6 bytes each) is about 490 KiB.
 */
const MAX_BODY = 512 * 1024;
/** Longest a hook's long poll is held before it is told to poll again (ms). */
const MAX_POLL_MS = 5 * 60_000;

class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** The request's JSON body (undefined when empty). @throws HttpError 413 over `max` bytes, 400 when not JSON */
async function readBody(req: IncomingMessage, max = MAX_BODY): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) throw new HttpError(413, `body larger than ${max} bytes`);
    chunks.push(chunk);
  }
  if (!size) return undefined;
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'body is not JSON');
  }
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** One PermissionRequest (`POST /approvals`): checked, then held until the approver decides or `withdrawn` aborts (the connection closed). Never throws for a bad request: it is a deny. */
async function approve(deps: { supervisor: Supervisor; approver: Approver | undefined; log: Logger }, body: Record<string, unknown>, generation: number | undefined, withdrawn: AbortSignal): Promise<ApprovalDecision> {
  const { supervisor, log } = deps;
  const tool = typeof body.tool_name === 'string' && body.tool_name ? body.tool_name : undefined;
  const input = body.tool_input && typeof body.tool_input === 'object' && !Array.isArray(body.tool_input) ? (body.tool_input as Record<string, unknown>) : undefined;
  if (!tool || !input) return { behavior: 'deny', message: 'Denied: the permission request named no tool_name or tool_input.' };
  if (generation !== undefined && generation !== supervisor.generation) return { behavior: 'deny', message: 'Denied: this request belongs to a CLI that has since been restarted.' };
  if (!deps.approver) {
    log.warn({ tool: tool.slice(0, 200) }, 'permission request denied: approvals need spec.matrix');
    return { behavior: 'deny', message: NO_APPROVER_MESSAGE };
  }
  if (withdrawn.aborted) return { behavior: 'deny', message: 'The approval request was withdrawn.' }; // the hook is gone: nothing to post
  const sessionId = typeof body.session_id === 'string' ? body.session_id : supervisor.sessionId;
  return deps.approver.request({ tool, input, sessionId }, supervisor.courier.lastMatrixTask, withdrawn);
}

/** Routes of the loopback server with one method and path each (`POST /inbox`, `POST /approvals`). */
function localRoutes(opts: { supervisor: Supervisor; inbox: Inbox; metrics: SupervisorMetrics; approver?: Approver | undefined; log: Logger }): Record<string, (req: IncomingMessage, res: ServerResponse) => Promise<void>> {
  const { supervisor, inbox, metrics, log } = opts;
  return {
    'POST /inbox': async (req, res) => {
      const { message, duplicate } = await inbox.put((await readBody(req)) as never);
      if (!duplicate) metrics.inboxReceived.inc({ source: message.source });
      json(res, 202, { id: message.id, duplicate });
    },
    'POST /approvals': async (req, res) => {
      // Registered before anything is awaited: a hook that goes while its body is read, or
      // before the request is posted, withdraws it (it never waits out the timeout unheard).
      const withdrawn = new AbortController();
      res.on('close', () => {
        if (!res.writableEnded) withdrawn.abort();
      });
      if (res.destroyed || req.socket.destroyed) withdrawn.abort();
      const body = ((await readBody(req, MAX_APPROVAL_REQUEST_BYTES)) ?? {}) as Record<string, unknown>;
      const gen = req.headers['x-agent-smith-generation'];
      json(res, 200, await approve({ supervisor, approver: opts.approver, log }, body, gen ? Number(gen) : undefined, withdrawn.signal));
    },
  };
}

export interface SupervisorHttp {
  publicPort: number;
  localPort: number;
  close(): Promise<void>;
}

/** Starts both listeners. @throws when a port is taken (EADDRINUSE), naming it. */
export async function serveSupervisor(opts: {
  supervisor: Supervisor;
  inbox: Inbox;
  metrics: SupervisorMetrics;
  mcp: McpToolDeps;
  mcpTools?: ToolRegistrar[];
  /** Who decides a PermissionRequest (the Matrix approvals); without one every request is denied, saying approvals need spec.matrix. */
  approver?: Approver | undefined;
  /** More parts of readiness (the Matrix bridge): each named check must be ok too; /readyz shows them all. */
  readyChecks?: Record<string, () => { ok: boolean; reason: string; [detail: string]: unknown }>;
  log: Logger;
  publicPort: number;
  publicHost?: string;
  localPort: number;
}): Promise<SupervisorHttp> {
  const { supervisor, metrics, log } = opts;

  const pub = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (req.method !== 'GET') return json(res, 405, { error: 'GET only' });
    switch (url.pathname) {
      case PROBE_PATHS.healthz: {
        const stale = Date.now() - supervisor.lastTmuxOk > 30_000 && supervisor.state !== 'exited';
        return json(res, stale ? 503 : 200, { ok: !stale, state: supervisor.state });
      }
      case PROBE_PATHS.readyz: {
        const r = supervisor.ready();
        const parts = Object.fromEntries(Object.entries(opts.readyChecks ?? {}).map(([name, check]) => [name, check()]));
        const failed = Object.entries(parts).find(([, p]) => !p.ok);
        const ok = r.ok && !failed;
        // Delivery to the CLI is part of the supervisor's own readiness (supervisor.ready); its figures are shown here.
        const s = supervisor.status();
        const inbox = { pending: s.inboxPending, deadLetters: s.inboxDeadLetters, deliveryFailures: s.deliveryFailures, lastDeliveryFailure: s.lastDeliveryFailure };
        return json(res, ok ? 200 : 503, { ...r, ok, reason: r.ok && failed ? failed[1].reason : r.reason, inbox, ...parts });
      }
      case '/metrics':
        metrics.registry
          .metrics()
          .then((text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text))
          .catch((err: unknown) => json(res, 500, { error: String(err) }));
        return;
      default:
        return json(res, 404, { error: 'not found' });
    }
  });

  const local = createServer((req, res) => {
    handleLocal(req, res).catch((err: unknown) => {
      if (res.headersSent) return void res.end();
      if (err instanceof HttpError) return json(res, err.status, { error: err.message });
      if (err instanceof InboxFullError) return json(res, 429, { error: err.message });
      if (err instanceof ZodError) return json(res, 400, { error: err.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ') });
      log.error({ err, path: req.url }, 'local request failed');
      json(res, 500, { error: 'internal error' });
    });
  });

  async function handleLocal(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = url.pathname;
    if (path === '/mcp') return handleMcp(req, res, req.method === 'POST' ? await readBody(req) : undefined, opts.mcp, opts.mcpTools);
    if (path === '/status' && req.method === 'GET') return json(res, 200, supervisor.status());
    if (path.startsWith('/hooks/') && req.method === 'POST') {
      const event = path.slice('/hooks/'.length);
      const body = ((await readBody(req)) ?? {}) as Record<string, unknown>;
      const gen = req.headers['x-agent-smith-generation'];
      await supervisor.onHook(event, gen ? Number(gen) : undefined, body);
      return json(res, 200, { ok: true });
    }
    const route = routes[`${req.method} ${path}`];
    if (route) return route(req, res);
    if (path === '/inbox/next' && req.method === 'GET') {
      const generation = Number(url.searchParams.get('generation'));
      const timeoutMs = Math.min(Number(url.searchParams.get('timeoutMs') ?? MAX_POLL_MS) || MAX_POLL_MS, MAX_POLL_MS);
      let done = false;
      res.on('close', () => {
        if (!done) supervisor.dropWaiter(generation);
      });
      const m = await supervisor.waitForMessage(generation, timeoutMs);
      done = true;
      if (m === 'stale') return json(res, 410, { error: 'this hook belongs to an earlier CLI or was replaced by a newer waiter' });
      if (m === 'timeout') return void res.writeHead(204).end();
      return json(res, 200, { id: m.message.id, text: m.text });
    }
    if (path === '/inbox/ack' && req.method === 'POST') {
      const body = (await readBody(req)) as { id?: unknown } | undefined;
      if (typeof body?.id !== 'string') throw new HttpError(400, 'id: required string');
      return json(res, 200, { acknowledged: await supervisor.ack(body.id, 'hook') });
    }
    json(res, 404, { error: 'not found' });
  }

  const routes = localRoutes(opts);
  // Long polls must outlive Node's default request timeouts.
  local.requestTimeout = 0;
  local.headersTimeout = 60_000;
  const publicPort = await listen(pub, opts.publicPort, opts.publicHost ?? '0.0.0.0').catch((err: Error) => {
    throw new Error(`cannot listen on the supervisor port ${opts.publicPort}: ${err.message}`);
  });
  const localPort = await listen(local, opts.localPort, '127.0.0.1').catch((err: Error) => {
    throw new Error(`cannot listen on the loopback port ${opts.localPort} (AGENT_SMITH_LOCAL_PORT): ${err.message}`);
  });
  return {
    publicPort,
    localPort,
    close: async () => {
      local.closeAllConnections();
      pub.closeAllConnections();
      await Promise.all([new Promise((r) => local.close(r)), new Promise((r) => pub.close(r))]);
    },
  };
}
