/**
 * The repository step of `agent-smith setup`: make every repository of the pod contract
 * present on the workspace volume, without ever touching what the agent made there.
 *
 * - A missing directory is cloned into a temporary sibling (`<dir>.partial-<random>`)
 *   and renamed into place only once the clone is complete, so an interrupted clone never
 *   leaves a half repository where the agent would work.
 * - An existing repository is only fetched (remote-tracking refs move; the working tree,
 *   the index and the current branch do not): the agent's uncommitted work lives there.
 * - An empty directory (a mount point) is cloned into through a temporary directory inside
 *   it (same filesystem, so the final moves are renames).
 *
 * Git runs without a shell, in its own process group, with GIT_TERMINAL_PROMPT=0 and a
 * timeout. URLs in logs and errors have their userinfo removed: a URL may embed a
 * credential.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, realpath, rename, rm, rmdir } from 'node:fs/promises';
import path from 'node:path';
import type { PodContract } from '../../contract/contract.ts';
import { redactText, redactUrl } from '../../lib/redact.ts';

/** One repository of the pod contract. */
export type RepoSpec = PodContract['repos'][number];

/** What syncRepos did to one repository. */
export type RepoSyncAction = 'cloned' | 'fetched' | 'unchanged';

export interface RepoSyncResult {
  name: string;
  /** The directory, as the contract names it. */
  dir: string;
  /** cloned: it was missing or empty; fetched: origin's refs moved; unchanged: nothing new upstream. */
  action: RepoSyncAction;
}

export interface RepoSyncLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface SyncReposOptions {
  /** Environment for git: trust settings (GIT_SSL_CAINFO), proxy, HOME. Never logged. */
  env: NodeJS.ProcessEnv;
  log: RepoSyncLog;
  /** Limit of one git clone or fetch (ms); default 10 minutes. Local git commands get a minute. */
  timeoutMs?: number;
}

/** A repository could not be synced. The message names the repository, its URL (userinfo removed) and git's last stderr lines. */
export class RepoSyncError extends Error {
  readonly repo: string;
  /** The repository URL with any userinfo removed. */
  readonly url: string;
  readonly dir: string;
  /** git's exit code, when git ran and failed. */
  exitCode?: number;

  constructor(repo: RepoSpec, dir: string, message: string, options?: ErrorOptions) {
    const url = redactUrl(repo.url);
    super(`repository ${repo.name} (${url}) at ${dir}: ${redactText(message, repo.url)}`, options);
    this.name = 'RepoSyncError';
    this.repo = repo.name;
    this.url = url;
    this.dir = dir;
  }
}

const DEFAULT_TIMEOUT_MS = 10 * 60_000;
const LOCAL_TIMEOUT_MS = 60_000;
const PARTIAL = '.partial-';
/** How many of git's last stderr lines an error carries. */
const STDERR_LINES = 6;

/**
 * Clones or fetches every repository, one at a time (a 2-core pod gains nothing from
 * parallel clones, and the log stays readable). A failing repository does not stop the
 * others: all are tried, then the failure is thrown, so one pod start reports every
 * broken repository.
 *
 * Idempotent: a second run on the same volumes changes no working tree and fails nothing.
 *
 * @returns one result per repository, in contract order
 * @throws RepoSyncError for one failure; AggregateError of RepoSyncErrors (message listing
 *   them all) when several repositories failed
 */
