/**
 * A local HTTPS git server for tests: git's smart HTTP protocol served by the real
 * `git http-backend` (as a CGI program, RFC 3875) behind node:https, with a TLS
 * certificate from its own throwaway CA. The trust path is real: a client that is not
 * told about the CA (GIT_SSL_CAINFO) refuses the server.
 *
 * Repositories are bare repositories under a temporary GIT_PROJECT_ROOT; `commit()` makes
 * upstream changes through a scratch working clone and a local push, the way a teammate's
 * push would appear to the client. Clients may push (new branches, more commits, branch
 * deletions: `http.receivepack` is on, as on GitHub for a token with write access);
 * `branch()`, `branches()` and `readFile()` show what arrived.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { makeTestCa } from './test-ca.ts';

const execFileAsync = promisify(execFile);
const BRANCH = 'main';

export interface GitServer {
  /** `https://127.0.0.1:PORT` */
  url: string;
  /** `https://127.0.0.1:PORT/<name>.git` */
  repoUrl(name: string): string;
  /** PEM file of the server's CA certificate (point GIT_SSL_CAINFO here). */
  caFile: string;
  caPem: string;
  /**
   * Commits `files` (path relative to the repository root → content) on `branch`
   * (default main; a new branch starts from main) and pushes it upstream.
   * @returns the new commit's id
   */
  commit(name: string, files: Record<string, string>, message: string, branch?: string): Promise<string>;
  /** The head of `branch` in repository `name`: its commit id and commit time (RFC 3339); undefined when there is no such branch. */
  branch(name: string, branch: string): Promise<{ sha: string; committedAt: string } | undefined>;
  /** The branch names of repository `name`, sorted. */
  branches(name: string): Promise<string[]>;
  /** The content of `file` at `ref` (a branch name or commit id) in repository `name`; rejects when there is none. */
  readFile(name: string, ref: string, file: string): Promise<string>;
  /** Every request target served (`/app.git/info/refs?service=git-upload-pack`), in order. */
  requests: string[];
  /** Stops listening, drops open connections and deletes the repositories. */
  close(): Promise<void>;
}

/** Environment for the server's own git commands: no user or system config, fixed identity. */
function gitEnv(): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: os.tmpdir(),
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_AUTHOR_NAME: 'Upstream',
    GIT_AUTHOR_EMAIL: 'upstream@example.invalid',
    GIT_COMMITTER_NAME: 'Upstream',
    GIT_COMMITTER_EMAIL: 'upstream@example.invalid',
  };
}

async function git(args: string[], cwd: string): Promise<string> {
  const { stdout } = await execFileAsync('git', args, { cwd, env: gitEnv(), encoding: 'utf8' });
  return stdout.trim();
}

/**
 * Starts the server on 127.0.0.1 (a free port) with one bare repository per entry of
 * `repos`, each holding one commit of the given files on branch main.
 *
 * `hostnames`: extra DNS names in the certificate (a client that reaches the server by
 * name, e.g. through an egress proxy with a test resolver). `basicPassword`: every
 * request must carry HTTP Basic credentials with this password, or one of these (RFC 7617); others get
 * 401 with `WWW-Authenticate: Basic`, as GitHub answers a token-less clone. `host`: the
 * IPv4 address to listen on instead of 127.0.0.1 (also put in the certificate).
 */
export async function startGitServer(opts: { repos: Record<string, Record<string, string>>; hostnames?: string[]; basicPassword?: string | readonly string[]; host?: string }): Promise<GitServer> {
  const host = opts.host ?? '127.0.0.1';
  const base = await mkdtemp(path.join(os.tmpdir(), 'agent-smith-git-server-'));
  const projectRoot = path.join(base, 'repos');
  const workRoot = path.join(base, 'work');
  await mkdir(projectRoot);
  await mkdir(workRoot);

  const tls = await issueCertificates(opts.hostnames ?? [], host);
  const caFile = path.join(base, 'ca.pem');
  await writeFile(caFile, tls.caPem);

  const bare = (name: string) => path.join(projectRoot, `${name}.git`);
  const work = (name: string) => path.join(workRoot, name);

  const commit = async (name: string, files: Record<string, string>, message: string, branch = BRANCH): Promise<string> => {
    const dir = work(name);
    // HEAD is main, unborn until the initial commit.
    if ((await git(['symbolic-ref', '--short', 'HEAD'], dir)) !== branch) {
      const exists = await git(['rev-parse', '--verify', '--quiet', `refs/heads/${branch}`], dir).then(
        () => true,
        () => false,
      );
      await git(exists ? ['checkout', '--quiet', branch] : ['checkout', '--quiet', '-b', branch, BRANCH], dir);
    }
    for (const [file, content] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(dir, file)), { recursive: true });
      await writeFile(path.join(dir, file), content);
    }
    await git(['add', '--all'], dir);
    await git(['commit', '--quiet', '--allow-empty', '-m', message], dir);
    await git(['push', '--quiet', 'origin', `${branch}:${branch}`], dir);
    return git(['rev-parse', 'HEAD'], dir);
  };

  for (const [name, files] of Object.entries(opts.repos)) {
    await git(['init', '--quiet', '--bare', '--initial-branch', BRANCH, bare(name)], projectRoot);
    // git http-backend serves pushes only to an authenticated REMOTE_USER unless this is set
    // (git-http-backend(1), "http.receivepack"); the 401 above is the authentication.
    await git(['config', 'http.receivepack', 'true'], bare(name));
    await git(['init', '--quiet', '--initial-branch', BRANCH, work(name)], workRoot);
    await git(['remote', 'add', 'origin', bare(name)], work(name));
    await commit(name, files, 'initial commit');
  }

  const requests: string[] = [];
  const sockets = new Set<Socket>();
  const server = https.createServer({ key: tls.keyPem, cert: tls.certPem }, (req, res) => {
    requests.push(req.url ?? '');
    if (opts.basicPassword !== undefined && !basicPasswordIs(req, opts.basicPassword)) {
      req.resume();
      res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="agent-smith test git server"', 'Content-Type': 'text/plain' }).end('authentication required\n');
      return;
    }
    serveCgi(req, res, projectRoot);
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const url = `https://${host}:${(server.address() as AddressInfo).port}`;

  return {
    url,
    repoUrl: (name) => `${url}/${name}.git`,
    caFile,
    caPem: tls.caPem,
    commit,
    branch: async (name, branch) => {
      const out = await git(['log', '-1', '--format=%H %cI', `refs/heads/${branch}`, '--'], bare(name)).catch(() => '');
      const [sha, committedAt] = out.split(' ');
      return sha && committedAt ? { sha, committedAt: new Date(committedAt).toISOString().replace(/\.\d{3}Z$/, 'Z') } : undefined;
    },
    branches: async (name) => (await git(['for-each-ref', '--format=%(refname:short)', 'refs/heads/'], bare(name))).split('\n').filter(Boolean).sort(),
    readFile: async (name, ref, file) => (await execFileAsync('git', ['show', `${ref}:${file}`], { cwd: bare(name), env: gitEnv(), encoding: 'utf8' })).stdout,
    requests,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
      await rm(base, { recursive: true, force: true });
    },
  };
}

