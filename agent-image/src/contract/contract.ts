/**
 * The pod contract: the one JSON document the operator renders into the agent's
 * ConfigMap (key `contract.json`, mounted at `/etc/agent-smith/contract.json`) and every
 * program in the pod reads. The operator imports this schema; this package never
 * imports the operator.
 *
 * Versioned by `version`: a pod refuses a contract whose version it does not know.
 */
import { z } from 'zod';

export const CONTRACT_VERSION = 1;
/** Where the contract and the persona files are mounted in every container. */
export const CONFIG_DIR = '/etc/agent-smith';
export const CONTRACT_FILE = 'contract.json';
export const HOME_DIR = '/home/agent';
export const WORKSPACE_DIR = '/workspace';

/** The team roster ConfigMap (roster.md, roster.json), mounted live: a teammate joining needs no restart. */
export const TEAM_DIR = '/etc/agent-smith/team';

/** UID of the egress proxy: the one UID iptables lets out directly. */
export const PROXY_UID = 1337;
/** Port the egress proxy listens on (explicit proxy and transparent redirect). */
export const PROXY_PORT = 15001;
/** Port of the egress proxy's health endpoint. */
export const PROXY_HEALTH_PORT = 15021;
/**
 * Port of the egress proxy's DNS listener (UDP and TCP, 127.0.0.1 and ::1). Under
 * `egress.enforcement: iptables` egress-init redirects port 53 of every UID but the
 * proxy's here, so the pod's DNS is answered by the proxy (programs/proxy/dns.ts).
 */
export const PROXY_DNS_PORT = 15053;
/** The egress CA certificate, mounted into every container (trust only). */
export const EGRESS_CA_CERT_DIR = '/etc/agent-smith/egress-ca-cert';
/** The egress CA certificate and key, mounted into the egress-proxy container only. */
export const EGRESS_CA_DIR = '/etc/agent-smith/egress-ca';
/** File (and Secret key) names of the egress CA in EGRESS_CA_CERT_DIR and EGRESS_CA_DIR: the certificate (PEM). */
export const EGRESS_CA_CERT_NAME = 'ca.crt';
/** The egress CA's private key (PEM, PKCS#8), in EGRESS_CA_DIR only. */
export const EGRESS_CA_KEY_NAME = 'ca.key';
/** Real credential values, one file per credential name, in the egress-proxy container only. */
export const CREDENTIALS_DIR = '/etc/agent-smith/credentials';
/**
 * The agent's Matrix access token (spec.matrix.accessTokenSecretRef), mounted read-only into
 * the agent container only; the supervisor's Matrix bridge reads it (never an environment variable).
 */
export const MATRIX_ACCESS_TOKEN_FILE = '/etc/agent-smith/matrix/access-token';
/** How long an approval request waits for an answer by default (s): spec.matrix.approvals.timeoutSeconds. */
export const DEFAULT_APPROVAL_TIMEOUT_SECONDS = 300;

/** Port of the supervisor's /healthz, /readyz and /metrics (all interfaces; the pod's `http` port). */
export const SUPERVISOR_PORT = 8080;
/** Loopback-only port of the supervisor's MCP server, hook and inbox endpoints. Never exposed outside the pod. */
export const SUPERVISOR_LOCAL_PORT = 15090;

/** The coding-agent CLIs a pod can run (spec.harness.kind, contract `harness.kind`). */
export const HARNESS_KINDS = ['claude', 'codex', 'opencode', 'custom'] as const;
/** How egress is enforced (spec.egress.enforcement, contract `egress.enforcement`). */
export const ENFORCEMENT_MODES = ['iptables', 'proxy-env'] as const;
/** How the proxy presents a credential (spec.egress.credentials[].scheme). */
export const CREDENTIAL_SCHEMES = ['bearer', 'basic', 'raw'] as const;
/**
 * How much the CLI may do without asking (spec.permissions.mode, contract `permissions.mode`):
 * `unattended` runs every tool the rules do not deny or send to ask (the pod is the
 * sandbox); `acceptEdits` runs file edits and the allowed commands, asks for the rest;
 * `ask` runs only what the allow rules name and asks for everything else.
 */
export const PERMISSION_MODES = ['unattended', 'acceptEdits', 'ask'] as const;
/** PR rewakes in a row without other input before the supervisor stops rewaking (spec.github.watchPullRequests.maxConsecutiveRewakes). */
export const DEFAULT_MAX_CONSECUTIVE_REWAKES = 3;

/** The GitHub REST API the PR watcher reads when the contract's github.apiUrl is unset (GitHub.com). */
export const DEFAULT_GITHUB_API_URL = 'https://api.github.com';

