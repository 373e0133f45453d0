import { createHash } from 'node:crypto';
import type { V1ConfigMap } from '@kubernetes/client-node';
import { CONTRACT_FILE, CONTRACT_VERSION, githubWebUrl, PROXY_PORT, WORKSPACE_DIR, type PodContractInput } from '../../../agent-image/src/contract/contract.ts';
import type { Agent } from '../api/agent.ts';
import { childMeta, childNames } from './meta.ts';
import { directCidrs, type ApiServerAddress, type ServiceAddress } from './networkpolicy.ts';
import type { AssembledPersona } from './persona.ts';
import { credentialStub } from './stubs.ts';

/** ConfigMap key of a subagent definition (ConfigMap keys cannot hold `/`). */
export function subagentKey(name: string): string {
  return `subagent.${name}.md`;
}

/** The directory a repository is cloned into: /workspace/<repo>. */
export function repoDir(name: string): string {
  return `${WORKSPACE_DIR}/${name.split('/')[1] ?? name}`;
}

/**
 * The git identity of an Agent's commits: spec.git, with defaults the name of the Agent and
 * an address that never reaches anyone by accident: GitHub's noreply address of its login
 * (GitHub attributes commits to the account by it), else one under the reserved `.invalid`
 * TLD (RFC 2606). Pure.
 */
export function gitIdentity(agent: Agent): { name: string; email: string } {
  const { git, github } = agent.spec;
  const name = git.name ?? agent.metadata.name;
  const email = git.email ?? (github ? `${github.login}@users.noreply.github.com` : `${agent.metadata.name}@${agent.metadata.namespace ?? 'default'}.agents.invalid`);
  return { name, email };
}

/**
 * The contract's `egress.inClusterHosts`: the in-cluster Service names the spec declares
 * whose cluster IPs the reconciler resolved into allowCidrs (so a connection to them goes
 * direct, past the proxy): the NATS server of spec.events.natsUrl and the homeserver of
 * spec.matrix.homeserverUrl as the spec writes them (`serviceAddresses`,
 * render/networkpolicy.ts inClusterServices), and `kubernetes.default.svc` when the API
 * server of spec.kubernetesAccess is resolved (`apiServer`). The proxy's DNS listener
 * resolves them. Only under `enforcement: iptables` (the only mode whose DNS the proxy
 * answers) and only when there is one, so other contracts (and their config hash) are
 * unchanged. MCP servers of the persona's mcp.json are not among them: their Services
 * are not resolved into allowCidrs (the persona is read after the Service addresses are
 * gathered), so a name alone would resolve to an address the proxy then refuses. Pure.
 */
export function inClusterHostsField(agent: Agent, serviceAddresses: readonly ServiceAddress[], apiServer?: ApiServerAddress): { inClusterHosts?: string[] } {
  if (agent.spec.egress.enforcement !== 'iptables') return {};
  const hosts = [...new Set([...serviceAddresses.filter((s) => s.addresses.length).map((s) => s.host), ...(apiServer?.clusterIPs.length ? ['kubernetes.default.svc'] : [])])];
  return hosts.length ? { inClusterHosts: hosts } : {};
}

/**
 * The pod contract (agent-image/src/contract) for an Agent. `serviceAddresses` (the cluster
 * IPs of the NATS and Matrix Services the spec names) and the cluster IPs of the API server
 * (`apiServer`, for spec.kubernetesAccess) join egress.allowCidrs, which egress-init lets
 * through directly. Pure.
 */
