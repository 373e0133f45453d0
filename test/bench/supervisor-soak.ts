/**
 * Benchmark: the supervisor under a message soak, and its restart latency.
 *
 *   node test/bench/supervisor-soak.ts [--seconds 600] [--messages 1000]
 *
 * The supervisor runs as the image runs it: agent-image compiled to JavaScript
 * (agent-image/tsconfig.build.json) and started through agent-image/bin/agent-smith.
 * - Soak: `agent-smith supervise` with a `custom` harness (a `cat` that swallows input,
 *   so the figures are the supervisor's own, not a model CLI's) takes `--messages`
 *   inbox messages spread evenly over `--seconds`, each typed into pane 0 through tmux.
 *   The supervisor's RSS (VmRSS of its process only) is sampled every second.
 *   Baseline in the same run: a bare `node` process idling for 5 s (the floor any Node
 *   supervisor pays).
 * - Restart: the CLI is SIGKILLed 5 times (each after it has been up for longer than
 *   the stable time, so every restart is a "first" one with the default 250 ms delay);
 *   reported is kill → new CLI process alive. Baseline: `tmux respawn-pane` of a dead
 *   pane → its new process alive, the floor of any tmux-based restart.
 * Results go to test/bench/results.md (appended) and stdout. Targets (issue 5): RSS
 * ≤ 80 MB, first restart < 1 s. Not a test: nothing passes or fails on a number.
 */
import { execFileSync, spawn } from 'node:child_process';
import { appendFileSync, chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { alive } from '../../agent-image/src/programs/supervise/proc.ts';
import { makePod, runCli, startSupervisor, testContract, tmux } from '../support/pod.ts';
import { ROOT } from '../../scripts/lib/paths.ts';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '600' }, messages: { type: 'string', default: '1000' } } });
const seconds = Number(values.seconds);
const messages = Number(values.messages);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const rssMb = (pid: number) => {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

// Baseline RSS: a bare Node process.
const bare = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 6000)'], { stdio: 'ignore' });
await sleep(5000);
const bareRss = rssMb(bare.pid!);
bare.kill();

// The supervisor runs as in the image: compiled to JavaScript, through the image's wrapper.
const built = mkdtempSync(join(tmpdir(), 'agent-smith-built-'));
execFileSync(join(ROOT, 'node_modules/.bin/tsc'), ['-p', join(ROOT, 'agent-image/tsconfig.build.json'), '--outDir', built], { stdio: 'inherit' });
mkdirSync(join(built, 'agent-image/bin'), { recursive: true });
copyFileSync(join(ROOT, 'agent-image/bin/agent-smith'), join(built, 'agent-image/bin/agent-smith'));
chmodSync(join(built, 'agent-image/bin/agent-smith'), 0o755);
copyFileSync(join(ROOT, 'package.json'), join(built, 'package.json'));
symlinkSync(join(ROOT, 'node_modules'), join(built, 'node_modules'));