/** Whether the request carries HTTP Basic credentials (RFC 7617) with `password` (or one of them). */
function basicPasswordIs(req: IncomingMessage, password: string | readonly string[]): boolean {
  const m = /^Basic ([A-Za-z0-9+/=]+)$/i.exec(req.headers.authorization ?? '');
  if (!m?.[1]) return false;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const given = decoded.slice(decoded.indexOf(':') + 1);
  return typeof password === 'string' ? given === password : password.includes(given);
}

/**
 * Runs `git http-backend` for one request. CGI meta-variables per RFC 3875 section 4.1;
 * the Git-Protocol header goes in as HTTP_GIT_PROTOCOL (section 4.1.18), which
 * http-backend turns into GIT_PROTOCOL: without it a git 2.x client falls back to
 * protocol v0.
 */
function serveCgi(req: IncomingMessage, res: ServerResponse, projectRoot: string): void {
  const target = new URL(req.url ?? '/', 'https://127.0.0.1');
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_PROJECT_ROOT: projectRoot,
    GIT_HTTP_EXPORT_ALL: '1',
    GATEWAY_INTERFACE: 'CGI/1.1',
    SERVER_PROTOCOL: `HTTP/${req.httpVersion}`,
    SERVER_SOFTWARE: 'agent-smith-test-git-server',
    REQUEST_METHOD: req.method ?? 'GET',
    PATH_INFO: decodeURIComponent(target.pathname),
    QUERY_STRING: target.search.replace(/^\?/, ''),
    REMOTE_ADDR: req.socket.remoteAddress ?? '127.0.0.1',
    CONTENT_TYPE: req.headers['content-type'] ?? '',
  };
  // Absent for a chunked request body: http-backend then reads stdin to its end.
  if (req.headers['content-length']) env.CONTENT_LENGTH = req.headers['content-length'];
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || name === 'content-type' || name === 'content-length') continue;
    env[`HTTP_${name.toUpperCase().replace(/-/g, '_')}`] = Array.isArray(value) ? value.join(', ') : value;
  }

  const child = spawn('git', ['http-backend'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.on('error', (err) => fail(res, `cannot run git http-backend: ${err.message}`));
  child.stdin.on('error', () => {
    // http-backend may exit (an error response) before reading the whole body.
  });
  req.pipe(child.stdin);

  // The CGI response: header lines, an empty line, the body (RFC 3875 section 6).
  let head = Buffer.alloc(0);
  let headersDone = false;
  child.stdout.on('data', (chunk: Buffer) => {
    if (headersDone) {
      res.write(chunk);
      return;
    }
    head = Buffer.concat([head, chunk]);
    const text = head.toString('latin1');
    const crlf = text.indexOf('\r\n\r\n');
    const lf = text.indexOf('\n\n');
    const end = crlf >= 0 && (lf < 0 || crlf < lf) ? crlf + 4 : lf >= 0 ? lf + 2 : -1;
    if (end < 0) return;
    headersDone = true;
    let status = 200;
    for (const line of text.slice(0, end).split(/\r?\n/).filter(Boolean)) {
      const colon = line.indexOf(':');
      if (colon < 0) continue;
      const name = line.slice(0, colon).trim();
      const value = line.slice(colon + 1).trim();
      if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10) || 500;
      else res.setHeader(name, value);
    }
    res.writeHead(status);
    res.write(head.subarray(end));
  });
  child.on('close', (code) => {
    if (!headersDone) fail(res, `git http-backend exited ${code} without a response: ${stderr.trim()}`);
    else res.end();
  });
}

function fail(res: ServerResponse, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(500, { 'content-type': 'text/plain' });
  res.end(message + '\n');
}

interface TestTls {
  caPem: string;
  certPem: string;
  keyPem: string;
}

/** A test CA and a leaf for 127.0.0.1 (and `host`), localhost and `hostnames`, valid for a day. */
async function issueCertificates(hostnames: readonly string[], host: string): Promise<TestTls> {
  const ca = await makeTestCa('agent-smith test git server CA');
  const leaf = await ca.issue([...[...new Set(['127.0.0.1', host])].map((value) => ({ type: 'ip' as const, value })), { type: 'dns', value: 'localhost' }, ...hostnames.map((value) => ({ type: 'dns' as const, value }))]);
  return { caPem: ca.caPem, ...leaf };
}
