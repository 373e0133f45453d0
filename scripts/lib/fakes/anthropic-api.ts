/**
 * A fake Anthropic Messages API for tests: real HTTP on 127.0.0.1, the documented wire
 * format, and replies scripted per test.
 *
 * Protocol facts come from the Claude API reference (docs.anthropic.com/en/api/messages,
 * /en/api/messages-streaming, /en/api/messages-count-tokens, /en/api/errors) and from
 * running Claude Code 2.1.330 against this server (../shared/notes/claude-code-offline.md):
 * - `POST /v1/messages` (Claude Code adds `?beta=true`). With `stream: true` the reply is
 *   SSE, each event named (`event: <type>`) with the same `type` in its JSON data, in the
 *   order `message_start` (a Message with empty `content`), then per content block
 *   `content_block_start`, one or more `content_block_delta` (`text_delta` {text} or
 *   `input_json_delta` {partial_json}), `content_block_stop`; then `message_delta`
 *   ({delta: {stop_reason, stop_sequence}, usage: {output_tokens}}) and `message_stop`.
 *   `ping` events may appear anywhere; the documented example sends one after the first
 *   `content_block_start`. Without `stream` the reply is the full Message JSON.
 * - A Message: {id: "msg_…", type: "message", role: "assistant", model, content,
 *   stop_reason, stop_sequence, usage: {input_tokens, output_tokens,
 *   cache_creation_input_tokens, cache_read_input_tokens}}; tool_use ids are "toolu_…".
 * - `POST /v1/messages/count_tokens` takes the Messages body without `max_tokens` and
 *   returns {input_tokens}.
 * - Errors: HTTP status plus {type: "error", error: {type, message}, request_id}; 400
 *   invalid_request_error, 404 not_found_error, 429 rate_limit_error (with a
 *   `retry-after` header, seconds), 500 api_error, 529 overloaded_error. A stream may also
 *   carry an `error` event after it started.
 * - Every response carries a `request-id` header ("req_…").
 * - Authentication (checked only when the fake is started with `auth`): an API key in
 *   `x-api-key`, or an OAuth access token as `Authorization: Bearer <token>` together with
 *   the `oauth-2025-04-20` beta in `anthropic-beta` (what Claude Code 2.1.330 sends for
 *   CLAUDE_CODE_OAUTH_TOKEN, the token `claude setup-token` prints); anything else is 401
 *   authentication_error.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';

/** The stop reasons a scripted turn may end with (Messages API `stop_reason`). */
export type StopReason = 'end_turn' | 'tool_use' | 'max_tokens';

/** A text block of a scripted turn. */
export interface TextOut {
  type: 'text';
  text: string;
}

/** A tool call of a scripted turn; `id` defaults to a fresh "toolu_…" id. */
export interface ToolUseOut {
  type: 'tool_use';
  name: string;
  input: Record<string, unknown>;
  id?: string;
}

/**
 * One scripted assistant turn. `stopReason` defaults to 'tool_use' when a tool_use block
 * is present, else 'end_turn'.
 */
export interface Turn {
  content: Array<TextOut | ToolUseOut>;
  stopReason?: StopReason;
}

/** A content block as a client sends it in `messages[].content` (loosely typed: only the fields the helpers read). */
export interface ContentBlockIn {
  type: string;
  text?: string;
  /** tool_use blocks (assistant history) */
  id?: string;
  name?: string;
  input?: unknown;
  /** tool_result blocks */
  tool_use_id?: string;
  content?: string | ContentBlockIn[];
  is_error?: boolean;
  [field: string]: unknown;
}

/** One entry of `messages`. */
export interface MessageIn {
  role: 'user' | 'assistant';
  content: string | ContentBlockIn[];
}

/** A tool definition as offered in `tools` (custom tools have `input_schema`; server tools a `type`). */
export interface ToolIn {
  name: string;
  description?: string;
  input_schema?: unknown;
  type?: string;
  [field: string]: unknown;
}

/** The Messages request body, with the fields the fake and tests read typed. */
export interface MessagesBody {
  model: string;
  max_tokens: number;
  messages: MessageIn[];
  system?: string | ContentBlockIn[];
  tools?: ToolIn[];
  stream?: boolean;
  [field: string]: unknown;
}