const pod = await makePod({
  contract: testContract({
    harness: { kind: 'custom', command: ['cat'], args: [] },
    supervisor: { restartInitialDelayMs: 250, restartMaxDelayMs: 60_000, stableAfterSeconds: 2, crashLoopRestarts: 50, crashLoopWindowSeconds: 600, stopGraceSeconds: 5 },
  }),
});
try {
  const setup = await runCli(pod, ['setup']);
  if (setup.code !== 0) throw new Error(`setup failed: ${setup.stderr}`);
  const sup = startSupervisor(pod, join(built, 'agent-image/bin/agent-smith'));
  await sup.waitForLog((l) => l.msg === 'CLI started');
  const pid = sup.proc.pid!;
  await sleep(4000); // a hook-less harness takes input 3 s after it starts

  // Soak.
  const samples: number[] = [];
  const sampler = setInterval(() => samples.push(rssMb(pid)), 1000);
  const t0 = Date.now();
  for (let i = 0; i < messages; i++) {
    const due = t0 + ((i * seconds) / messages) * 1000;
    if (due > Date.now()) await sleep(due - Date.now());
    const res = await fetch(`${pod.localUrl}/inbox`, { method: 'POST', body: JSON.stringify({ source: 'bench', text: `message ${i} ${'x'.repeat(200)}` }) });
    if (res.status !== 202) throw new Error(`inbox answered ${res.status}`);
  }
  const drained = Date.now();
  while (Date.now() - drained < 120_000) {
    const st = (await (await fetch(`${pod.localUrl}/status`)).json()) as { inboxPending: number };
    if (st.inboxPending === 0) break;
    await sleep(500);
  }
  clearInterval(sampler);
  const delivered = sup.logs().filter((l) => l.msg === 'message delivered to the CLI').length;
  const soakSeconds = (Date.now() - t0) / 1000;

  // Restart latency.
  const restarts: number[] = [];
  for (let i = 0; i < 5; i++) {
    await sleep(2500); // longer than stableAfterSeconds: the next exit is a first failure
    const old = Number((await tmux(pod, 'display-message', '-p', '-t', 'main:0.0', '#{pane_pid}')).trim());
    const start = performance.now();
    process.kill(old, 'SIGKILL');
    for (;;) {
      const now = Number((await tmux(pod, 'display-message', '-p', '-t', 'main:0.0', '#{pane_pid} #{pane_dead}')).trim().split(' ')[0]);
      if (now !== old && alive(now)) break;
      await sleep(10);
    }
    restarts.push(performance.now() - start);
  }
  // Floor: tmux alone respawning a dead pane.
  const floors: number[] = [];
  await tmux(pod, 'new-window', '-d', '-t', 'main:9', '--', 'sleep', '1000');
  for (let i = 0; i < 5; i++) {
    const old = Number((await tmux(pod, 'display-message', '-p', '-t', 'main:9.0', '#{pane_pid}')).trim());
    process.kill(old, 'SIGKILL');
    while (alive(old)) await sleep(5);
    const start = performance.now();
    await tmux(pod, 'respawn-pane', '-t', 'main:9.0', '--', 'sleep', '1000');
    for (;;) {
      const now = Number((await tmux(pod, 'display-message', '-p', '-t', 'main:9.0', '#{pane_pid}')).trim());
      if (now !== old && alive(now)) break;
      await sleep(5);
    }
    floors.push(performance.now() - start);
  }
  sup.proc.kill('SIGTERM');
  await sup.exited;

  const peak = Math.max(...samples);
  const last = samples.at(-1)!;
  const restartMs = median(restarts);
  const floorMs = median(floors);
  const table = [
    `\n## Supervisor soak, ${new Date().toISOString()} (${messages} messages over ${seconds} s, custom harness)\n`,
    '| messages delivered | soak s | RSS peak MB | RSS at end MB | bare node MB | peak / bare | first restart ms (median of 5) | tmux respawn floor ms | restart / floor |',
    '|---|---|---|---|---|---|---|---|---|',
    `| ${delivered} / ${messages} | ${soakSeconds.toFixed(0)} | ${peak.toFixed(1)} | ${last.toFixed(1)} | ${bareRss.toFixed(1)} | ${(peak / bareRss).toFixed(2)}x | ${restartMs.toFixed(0)} | ${floorMs.toFixed(0)} | ${(restartMs / floorMs).toFixed(1)}x |`,
    '',
    `Targets: RSS ≤ 80 MB (${peak <= 80 ? 'met' : 'NOT met'}); first restart < 1 s (${restartMs < 1000 ? 'met' : 'NOT met'}; includes the configured 250 ms first delay and the 100 ms liveness tick).`,
    '',
  ].join('\n');
  process.stdout.write(table);
  appendFileSync(join(ROOT, 'test/bench/results.md'), table);
} finally {
  await pod.cleanup();
  rmSync(built, { recursive: true, force: true });
}
