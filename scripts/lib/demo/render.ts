/**
 * The manifests the main job applies for an example agent running for real on the pod
 * runner's node: its persona ConfigMap, the Secrets (Matrix access token, github and
 * anthropic credentials) and the Agent of agents/<folder>/agent.yaml with the demo's
 * overrides patched in. The files under agents/ stay valid for a real cluster; everything
 * loopback-specific is added here:
 *
 * - spec.pod: nodeSelector and toleration of the runner's node;
 * - spec.matrix: the local Synapse, the bot's user id and token Secret, the room, the demo
 *   person as allowed user;
 * - spec.events: the local nats-server;
 * - spec.egress: allowCidrs 127.0.0.1/32 (the proxy's hosts file maps github.com and
 *   api.anthropic.com to loopback ports; the address guard still applies), a github
 *   credential (basic, git's `x-access-token:<stub>`) and an anthropic credential (bearer,
 *   stub in ANTHROPIC_AUTH_TOKEN; with a real key: x-api-key, stub in ANTHROPIC_API_KEY).
 *   Enforcement stays as in agents/ (iptables): the runner skips egress-init and the
 *   pod's HTTPS_PROXY, which the operator sets in both modes, carries the traffic.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { V1ConfigMap, V1Secret } from '@kubernetes/client-node';
import { parse } from 'yaml';
import { POD_RUNNER_LABEL } from '../pod-runner/node.ts';
import { personaConfigMap } from '../persona.ts';
import type { DemoServices } from './services.ts';

/** A loosely typed Agent: the fields this file touches. */
export interface AgentManifest {
  apiVersion: string;
  kind: 'Agent';
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec: Record<string, unknown> & {
    egress?: { allow?: string[]; allowCidrs?: string[]; credentials?: unknown[]; enforcement?: string };
    pod?: Record<string, unknown>;
  };
}

export interface DemoAgentOptions {
  /** Repository root (holds agents/). */
  root: string;
  /** agents/<folder> (e.g. example-devbot). */
  folder: string;
  namespace?: string;
  /** The pod runner's node name: the Agent's pod is placed there. Undefined: leave placement alone (a kwok node). */
  runnerNode?: string | undefined;
}

/** Name of the Secret holding the demo's credentials and the bot's Matrix token for `agent`. */
export const demoSecretName = (agent: string) => `${agent}-demo-credentials`;

/**
 * Renders the persona ConfigMap, the Secret and the patched Agent for one example agent.
 * Without `runnerNode` the Agent is left as in agents/ (plus the persona): it runs on a
 * kwok node and needs none of the services.
 * @throws Error when agents/<folder>/agent.yaml is missing or names a bot the services lack
 */
export function renderDemoAgent(services: DemoServices, opts: DemoAgentOptions): Array<V1ConfigMap | V1Secret | AgentManifest> {
  const namespace = opts.namespace ?? 'default';
  const folder = join(opts.root, 'agents', opts.folder);
  const agent = parse(readFileSync(join(folder, 'agent.yaml'), 'utf8')) as AgentManifest;
  const name = agent.metadata.name;
  agent.metadata.namespace = namespace;
  const persona = personaConfigMap(folder, `${name}-persona`, namespace);
  if (opts.runnerNode === undefined) return [persona, agent];

  const bot = services.bots[name];
  if (!bot) throw new Error(`the demo services have no Matrix account for ${name}`);
  const secret: V1Secret = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: demoSecretName(name), namespace, labels: { 'agentsmith.dev/demo': 'true' } },
    type: 'Opaque',
    stringData: { 'matrix-token': bot.accessToken, github: services.gitPassword, anthropic: services.anthropicToken },
  };
  const ref = (key: string) => ({ name: demoSecretName(name), key });
  const egress = agent.spec.egress ?? {};
  const allow = new Set([...(egress.allow ?? []), 'github.com', 'api.anthropic.com']);
  agent.spec.egress = {
    ...egress,
    allow: [...allow],
    allowCidrs: [...new Set([...(egress.allowCidrs ?? []), '127.0.0.1/32'])],
    credentials: [
      { name: 'github', hosts: ['github.com'], secretRef: ref('github'), scheme: 'basic', env: ['GITHUB_TOKEN', 'GH_TOKEN'] },
      { name: 'anthropic', hosts: ['api.anthropic.com'], secretRef: ref('anthropic'), scheme: services.offline ? 'bearer' : 'raw', ...(services.offline ? {} : { header: 'x-api-key' }), env: [services.offline ? 'ANTHROPIC_AUTH_TOKEN' : 'ANTHROPIC_API_KEY'] },
    ],
  };
  agent.spec.matrix = {
    homeserverUrl: services.homeserverUrl,
    userId: bot.userId,
    accessTokenSecretRef: ref('matrix-token'),
    allowedUsers: [services.user.userId],
    rooms: [services.room.alias],
  };
  agent.spec.events = { natsUrl: services.natsUrl };
  agent.spec.pod = {
    ...agent.spec.pod,
    nodeSelector: { [POD_RUNNER_LABEL]: opts.runnerNode },
    tolerations: [{ key: POD_RUNNER_LABEL, operator: 'Exists', effect: 'NoSchedule' }],
  };
  return [persona, secret, agent];
}