/**
 * The web (and git) base URL of the GitHub whose REST API is at `apiUrl`, without a
 * trailing slash: `https://github.com` for GitHub.com's `https://api.github.com`, and
 * `https://<host>` for GitHub Enterprise Server's `https://<host>/api/v3` (its API is a
 * path of the web host: docs.github.com/en/enterprise-server/rest, "the base URL").
 * A repository's default clone URL is `<web>/<owner>/<repo>.git`.
 * @throws TypeError when `apiUrl` is not a URL
 */
export function githubWebUrl(apiUrl: string = DEFAULT_GITHUB_API_URL): string {
  const url = new URL(apiUrl);
  if (url.host === new URL(DEFAULT_GITHUB_API_URL).host) return 'https://github.com';
  return `${url.protocol}//${url.host}`;
}

/**
 * The defaults of the event log's settings (spec.events, contract `events`): the Agent
 * API's defaults and the contract's are these.
 */
export const EVENTS_DEFAULTS = {
  subjectPrefix: 'agents',
  stream: 'AGENT_EVENTS',
  maxAgeSeconds: 30 * 24 * 3600,
  maxMessages: 1_000_000,
  maxBytes: 1024 ** 3,
  duplicateWindowSeconds: 3600,
  outboxMaxEvents: 10_000,
} as const;

/**
 * How the supervisor restarts the CLI. Every field has a default; the operator renders
 * none of them today, tests set short ones.
 */
export const SupervisorTuning = z.object({
  /** Delay before the first restart after the CLI exits (ms). */
  restartInitialDelayMs: z.number().int().min(0).default(250),
  /** Cap of the doubling restart delay (ms). */
  restartMaxDelayMs: z.number().int().min(0).default(60_000),
  /** A CLI that stayed up this long counts as recovered: the delay and the crash count reset (s). */
  stableAfterSeconds: z.number().min(0).default(120),
  /** This many restarts within the window is a crash loop: readiness false, log line, `crash_loop` event. */
  crashLoopRestarts: z.number().int().min(1).default(5),
  /** The crash-loop window (s). */
  crashLoopWindowSeconds: z.number().min(1).default(600),
  /** On SIGTERM: time the CLI and the shell get after SIGTERM before SIGKILL (s); keep below the pod's grace period (60 s). */
  stopGraceSeconds: z.number().min(0).default(45),
});
export type SupervisorTuning = z.infer<typeof SupervisorTuning>;

/**
 * The event log (DESIGN.md flow 4; agent-image/src/plugins/events/): a NATS JetStream stream the
 * supervisor creates when missing and publishes to, through an on-disk outbox on the home
 * volume. The operator copies spec.events here; the defaults are the operator's too.
 */
export const EventsConfig = z.object({
  /** NATS server(s), comma-separated (`nats://host:4222`); credentials in the URL are never logged. */
  natsUrl: z.string(),
  /** Subjects are `<subjectPrefix>.<team>.<agent>.<type>`; `_` stands for no team. */
  subjectPrefix: z.string().default(EVENTS_DEFAULTS.subjectPrefix),
  /** JetStream stream name; created when missing with subjects `<subjectPrefix>.>` and the limits below. */
  stream: z.string().default(EVENTS_DEFAULTS.stream),
  /** Stream limit: oldest events are removed after this age (s); 0 = no limit. */
  maxAgeSeconds: z.number().int().min(0).default(EVENTS_DEFAULTS.maxAgeSeconds),
  /** Stream limit: number of events kept; -1 = no limit. */
  maxMessages: z.number().int().min(-1).default(EVENTS_DEFAULTS.maxMessages),
  /** Stream limit: bytes kept; -1 = no limit. */
  maxBytes: z.number().int().min(-1).default(EVENTS_DEFAULTS.maxBytes),
  /** JetStream's duplicate window (s): a re-sent event with the same Nats-Msg-Id inside it is dropped. */
  duplicateWindowSeconds: z.number().int().min(1).default(EVENTS_DEFAULTS.duplicateWindowSeconds),
  /** Most events the on-disk outbox holds while NATS is away; beyond it the oldest are dropped (logged, counted). */
  outboxMaxEvents: z.number().int().min(1).default(EVENTS_DEFAULTS.outboxMaxEvents),
});
export type EventsConfig = z.infer<typeof EventsConfig>;

