/**
 * The services the main job (scripts/demo) runs beside the control plane so that
 * example-devbot is a real, talkable agent on this machine: a real Synapse (a demo person,
 * the bots' accounts, the room #agents), a real nats-server with JetStream, an HTTPS git
 * server answering as github.com with the example repositories (homelab-apps holds a small
 * Node project whose test fails), the GitHub API fake answering as api.github.com (each
 * bot a GitHub user, plus a reviewer; pull requests the bots open with `gh pr create`,
 * review comments a test adds), and a fake model answering as https://api.anthropic.com:
 * the scripted "worker" (worker-model.ts), which fixes homelab-apps' test and opens a pull
 * request when asked, and echoes anything else as the offline demo (offline-model.ts).
 *
 * Nothing here talks to Kubernetes: in-cluster.ts publishes the services to the cluster
 * (Services, and DNS names for the stand-ins of github.com, api.github.com and
 * api.anthropic.com), and
 * render.ts turns them into the manifests the demo applies (the bots' token Secrets, the
 * credentials, the stand-ins' CA for `spec.egress.upstreamCA`, the Agents patched to run
 * on the real node).
 *
 *   const services = await startDemoServices({ dir, host: podGateway, log: console.log });
 *   await services.stop();
 *
 * Every process and file lives under `dir`, so a process list or `rm -r dir` finds them all.
 */
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { startFakeAnthropic, type FakeAnthropic } from '../fakes/anthropic-api.ts';
import { startGitServer, type GitServer } from '../fakes/git-server.ts';
import { startGitHubFake, type GitHubFake } from '../fakes/github-api.ts';
import { makeTestCa } from '../fakes/test-ca.ts';
import { startNats } from '../services/nats.ts';
import { startSynapse, type MatrixTestUser, type RoomEvent, type Synapse } from '../services/synapse.ts';
import { OFFLINE_PREFIX } from './offline-model.ts';
import { HOMELAB_APPS, HOMELAB_APPS_FILES, workerResponder } from './worker-model.ts';

export { OFFLINE_PREFIX } from './offline-model.ts';
export { WORKER_PREFIX } from './worker-model.ts';

/** The example repositories the git server holds (owner/name): a README commit each; homelab-apps the worker's failing project. */
export const DEMO_REPOS = ['agent-smith/agent-smith', 'agent-smith/homelab-apps', 'agent-smith/homelab-infra'] as const;
/** The Matrix bots the demo registers, by Agent name. */
export const DEMO_BOTS = ['devbot', 'infrabot'] as const;
/** Localpart of the demo person and of the room alias. */
export const DEMO_USER = 'demo';
export const DEMO_ROOM_ALIAS = 'agents';
/** Stub-free real value of the offline model credential (the proxy swaps the agent's stub for it). */
export const OFFLINE_MODEL_TOKEN = 'offline-demo';
/** The GitHub login of the demo's reviewer (a GitHub fake user who comments on the bots' pull requests). */
export const DEMO_REVIEWER = 'demo-reviewer';
/** A bot's GitHub login in the demo: `<bot>-agent` (agents/example-devbot's spec.github.login is devbot-agent). */
export const demoGitHubLogin = (bot: string) => `${bot}-agent`;

export interface DemoServicesOptions {
  /** Directory for every file and process of the services (created; must be traversable by the pods' UIDs). */
  dir: string;
  /** Progress lines (never a secret). */
  log?: (line: string) => void;
  /** Bots to register (default {@link DEMO_BOTS}). */
  bots?: readonly string[];
  /**
   * The IPv4 address every service listens on (default 127.0.0.1). The demo gives the real
   * node's pod gateway, which pods reach; in-cluster.ts publishes the services there.
   */
  host?: string;
}

export interface DemoBot {
  name: string;
  /** `@<name>:localhost` */
  userId: string;
  accessToken: string;
}

export interface DemoServices {
  dir: string;
  /** Synapse's client-server base URL, `http://127.0.0.1:<port>`. */
  homeserverUrl: string;
  /** `localhost` */
  serverName: string;
  /** The demo person: user id, password (for a Matrix client) and a logged-in client. */
  user: { userId: string; password: string; client: MatrixTestUser };
  /** The bots by Agent name; each is invited to the room. */
  bots: Record<string, DemoBot>;
  /** The room the demo person owns and invites the bots to: id and `#agents:localhost`. */
  room: { id: string; alias: string };
  /** `nats://127.0.0.1:<port>` (JetStream on). */
  natsUrl: string;
  /** The git server (answers as github.com through the proxy); `repoUrl('agent-smith/agent-smith')`. */
  git: GitServer;
  /**
   * An HTTP Basic password the git server accepts that belongs to no bot (for clients on
   * this host). The bots' own tokens are in {@link github}.
   */
  gitPassword: string;
  /**
   * The GitHub API fake (answers as api.github.com; `fake.requests`, `fake.pullRequests(repo)`,
   * `fake.addReviewComment({repo, number, author: DEMO_REVIEWER, body, path, line})`), each
   * bot's GitHub user (login {@link demoGitHubLogin}, and its token: the real value of the
   * bot's github credential, which the git server accepts as the Basic password and the fake
   * as the bot's token, as one GitHub token serves git and the API), and the reviewer.
   */
  github: { fake: GitHubFake; bots: Record<string, { login: string; token: string }>; reviewer: { login: string; token: string } };
  /** The model (the worker, offline echo for anything else); its `requests` show what Claude Code sent. */
  model: FakeAnthropic;
  /** The real value of the anthropic credential: the API key, or {@link OFFLINE_MODEL_TOKEN}. */
  anthropicToken: string;
  /** PEM of the CAs behind the stand-ins for public hosts (the git server's, the GitHub fake's, the model's): the Agents' `spec.egress.upstreamCaConfigMapRef`. */
  upstreamCaPem: string;
  /** Stops every service (Synapse, nats-server, git server, GitHub fake, model); the files under `dir` stay. */
  stop(): Promise<void>;
  /** SIGKILLs the service processes (Synapse, nats-server) at once: for a process 'exit' handler, where nothing async runs. */
  killSync(): void;
}