/** A recorded `POST /v1/messages` request. */
export interface RecordedRequest {
  /** Path without the query, e.g. "/v1/messages". */
  path: string;
  /** Query parameters, e.g. {beta: "true"} from Claude Code. */
  query: Record<string, string>;
  /** Request headers, lower-case names as Node gives them. */
  headers: IncomingHttpHeaders;
  body: MessagesBody;
  /** True when the request offered no tools (title generation and other side requests). */
  side: boolean;
  /** Wall-clock arrival time, ms since the epoch. */
  at: number;
}

/** A tool_result found in a request's messages. */
export interface ToolResult {
  toolUseId: string;
  /**
   * The result's text: a string content, or its text blocks joined with "\n", without the
   * `<system-reminder>` sections Claude Code appends (2.1.330 appends a token budget), trimmed.
   */
  text: string;
  isError: boolean;
}

/** Helpers handed to every responder; the same functions are exported on their own. */
export interface Helpers {
  lastUserText: typeof lastUserText;
  toolResults: typeof toolResults;
  hasTool: typeof hasTool;
  isSideRequest: typeof isSideRequest;
  /** A one-block text turn. */
  text(text: string): Turn;
  /** A one-block tool_use turn (stop_reason 'tool_use'). */
  toolUse(name: string, input: Record<string, unknown>, id?: string): Turn;
}

/** Scripts the reply to one non-side request. Throwing answers 400 with the error message, so the client stops rather than retries. */
export type Responder = (request: RecordedRequest, helpers: Helpers) => Turn | Promise<Turn>;

/** Options of {@link startFakeAnthropic}. */
export interface FakeAnthropicOptions {
  /**
   * The text answering side requests (no tools offered), or null to hand those to the
   * responder too. Default: "Fake title".
   */
  sideReply?: string | null;
  /** Delay between SSE events, ms (default 0). */
  eventDelayMs?: number;
  /**
   * Serve HTTPS with this PEM key and certificate instead of plain HTTP (the demo puts it
   * behind the egress proxy as api.anthropic.com, with a certificate for that name).
   */
  tls?: { key: string; cert: string };
  /** IPv4 address to listen on (default 127.0.0.1). */
  host?: string;
  /**
   * Accept only these credentials, as the real API checks them: `apiKeys` in `x-api-key`,
   * `oauthTokens` as `Authorization: Bearer <token>` with the `oauth-2025-04-20` beta. A
   * request without one of them is answered 401 authentication_error and listed in
   * `unauthorized`. Unset: every request is accepted (the default).
   */
  auth?: { apiKeys?: readonly string[]; oauthTokens?: readonly string[] };
}

/** The OAuth beta the Messages API requires beside a Bearer access token (what Claude Code 2.1.330 sends with CLAUDE_CODE_OAUTH_TOKEN). */
export const OAUTH_BETA = 'oauth-2025-04-20';

/** A request the fake refused for its credentials (see FakeAnthropicOptions.auth), with the credential headers as received. */
export interface UnauthorizedRequest {
  path: string;
  authorization: string | undefined;
  apiKey: string | undefined;
  anthropicBeta: string | undefined;
}

/** What {@link FakeAnthropic.failNext} answers with. */
export interface FailureOptions {
  /** Error message (default: a fixed text per error type). */
  message?: string;
  /** `retry-after` header, seconds. */
  retryAfterS?: number;
  /**
   * On a streaming request, answer HTTP 200 and send the error as an SSE `error` event
   * right after `message_start` (the API's way once a stream has begun); a non-streaming
   * request still gets the plain error with `status`.
   */
  midStream?: boolean;
}

