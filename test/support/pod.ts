/**
 * An agent pod's file system and processes on this machine, for runtime tests: a scratch
 * root holding what the pod's volumes hold: etc/agent-smith (contract + persona files, as
 * the operator's ConfigMap would), home/agent, workspace, and the pod's etc/hosts.
 * `agent-smith setup`, `supervise`, `proxy` and `egress-init` run as real processes, each
 * the way a container runs it: in a mount namespace of its own (util-linux `unshare`)
 * where those folders are bind-mounted at the in-pod paths (/etc/agent-smith, /home/agent,
 * /workspace, /etc/hosts), so the programs read and write the same absolute paths as in a
 * pod. Network, loopback ports, tmux sockets and /tmp stay the host's, so the test reaches
 * them. Needs root (mounts); the empty mount points are created on the host if missing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { PodContractInput } from '../../agent-image/src/contract/contract.ts';
import { ROOT } from '../../scripts/lib/paths.ts';

export const CLI = join(ROOT, 'agent-image/src/cli.ts');
/** The image's entry point (agent-image/bin/agent-smith: node with the image's flags). */
export const ENTRYPOINT = join(ROOT, 'agent-image/bin/agent-smith');

export { freePort } from '../../scripts/lib/net.ts';
import { freePort } from '../../scripts/lib/net.ts';

/** The in-pod folders bind-mounted from the pod root (the pod's volumes and ConfigMap mount). */
export const POD_MOUNTS = ['/etc/agent-smith', '/home/agent', '/workspace'] as const;

/**
 * Files of the pod root's etc/ mounted over the host's when the pod root has them: name
 * resolution, and the system CA bundle (the image's ca-certificates) a test may replace.
 */
const POD_ETC_FILES = ['/etc/hosts', '/etc/resolv.conf', '/etc/ssl/certs/ca-certificates.crt'] as const;

/**
 * Binds `$1` at `$2`, `$3` at `$4`, ... up to `--`, then execs the rest: run by `sh` in the
 * new mount namespace, so the bind mounts are the program's alone.
 */
const BIND_AND_EXEC = 'set -e; while [ "$1" != -- ]; do mount --bind "$1" "$2"; shift 2; done; shift; exec "$@"';

export interface PodFiles {
  root: string;
  env: NodeJS.ProcessEnv;
  /** Host path of an in-pod path (what the test reads and writes). */
  path(podPath: string): string;
  /**
   * `[command, args]` that run `argv` as a program of this pod: in a mount namespace of
   * its own with the pod root's folders at the in-pod paths (POD_MOUNTS) and the pod's
   * etc/hosts (and etc/resolv.conf or etc/ssl/certs/ca-certificates.crt, when written) over the host's. The process spawned
   * is `argv` itself (unshare and sh exec it), so signals reach it.
   */
  command(argv: string[]): [string, string[]];
  localUrl: string;
  tmuxSocket: string;
  cleanup(): Promise<void>;
}

/** A contract for a Claude Code agent with no repos; override any part. */
export function testContract(over: Partial<PodContractInput> = {}): PodContractInput {
  return {
    version: 1,
    agent: { name: 'testbot', namespace: 'default' },
    harness: { kind: 'claude', model: 'claude-sonnet-4-5', args: [] },
    repos: [],
    workdir: '/workspace',
    files: { claudeMd: 'CLAUDE.md', settingsJson: 'settings.json', mcpJson: 'mcp.json', subagents: { reviewer: 'subagent.reviewer.md' } },
    egress: { allow: [], allowCidrs: [], enforcement: 'proxy-env', proxyPort: 15001, credentials: [] },
    supervisor: { restartInitialDelayMs: 100, restartMaxDelayMs: 2000, stableAfterSeconds: 8, crashLoopRestarts: 5, crashLoopWindowSeconds: 120, stopGraceSeconds: 5 },
    ...over,
  };
}

/**
 * The pod's /etc/hosts: the host's, plus `name -> addresses` (each name also with a final
 * dot: the egress proxy looks names up absolute, `api.test.`, and glibc's files backend
 * matches the name as written). Several addresses give several lines; getaddrinfo returns
 * them all.
 */
export async function podHosts(hosts: Record<string, readonly string[]> = {}): Promise<string> {
  const lines = Object.entries(hosts).flatMap(([name, addresses]) => addresses.map((a) => `${a} ${name} ${name}.`));
  return `${(await readFile('/etc/hosts', 'utf8')).trimEnd()}\n# agent-smith test pod\n${lines.join('\n')}\n`;
}

/**
 * Lays out a pod root: the contract and persona files under /etc/agent-smith, empty home
 * and workspace, /etc/hosts (the host's plus `hosts`). `modelUrl` is the fake Anthropic
 * API the CLI talks to.
 * @throws when not root: the pod's programs run with bind mounts
 */
