/**
 * A real Synapse homeserver for tests: the version pinned in scripts/lib/tools.sh
 * (SYNAPSE_VERSION), installed from PyPI into a venv under the cache by `ensure_synapse`
 * (scripts/test runs it), started on 127.0.0.1 with SQLite, federation off, rate limits
 * off and a registration shared secret; users are registered through the admin API.
 *
 * Facts used: Synapse's config documentation (listeners, database, rc_* rate limits,
 * registration_shared_secret, signing_key_path) and its shared-secret registration API
 * (`GET /_synapse/admin/v1/register` → nonce; `POST` with `mac` = HMAC-SHA1 keyed with the
 * secret over `nonce\0username\0password\0admin|notadmin`, hex).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, openSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../paths.ts';
import { freePort } from '../net.ts';
import { terminate } from '../process.ts';

/** SYNAPSE_VERSION from scripts/lib/tools.sh: the one place the version is pinned. */
export function synapseVersion(): string {
  const m = /^SYNAPSE_VERSION=(\S+)$/m.exec(readFileSync(join(ROOT, 'scripts/lib/tools.sh'), 'utf8'));
  if (!m?.[1]) throw new Error('scripts/lib/tools.sh does not pin SYNAPSE_VERSION');
  return m[1];
}

/** The venv's python, or an error saying how to install it. */
export function synapsePython(): string {
  const cache = process.env.AGENT_SMITH_CACHE ?? join(homedir(), '.cache/agent-smith');
  const dir = join(cache, `synapse-${synapseVersion()}`);
  if (!existsSync(join(dir, '.complete'))) {
    throw new Error(`Synapse ${synapseVersion()} is not installed in ${dir}; run scripts/test, or: bash -c 'source scripts/lib/tools.sh && ensure_synapse'`);
  }
  return join(dir, 'bin/python');
}

export interface RegisteredUser {
  userId: string;
  accessToken: string;
  deviceId: string;
}

/** A minimal event as the client-server API returns it. */
export interface RoomEvent {
  event_id: string;
  type: string;
  sender: string;
  origin_server_ts: number;
  content: Record<string, unknown>;
  redacts?: string;
  unsigned?: Record<string, unknown>;
}

export interface Synapse {
  /** http://<host>:<port> (127.0.0.1 unless started with another host) */
  url: string;
  serverName: string;
  dataDir: string;
  logFile: string;
  /** Registers a user through the shared-secret admin API; `password` defaults to a random one. */
  register(username: string, opts?: { admin?: boolean; displayname?: string; password?: string }): Promise<MatrixTestUser>;
  /** PID of the running server process, undefined when it is not running. */
  pid(): number | undefined;
  /** Stops the homeserver (SIGTERM, SIGKILL after 10 s); the data stays. */
  stop(): Promise<void>;
  /** Starts it again on the same port with the same data. */
  start(): Promise<void>;
  /** Stops it and removes its data. */
  close(): Promise<void>;
}

const SERVER_NAME = 'localhost';

function config(dir: string, host: string, port: number, secret: string): object {
  const unlimited = { per_second: 100_000, burst_count: 100_000 };
  return {
    server_name: SERVER_NAME,
    public_baseurl: `http://${host}:${port}/`,
    pid_file: join(dir, 'homeserver.pid'),
    listeners: [{ port, bind_addresses: [host], type: 'http', tls: false, x_forwarded: false, resources: [{ names: ['client'], compress: false }] }],
    database: { name: 'sqlite3', args: { database: join(dir, 'homeserver.db') } },
    log_config: join(dir, 'log.yaml'),
    media_store_path: join(dir, 'media'),
    registration_shared_secret: secret,
    enable_registration: false,
    report_stats: false,
    macaroon_secret_key: randomBytes(24).toString('hex'),
    form_secret: randomBytes(24).toString('hex'),
    signing_key_path: join(dir, 'signing.key'),
    trusted_key_servers: [],
    suppress_key_server_warning: true,
    federation_domain_whitelist: [],
    presence: { enabled: false },
    url_preview_enabled: false,
    rc_message: unlimited,
    rc_registration: unlimited,
    rc_login: { address: unlimited, account: unlimited, failed_attempts: unlimited },
    rc_joins: { local: unlimited, remote: unlimited },
    rc_joins_per_room: unlimited,
    rc_invites: { per_room: unlimited, per_user: unlimited, per_issuer: unlimited },
    rc_admin_redaction: unlimited,
    rc_room_creation: unlimited,
    rc_3pid_validation: unlimited,
    rc_presence: { per_user: unlimited },
    rc_reports: unlimited,
  };
}