export async function syncRepos(repos: readonly RepoSpec[], opts: SyncReposOptions): Promise<RepoSyncResult[]> {
  const results: RepoSyncResult[] = [];
  const errors: RepoSyncError[] = [];
  for (const repo of repos) {
    const dir = repo.dir;
    try {
      const action = await syncRepo(repo, dir, opts);
      opts.log.info({ repo: repo.name, url: redactUrl(repo.url), branch: repo.branch, dir: repo.dir, action }, `repository ${action}`);
      results.push({ name: repo.name, dir, action });
    } catch (err) {
      const e = err instanceof RepoSyncError ? err : new RepoSyncError(repo, dir, errorMessage(err), { cause: err });
      opts.log.warn({ repo: repo.name, url: e.url, dir: repo.dir, err: e.message }, 'repository sync failed');
      errors.push(e);
    }
  }
  const [first] = errors;
  if (first && errors.length === 1) throw first;
  if (errors.length > 1) throw new AggregateError(errors, `${errors.length} repositories failed:\n${errors.map((e) => e.message).join('\n')}`);
  return results;
}

async function syncRepo(repo: RepoSpec, dir: string, opts: SyncReposOptions): Promise<RepoSyncAction> {
  const git = gitRunner(repo, dir, opts);
  await removeStalePartials(dir, opts.log, repo.name);

  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err;
    await cloneAsSibling(repo, dir, git);
    return 'cloned';
  }

  if (entries.includes('.git')) return fetchExisting(repo, dir, git, opts.log);

  // Leftovers of an interrupted clone into this (then empty) directory.
  const partials = entries.filter((e) => e.startsWith(PARTIAL));
  const rest = entries.filter((e) => !e.startsWith(PARTIAL));
  if (rest.length > 0) {
    const shown = rest.slice(0, 5).join(', ') + (rest.length > 5 ? ', ...' : '');
    throw new RepoSyncError(
      repo,
      dir,
      `the directory exists, is not a git repository and is not empty (${shown}); ` +
        `move its contents away or delete it, then restart the pod, and setup will clone ${redactUrl(repo.url)} there` +
        (partials.length ? ` (the ${partials.join(', ')} entries are from an interrupted clone)` : ''),
    );
  }
  for (const p of partials) {
    opts.log.warn({ repo: repo.name, path: path.join(dir, p) }, 'removing an interrupted clone');
    await rm(path.join(dir, p), { recursive: true, force: true });
  }
  await cloneIntoEmpty(repo, dir, git);
  return 'cloned';
}

/** Removes `<dir>.partial-*` siblings: temporary clones a crashed earlier run left behind. */
async function removeStalePartials(dir: string, log: RepoSyncLog, name: string): Promise<void> {
  const parent = path.dirname(dir);
  const prefix = path.basename(dir) + PARTIAL;
  let siblings: string[];
  try {
    siblings = await readdir(parent);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return;
    throw err;
  }
  for (const s of siblings.filter((s) => s.startsWith(prefix))) {
    log.warn({ repo: name, path: path.join(parent, s) }, 'removing an interrupted clone');
    await rm(path.join(parent, s), { recursive: true, force: true });
  }
}

function partialName(): string {
  return PARTIAL + randomBytes(4).toString('hex');
}

function cloneArgs(repo: RepoSpec, into: string): string[] {
  // --no-recurse-submodules is git's default; said here so a user's config cannot turn it on.
  return ['clone', '--no-recurse-submodules', ...(repo.branch ? ['--branch', repo.branch] : []), '--', repo.url, into];
}

