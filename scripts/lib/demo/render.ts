/**
 * The manifests the main job applies for an example agent running for real on the local
 * cluster's real node: its persona ConfigMap, the Secrets (Matrix access token, github and
 * anthropic credentials), a ConfigMap with the CA of the stand-ins for public hosts, and the
 * Agent of agents/<folder>/agent.yaml with the demo's overrides patched in. The files under
 * agents/ stay valid for a real cluster; everything specific to this machine is added here,
 * all of it through ordinary Agent fields:
 *
 * - spec.pod.nodeSelector: the real node (the cluster's other nodes are kwok's, which run nothing);
 * - spec.matrix: the demo Synapse by its in-cluster name, the bot's user id and token
 *   Secret, the room, the demo person as allowed user;
 * - spec.events: the demo nats-server by its in-cluster name;
 * - spec.egress: allowCidrs holding the ClusterIPs that github.com, api.github.com and
 *   api.anthropic.com resolve to in this cluster (the proxy refuses private addresses not
 *   listed there), `upstreamCaConfigMapRef` trusting the stand-ins' CA (as a user behind TLS
 *   inspection would), a github credential for github.com and api.github.com (the bot's
 *   token in the GitHub fake, which the git server also takes as its password, as one
 *   GitHub token serves git and the API: git's `x-access-token:<stub>`, gh's `token <stub>`
 *   from GH_TOKEN) and an anthropic credential for the fake model (bearer, stub in
 *   ANTHROPIC_AUTH_TOKEN). Enforcement stays as in agents/ (iptables): egress-init installs
 *   the pod's firewall.
 * - spec.github: the bot's login in the GitHub fake, its pull requests watched every 30 s
 *   (the minimum) so a reviewer's comment wakes it soon.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { V1ConfigMap, V1Secret } from '@kubernetes/client-node';
import { parse } from 'yaml';
import { personaConfigMap } from '../persona.ts';
import type { InClusterDemo } from './in-cluster.ts';
import type { DemoServices } from './services.ts';

/** A loosely typed Agent: the fields this file touches. */
export interface AgentManifest {
  apiVersion: string;
  kind: 'Agent';
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec: Record<string, unknown> & {
    egress?: { allow?: string[]; allowCidrs?: string[]; credentials?: unknown[]; enforcement?: string; upstreamCaConfigMapRef?: { name: string; key: string } };
    pod?: Record<string, unknown>;
  };
}

export interface DemoAgentOptions {
  /** Repository root (holds agents/). */
  root: string;
  /** agents/<folder> (e.g. example-devbot). */
  folder: string;
  namespace?: string;
  /** The real node's name: the Agent's pod is placed there. Undefined: the Agent as in agents/, placed on a kwok node (label `type: kwok`), where nothing runs. */
  node?: string | undefined;
  /** Where pods reach the demo services (in-cluster.ts); required with `node`. */
  inCluster?: InClusterDemo | undefined;
}

/** Name of the Secret holding the demo's credentials and the bot's Matrix token for `agent`. */
export const demoSecretName = (agent: string) => `${agent}-demo-credentials`;
/** Name of the ConfigMap holding the stand-ins' CA (key `ca.crt`) for `agent`. */
export const demoUpstreamCaName = (agent: string) => `${agent}-demo-upstream-ca`;

/**
 * Renders the persona ConfigMap, the Secret, the CA ConfigMap and the patched Agent for one
 * example agent. Without `node` the Agent is left as in agents/ (plus the persona) but for
 * a nodeSelector of the kwok nodes: it "runs" there and needs none of the services.
 * @throws Error when agents/<folder>/agent.yaml is missing, names a bot the services lack, or `inCluster` is missing
 */
export function renderDemoAgent(services: DemoServices, opts: DemoAgentOptions): Array<V1ConfigMap | V1Secret | AgentManifest> {
  const namespace = opts.namespace ?? 'default';
  const folder = join(opts.root, 'agents', opts.folder);
  const agent = parse(readFileSync(join(folder, 'agent.yaml'), 'utf8')) as AgentManifest;
  const name = agent.metadata.name;
  agent.metadata.namespace = namespace;
  const persona = personaConfigMap(folder, `${name}-persona`, namespace);
  if (opts.node === undefined) {
    agent.spec.pod = { ...agent.spec.pod, nodeSelector: { type: 'kwok' } };
    return [persona, agent];
  }
  const inCluster = opts.inCluster;
  if (!inCluster) throw new Error('renderDemoAgent: a real node needs the in-cluster addresses of the demo services (publishDemoServices)');

  const bot = services.bots[name];
  if (!bot) throw new Error(`the demo services have no Matrix account for ${name}`);
  const githubUser = services.github.bots[name];
  if (!githubUser) throw new Error(`the demo services have no GitHub user for ${name}`);
  const secret: V1Secret = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: demoSecretName(name), namespace, labels: { 'agentsmith.dev/demo': 'true' } },
    type: 'Opaque',
    stringData: { 'matrix-token': bot.accessToken, github: githubUser.token, anthropic: services.anthropicToken },
  };
  const ca: V1ConfigMap = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: demoUpstreamCaName(name), namespace, labels: { 'agentsmith.dev/demo': 'true' } },
    data: { 'ca.crt': services.upstreamCaPem },
  };
  const ref = (key: string) => ({ name: demoSecretName(name), key });
  const egress = agent.spec.egress ?? {};
  const allow = new Set([...(egress.allow ?? []), 'github.com', 'api.github.com', 'api.anthropic.com']);
  const standIns = Object.values(inCluster.publicStandIns).map((ip) => `${ip}/32`);
  agent.spec.egress = {
    ...egress,
    allow: [...allow],
    allowCidrs: [...new Set([...(egress.allowCidrs ?? []), ...standIns])],
    upstreamCaConfigMapRef: { name: demoUpstreamCaName(name), key: 'ca.crt' },
    credentials: [
      { name: 'github', hosts: ['github.com', 'api.github.com'], secretRef: ref('github'), scheme: 'basic', env: ['GH_TOKEN', 'GITHUB_TOKEN'] },
      { name: 'anthropic', hosts: ['api.anthropic.com'], secretRef: ref('anthropic'), scheme: 'bearer', env: ['ANTHROPIC_AUTH_TOKEN'] },
    ],
  };
  agent.spec.matrix = {
    homeserverUrl: inCluster.homeserverUrl,
    userId: bot.userId,
    accessTokenSecretRef: ref('matrix-token'),
    allowedUsers: [services.user.userId],
    rooms: [services.room.alias],
  };
  agent.spec.events = { natsUrl: inCluster.natsUrl };
  const github = (agent.spec.github ?? {}) as Record<string, unknown>;
  agent.spec.github = { ...github, login: githubUser.login, watchPullRequests: { ...(github.watchPullRequests as Record<string, unknown> | undefined), enabled: true, intervalSeconds: 30 } };
  agent.spec.pod = { ...agent.spec.pod, nodeSelector: { 'kubernetes.io/hostname': opts.node } };
  return [persona, secret, ca, agent];
}