/** Python logging config: Synapse's log (with its access log: per-request serve times) in a file. */
function logConfig(file: string): object {
  return {
    version: 1,
    formatters: { precise: { format: '%(asctime)s %(name)s %(levelname)s %(message)s' } },
    handlers: { file: { class: 'logging.FileHandler', filename: file, formatter: 'precise', encoding: 'utf8' } },
    loggers: { 'synapse.storage.SQL': { level: 'WARNING' }, 'twisted': { level: 'WARNING' } },
    root: { level: 'INFO', handlers: ['file'] },
    disable_existing_loggers: false,
  };
}

/**
 * Starts Synapse in a fresh data folder: `opts.dataDir` (created; the demo keeps it under
 * its own directory) or a new one under the system's temporary directory. `opts.host`:
 * the IPv4 address its client listener binds (default 127.0.0.1; the demo binds the
 * local node's pod gateway so that pods reach it through a Service).
 */
export async function startSynapse(opts: { dataDir?: string; host?: string } = {}): Promise<Synapse> {
  const host = opts.host ?? '127.0.0.1';
  const python = synapsePython();
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'agent-smith-synapse-')));
  // 0700: the config holds the registration shared secret (mkdtemp's folders are 0700 too).
  if (opts.dataDir) await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const port = await freePort();
  const secret = randomBytes(16).toString('hex');
  const url = `http://${host}:${port}`;
  const logFile = join(dataDir, 'homeserver.log');
  const configFile = join(dataDir, 'homeserver.yaml');
  // JSON is YAML. The signing key is made here (saves a 2 s `--generate-keys` run): Synapse's
  // key file format is "ed25519 <version> <unpadded base64 of the 32-byte seed>".
  await writeFile(configFile, JSON.stringify(config(dataDir, host, port, secret), null, 2));
  await writeFile(join(dataDir, 'log.yaml'), JSON.stringify(logConfig(logFile)));
  await writeFile(join(dataDir, 'signing.key'), `ed25519 a_test ${randomBytes(32).toString('base64').replace(/=+$/, '')}\n`);

  let proc: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  const start = async () => {
    const out = openSync(join(dataDir, 'stdout.log'), 'a');
    proc = spawn(python, ['-m', 'synapse.app.homeserver', '-c', configFile], { cwd: dataDir, stdio: ['ignore', out, out] });
    const p = proc;
    exited = new Promise((resolve) => p.once('exit', () => resolve()));
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      if (p.exitCode !== null) break;
      try {
        if ((await fetch(`${url}/_matrix/client/versions`)).ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`Synapse did not come up on ${url}; see ${join(dataDir, 'stdout.log')} and ${logFile}`);
  };

  const stop = () => terminate(proc, exited);

  await start();
  return {
    url,
    serverName: SERVER_NAME,
    dataDir,
    logFile,
    start,
    stop,
    pid: () => (proc && proc.exitCode === null && proc.signalCode === null ? proc.pid : undefined),
    close: async () => {
      await stop();
      await rm(dataDir, { recursive: true, force: true });
    },
    register: async (username, opts = {}) => {
      const { nonce } = (await (await fetch(`${url}/_synapse/admin/v1/register`)).json()) as { nonce: string };
      const password = opts.password ?? randomBytes(12).toString('hex');
      const admin = opts.admin ?? false;
      const mac = createHmac('sha1', secret)
        .update([nonce, username, password, admin ? 'admin' : 'notadmin'].join('\0'))
        .digest('hex');
      const res = await fetch(`${url}/_synapse/admin/v1/register`, {
        method: 'POST',
        body: JSON.stringify({ nonce, username, password, admin, mac, displayname: opts.displayname ?? username }),
      });
      const body = (await res.json()) as { user_id: string; access_token: string; device_id: string; error?: string };
      if (!res.ok) throw new Error(`registering ${username}: ${res.status} ${body.error ?? ''}`);
      return new MatrixTestUser(url, { userId: body.user_id, accessToken: body.access_token, deviceId: body.device_id });
    },
  };
}

/**
 * A person (or another bot) in tests, talking to the homeserver with plain fetch: an
 * independent client, so the bridge's own client is not used to check itself.
 */
export class MatrixTestUser implements RegisteredUser {
  readonly userId: string;
  readonly accessToken: string;
  readonly deviceId: string;
  private readonly url: string;

  constructor(url: string, u: RegisteredUser) {
    this.url = url;
    this.userId = u.userId;
    this.accessToken = u.accessToken;
    this.deviceId = u.deviceId;
  }

