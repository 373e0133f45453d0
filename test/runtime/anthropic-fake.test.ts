import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OAUTH_BETA, startFakeAnthropic, toolResults, type FakeAnthropic } from '../../scripts/lib/fakes/anthropic-api.ts';
import { ROOT } from '../../scripts/lib/paths.ts';

const CLAUDE = join(ROOT, 'node_modules/.bin/claude');

let fake: FakeAnthropic;
let home: string;

beforeEach(async () => {
  fake = await startFakeAnthropic();
  home = await mkdtemp(join(tmpdir(), 'anthropic-fake-'));
});

afterEach(async () => {
  await fake.close();
  await rm(home, { recursive: true, force: true });
});

interface SseEvent {
  event: string;
  data: Record<string, unknown> & { type: string };
}

/** Parses an SSE body into its named events (the Messages API sends `event:` and one `data:` line per event). */
function parseSse(body: string): SseEvent[] {
  return body
    .split('\n\n')
    .filter((frame) => frame.trim() !== '')
    .map((frame) => {
      const lines = frame.split('\n');
      const event = lines.find((l) => l.startsWith('event: '))?.slice('event: '.length) ?? '';
      const data = lines.find((l) => l.startsWith('data: '))?.slice('data: '.length) ?? '{}';
      return { event, data: JSON.parse(data) as SseEvent['data'] };
    });
}

