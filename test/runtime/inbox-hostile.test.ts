/**
 * Inbox delivery under hostile input, with the real supervisor, tmux and (first test) the
 * real Claude Code binary against the fake model API: messages of any size the inbox
 * takes (up to 64 Ki characters, multibyte included) reach the CLI whole or cut with a
 * pointer to a file holding the full text, on the paste route and on the Stop-hook route;
 * a message the CLI cannot take is set aside after a bounded number of attempts and the
 * messages behind it are delivered.
 */
import { readdir, readFile } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { startFakeAnthropic, type FakeAnthropic, type RecordedRequest, type Turn } from '../../scripts/lib/fakes/anthropic-api.ts';
import { makePod, runCli, startSupervisor, testContract, type PodFiles, type SupervisorProcess } from '../support/pod.ts';
import { terminate } from '../../scripts/lib/process.ts';
import { waitFor } from '../support/wait.ts';

/** Every text of a request's conversation, JSON string escapes of quotes and newlines undone. */
function conversation(req: RecordedRequest): string {
  return JSON.stringify(req.body.messages).replaceAll('\\"', '"').replaceAll('\\n', '\n');
}

async function send(pod: PodFiles, text: string, id?: string): Promise<string> {
  const res = await fetch(`${pod.localUrl}/inbox`, { method: 'POST', body: JSON.stringify({ source: 'test', text, ...(id ? { id } : {}) }) });
  expect(res.status, await res.clone().text()).toBe(202);
  return ((await res.json()) as { id: string }).id;
}