export const PodContract = z.object({
  version: z.literal(CONTRACT_VERSION),
  agent: z.object({ name: z.string(), namespace: z.string(), team: z.string().optional() }),
  /** The git identity setup writes into ~/.gitconfig (user.name, user.email); the operator fills in the defaults. Absent from an older operator's contract: git's own defaults then. */
  git: z.object({ name: z.string().min(1), email: z.string().min(1) }).optional(),
  /**
   * The Agent's permission mode and its allow, ask and deny rules (spec.permissions), in
   * Claude Code's rule syntax (`Bash(git push * main)`, `Read(//etc/agent-smith/**)`); the
   * harness maps them into its own settings after the persona's (plugins/harness). Absent
   * from an older operator's contract: unattended with no rules of its own.
   */
  permissions: z
    .object({
      mode: z.enum(PERMISSION_MODES),
      allow: z.array(z.string()).default([]),
      ask: z.array(z.string()).default([]),
      deny: z.array(z.string()).default([]),
    })
    .default({ mode: 'unattended', allow: [], ask: [], deny: [] }),
  harness: z.object({
    kind: z.enum(HARNESS_KINDS),
    model: z.string().optional(),
    args: z.array(z.string()),
    command: z.array(z.string()).optional(),
  }),
  repos: z.array(z.object({ name: z.string(), url: z.string(), branch: z.string().optional(), dir: z.string() })),
  /** Absolute working directory of the CLI (the primary repo, or the workspace root). */
  workdir: z.string(),
  /** ConfigMap keys, relative to CONFIG_DIR, of the assembled persona files. */
  files: z.object({
    claudeMd: z.string(),
    settingsJson: z.string(),
    mcpJson: z.string().optional(),
    subagents: z.record(z.string(), z.string()),
  }),
  /**
   * The Matrix bridge. `approvals` (approvals over chat, plugins/matrix/approvals.ts):
   * `room` is asked when the current task did not come from Matrix (else `rooms[0]`),
   * `timeoutSeconds` is how long an answer is waited for (the Agent API: 10..86400,
   * default 300; the contract takes any positive value, for tests).
   */
  matrix: z
    .object({
      homeserverUrl: z.string(),
      userId: z.string(),
      allowedUsers: z.array(z.string()),
      rooms: z.array(z.string()),
      approvals: z
        .object({ room: z.string().optional(), timeoutSeconds: z.number().int().positive().default(DEFAULT_APPROVAL_TIMEOUT_SECONDS) })
        .default({ timeoutSeconds: DEFAULT_APPROVAL_TIMEOUT_SECONDS }),
    })
    .optional(),
  /**
   * GitHub identity and the PR rewake (agent-image/src/plugins/github). `apiUrl`: REST base URL
   * (default https://api.github.com; GitHub Enterprise Server: https://<host>/api/v3).
   * `intervalSeconds`: poll while the CLI is idle (the Agent API's minimum is 30; the
   * contract takes any positive value, for tests). `maxConsecutiveRewakes`: PR rewakes in a
   * row without other input after which the supervisor stops rewaking (Claude Code stops
   * honouring Stop-hook blocks after a few in a row as well).
   */
  github: z
    .object({
      login: z.string(),
      apiUrl: z.string().url().optional(),
      watchPullRequests: z.object({
        enabled: z.boolean(),
        intervalSeconds: z.number().positive(),
        maxConsecutiveRewakes: z.number().int().min(1).default(DEFAULT_MAX_CONSECUTIVE_REWAKES),
      }),
    })
    .optional(),
  events: EventsConfig.optional(),
  supervisor: SupervisorTuning.default(SupervisorTuning.parse({})),
  egress: z.object({
    allow: z.array(z.string()),
    allowCidrs: z.array(z.string()),
    enforcement: z.enum(ENFORCEMENT_MODES),
    proxyPort: z.number(),
    /**
     * The in-cluster Service names the Agent declares (the NATS server of spec.events.natsUrl,
     * the homeserver of spec.matrix.homeserverUrl, `kubernetes.default.svc` with
     * spec.kubernetesAccess), as the spec writes them (`<svc>.<ns>.svc[.cluster.local]`).
     * The proxy's DNS listener resolves them (and their `.svc.<cluster domain>` forms) like
     * allowed names; their cluster IPs are in `allowCidrs`, so connections to them go
     * direct, past the proxy: no TLS interception, no credential swap. Absent from an
     * older operator's contract: none.
     */
    inClusterHosts: z.array(z.string()).optional(),
    /**
     * Credentials by name: where the proxy may send them and how. Real values live in
     * CREDENTIALS_DIR/<name> (proxy container only). `stub` is what the agent holds instead
     * (derived by the operator from the per-agent CA key: high-entropy, stable while the CA
     * is); `env` names the agent's environment variables that carry the stub; `require`
     * makes the proxy refuse a request to the credential's hosts that does not carry the stub;
     * `allowWebSocket` lets WebSocket upgrades to those hosts through (frames unscanned).
     */
    credentials: z.array(
      z.object({
        name: z.string(),
        hosts: z.array(z.string()),
        scheme: z.enum(CREDENTIAL_SCHEMES),
        header: z.string(),
        stub: z.string().min(32),
        require: z.boolean().default(false),
        env: z.array(z.string()).default([]),
        allowWebSocket: z.boolean().default(false),
      }),
    ),
  }),
});
export type PodContract = z.infer<typeof PodContract>;
/** The contract as written (defaults not yet applied): what the operator renders. */
export type PodContractInput = z.input<typeof PodContract>;
