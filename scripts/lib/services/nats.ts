/**
 * A real nats-server with JetStream for tests: the version pinned in scripts/lib/tools.sh
 * (NATS_SERVER_VERSION), built from Go modules into the cache by `ensure_nats_server`
 * (scripts/test runs it), started on 127.0.0.1 with a file store in a scratch folder.
 * `stop()` and `start()` restart it on the same port with the same store, as a NATS
 * outage would look to a client.
 *
 * Flags (nats-server --help): `-js` JetStream, `-a` address, `-p` client port, `-sd` store
 * directory, `-m` monitoring port, whose `/healthz?js-enabled-only=true` answers 200 once
 * JetStream is up (NATS docs, "Monitoring": /healthz).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../net.ts';
import { terminate } from '../process.ts';

/** The nats-server binary: $AGENT_SMITH_CACHE/bin (default ~/.cache/agent-smith/bin), or an error saying how to build it. */
export function natsServerBinary(): string {
  const cache = process.env.AGENT_SMITH_CACHE ?? join(homedir(), '.cache/agent-smith');
  const bin = join(cache, 'bin/nats-server');
  if (!existsSync(bin)) throw new Error(`nats-server is not installed at ${bin}; run scripts/test, or: bash -c 'source scripts/lib/tools.sh && ensure_nats_server'`);
  return bin;
}

export interface NatsServer {
  /** nats://<host>:<port> (127.0.0.1 unless started with another host) */
  url: string;
  port: number;
  storeDir: string;
  logFile: string;
  /** PID of the running server process, undefined when it is not running. */
  pid(): number | undefined;
  /** Stops the server (SIGTERM, SIGKILL after 10 s); the store stays. */
  stop(): Promise<void>;
  /** Starts it again on the same port with the same store; resolves when JetStream is up. */
  start(): Promise<void>;
  /** Stops it and removes its store. */
  close(): Promise<void>;
}

/**
 * Starts nats-server with JetStream in a fresh store folder: under `opts.dir` (created;
 * the demo keeps it under its own directory) or a new one under the system's temporary
 * directory. `opts.host`: the IPv4 address the client and monitoring ports bind (default
 * 127.0.0.1).
 */
export async function startNats(opts: { dir?: string; host?: string } = {}): Promise<NatsServer> {
  const host = opts.host ?? '127.0.0.1';
  const bin = natsServerBinary();
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'agent-smith-nats-')));
  if (opts.dir) await mkdir(dir, { recursive: true, mode: 0o700 });
  const storeDir = join(dir, 'store');
  const logFile = join(dir, 'nats.log');
  const port = await freePort();
  const monitorPort = await freePort();
  let proc: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  const start = async () => {
    const out = openSync(logFile, 'a');
    proc = spawn(bin, ['-js', '-a', host, '-p', String(port), '-sd', storeDir, '-m', String(monitorPort)], { stdio: ['ignore', out, out] });
    const p = proc;
    exited = new Promise((resolve) => p.once('exit', () => resolve()));
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (p.exitCode !== null) break;
      try {
        if ((await fetch(`http://${host}:${monitorPort}/healthz?js-enabled-only=true`)).ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`nats-server did not come up on port ${port}; see ${logFile}`);
  };

  const stop = () => terminate(proc, exited);

  await start();
  return {
    url: `nats://${host}:${port}`,
    port,
    storeDir,
    logFile,
    start,
    stop,
    pid: () => (proc && proc.exitCode === null && proc.signalCode === null ? proc.pid : undefined),
    close: async () => {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