/** Clones into `<dir>.partial-<random>`, then renames it to dir: the repository appears whole or not at all. */
async function cloneAsSibling(repo: RepoSpec, dir: string, git: GitRunner): Promise<void> {
  await mkdir(path.dirname(dir), { recursive: true });
  const tmp = dir + partialName();
  try {
    await git.network(cloneArgs(repo, tmp), path.dirname(dir));
    await rename(tmp, dir);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/**
 * Clones into `<dir>/.partial-<random>` and moves the entries up, `.git` last: until the
 * last rename the directory is not a repository, so a crash in between is reported by the
 * next run (non-empty, not a repository) rather than mistaken for a repository with files
 * missing. Renames within the directory stay on its filesystem, which a mount point needs.
 */
async function cloneIntoEmpty(repo: RepoSpec, dir: string, git: GitRunner): Promise<void> {
  const tmp = path.join(dir, partialName());
  try {
    await git.network(cloneArgs(repo, tmp), dir);
    const entries = (await readdir(tmp)).filter((e) => e !== '.git');
    for (const e of [...entries, '.git']) await rename(path.join(tmp, e), path.join(dir, e));
    await rmdir(tmp);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** Fetches origin (only the contract's branch when it names one); touches no working tree, index or HEAD. */
async function fetchExisting(repo: RepoSpec, dir: string, git: GitRunner, log: RepoSyncLog): Promise<RepoSyncAction> {
  // A `.git` that is not this directory's own repository (a worktree link gone stale, a
  // permission or safe.directory problem) fails here with git's own explanation.
  const top = (await git.local(['rev-parse', '--show-toplevel'], dir)).trim();
  if (path.resolve(top) !== (await realpath(dir))) {
    throw new RepoSyncError(repo, dir, `.git here belongs to the repository at ${top}; move it away or delete the directory, then restart the pod`);
  }

  const current = await git.local(['config', '--get', 'remote.origin.url'], dir).catch((err: unknown) => {
    // `git config --get` exits 1 when the key is missing: no origin remote.
    if (err instanceof RepoSyncError && err.exitCode === 1) return undefined;
    throw err;
  });
  if (current === undefined) {
    await git.local(['remote', 'add', '--', 'origin', repo.url], dir);
    log.warn({ repo: repo.name, url: redactUrl(repo.url) }, 'repository had no origin remote; added it');
  } else if (current.trim() !== repo.url) {
    await git.local(['remote', 'set-url', '--', 'origin', repo.url], dir);
    log.info({ repo: repo.name, from: redactUrl(current.trim()), to: redactUrl(repo.url) }, 'origin URL updated to the contract');
  }

  const before = await remoteRefs(git, dir);
  // `git fetch origin <branch>` also moves refs/remotes/origin/<branch> (the configured
  // refspec's opportunistic update) and never writes refs/heads, so HEAD stays put.
  // --no-auto-maintenance: an auto gc detaches from git and would be cut off when the init
  // container exits; the agent's own git commands run it later. `--` keeps a branch
  // name from being read as an option.
  await git.network(['fetch', '--no-recurse-submodules', '--no-auto-maintenance', '--', 'origin', ...(repo.branch ? [repo.branch] : [])], dir);
  const after = await remoteRefs(git, dir);
  return before === after ? 'unchanged' : 'fetched';
}

async function remoteRefs(git: GitRunner, dir: string): Promise<string> {
  return git.local(['for-each-ref', '--format=%(objectname) %(refname)', 'refs/remotes/origin/'], dir);
}

interface GitRunner {
  /** Clone or fetch: the long timeout. @returns stdout */
  network(args: string[], cwd: string): Promise<string>;
  /** A local command: the short timeout. @returns stdout */
  local(args: string[], cwd: string): Promise<string>;
}

/** How a git run ended when it did not succeed. Internal: gitError turns it into a RepoSyncError. */
class GitFailure extends Error {
  /** Exit code; null when killed by a signal or not started. */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly timedOut: boolean;
  /** The spawn error (ENOENT: no git on PATH). */
  readonly spawnError: Error | undefined;
  readonly stderr: string;

  constructor(f: { code: number | null; signal: NodeJS.Signals | null; timedOut: boolean; spawnError?: Error; stderr: string }) {
    // No command line in the message: it holds the URL as given, userinfo and all.
    super(f.timedOut ? 'git timed out' : `git failed (exit ${f.code ?? f.signal ?? 'none'})`);
    this.name = 'GitFailure';
    this.code = f.code;
    this.signal = f.signal;
    this.timedOut = f.timedOut;
    this.spawnError = f.spawnError;
    this.stderr = f.stderr;
  }
}

/** Time git gets after SIGTERM (to remove its lock files and temporary packs) before SIGKILL (ms). */
const KILL_GRACE_MS = 5_000;
const MAX_STDOUT_BYTES = 16 * 1024 * 1024;
const MAX_STDERR_BYTES = 64 * 1024;

/**
 * Runs git in its own process group and, on timeout, signals the whole group. execFile's
 * `timeout` signals only git itself, and a killed `git clone` leaves its
 * `git-remote-https` helper running (blocked in the TLS handshake, it holds the
 * connection until curl's 300 s connect timeout); execFile cannot start a process group,
 * hence spawn with `detached`. No shell: arguments go to git as they are.
 * @returns stdout
 * @throws GitFailure
 */
function runGit(args: string[], cwd: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', args, { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let killTimer: NodeJS.Timeout | undefined;
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      if (stdout.length < MAX_STDOUT_BYTES) stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr = (stderr + d).slice(-MAX_STDERR_BYTES);
    });
    const signalGroup = (signal: NodeJS.Signals) => {
      try {
        if (child.pid) process.kill(-child.pid, signal);
      } catch {
        // the group is gone already
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      signalGroup('SIGTERM');
      killTimer = setTimeout(() => signalGroup('SIGKILL'), KILL_GRACE_MS);
    }, timeoutMs);
    child.on('error', (spawnError) => {
      clearTimeout(timer);
      reject(new GitFailure({ code: null, signal: null, timedOut, spawnError, stderr }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(killTimer);
      // A helper may outlive git's own exit; the group signal reaches it too.
      if (timedOut) signalGroup('SIGKILL');
      if (code === 0 && !timedOut) resolve(stdout);
      else reject(new GitFailure({ code, signal, timedOut, stderr }));
    });
  });
}

function gitRunner(repo: RepoSpec, dir: string, opts: SyncReposOptions): GitRunner {
  const env: NodeJS.ProcessEnv = {
    ...opts.env,
    // Never wait for a username or password on a terminal: the pod has nobody to type
    // them, and the egress proxy adds credentials on the wire.
    GIT_TERMINAL_PROMPT: '0',
    // ssh URLs: fail instead of asking for a passphrase or a host key confirmation.
    GIT_SSH_COMMAND: opts.env.GIT_SSH_COMMAND ?? 'ssh -o BatchMode=yes',
  };
  const run = async (args: string[], cwd: string, timeoutMs: number): Promise<string> => {
    try {
      return await runGit(args, cwd, env, timeoutMs);
    } catch (err) {
      if (err instanceof GitFailure) throw gitError(repo, dir, args, timeoutMs, err);
      throw err;
    }
  };
  return {
    network: (args, cwd) => run(args, cwd, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS),
    local: (args, cwd) => run(args, cwd, LOCAL_TIMEOUT_MS),
  };
}

/** The error for a failed git run: never the command line, which holds the URL as given, userinfo and all. */
function gitError(repo: RepoSpec, dir: string, args: string[], timeoutMs: number, f: GitFailure): RepoSyncError {
  const what = `git ${args[0] ?? ''}`;
  const tail = f.stderr
    .split('\n')
    .map((l) => l.trimEnd())
    // "Cloning into '<dir>.partial-…'..." names a directory that no longer exists.
    .filter((l) => l && !l.startsWith('Cloning into '))
    .slice(-STDERR_LINES)
    .join('\n');
  let message: string;
  if (f.timedOut) message = `${what} timed out after ${timeoutMs} ms`;
  else if (f.spawnError) message = `${what} could not start: ${f.spawnError.message}${(f.spawnError as NodeJS.ErrnoException).code === 'ENOENT' ? ' (is git on PATH?)' : ''}`;
  else if (f.code !== null) message = `${what} failed (exit ${f.code})`;
  else message = `${what} was killed by ${f.signal}`;
  const e = new RepoSyncError(repo, dir, tail ? `${message}: ${tail}` : message);
  if (f.code !== null) e.exitCode = f.code;
  return e;
}

function isErrno(err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