  /** A client-server API call; retries while the homeserver is down (up to `retryForMs`). */
  async api<T>(method: string, path: string, body?: unknown, retryForMs = 0): Promise<T> {
    const deadline = Date.now() + retryForMs;
    for (;;) {
      let res: Response;
      try {
        res = await fetch(`${this.url}/_matrix/client/v3${path}`, {
          method,
          headers: { authorization: `Bearer ${this.accessToken}`, 'content-type': 'application/json' },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        });
      } catch (err) {
        if (Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 200));
          continue;
        }
        throw err;
      }
      const json = (await res.json().catch(() => ({}))) as T & { error?: string; errcode?: string };
      if (!res.ok) {
        if (res.status >= 500 && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 200));
          continue;
        }
        throw new Error(`${method} ${path}: ${res.status} ${json.errcode ?? ''} ${json.error ?? ''}`);
      }
      return json;
    }
  }

  async createRoom(opts: { invite?: string[]; name?: string; preset?: 'private_chat' | 'public_chat' | 'trusted_private_chat' } = {}): Promise<string> {
    const r = await this.api<{ room_id: string }>('POST', '/createRoom', { preset: opts.preset ?? 'private_chat', invite: opts.invite ?? [], ...(opts.name ? { name: opts.name } : {}) });
    return r.room_id;
  }

  async join(room: string): Promise<string> {
    return (await this.api<{ room_id: string }>('POST', `/join/${encodeURIComponent(room)}`, {})).room_id;
  }

  async invite(room: string, userId: string): Promise<void> {
    await this.api('POST', `/rooms/${encodeURIComponent(room)}/invite`, { user_id: userId });
  }

  /** Sends an event; the transaction id makes retries (while the homeserver restarts) idempotent. */
  async send(room: string, content: Record<string, unknown>, opts: { type?: string; txnId?: string; retryForMs?: number } = {}): Promise<string> {
    const txn = opts.txnId ?? randomUUID();
    const r = await this.api<{ event_id: string }>('PUT', `/rooms/${encodeURIComponent(room)}/send/${opts.type ?? 'm.room.message'}/${txn}`, content, opts.retryForMs ?? 0);
    return r.event_id;
  }

  /** Sends an m.text message; `extra` is merged into the content (m.mentions, m.relates_to ...). */
  sendText(room: string, body: string, extra: Record<string, unknown> = {}, opts: { txnId?: string; retryForMs?: number } = {}): Promise<string> {
    return this.send(room, { msgtype: 'm.text', body, ...extra }, opts);
  }

  async redact(room: string, eventId: string): Promise<string> {
    return (await this.api<{ event_id: string }>('PUT', `/rooms/${encodeURIComponent(room)}/redact/${encodeURIComponent(eventId)}/${randomUUID()}`, {})).event_id;
  }

  /** The room's latest events, oldest first. */
  async messages(room: string, limit = 100): Promise<RoomEvent[]> {
    const r = await this.api<{ chunk: RoomEvent[] }>('GET', `/rooms/${encodeURIComponent(room)}/messages?dir=b&limit=${limit}`);
    return r.chunk.reverse();
  }

  /** Polls the room until an event matches (or throws after `timeoutMs`, listing what it saw). */
  async waitForEvent(room: string, pred: (e: RoomEvent) => boolean, timeoutMs = 30_000): Promise<RoomEvent> {
    const deadline = Date.now() + timeoutMs;
    let seen: RoomEvent[] = [];
    while (Date.now() < deadline) {
      seen = await this.messages(room).catch(() => seen);
      const hit = seen.find(pred);
      if (hit) return hit;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`no matching event in ${room} within ${timeoutMs} ms; saw:\n${seen.map((e) => `${e.sender} ${e.type} ${e.event_id.slice(0, 12)} ${JSON.stringify(e.content).slice(0, 300)}`).join('\n')}`);
  }

  /** The rooms this user is joined to. */
  async joinedRooms(): Promise<string[]> {
    return (await this.api<{ joined_rooms: string[] }>('GET', '/joined_rooms')).joined_rooms;
  }
}

/** Whether `e` is a reaction by `sender` with `key` to `eventId`. */
export function isReaction(e: RoomEvent, sender: string, eventId: string, key = '👀'): boolean {
  const rel = e.content['m.relates_to'] as { rel_type?: string; event_id?: string; key?: string } | undefined;
  return e.type === 'm.reaction' && e.sender === sender && rel?.rel_type === 'm.annotation' && rel.event_id === eventId && rel.key === key;
}