/**
 * Starts Synapse, nats-server, the git server, the GitHub fake and the model, registers
 * the users and creates the room.
 * @throws Error when a service cannot start (the ones already started are stopped)
 */
export async function startDemoServices(opts: DemoServicesOptions): Promise<DemoServices> {
  const log = opts.log ?? (() => undefined);
  const dir = opts.dir;
  await mkdir(dir, { recursive: true });
  const stops: Array<() => Promise<void>> = [];
  const stop = async () => {
    for (const s of stops.splice(0).reverse()) await s().catch(() => undefined);
  };
  try {
    log('starting Synapse (Matrix homeserver) and nats-server (JetStream)');
    const [synapse, nats] = await Promise.all([startSynapse({ dataDir: join(dir, 'synapse'), host: opts.host }), startNats({ dir: join(dir, 'nats'), host: opts.host })]);
    stops.push(() => synapse.stop(), () => nats.stop());

    const botNames = opts.bots ?? DEMO_BOTS;
    const gitPassword = `demo-git-${randomBytes(12).toString('hex')}`;
    const githubBots = Object.fromEntries(botNames.map((b) => [b, { login: demoGitHubLogin(b), token: `ghp_demo${b.replace(/[^A-Za-z0-9]/g, '')}${randomBytes(12).toString('hex')}` }]));
    const git = await startGitServer({
      repos: Object.fromEntries(
        DEMO_REPOS.map((r) => [r, r === HOMELAB_APPS ? HOMELAB_APPS_FILES : { 'README.md': `# ${r.split('/')[1]}\n\nA repository of the agent-smith demo, served by its local git server as github.com/${r}.\n` }]),
      ),
      hostnames: ['github.com'],
      basicPassword: [gitPassword, ...Object.values(githubBots).map((b) => b.token)],
      host: opts.host,
    });
    stops.push(() => git.close());

    const githubFake = await startGitHubFake({ hostnames: ['api.github.com'], host: opts.host, git });
    stops.push(() => githubFake.close());
    for (const b of Object.values(githubBots)) githubFake.addUser(b.login, b.token, 'User');
    const reviewer = { login: DEMO_REVIEWER, token: `ghp_demoreviewer${randomBytes(12).toString('hex')}` };
    githubFake.addUser(reviewer.login, reviewer.token, 'User');
    for (const r of DEMO_REPOS) githubFake.addRepository(r);

    // The local node's pods cannot leave the machine, so the model is always a fake: the
    // worker (for the homelab-apps task), the offline echo for everything else.
    const modelCa = await makeTestCa('agent-smith offline demo CA');
    const leaf = await modelCa.issue([{ type: 'dns', value: 'api.anthropic.com' }]);
    const model = await startFakeAnthropic({ tls: { key: leaf.keyPem, cert: leaf.certPem }, host: opts.host });
    model.respond(workerResponder());
    stops.push(() => model.close());

    const { user, bots, room } = await matrixSetup(synapse, botNames);
    log(`Synapse at ${synapse.url}, room ${room.alias}; nats at ${nats.url}; git server as github.com; GitHub API fake as api.github.com; model: the demo's scripted worker (fake) as api.anthropic.com`);

    return {
      dir,
      homeserverUrl: synapse.url,
      serverName: synapse.serverName,
      user,
      bots: Object.fromEntries(Object.entries(bots).map(([name, b]) => [name, { name, userId: b.userId, accessToken: b.accessToken }])),
      room,
      natsUrl: nats.url,
      git,
      gitPassword,
      github: { fake: githubFake, bots: githubBots, reviewer },
      model,
      anthropicToken: OFFLINE_MODEL_TOKEN,
      upstreamCaPem: git.caPem + githubFake.caPem + modelCa.caPem,
      stop,
      killSync: () => {
        for (const pid of [synapse.pid(), nats.pid()]) {
          try {
            if (pid !== undefined) process.kill(pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
      },
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The demo person (password printed by the demo), the bots, and #agents owned by the person with the bots invited. */
async function matrixSetup(
  synapse: Synapse,
  botNames: readonly string[],
): Promise<{ user: DemoServices['user']; bots: Record<string, MatrixTestUser>; room: DemoServices['room'] }> {
  // A readable password: the person types it into a Matrix client.
  const password = `demo-${randomBytes(6).toString('hex')}`;
  const person = await synapse.register(DEMO_USER, { password, displayname: 'Demo User' });
  const bots: Record<string, MatrixTestUser> = {};
  for (const name of botNames) bots[name] = await synapse.register(name, { displayname: name });
  const { room_id: id } = await person.api<{ room_id: string }>('POST', '/createRoom', {
    preset: 'private_chat',
    name: 'agents',
    topic: 'agent-smith demo: mention a bot (devbot: ...) to talk to it',
    room_alias_name: DEMO_ROOM_ALIAS,
    invite: Object.values(bots).map((b) => b.userId),
  });
  return { user: { userId: person.userId, password, client: person }, bots, room: { id, alias: `#${DEMO_ROOM_ALIAS}:${synapse.serverName}` } };
}

/** Whether `event` is the offline model's echo of `text`. */
export function isOfflineEcho(event: RoomEvent, text: string): boolean {
  const body = typeof event.content.body === 'string' ? event.content.body : '';
  return body.startsWith(OFFLINE_PREFIX) && body.includes(text);
}