/** A running fake. */
export interface FakeAnthropic {
  /** Base URL without /v1, for ANTHROPIC_BASE_URL, e.g. "http://127.0.0.1:40123" (https:// with `tls`). */
  url: string;
  /** Every `POST /v1/messages` in arrival order (side requests included; see `side`). */
  requests: RecordedRequest[];
  /** Paths of requests the fake answered 404, for spotting endpoints a client needs. */
  unknown: string[];
  /** Requests refused 401 for their credentials (only with `auth`), in arrival order. */
  unauthorized: UnauthorizedRequest[];
  /** Sets the responder for non-side requests; replaces the previous one. */
  respond(fn: Responder): void;
  /**
   * Answers the next `POST /v1/messages` that would reach the responder (so not a side
   * request answered with `sideReply`) with an API error {type: "error", error: {type:
   * errorType, message}}; calls queue up, one failure per request.
   */
  failNext(status: number, errorType: string, opts?: FailureOptions): void;
  /** Resolves with the first recorded request (past or future) matching `predicate`; rejects after `timeoutMs` (default 30 000). */
  waitForRequest(predicate: (r: RecordedRequest) => boolean, timeoutMs?: number): Promise<RecordedRequest>;
  /** Stops listening and drops open connections. */
  close(): Promise<void>;
}

/**
 * What the user typed last: the text blocks of the last user message that has any,
 * joined with "\n", with `<system-reminder>…</system-reminder>` sections removed
 * (Claude Code 2.1.330 sends its environment, tool list and date as such blocks ahead of
 * the prompt in the same message). tool_result blocks are ignored; "" when none.
 */
export function lastUserText(request: Pick<RecordedRequest, 'body'>): string {
  const users = request.body.messages.filter((m) => m.role === 'user');
  for (let i = users.length - 1; i >= 0; i--) {
    const content = users[i]!.content;
    const blocks = typeof content === 'string' ? [content] : content.filter((b) => b.type === 'text').map((b) => b.text ?? '');
    const text = blocks
      .map(withoutReminders)
      .filter((t) => t !== '')
      .join('\n');
    if (text !== '') return text;
  }
  return '';
}

/** All tool_result blocks in the request's messages, oldest first. */
export function toolResults(request: Pick<RecordedRequest, 'body'>): ToolResult[] {
  const out: ToolResult[] = [];
  for (const m of request.body.messages) {
    if (typeof m.content === 'string') continue;
    for (const b of m.content) {
      if (b.type !== 'tool_result') continue;
      out.push({ toolUseId: b.tool_use_id ?? '', text: withoutReminders(textOf(b.content ?? '')), isError: b.is_error === true });
    }
  }
  return out;
}

/**
 * Whether the request offers a tool named `name`. MCP tools are offered as
 * `mcp__<server>__<tool>`; pass that full name, or a RegExp to match more loosely.
 */
export function hasTool(request: Pick<RecordedRequest, 'body'>, name: string | RegExp): boolean {
  return (request.body.tools ?? []).some((t) => (typeof name === 'string' ? t.name === name : name.test(t.name)));
}

/**
 * True for requests offering no tools: Claude Code's title generation and similar side
 * calls. (2.1.330 with CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 sent none in print,
 * stream-json or interactive mode; every turn offered its tools.)
 */
export function isSideRequest(request: Pick<RecordedRequest, 'body'>): boolean {
  return (request.body.tools ?? []).length === 0;
}

const helpers: Helpers = {
  lastUserText,
  toolResults,
  hasTool,
  isSideRequest,
  text: (text) => ({ content: [{ type: 'text', text }] }),
  toolUse: (name, input, id) => ({ content: [{ type: 'tool_use', name, input, ...(id === undefined ? {} : { id }) }] }),
};

/** Drops `<system-reminder>…</system-reminder>` sections, which Claude Code appends to prompts and tool results. */
function withoutReminders(text: string): string {
  return text.replace(/<system-reminder>[\s\S]*?<\/system-reminder>/g, '').trim();
}

function textOf(content: string | ContentBlockIn[]): string {
  if (typeof content === 'string') return content;
  return content
    .filter((b) => b.type === 'text')
    .map((b) => b.text ?? '')
    .join('\n');
}

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** An id in the API's style: prefix, "01", 22 base62 characters (e.g. msg_01…, toolu_01…, req_01…). */
function newId(prefix: string): string {
  return `${prefix}_01${[...randomBytes(22)].map((b) => BASE62[b % 62]).join('')}`;
}

