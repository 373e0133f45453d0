/**
 * The `Agent` custom resource, `agentsmith.dev/v1alpha1`: the zod schema here is the
 * single source of truth. The CRD in `crds/` is generated from it (scripts/gen-crds.ts),
 * so every `.describe()` becomes what `kubectl explain agent.spec...` prints, every
 * `.default()` is applied by the API server, and the CEL rules in `cel()` run at
 * admission. The operator parses stored objects with the same schema.
 *
 * Constraints that matter to the API server's CEL cost estimator (lists need
 * `maxItems`, strings `maxLength`, maps `maxProperties`) are set on every node a rule
 * touches. Regular expressions must be RE2-compatible (no look-around): the API server
 * evaluates `pattern` with Go's regexp.
 */
import { z } from 'zod';
import { CREDENTIAL_SCHEMES, DEFAULT_APPROVAL_TIMEOUT_SECONDS, DEFAULT_MAX_CONSECUTIVE_REWAKES, ENFORCEMENT_MODES, EVENTS_DEFAULTS, HARNESS_KINDS } from '../../../agent-image/src/contract/contract.ts';
import { AGENT_API } from '../../../agent-image/src/contract/pod.ts';
import { cel, mapList, opaque } from './schema.ts';
import { PermissionsSpec } from './permissions.ts';
import { AgentStatus } from './status.ts';

/** The resource's identity is the contract's (`agent-smith attach` reads Agents too). */
export const GROUP = AGENT_API.group;
export const VERSION = AGENT_API.version;
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = AGENT_API.kind;
export const PLURAL = AGENT_API.plural;
export const SINGULAR = AGENT_API.singular;

// --- shared field shapes -----------------------------------------------------------

/** RFC 1123 DNS label (Kubernetes object names of Services, ConfigMaps ...). */
const dnsLabel = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS label: lower-case letters, digits and "-", starting and ending with a letter or digit');

/** RFC 1123 subdomain (Secret and ConfigMap names). */
const dnsSubdomain = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/, 'must be a DNS subdomain: lower-case letters, digits, "-" and "."');

/**
 * A positive Kubernetes resource quantity, e.g. `5Gi`, `500Mi`, `20G`. The pattern is the
 * one apimachinery's `resource.Quantity` accepts, without a sign; CEL then rejects zero.
 */