function post(path: string, body: unknown): Promise<Response> {
  return fetch(`${fake.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
    body: JSON.stringify(body),
  });
}

const tool = { name: 'get_weather', description: 'Weather in a city', input_schema: { type: 'object', properties: { city: { type: 'string' } } } };
const minimal = { model: 'claude-sonnet-4-5', max_tokens: 1024, messages: [{ role: 'user', content: 'Hi' }], tools: [tool] };

describe('wire format', () => {
  it('streams a text block and a tool_use block as the documented SSE event sequence', async () => {
    fake.respond(() => ({
      content: [
        { type: 'text', text: 'Let me check the weather for you.' },
        { type: 'tool_use', name: 'get_weather', input: { city: 'Paris', units: ['celsius'] } },
      ],
    }));
    const res = await post('/v1/messages?beta=true', { ...minimal, stream: true });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(res.headers.get('request-id')).toMatch(/^req_/);
    const events = parseSse(await res.text());

    for (const e of events) expect(e.event).toBe(e.data.type);
    expect(events.map((e) => e.event).filter((t) => t !== 'ping' && t !== 'content_block_delta')).toEqual([
      'message_start',
      'content_block_start',
      'content_block_stop',
      'content_block_start',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    const start = events[0]!.data.message as { id: string; usage: { input_tokens: number } };
    expect(start).toMatchObject({ type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [], stop_reason: null });
    expect(start.id).toMatch(/^msg_/);
    expect(start.usage.input_tokens).toBeGreaterThan(0);

    const deltas = (index: number, type: string): string[] =>
      events
        .filter((e) => e.event === 'content_block_delta' && e.data.index === index)
        .map((e) => e.data.delta as Record<string, string>)
        .map((d) => {
          expect(d.type).toBe(type);
          return type === 'text_delta' ? d.text! : d.partial_json!;
        });
    const textDeltas = deltas(0, 'text_delta');
    expect(textDeltas.length).toBeGreaterThan(1);
    expect(textDeltas.join('')).toBe('Let me check the weather for you.');
    const jsonDeltas = deltas(1, 'input_json_delta');
    expect(jsonDeltas.length).toBeGreaterThan(1);
    expect(JSON.parse(jsonDeltas.join(''))).toEqual({ city: 'Paris', units: ['celsius'] });

    const toolStart = events.find((e) => e.event === 'content_block_start' && e.data.index === 1)!.data;
    expect(toolStart.content_block).toMatchObject({ type: 'tool_use', name: 'get_weather', input: {} });
    expect((toolStart.content_block as { id: string }).id).toMatch(/^toolu_/);
    const messageDelta = events.find((e) => e.event === 'message_delta')!.data;
    expect(messageDelta.delta).toEqual({ stop_reason: 'tool_use', stop_sequence: null });
    expect((messageDelta.usage as { output_tokens: number }).output_tokens).toBeGreaterThan(0);

    expect(fake.requests).toHaveLength(1);
    expect(fake.requests[0]!.query).toEqual({ beta: 'true' });
    expect(fake.requests[0]!.headers['anthropic-version']).toBe('2023-06-01');
  });

  it('answers a non-streaming request with the full Message', async () => {
    fake.respond((_req, h) => ({ ...h.text('truncated'), stopReason: 'max_tokens' }));
    const res = await post('/v1/messages', minimal);
    expect(res.status).toBe(200);
    const message = (await res.json()) as Record<string, unknown>;
    expect(message).toMatchObject({
      type: 'message',
      role: 'assistant',
      model: 'claude-sonnet-4-5',
      content: [{ type: 'text', text: 'truncated' }],
      stop_reason: 'max_tokens',
      stop_sequence: null,
      usage: { cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
    });
    expect(message.id).toMatch(/^msg_/);
  });

  it('echoes the last user text by default and answers tool-less side requests without the responder', async () => {
    const echoed = (await (await post('/v1/messages', minimal)).json()) as { content: Array<{ text: string }> };
    expect(echoed.content[0]!.text).toBe('Hi');

    fake.respond(() => {
      throw new Error('side requests must not reach the responder');
    });
    const side = (await (await post('/v1/messages', { ...minimal, tools: undefined })).json()) as { content: Array<{ text: string }> };
    expect(side.content[0]!.text).toBe('Fake title');
    expect(fake.requests.map((r) => r.side)).toEqual([false, true]);
  });

  it('counts tokens without needing max_tokens', async () => {
    const res = await post('/v1/messages/count_tokens?beta=true', { model: 'claude-sonnet-4-5', messages: minimal.messages });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { input_tokens: number };
    expect(Object.keys(body)).toEqual(['input_tokens']);
    expect(Number.isInteger(body.input_tokens) && body.input_tokens > 0).toBe(true);
    expect(fake.requests).toHaveLength(0);
  });

  it('rejects a body missing a required field with a 400 naming the field', async () => {
    for (const field of ['model', 'max_tokens', 'messages'] as const) {
      const body: Record<string, unknown> = { ...minimal };
      delete body[field];
      const res = await post('/v1/messages', body);
      expect(res.status).toBe(400);
      const err = (await res.json()) as { type: string; error: { type: string; message: string } };
      expect(err.type).toBe('error');
      expect(err.error.type).toBe('invalid_request_error');
      expect(err.error.message).toMatch(new RegExp(`^${field}\\b`));
    }
    expect(fake.requests).toHaveLength(0);
  });

  it('answers unknown paths 404 with the API error shape and serves /api/hello', async () => {
    const res = await fetch(`${fake.url}/v1/models`);
    expect(res.status).toBe(404);
    const body = (await res.json()) as { type: string; error: { type: string; message: string }; request_id: string };
    expect(body).toMatchObject({ type: 'error', error: { type: 'not_found_error' } });
    expect(body.error.message).toContain('/v1/models');
    expect(body.request_id).toMatch(/^req_/);
    expect(fake.unknown).toEqual(['GET /v1/models']);

    expect((await fetch(`${fake.url}/api/hello`, { method: 'HEAD' })).status).toBe(200);
    expect((await fetch(`${fake.url}/api/hello`)).status).toBe(200);
  });

  it('with auth, accepts its API key and its OAuth token (with the OAuth beta) and refuses anything else 401', async () => {
    const guarded = await startFakeAnthropic({ auth: { apiKeys: ['key-ok'], oauthTokens: ['oat-ok'] } });
    try {
      const send = (headers: Record<string, string>) =>
        fetch(`${guarded.url}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(minimal) });
      expect((await send({ 'x-api-key': 'key-ok' })).status).toBe(200);
      expect((await send({ authorization: 'Bearer oat-ok', 'anthropic-beta': `claude-code-20250219,${OAUTH_BETA}` })).status).toBe(200);
      const refused = [
        await send({ 'x-api-key': 'key-wrong' }),
        await send({ authorization: 'Bearer oat-ok' }),
        await send({ authorization: 'Bearer oat-wrong', 'anthropic-beta': OAUTH_BETA }),
        await send({}),
      ];
      for (const res of refused) {
        expect(res.status).toBe(401);
        expect(((await res.json()) as { error: { type: string } }).error.type).toBe('authentication_error');
      }
      expect(guarded.requests).toHaveLength(2);
      expect(guarded.unauthorized.map((u) => u.authorization ?? u.apiKey ?? null)).toEqual(['key-wrong', 'Bearer oat-ok', 'Bearer oat-wrong', null]);
    } finally {
      await guarded.close();
    }
  });

  it('fails the next request as scripted, then recovers', async () => {
    fake.failNext(429, 'rate_limit_error', { retryAfterS: 7 });
    fake.failNext(529, 'overloaded_error', { midStream: true });
    const limited = await post('/v1/messages', minimal);
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('7');
    expect(((await limited.json()) as { error: { type: string } }).error.type).toBe('rate_limit_error');

    const brokenRes = await post('/v1/messages', { ...minimal, stream: true });
    expect(brokenRes.status).toBe(200);
    const broken = parseSse(await brokenRes.text());
    expect(broken.map((e) => e.event)).toEqual(['message_start', 'error']);
    expect(broken[1]!.data.error).toMatchObject({ type: 'overloaded_error' });

    expect((await post('/v1/messages', minimal)).status).toBe(200);
  });
});