export async function makePod(opts: { contract?: PodContractInput; modelUrl?: string; files?: Record<string, string>; extraEnv?: NodeJS.ProcessEnv; hosts?: Record<string, readonly string[]> } = {}): Promise<PodFiles> {
  if (process.getuid?.() !== 0) {
    throw new Error(`the runtime tests run the pod's programs in a mount namespace with bind mounts over ${POD_MOUNTS.join(', ')}: run them as root (uid is ${process.getuid?.()})`);
  }
  // The mount points, empty, as an image has them.
  for (const m of POD_MOUNTS) await mkdir(m, { recursive: true });
  const root = await mkdtemp(join(tmpdir(), 'agent-smith-pod-'));
  const p = (podPath: string) => join(root, podPath);
  const contract = opts.contract ?? testContract();
  const files: Record<string, string> = {
    'contract.json': JSON.stringify(contract, null, 2),
    'CLAUDE.md': '# Rules\n\nYou are testbot.\n',
    'settings.json': JSON.stringify({ permissions: { allow: ['Read'] } }),
    'mcp.json': JSON.stringify({ mcpServers: {} }),
    'subagent.reviewer.md': '---\nname: reviewer\ndescription: reviews\n---\nReview code.\n',
    ...opts.files,
  };
  for (const [name, text] of Object.entries(files)) {
    await mkdir(dirname(p(`/etc/agent-smith/${name}`)), { recursive: true });
    await writeFile(p(`/etc/agent-smith/${name}`), text);
  }
  await mkdir(p('/home/agent'), { recursive: true });
  await mkdir(p('/workspace'), { recursive: true });
  await mkdir(p('/tmp'), { recursive: true });
  await writeFile(p('/etc/hosts'), await podHosts(opts.hosts));
  const localPort = await freePort();
  // tmux's default socket, as in a pod (no -S): $TMUX_TMPDIR/tmux-<uid>/default, here under the pod root.
  const tmuxSocket = p(`/tmp/tmux-${process.getuid?.() ?? 0}/default`);
  const env: NodeJS.ProcessEnv = {
    PATH: `${join(ROOT, 'node_modules/.bin')}:${dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin`,
    LANG: 'C.UTF-8',
    TERM: 'xterm-256color',
    SHELL: '/bin/bash',
    HOME: '/home/agent',
    AGENT_SMITH_LOCAL_PORT: String(localPort),
    AGENT_SMITH_PORT: '0',
    TMUX_TMPDIR: p('/tmp'),
    // Claude Code keeps task output and probe files under $TMPDIR/claude-<uid>/.
    TMPDIR: p('/tmp'),
    // Tests run as root: Claude Code refuses bypass modes as root unless told it is sandboxed.
    IS_SANDBOX: '1',
    DISABLE_TELEMETRY: '1',
    ...(opts.modelUrl ? { ANTHROPIC_BASE_URL: opts.modelUrl, ANTHROPIC_AUTH_TOKEN: 'stub-model-token' } : {}),
    ...opts.extraEnv,
  };
  const command = (argv: string[]): [string, string[]] => {
    const binds = [...POD_MOUNTS, ...POD_ETC_FILES.filter((f) => existsSync(p(f)))].flatMap((m) => [p(m), m]);
    return ['unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c', BIND_AND_EXEC, 'pod', ...binds, '--', ...argv]];
  };
  return {
    root,
    env,
    path: p,
    command,
    localUrl: `http://127.0.0.1:${localPort}`,
    tmuxSocket,
    cleanup: async () => {
      await new Promise<void>((r) => spawn('tmux', ['-S', tmuxSocket, 'kill-server'], { stdio: 'ignore' }).once('exit', () => r()));
      await rm(root, { recursive: true, force: true });
    },
  };
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `agent-smith <args>` to completion as a program of `pod` (env: the pod's by default). */
export function runCli(pod: PodFiles, args: string[], env: NodeJS.ProcessEnv = pod.env): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const [command, argv] = pod.command([process.execPath, CLI, ...args]);
    const proc = spawn(command, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    proc.once('error', reject);
    proc.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

export interface SupervisorProcess {
  proc: ChildProcess;
  /** Parsed JSON log lines (stderr) so far. */
  logs(): Array<Record<string, unknown> & { msg: string }>;
  /** Raw pane output teed to stdout so far. */
  stdout(): string;
  /** Resolves with the first log line matching, or rejects after `timeoutMs`. */
  waitForLog(pred: (l: Record<string, unknown> & { msg: string }) => boolean, timeoutMs?: number): Promise<Record<string, unknown> & { msg: string }>;
  exited: Promise<number | null>;
  /** SIGTERM when it still runs, then its exit code (what afterAll/afterEach do). */
  stop(): Promise<number | null>;
  publicUrl(): string;
}

/** Starts `agent-smith supervise` against a pod made by makePod. */
export function startSupervisor(pod: PodFiles, entrypoint = ENTRYPOINT): SupervisorProcess {
  // The image's entry point, so the supervisor runs with the image's Node flags.
  const [command, argv] = pod.command([entrypoint, 'supervise']);
  const proc = spawn(command, argv, { env: pod.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const lines: Array<Record<string, unknown> & { msg: string }> = [];
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
    let i: number;
    while ((i = err.indexOf('\n')) >= 0) {
      const line = err.slice(0, i);
      err = err.slice(i + 1);
      try {
        lines.push(JSON.parse(line) as Record<string, unknown> & { msg: string });
      } catch {
        lines.push({ msg: line, raw: true });
      }
    }
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const waitForLog: SupervisorProcess['waitForLog'] = async (pred, timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const hit = lines.find(pred);
      if (hit) return hit;
      if (proc.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`no matching supervisor log line within ${timeoutMs} ms; log:\n${lines.map((l) => JSON.stringify(l)).join('\n')}`);
  };
  return {
    proc,
    logs: () => lines,
    stdout: () => out,
    waitForLog,
    exited,
    stop: () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      return exited;
    },
    publicUrl: () => {
      const l = lines.find((x) => x.msg === 'supervisor listening');
      if (!l) throw new Error('supervisor not listening yet');
      return `http://127.0.0.1:${String(l.publicPort)}`;
    },
  };
}

/** `tmux -S <socket> <args>` → stdout. */
export function tmux(pod: PodFiles, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const proc = spawn('tmux', ['-S', pod.tmuxSocket, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let errOut = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (errOut += d.toString()));
    proc.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`tmux ${args.join(' ')}: ${errOut}`))));
  });
}