const positiveQuantity = cel(
  z
    .string()
    .max(64)
    .regex(
      /^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[mkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$/,
      'must be a positive quantity such as 5Gi or 500Mi',
    ),
  { rule: "quantity(self).isGreaterThan(quantity('0'))", message: 'must be a positive quantity such as 5Gi or 500Mi' },
);

const secretKeyRef = z
  .object({
    name: dnsSubdomain.describe('Name of a Secret in the Agent\'s namespace.'),
    key: z.string().min(1).max(253).regex(/^[-._a-zA-Z0-9]+$/, 'must be a Secret data key').describe('Key inside the Secret.'),
  })
  .describe('A key of a Secret in the Agent\'s namespace.');

/**
 * An egress allowlist entry: an exact host name (`api.github.com`) or a subdomain
 * pattern (`*.anthropic.com`, matching subdomains but not the apex), with an optional
 * `:port` (default: any of 80 and 443). IP literals are not host names: private ranges
 * are opened with `egress.allowCidrs`.
 */
const hostPattern = z
  .string()
  .min(1, 'must not be empty')
  .max(260)
  .regex(
    /^(\*\.)?([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?(:[0-9]{1,5})?$/,
    'must be a lower-case host name (api.github.com) or a subdomain pattern (*.anthropic.com), optionally with :port',
  );

const cidr = z
  .string()
  .max(64)
  .regex(/^[0-9a-fA-F:.]+\/[0-9]{1,3}$/, 'must be a CIDR such as 10.0.0.0/8 or fd00::/8');

const matrixUserId = z
  .string()
  .max(255)
  .regex(/^@[^:\s]+:[^\s]+$/, 'must be a Matrix user id such as @alice:example.org');

const matrixRoom = z.string().max(255).regex(/^[!#][^:\s]+:[^\s]+$/, 'must be a room id (!abc:example.org) or alias (#room:example.org)');

// --- spec sections -------------------------------------------------------------------

export const HarnessKind = z.enum(HARNESS_KINDS);
export type HarnessKind = z.infer<typeof HarnessKind>;

export const HarnessSpec = cel(
  z
    .object({
      kind: HarnessKind.default('claude').describe(
        'Which coding-agent CLI runs in the pod: claude (Claude Code, the default), codex, opencode, or custom (spec.harness.command).',
      ),
      model: z.string().min(1).max(200).optional().describe('Model name passed to the CLI; the CLI\'s own default when unset.'),
      args: z.array(z.string().max(4096)).max(64).optional().describe('Extra arguments appended to the CLI\'s command line.'),
      command: z
        .array(z.string().min(1).max(4096))
        .max(64)
        .optional()
        .describe('The command to run for kind custom (argv, no shell). Ignored for the other kinds.'),
    })
    .describe('The coding-agent CLI the supervisor keeps alive in tmux.'),
  {
    rule: "self.kind != 'custom' || (has(self.command) && size(self.command) > 0)",
    message: 'harness.command is required when harness.kind is custom',
    fieldPath: '.command',
    reason: 'FieldValueRequired',
  },
);

export const PersonaSpec = cel(
  z
    .object({
      instructions: z
        .string()
        .max(65536)
        .optional()
        .describe('The agent\'s persona (CLAUDE.md text), rendered after the team\'s shared rules.'),
      configMapRef: z
        .object({ name: dnsSubdomain.describe('Name of a ConfigMap in the Agent\'s namespace.') })
        .optional()
        .describe('A ConfigMap holding CLAUDE.md, and optionally settings.json, mcp.json and subagents (keys subagent.<name>.md).'),
    })
    .describe('Who the agent is: inline instructions, or a ConfigMap with its persona files.'),
  {
    rule: '!(has(self.instructions) && has(self.configMapRef))',
    message: 'set either persona.instructions or persona.configMapRef, not both',
  },
);

export const RepoSpec = z
  .object({
    name: z
      .string()
      .max(200)
      .regex(/^[A-Za-z0-9][-A-Za-z0-9_.]*\/[A-Za-z0-9_.][-A-Za-z0-9_.]*$/, 'must be owner/repo, e.g. agentsmith/agent-smith')
      .describe('The repository as owner/repo.'),
    url: z
      .string()
      .max(2048)
      .regex(/^(https?|ssh|git|file):\/\/\S+$/, 'must be an https://, ssh://, git:// or file:// URL')
      .optional()
      .describe('Clone URL; defaults to https://github.com/<name>.git, or https://<host>/<name>.git for the GitHub Enterprise Server host of spec.github.apiUrl.'),
    branch: z.string().min(1).max(255).optional().describe('Branch to check out; the remote\'s default branch when unset.'),
  })
  .describe('A repository cloned into /workspace/<repo> by the setup init container.');
export type RepoSpec = z.infer<typeof RepoSpec>;

export const MatrixSpec = z
  .object({
    homeserverUrl: z
      .string()
      .max(2048)
      .regex(/^https?:\/\/[^\s/]+(\/\S*)?$/, 'must be an http(s) URL such as https://matrix.example.org')
      .describe('Base URL of the Matrix homeserver (client-server API).'),
    userId: matrixUserId.describe('The agent\'s own Matrix user id.'),
    accessTokenSecretRef: secretKeyRef.describe('Secret key holding the agent\'s Matrix access token. Only the supervisor reads it.'),
    allowedUsers: z
      .array(matrixUserId)
      .max(256)
      .default([])
      .describe('Users whose every message the agent takes, and whose invites it accepts.'),
    rooms: z
      .array(matrixRoom)
      .max(64)
      .default([])
      .describe('Rooms the agent joins.'),
    approvals: z
      .object({
        room: matrixRoom.optional().describe('Room asked when the current task did not come from Matrix (default: the first of spec.matrix.rooms). The agent joins it.'),
        timeoutSeconds: z.number().int().min(10).max(86400).default(DEFAULT_APPROVAL_TIMEOUT_SECONDS).describe('How long a request waits for an approver; then it is denied and the model is told.'),
      })
      .default({ timeoutSeconds: DEFAULT_APPROVAL_TIMEOUT_SECONDS })
      .describe('Approvals over chat: a tool call the permissions make ask is posted in the room and thread of the current task; an allowedUsers member answers with ✅/❌ or approve/deny (docs/matrix-bridge.md).'),
  })
  .describe('Matrix bridge: a mention in a room reaches the agent, and its answer goes back to the room.');

/** One line of text with no control characters (a git config value, a display name). */
const oneLine = (max: number) => z.string().min(1).max(max).regex(/^[^\x00-\x1f\x7f]+$/, 'must be one line without control characters');

export const GitSpec = z
  .object({
    name: oneLine(256).optional().describe("Author and committer name of the agent's commits (git user.name); default: the Agent's name."),
    email: z
      .string()
      .max(256)
      .regex(/^[^\x00-\x20\x7f@<>]+@[^\x00-\x20\x7f@<>]+$/, 'must be an e-mail address such as devbot@example.org')
      .optional()
      .describe("Author and committer e-mail (git user.email); default: <github.login>@users.noreply.github.com with spec.github, else <agent>@<namespace>.agents.invalid."),
  })
  .describe("The git identity setup writes into the agent's ~/.gitconfig.");

export const GitHubSpec = z
  .object({
    login: z
      .string()
      .max(45)
      .regex(/^[A-Za-z0-9]([-A-Za-z0-9]{0,37}[A-Za-z0-9])?(\[bot\])?$/, 'must be a GitHub login such as octocat or my-app[bot]')
      .describe('The GitHub login the agent opens pull requests as.'),
    apiUrl: z
      .string()
      .regex(/^https:\/\/[^\s/?#]+(\/[^\s?#]*)?$/, 'must be an https:// URL such as https://github.example.com/api/v3')
      .optional()
      .describe('REST API base URL; default https://api.github.com. GitHub Enterprise Server: https://<host>/api/v3. Its host must be in egress.allow, and a credential scoped to it supplies the token.'),
    watchPullRequests: z
      .object({
        enabled: z.boolean().default(true).describe('Rewake the agent when its pull requests get unanswered review comments.'),
        intervalSeconds: z
          .number()
          .int()
          .min(30)
          .max(86400)
          .default(300)
          .describe('Seconds between polls while the CLI is idle.'),
        maxConsecutiveRewakes: z
          .number()
          .int()
          .min(1)
          .max(8)
          .default(DEFAULT_MAX_CONSECUTIVE_REWAKES)
          .describe('PR rewakes in a row without other input (a message, a prompt) after which the agent is left alone until someone else talks to it.'),
      })
      .default({ enabled: true, intervalSeconds: 300, maxConsecutiveRewakes: DEFAULT_MAX_CONSECUTIVE_REWAKES })
      .describe('Pull-request review rewake.'),
  })
  .describe('GitHub identity of the agent.');

export const CredentialSpec = z
  .object({
    name: dnsLabel.describe('Name of the credential; the agent sees only a stub token for it.'),
    hosts: z.array(hostPattern).min(1).max(16).describe('Hosts the real value may be sent to; each must also be allowed by egress.allow.'),
    secretRef: secretKeyRef.describe('Where the real value lives. It is mounted into the egress proxy container only.'),
    scheme: z
      .enum(CREDENTIAL_SCHEMES)
      .default('bearer')
      .describe('How the value is presented: bearer (Authorization: Bearer), basic (git\'s x-access-token), raw (header value as is).'),
    header: z
      .string()
      .min(1)
      .max(128)
      .regex(/^[A-Za-z0-9-]+$/, 'must be an HTTP header name')
      .default('Authorization')
      .describe('Header the stub is swapped in.'),
    require: z
      .boolean()
      .default(false)
      .describe('Refuse requests to these hosts that do not carry the stub (and requests that carry a real key directly).'),
    env: z
      .array(z.string().min(1).max(128).regex(/^[A-Z_][A-Z0-9_]*$/, 'must be an environment variable name: upper-case letters, digits and "_"'))
      .max(8)
      .default([])
      .describe('Environment variables of the agent that hold the stub token, e.g. [GITHUB_TOKEN, GH_TOKEN].'),
    allowWebSocket: z
      .boolean()
      .default(false)
      .describe(
        'Let WebSocket upgrades to these hosts through the egress proxy. Off by default: WebSocket frames are NOT scanned, so a real value a host puts in a frame would reach the agent; the proxy refuses such upgrades (403 websocket_unscanned) unless this is true. The handshake is still checked and swapped.',
      ),
  })
  .describe('A credential swapped in by the egress proxy.');

export const EgressSpec = z
  .object({
    allow: z
      .array(hostPattern)
      .max(100)
      .default([])
      .describe('Hosts the agent may reach (default deny). Exact names, or *.domain for subdomains, optional :port.'),
    allowCidrs: z
      .array(cidr)
      .max(64)
      .default([])
      .describe('Private or in-cluster address ranges the agent may reach; refused by default.'),
    credentials: mapList(z.array(CredentialSpec).max(16).default([]), 'name').describe(
      'Real credentials the proxy swaps in for stub tokens, per destination host.',
    ),
    upstreamCaConfigMapRef: z
      .object({
        name: dnsSubdomain.describe('Name of a ConfigMap in the Agent\'s namespace.'),
        key: z.string().min(1).max(253).regex(/^[-._a-zA-Z0-9]+$/, 'must be a ConfigMap data key').describe('Key inside the ConfigMap holding the PEM bundle, e.g. ca.crt.'),
      })
      .optional()
      .describe(
        'Extra CA certificates (a PEM bundle under one key of a ConfigMap in the Agent\'s namespace) the egress proxy trusts for upstream TLS besides the system roots: a TLS-inspecting corporate proxy, GitHub Enterprise Server on a private CA. Mounted read-only into the egress-proxy container only; a change of the ConfigMap rolls the pod. Every CA in it can vouch for any allowed host, credential hosts included.',
      ),
    enforcement: z
      .enum(ENFORCEMENT_MODES)
      .default('iptables')
      .describe('iptables: transparent redirect that processes cannot bypass (needs NET_ADMIN in an init container). proxy-env: HTTPS_PROXY only.'),
  })
  .describe('Egress policy enforced by the credential-swap proxy sidecar.');

export const EventsSpec = z
  .object({
    natsUrl: z
      .string()
      .max(2048)
      .regex(/^(nats|tls|wss?):\/\/\S+$/, 'must be a nats://, tls:// or ws(s):// URL')
      .describe('NATS server with JetStream.'),
    subjectPrefix: z
      .string()
      .max(128)
      .regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, 'must be NATS subject tokens separated by dots')
      .default(EVENTS_DEFAULTS.subjectPrefix)
      .describe('Events go to <subjectPrefix>.<team>.<agent>.<type>; the team token is "_" for an agent without a team.'),
    stream: z
      .string()
      .max(64)
      .regex(/^[A-Za-z0-9_-]+$/, 'must be a JetStream stream name: letters, digits, "_" and "-"')
      .default(EVENTS_DEFAULTS.stream)
      .describe('JetStream stream holding the events; created when missing with subjects <subjectPrefix>.> and the limits below (an existing stream is used as it is).'),
    maxAgeSeconds: z.number().int().min(0).default(EVENTS_DEFAULTS.maxAgeSeconds).describe('Stream limit: events older than this are removed (seconds; 0 = no age limit). Default 30 days.'),
    maxMessages: z.number().int().min(-1).default(EVENTS_DEFAULTS.maxMessages).describe('Stream limit: most events kept, oldest removed first (-1 = no limit).'),
    maxBytes: z.number().int().min(-1).default(EVENTS_DEFAULTS.maxBytes).describe('Stream limit: most bytes kept, oldest removed first (-1 = no limit). Default 1 GiB.'),
    duplicateWindowSeconds: z
      .number()
      .int()
      .min(1)
      .max(7 * 24 * 3600)
      .default(EVENTS_DEFAULTS.duplicateWindowSeconds)
      .describe('JetStream duplicate window (seconds, at most maxAgeSeconds): an event re-sent within it (same Nats-Msg-Id, after a crash or an outage) is stored once.'),
    outboxMaxEvents: z
      .number()
      .int()
      .min(100)
      .max(1_000_000)
      .default(EVENTS_DEFAULTS.outboxMaxEvents)
      .describe('Most events the on-disk outbox on the home volume holds while NATS is unreachable; beyond it the oldest are dropped (logged and counted).'),
  })
  .describe('Durable event log on NATS JetStream.');

/** Why `clusterWide: true` is refused (the CRD's CEL rule and the operator's SpecValid check say the same). */
export const CLUSTER_WIDE_UNSUPPORTED =
  "clusterWide: true is not supported yet: the operator binds clusterRole in the Agent's namespace only; set clusterWide: false, and for cluster-wide access create a ClusterRoleBinding to the agent's ServiceAccount (named like the Agent) yourself";

export const KubernetesAccessSpec = cel(
  z
    .object({
      clusterRole: dnsSubdomain.optional().describe('A ClusterRole bound to the agent\'s ServiceAccount in its namespace (e.g. view).'),
      clusterWide: z
        .boolean()
        .default(false)
        .describe('Reserved; must be false. Cluster-wide access is not rendered yet (a namespaced Agent cannot own a ClusterRoleBinding); bind it yourself.'),
    })
    .describe('Kubernetes API access for the agent\'s ServiceAccount. None when unset.'),
  { rule: '!has(self.clusterWide) || !self.clusterWide', message: CLUSTER_WIDE_UNSUPPORTED, fieldPath: '.clusterWide', reason: 'FieldValueForbidden' },
);

export const StorageSpec = z
  .object({
    home: positiveQuantity.default('5Gi').describe('Size of the home volume (CLI state, sessions, outbox).'),
    workspace: positiveQuantity.default('20Gi').describe('Size of the /workspace volume (repositories).'),
    storageClassName: dnsSubdomain.optional().describe('StorageClass of both volumes; the cluster default when unset.'),
    retainOnDelete: z
      .boolean()
      .default(true)
      .describe('Keep the volumes when the Agent is deleted (StatefulSet PVC retention policy Retain); Delete when false.'),
  })
  .describe('Persistent volumes of the agent pod.');

const quantityMap = z.record(z.string().max(253), z.string().max(64)).meta({ maxProperties: 16 });

export const PodSpec = z
  .object({
    image: z.string().min(1).max(1024).optional().describe('Agent image; the operator\'s default when unset.'),
    resources: z
      .object({
        requests: quantityMap.optional().describe('Resource requests of the agent container (cpu, memory ...).'),
        limits: quantityMap.optional().describe('Resource limits of the agent container.'),
      })
      .optional()
      .describe('Resources of the agent container.'),
    nodeSelector: z.record(z.string().max(317), z.string().max(63)).optional().meta({ maxProperties: 64 }).describe('Node selector of the pod.'),
    tolerations: z.array(opaque('A core/v1 Toleration.')).max(64).optional().describe('Tolerations of the pod.'),
    affinity: opaque('A core/v1 Affinity.').optional(),
    imagePullSecrets: z
      .array(z.object({ name: dnsSubdomain.describe('Name of a docker-registry Secret.') }))
      .max(16)
      .optional()
      .describe('Pull secrets for the images.'),
    annotations: z.record(z.string().max(317), z.string().max(4096)).optional().meta({ maxProperties: 64 }).describe('Extra annotations on the pod.'),
    labels: z.record(z.string().max(317), z.string().max(63)).optional().meta({ maxProperties: 64 }).describe('Extra labels on the pod.'),
  })
  .describe('Overrides of the agent pod.');

export const AgentSpec = cel(
  z
    .object({
      team: dnsLabel.optional().describe('Agents of one team see each other in a generated roster.'),
      harness: HarnessSpec.default({ kind: 'claude' }),
      permissions: PermissionsSpec.default({ mode: 'unattended', allow: [], ask: [], deny: [] }),
      persona: PersonaSpec.default({}),
      repos: mapList(z.array(RepoSpec).max(32).default([]), 'name').describe('Repositories cloned into /workspace.'),
      primaryRepo: z
        .string()
        .max(200)
        .optional()
        .describe('The repository (owner/repo or just repo) the CLI works in; the first of repos when unset.'),
      matrix: MatrixSpec.optional(),
      github: GitHubSpec.optional(),
      git: GitSpec.default({}),
      egress: EgressSpec.default({ allow: [], allowCidrs: [], credentials: [], enforcement: 'iptables' }),
      events: EventsSpec.optional(),
      kubernetesAccess: KubernetesAccessSpec.optional(),
      storage: StorageSpec.default({ home: '5Gi', workspace: '20Gi', retainOnDelete: true }),
      suspend: z.boolean().default(false).describe('Scale the agent to zero and keep its volumes.'),
      pod: PodSpec.optional(),
    })
    .describe('Desired state of an agent.'),
  {
    rule: "!has(self.primaryRepo) || self.repos.exists(r, r.name == self.primaryRepo || r.name.endsWith('/' + self.primaryRepo))",
    message: 'primaryRepo must name one of spec.repos (owner/repo or repo)',
    fieldPath: '.primaryRepo',
  },
  {
    rule: '!has(self.egress) || !has(self.egress.credentials) || self.egress.credentials.all(c, c.hosts.all(h, self.egress.allow.exists(a, a == h || (a.startsWith(\'*.\') && h.endsWith(a.substring(1))))))',
    message: 'every host of egress.credentials[].hosts must also be allowed by egress.allow',
    fieldPath: '.egress.credentials',
  },
);
export type AgentSpec = z.infer<typeof AgentSpec>;

/** Object metadata fields the operator reads. The API server owns the rest. */
export const ObjectMeta = z
  .object({
    name: z.string(),
    namespace: z.string().optional(),
    uid: z.string().optional(),
    generation: z.number().optional(),
    resourceVersion: z.string().optional(),
    labels: z.record(z.string(), z.string()).optional(),
    annotations: z.record(z.string(), z.string()).optional(),
    deletionTimestamp: z.unknown().optional(),
  })
  .loose();

/** A whole Agent as read from the API server. */
export const Agent = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal(KIND),
  metadata: ObjectMeta,
  spec: AgentSpec,
  status: AgentStatus.optional(),
});
export type Agent = z.infer<typeof Agent>;