interface ClaudeRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the real Claude Code binary in print mode against the fake, in `home` as cwd, config dir and HOME. */
async function runClaude(args: string[]): Promise<ClaudeRun> {
  await writeFile(join(home, '.claude.json'), JSON.stringify({ hasCompletedOnboarding: true, theme: 'dark' }));
  const child = spawn(CLAUDE, args, {
    cwd: home,
    env: {
      PATH: process.env.PATH,
      HOME: home,
      CLAUDE_CONFIG_DIR: home,
      ANTHROPIC_BASE_URL: fake.url,
      ANTHROPIC_AUTH_TOKEN: 'test-token',
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
      DISABLE_AUTOUPDATER: '1',
      DISABLE_TELEMETRY: '1',
      // We run as root; bypass-permissions mode is refused for root outside a sandbox.
      IS_SANDBOX: '1',
      // Claude Code keeps per-cwd task output and probe files under $TMPDIR/claude-<uid>/.
      TMPDIR: home,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

interface PrintResult {
  type: string;
  subtype: string;
  is_error: boolean;
  result: string;
  num_turns: number;
}

describe('the real Claude Code binary against the fake', () => {
  it('prints the scripted reply in print mode', async () => {
    fake.respond((req, h) => h.text(`Scripted answer to "${h.lastUserText(req)}"`));
    const run = await runClaude(['-p', 'hello', '--model', 'claude-sonnet-4-5', '--output-format', 'json']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const out = JSON.parse(run.stdout) as PrintResult;
    expect(out).toMatchObject({ type: 'result', subtype: 'success', is_error: false, result: 'Scripted answer to "hello"' });

    expect(fake.unknown).toEqual([]);
    const [req] = fake.requests;
    expect(req).toMatchObject({ path: '/v1/messages', query: { beta: 'true' } });
    expect(req!.body).toMatchObject({ model: 'claude-sonnet-4-5', stream: true });
    expect(req!.headers.authorization).toBe('Bearer test-token');
  });

  it('runs a scripted Bash tool call and sends its output back as a tool_result', async () => {
    const id = 'toolu_01FakeEchoFromTool0000000';
    fake.respond((req, h) => {
      const results = h.toolResults(req);
      if (results.length === 0) return h.toolUse('Bash', { command: 'echo from-tool', description: 'Echo a marker' }, id);
      return h.text(`The tool printed: ${results.map((r) => r.text).join(' | ')}`);
    });
    const run = await runClaude(['-p', 'run the marker', '--model', 'claude-sonnet-4-5', '--output-format', 'json', '--dangerously-skip-permissions']);
    expect(run.code).toBe(0);
    const out = JSON.parse(run.stdout) as PrintResult;
    expect(out).toMatchObject({ subtype: 'success', is_error: false, num_turns: 2 });
    expect(out.result).toContain('The tool printed: from-tool');

    const main = fake.requests.filter((r) => !r.side);
    expect(main).toHaveLength(2);
    expect(main[0]!.body.tools?.some((t) => t.name === 'Bash')).toBe(true);
    const second = toolResults(main[1]!);
    expect(second).toEqual([{ toolUseId: id, text: 'from-tool', isError: false }]);
  });

  it('retries after an overloaded_error and still answers', async () => {
    fake.failNext(529, 'overloaded_error');
    fake.respond((_req, h) => h.text('after the retry'));
    const run = await runClaude(['-p', 'hello', '--model', 'claude-sonnet-4-5', '--output-format', 'json']);
    expect(run.code).toBe(0);
    expect((JSON.parse(run.stdout) as PrintResult).result).toBe('after the retry');
    expect(fake.requests.filter((r) => !r.side)).toHaveLength(2);
  });
});