export function renderContract(
  agent: Agent,
  persona: AssembledPersona,
  egressCaKeyPem: string,
  serviceAddresses: readonly ServiceAddress[] = [],
  apiServer?: ApiServerAddress,
): PodContractInput {
  const agentRef = `${agent.metadata.namespace ?? 'default'}/${agent.metadata.name}`;
  const { spec } = agent;
  const repos = spec.repos.map((r) => ({
    name: r.name,
    // GitHub.com, or the GitHub Enterprise Server host of spec.github.apiUrl.
    url: r.url ?? `${githubWebUrl(spec.github?.apiUrl)}/${r.name}.git`,
    ...(r.branch ? { branch: r.branch } : {}),
    dir: repoDir(r.name),
  }));
  const primary = spec.primaryRepo
    ? repos.find((r) => r.name === spec.primaryRepo || r.name.endsWith(`/${spec.primaryRepo}`))
    : repos[0];
  return {
    version: CONTRACT_VERSION,
    agent: { name: agent.metadata.name, namespace: agent.metadata.namespace ?? 'default', ...(spec.team ? { team: spec.team } : {}) },
    git: gitIdentity(agent),
    // spec.permissions as it is (the API server filled in the defaults); the harness maps it (plugins/harness).
    permissions: agent.spec.permissions,
    harness: {
      kind: spec.harness.kind,
      ...(spec.harness.model ? { model: spec.harness.model } : {}),
      args: spec.harness.args ?? [],
      ...(spec.harness.kind === 'custom' && spec.harness.command ? { command: spec.harness.command } : {}),
    },
    repos,
    workdir: primary?.dir ?? WORKSPACE_DIR,
    files: {
      claudeMd: 'CLAUDE.md',
      settingsJson: 'settings.json',
      mcpJson: 'mcp.json',
      subagents: Object.fromEntries(Object.keys(persona.subagents).sort().map((n) => [n, subagentKey(n)])),
    },
    ...(spec.matrix
      ? {
          matrix: {
            homeserverUrl: spec.matrix.homeserverUrl,
            userId: spec.matrix.userId,
            allowedUsers: spec.matrix.allowedUsers,
            rooms: spec.matrix.rooms,
            approvals: spec.matrix.approvals,
          },
        }
      : {}),
    ...(spec.github ? { github: spec.github } : {}),
    ...(spec.events ? { events: spec.events } : {}),
    egress: {
      allow: spec.egress.allow,
      allowCidrs: directCidrs(spec.egress.allowCidrs, serviceAddresses, apiServer),
      enforcement: spec.egress.enforcement,
      proxyPort: PROXY_PORT,
      ...inClusterHostsField(agent, serviceAddresses, apiServer),
      credentials: spec.egress.credentials.map((c) => ({
        name: c.name,
        hosts: c.hosts,
        scheme: c.scheme,
        header: c.header,
        stub: credentialStub(egressCaKeyPem, agentRef, c.name),
        require: c.require,
        env: c.env,
        // Written only when on, so a contract (and the pod's config hash) without it is unchanged.
        ...(c.allowWebSocket ? { allowWebSocket: true } : {}),
      })),
    },
  };
}

/** `<agent>-config`: the pod contract and the assembled persona. Pure. */
export function renderConfigMap(
  agent: Agent,
  persona: AssembledPersona,
  egressCaKeyPem: string,
  serviceAddresses: readonly ServiceAddress[] = [],
  apiServer?: ApiServerAddress,
): V1ConfigMap {
  const data: Record<string, string> = {
    [CONTRACT_FILE]: JSON.stringify(renderContract(agent, persona, egressCaKeyPem, serviceAddresses, apiServer), null, 2) + '\n',
    'CLAUDE.md': persona.claudeMd,
    'settings.json': persona.settingsJson,
    'mcp.json': persona.mcpJson,
  };
  for (const name of Object.keys(persona.subagents).sort()) data[subagentKey(name)] = persona.subagents[name] ?? '';
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: childMeta(agent, childNames(agent.metadata.name).configMap, 'config'),
    data,
  };
}

/**
 * SHA-256 (hex, 16 chars) of a ConfigMap's data, in key order, and of any `extra` inputs
 * the pod reads at start (the egress CA certificate): the pod template's config hash.
 */
export function configHash(cm: V1ConfigMap, ...extra: string[]): string {
  const h = createHash('sha256');
  for (const e of extra) h.update(e).update('\0');
  for (const key of Object.keys(cm.data ?? {}).sort()) h.update(key).update('\0').update(cm.data?.[key] ?? '').update('\0');
  return h.digest('hex').slice(0, 16);
}