/** A rough token estimate: 4 characters of JSON per token. */
function estimateTokens(value: unknown): number {
  return Math.max(1, Math.ceil(JSON.stringify(value ?? '').length / 4));
}

/** Splits `s` into at most `parts` non-empty pieces, so clients must concatenate deltas. */
function chunks(s: string, parts: number): string[] {
  if (s.length === 0) return [''];
  const size = Math.ceil(s.length / parts);
  const out: string[] = [];
  for (let i = 0; i < s.length; i += size) out.push(s.slice(i, i + size));
  return out;
}

const DEFAULT_MESSAGES: Record<string, string> = {
  invalid_request_error: 'Invalid request',
  authentication_error: 'invalid x-api-key',
  permission_error: 'Your API key does not have permission to use the specified resource.',
  not_found_error: 'Not found',
  rate_limit_error: 'Number of request tokens has exceeded your per-minute rate limit',
  api_error: 'Internal server error',
  overloaded_error: 'Overloaded',
};

interface Failure {
  status: number;
  errorType: string;
  opts: FailureOptions;
}

/**
 * Starts the fake on 127.0.0.1 (or `opts.host`) with an ephemeral port.
 *
 * Routes: `HEAD|GET /api/hello` → 200; `POST /v1/messages` (any query) → a scripted turn,
 * streamed when `stream: true`; `POST /v1/messages/count_tokens` → {input_tokens}; anything
 * else → 404 not_found_error. Bodies are validated like the real API's required fields:
 * a missing `model`, `max_tokens` (Messages only) or `messages` is a 400
 * invalid_request_error whose message starts with the field name.
 *
 * Side requests (no tools offered) get `opts.sideReply`; everything else goes to the
 * responder set with `respond()`, by default one echoing the last user text.
 */