async function metric(sup: SupervisorProcess, name: string): Promise<number | undefined> {
  const text = await (await fetch(`${sup.publicUrl()}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line ? Number(line.split(' ').at(-1)) : undefined;
}

async function status(pod: PodFiles): Promise<Record<string, unknown>> {
  return (await (await fetch(`${pod.localUrl}/status`)).json()) as Record<string, unknown>;
}

/** A 60 KB message of ASCII lines with a marker at its start and another at its very end. */
function bigAscii(start: string, end: string): string {
  const line = 'The quick brown fox jumps over the lazy dog; lorem ipsum dolor sit amet 0123456789.\n';
  const body = line.repeat(Math.ceil((60 * 1024) / line.length));
  return `${start}\n${body}${end}`;
}

/**
 * Close to the inbox cap (64 Ki UTF-16 code units) in three- and four-byte UTF-8
 * characters: 49 000 × あ and 8 000 × 😀 (two code units each), about 180 KB of UTF-8.
 */
function bigMultibyte(start: string, end: string): string {
  const text = `${start}\n${'あいうえお\n'.repeat(8000)}${'😀'.repeat(8000)}\n${end}`;
  expect(text.length).toBeGreaterThan(62 * 1024);
  expect(text.length).toBeLessThanOrEqual(64 * 1024);
  return text;
}

/** The pointer a cut message carries: its size and the file with the full text. */
const POINTER = /\[message is (\d+) KB; full text in ([^\]\s]+)\]/;

describe('inbox delivery of large and bad messages', () => {
  let fake: FakeAnthropic | undefined;
  let pod: PodFiles | undefined;
  let sup: SupervisorProcess | undefined;

  afterEach(async () => {
    if (sup) await terminate(sup.proc, sup.exited);
    sup = undefined;
    await fake?.close();
    fake = undefined;
    await pod?.cleanup();
    pod = undefined;
  });

  it('with the real Claude Code: a 60 KB message (typed) and a multibyte one at the cap (Stop hook) reach the model cut with a pointer to their full text, and the next message follows', async () => {
    fake = await startFakeAnthropic();
    fake.respond((req, h): Turn => {
      const markers = conversation(req).match(/MARK-[\w-]+/g) ?? [];
      return h.text(`seen ${markers.at(-1) ?? 'nothing'}`);
    });
    pod = await makePod({ modelUrl: fake.url });
    const setup = await runCli(pod, ['setup']);
    expect(setup.code, setup.stderr).toBe(0);
    sup = startSupervisor(pod);
    const p = pod;
    await waitFor('the CLI idle', async () => (await status(p)).state === 'idle', 60_000);

    // No Stop hook armed yet: the first message is typed into pane 0.
    const big = await send(p, bigAscii('MARK-big-start', 'MARK-big-end'));
    const first = await fake.waitForRequest((r) => conversation(r).includes('MARK-big-start'), 90_000);
    const pointer = POINTER.exec(conversation(first));
    expect(pointer, 'the model is told where the full text is').not.toBeNull();
    expect(Number(pointer![1])).toBeGreaterThanOrEqual(60);
    // The full text is in a file the agent can read (on its home volume, named by its in-pod path), end included.
    expect(pointer![2]!.startsWith('/home/agent/')).toBe(true);
    const full = await readFile(p.path(pointer![2]!), 'utf8');
    expect(full).toContain('MARK-big-end');
    expect(full).toContain(`id="${big}"`);
    expect(conversation(first)).not.toContain('MARK-big-end');
    await sup.waitForLog((l) => l.msg === 'message delivered to the CLI' && l.id === big && l.route === 'tmux', 60_000);

    // Then the Stop hook is armed: a multibyte message at the cap goes through it.
    await waitFor('the Stop hook armed', async () => (await status(p)).hookArmed === true, 60_000);
    const wide = await send(p, bigMultibyte('MARK-wide-start', 'MARK-wide-end'));
    const second = await fake.waitForRequest((r) => conversation(r).includes('MARK-wide-start'), 90_000);
    const widePointer = [...conversation(second).matchAll(new RegExp(POINTER, 'g'))].find((m) => m[2]!.includes(wide.slice(0, 8)));
    expect(widePointer, 'the multibyte message carries its pointer').toBeDefined();
    expect(Number(widePointer![1])).toBeGreaterThan(150);
    expect(await readFile(p.path(widePointer![2]!), 'utf8')).toContain(`${'😀'.repeat(8000)}\nMARK-wide-end`);
    // Its head arrived as written (no half characters: the cut keeps surrogate pairs whole).
    expect(conversation(second)).toContain('あいうえお\nあいうえお');
    expect(conversation(second)).not.toContain('\\ufffd');
    await sup.waitForLog((l) => l.msg === 'message delivered to the CLI' && l.id === wide && l.route === 'hook', 60_000);

    // A plain message behind them is delivered too, and nothing was set aside.
    await send(p, 'a short one MARK-after');
    await fake.waitForRequest((r) => conversation(r).includes('MARK-after'), 90_000);
    expect(await metric(sup, 'agentsmith_supervisor_inbox_large_total')).toBe(2);
    expect((await status(p)).inboxDeadLetters).toBe(0);
    expect(sup.logs().some((l) => /command too long/.test(JSON.stringify(l)))).toBe(false);
  });

  it('with a harness without hooks: a large message and two the CLI chokes on do not block the next; each bad one is set aside after 3 attempts and kept, and readiness says delivery failed meanwhile', async () => {
    // The "CLI" writes every line typed into it to received.txt and exits on a line
    // holding POISON (as a CLI that crashes on some input would).
    const cli = 'while IFS= read -r l; do case "$l" in *POISON*) exit 3;; esac; printf "%s\\n" "$l" >> received.txt; done';
    // Six exits are not a crash loop here, so readiness shows the delivery failures themselves.
    const supervisor = { ...testContract().supervisor, crashLoopRestarts: 20 };
    pod = await makePod({ contract: testContract({ harness: { kind: 'custom', command: ['bash', '-c', cli], args: [] }, supervisor }) });
    sup = startSupervisor(pod);
    const p = pod;
    const s = sup;
    await s.waitForLog((l) => l.msg === 'CLI started');
    const received = () => readFile(p.path('/workspace/received.txt'), 'utf8').catch(() => '');

    // Readiness, sampled while it runs.
    const readiness: Array<{ status: number; reason: string }> = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const res = await fetch(`${s.publicUrl()}/readyz`).catch(() => undefined);
        if (res) readiness.push({ status: res.status, reason: String(((await res.json()) as { reason?: unknown }).reason) });
        await new Promise((r) => setTimeout(r, 200));
      }
    })();

    // Queued together: a large message, two poisonous ones, then a plain one.
    await send(p, bigAscii('MARK-big-start', 'MARK-big-end'));
    const bad = await send(p, 'this one breaks the CLI: POISON');
    const bad2 = await send(p, 'and this one too: POISON');
    await send(p, 'the next one MARK-next');

    const got = await waitFor('the plain message typed after the bad one', async () => {
      const r = await received();
      return r.includes('MARK-next') && r;
    }, 90_000);
    // The large one arrived cut, with the pointer, before the others.
    expect(got).toContain('MARK-big-start');
    expect(got).not.toContain('MARK-big-end');
    const pointer = POINTER.exec(got);
    expect(pointer).not.toBeNull();
    expect(await readFile(p.path(pointer![2]!), 'utf8')).toContain('MARK-big-end');
    expect(got.indexOf('MARK-big-start')).toBeLessThan(got.indexOf('MARK-next'));

    // The bad ones: each set aside once, after 3 failed attempts, kept on disk with the reason.
    const aside = s.logs().filter((l) => String(l.msg).startsWith('message set aside'));
    expect(aside).toEqual([expect.objectContaining({ id: bad, attempts: 3 }), expect.objectContaining({ id: bad2, attempts: 3 })]);
    for (const line of aside) expect(JSON.stringify(line).length).toBeLessThan(1000);
    const dead = (await readdir(p.path('/home/agent/.agent-smith/inbox/dead'))).sort();
    expect(dead).toHaveLength(2);
    const letter = JSON.parse(await readFile(p.path(`/home/agent/.agent-smith/inbox/dead/${dead[0]!}`), 'utf8')) as Record<string, unknown>;
    expect(letter).toMatchObject({ id: bad, text: 'this one breaks the CLI: POISON', attempts: 3 });
    expect(String(letter.reason)).toContain('cli_exited');
    expect(await metric(s, 'agentsmith_supervisor_inbox_dead_letters_total{source="test"}')).toBe(2);
    expect(await metric(s, 'agentsmith_supervisor_inbox_dead_letters')).toBe(2);
    // Once the plain message is taken (a hook-less CLI: still running a moment after it was typed), nothing is pending or failing.
    await waitFor('the plain message taken', async () => {
      const st = await status(p);
      return st.inboxPending === 0 && st.deliveryFailures === 0;
    }, 10_000);
    expect(await status(p)).toMatchObject({ inboxPending: 0, inboxDeadLetters: 2, deliveryFailures: 0 });
    // Sent again under its id, it does not come back.
    const again = await fetch(`${p.localUrl}/inbox`, { method: 'POST', body: JSON.stringify({ source: 'test', text: 'this one breaks the CLI: POISON', id: bad }) });
    expect(await again.json()).toMatchObject({ duplicate: true });
    // Six failed attempts in a row (two messages' worth: delivery itself looked broken) made
    // the supervisor not ready, saying why; the plain message going through made it ready again.
    await waitFor('ready', async () => (await fetch(`${s.publicUrl()}/readyz`)).status === 200, 30_000);
    sampling = false;
    await sampler;
    expect(readiness.some((r) => r.status === 503 && r.reason.startsWith('inbox delivery failing'))).toBe(true);
    expect(await (await fetch(`${s.publicUrl()}/readyz`)).json()).toMatchObject({ ok: true, inbox: { pending: 0, deadLetters: 2, deliveryFailures: 0 } });
  });

  it('types control characters as visible escapes: an ESC in a message cannot end the paste and type keys', async () => {
    const cli = 'while IFS= read -r l; do printf "%s\\n" "$l" >> received.txt; done';
    pod = await makePod({ contract: testContract({ harness: { kind: 'custom', command: ['bash', '-c', cli], args: [] } }) });
    sup = startSupervisor(pod);
    const p = pod;
    await sup.waitForLog((l) => l.msg === 'CLI started');
    await send(p, 'MARK-esc before\u001b[201~\u0003 after\u0000 nul\r\nnext line MARK-esc-end');
    await send(p, 'then MARK-plain');
    const got = await waitFor('both messages typed', async () => {
      const r = await readFile(p.path('/workspace/received.txt'), 'utf8').catch(() => '');
      return r.includes('MARK-plain') && r;
    }, 60_000);
    expect(got).toContain('MARK-esc before\\u{1b}[201~\\u{3} after\\u{0} nul\nnext line MARK-esc-end');
    expect(got).not.toContain('\u001b');
  });
});