export async function startFakeAnthropic(opts: FakeAnthropicOptions = {}): Promise<FakeAnthropic> {
  const sideReply = opts.sideReply === undefined ? 'Fake title' : opts.sideReply;
  const eventDelayMs = opts.eventDelayMs ?? 0;
  const requests: RecordedRequest[] = [];
  const unknown: string[] = [];
  const unauthorized: UnauthorizedRequest[] = [];
  const failures: Failure[] = [];
  const waiters: Array<{ predicate: (r: RecordedRequest) => boolean; resolve: (r: RecordedRequest) => void }> = [];
  let responder: Responder = (req, h) => h.text(lastUserText(req));

  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendError(res, 500, 'api_error', `fake: ${String(err)}`);
      else res.destroy();
    });
  };
  const server = opts.tls ? createHttpsServer({ key: opts.tls.key, cert: opts.tls.cert }, listener) : createServer(listener);

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const raw = await readBody(req);
    if (url.pathname === '/api/hello' && (req.method === 'HEAD' || req.method === 'GET')) {
      res.writeHead(200, { 'content-type': 'application/json', 'request-id': newId('req') });
      res.end(req.method === 'GET' ? '{"message":"hello"}' : undefined);
      return;
    }
    const isMessages = url.pathname === '/v1/messages';
    const isCount = url.pathname === '/v1/messages/count_tokens';
    if (req.method !== 'POST' || (!isMessages && !isCount)) {
      unknown.push(`${req.method ?? '?'} ${url.pathname}`);
      sendError(res, 404, 'not_found_error', `Not found: ${req.method ?? '?'} ${url.pathname}`);
      return;
    }
    const refused = opts.auth ? authFailure(req.headers, opts.auth) : undefined;
    if (refused !== undefined) {
      unauthorized.push({ path: url.pathname, authorization: one(req.headers.authorization), apiKey: one(req.headers['x-api-key']), anthropicBeta: one(req.headers['anthropic-beta']) });
      sendError(res, 401, 'authentication_error', refused);
      return;
    }
    let body: unknown;
    try {
      body = JSON.parse(raw);
    } catch {
      sendError(res, 400, 'invalid_request_error', 'There was an issue with your request body: it is not valid JSON');
      return;
    }
    const invalid = validate(body, isMessages ? ['model', 'max_tokens', 'messages'] : ['model', 'messages']);
    if (invalid !== undefined) {
      sendError(res, 400, 'invalid_request_error', invalid);
      return;
    }
    const messagesBody = body as MessagesBody;
    if (isCount) {
      sendJson(res, 200, {
        input_tokens: estimateTokens([messagesBody.system, messagesBody.tools, messagesBody.messages]),
      });
      return;
    }

    const recorded: RecordedRequest = {
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers: req.headers,
      body: messagesBody,
      side: isSideRequest({ body: messagesBody }),
      at: Date.now(),
    };
    requests.push(recorded);
    for (const w of waiters.filter((x) => x.predicate(recorded))) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(recorded);
    }

    const failure = recorded.side && sideReply !== null ? undefined : failures.shift();
    if (failure !== undefined && !(failure.opts.midStream === true && messagesBody.stream === true)) {
      sendError(res, failure.status, failure.errorType, failure.opts.message, failure.opts.retryAfterS);
      return;
    }
    let turn: Turn;
    if (recorded.side && sideReply !== null) {
      turn = helpers.text(sideReply);
    } else {
      try {
        turn = await responder(recorded, helpers);
      } catch (err) {
        sendError(res, 400, 'invalid_request_error', `fake responder threw: ${err instanceof Error ? err.message : String(err)}`);
        return;
      }
    }
    const message = toMessage(turn, messagesBody);
    if (messagesBody.stream === true) await stream(res, message, failure);
    else sendJson(res, 200, message);
  }

  async function stream(res: ServerResponse, message: MessageOut, failure: Failure | undefined): Promise<void> {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'request-id': newId('req'),
    });
    const send = async (event: Record<string, unknown> & { type: string }): Promise<void> => {
      res.write(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
      if (eventDelayMs > 0) await new Promise((r) => setTimeout(r, eventDelayMs));
    };
    await send({
      type: 'message_start',
      message: { ...message, content: [], stop_reason: null, stop_sequence: null, usage: { ...message.usage, output_tokens: 1 } },
    });
    if (failure !== undefined) {
      await send({
        type: 'error',
        error: { type: failure.errorType, message: failure.opts.message ?? DEFAULT_MESSAGES[failure.errorType] ?? failure.errorType },
      });
      res.end();
      return;
    }
    for (const [index, block] of message.content.entries()) {
      if (block.type === 'text') {
        await send({ type: 'content_block_start', index, content_block: { type: 'text', text: '' } });
        if (index === 0) await send({ type: 'ping' });
        for (const text of chunks(block.text, 3)) {
          await send({ type: 'content_block_delta', index, delta: { type: 'text_delta', text } });
        }
      } else {
        await send({
          type: 'content_block_start',
          index,
          content_block: { type: 'tool_use', id: block.id, name: block.name, input: {} },
        });
        if (index === 0) await send({ type: 'ping' });
        for (const partial_json of chunks(JSON.stringify(block.input), 3)) {
          await send({ type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json } });
        }
      }
      await send({ type: 'content_block_stop', index });
    }
    await send({
      type: 'message_delta',
      delta: { stop_reason: message.stop_reason, stop_sequence: null },
      usage: { output_tokens: message.usage.output_tokens },
    });
    await send({ type: 'message_stop' });
    res.end();
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `${opts.tls ? 'https' : 'http'}://${opts.host ?? '127.0.0.1'}:${port}`,
    requests,
    unknown,
    unauthorized,
    respond(fn) {
      responder = fn;
    },
    failNext(status, errorType, failOpts = {}) {
      failures.push({ status, errorType, opts: failOpts });
    },
    waitForRequest(predicate, timeoutMs = 30_000) {
      const seen = requests.find(predicate);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const waiter = {
          predicate,
          resolve: (r: RecordedRequest) => {
            clearTimeout(timer);
            resolve(r);
          },
        };
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(new Error(`fake Anthropic: no matching request within ${timeoutMs} ms (${requests.length} seen)`));
        }, timeoutMs);
        waiters.push(waiter);
      });
    },
    close() {
      return new Promise((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      });
    },
  };
}

interface MessageOut {
  id: string;
  type: 'message';
  role: 'assistant';
  model: string;
  content: Array<{ type: 'text'; text: string } | { type: 'tool_use'; id: string; name: string; input: Record<string, unknown> }>;
  stop_reason: StopReason;
  stop_sequence: null;
  usage: { input_tokens: number; output_tokens: number; cache_creation_input_tokens: number; cache_read_input_tokens: number };
}

function toMessage(turn: Turn, body: MessagesBody): MessageOut {
  const content = turn.content.map((b) =>
    b.type === 'text' ? { type: 'text' as const, text: b.text } : { type: 'tool_use' as const, id: b.id ?? newId('toolu'), name: b.name, input: b.input },
  );
  return {
    id: newId('msg'),
    type: 'message',
    role: 'assistant',
    model: body.model,
    content,
    stop_reason: turn.stopReason ?? (content.some((b) => b.type === 'tool_use') ? 'tool_use' : 'end_turn'),
    stop_sequence: null,
    usage: {
      input_tokens: estimateTokens([body.system, body.tools, body.messages]),
      output_tokens: estimateTokens(content),
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 0,
    },
  };
}

/** The first missing or mistyped required field as the API words it, or undefined when the body is acceptable. */
function validate(body: unknown, required: Array<'model' | 'max_tokens' | 'messages'>): string | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return 'body: Input should be a valid dictionary';
  const b = body as Record<string, unknown>;
  for (const field of required) {
    if (b[field] === undefined) return `${field}: Field required`;
  }
  if (typeof b.model !== 'string') return 'model: Input should be a valid string';
  if (required.includes('max_tokens') && (typeof b.max_tokens !== 'number' || !Number.isInteger(b.max_tokens) || b.max_tokens < 1)) {
    return 'max_tokens: Input should be a valid integer greater than or equal to 1';
  }
  if (!Array.isArray(b.messages)) return 'messages: Input should be a valid list';
  for (const [i, m] of (b.messages as unknown[]).entries()) {
    const msg = m as Partial<MessageIn> | null;
    if (msg === null || typeof msg !== 'object') return `messages.${i}: Input should be a valid dictionary`;
    if (msg.role !== 'user' && msg.role !== 'assistant') return `messages.${i}.role: Input should be 'user' or 'assistant'`;
    if (typeof msg.content !== 'string' && !Array.isArray(msg.content)) return `messages.${i}.content: Field required`;
  }
  return undefined;
}

function one(h: string | string[] | undefined): string | undefined {
  return Array.isArray(h) ? h.join(', ') : h;
}

/** Why the request's credentials are refused (the API's wording where known), or undefined when they are accepted. */
function authFailure(headers: IncomingHttpHeaders, auth: NonNullable<FakeAnthropicOptions['auth']>): string | undefined {
  const apiKey = one(headers['x-api-key']);
  if (apiKey !== undefined) return auth.apiKeys?.includes(apiKey) ? undefined : 'invalid x-api-key';
  const bearer = /^Bearer (\S+)$/i.exec(one(headers.authorization) ?? '')?.[1];
  if (bearer === undefined) return 'x-api-key header is required';
  const betas = (one(headers['anthropic-beta']) ?? '').split(',').map((b) => b.trim());
  if (!betas.includes(OAUTH_BETA)) return 'OAuth authentication is currently not supported.';
  return auth.oauthTokens?.includes(bearer) ? undefined : 'Invalid bearer token';
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    req.on('error', reject);
  });
}

function sendJson(res: ServerResponse, status: number, value: unknown, extraHeaders: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', 'request-id': newId('req'), ...extraHeaders });
  res.end(JSON.stringify(value));
}

function sendError(res: ServerResponse, status: number, errorType: string, message?: string, retryAfterS?: number): void {
  const requestId = newId('req');
  const headers: Record<string, string> = { 'request-id': requestId };
  if (retryAfterS !== undefined) headers['retry-after'] = String(retryAfterS);
  sendJson(
    res,
    status,
    { type: 'error', error: { type: errorType, message: message ?? DEFAULT_MESSAGES[errorType] ?? errorType }, request_id: requestId },
    headers,
  );
}
