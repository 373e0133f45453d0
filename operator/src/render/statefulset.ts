import path from 'node:path';
import type { V1Container, V1EnvVar, V1HostAlias, V1PersistentVolumeClaim, V1SecurityContext, V1StatefulSet, V1Volume, V1VolumeMount } from '@kubernetes/client-node';
import {
  CONFIG_DIR,
  CONTRACT_FILE,
  CREDENTIALS_DIR,
  EGRESS_CA_CERT_DIR,
  EGRESS_CA_CERT_NAME,
  EGRESS_CA_DIR,
  HOME_DIR,
  MATRIX_ACCESS_TOKEN_FILE,
  PROXY_DNS_PORT,
  PROXY_HEALTH_PORT,
  PROXY_PORT,
  PROXY_UID,
  SUPERVISOR_PORT,
  TEAM_DIR,
  WORKSPACE_DIR,
} from '../../../agent-image/src/contract/contract.ts';
import { UPSTREAM_CA_ENV, UPSTREAM_CA_FILE } from '../../../agent-image/src/contract/ca-bundle.ts';
import { AGENT_CONTAINER, CONTAINERS, POD_ENV, PROBE_PATHS, SUBCOMMANDS } from '../../../agent-image/src/contract/pod.ts';
import { trustEnv } from '../../../agent-image/src/contract/trust.ts';
import type { Agent } from '../api/agent.ts';
import { ANNOTATION_CONFIG_HASH } from '../api/constants.ts';
import { childMeta, childNames, selectorLabels, standardLabels } from './meta.ts';
import type { ApiServerAddress, ServiceAddress } from './networkpolicy.ts';
import { rosterName } from './roster.ts';

/** Inputs of the StatefulSet renderer that do not come from the Agent. */
export interface StatefulSetOptions {
  /** Default agent image (spec.pod.image overrides it). */
  image: string;
  /** Hash of everything the pod reads at start (`configHash`); a change rolls the pod. */
  configHash: string;
  /** Name of the Secret holding the egress CA (`ca.crt`, `ca.key`). */
  egressCaSecret: string;
  /**
   * Cluster IPs of the in-cluster Services the supervisor talks to (NATS, Matrix); in
   * iptables mode they become the pod's hostAliases ({@link serviceHostAliases}), so a
   * changed cluster IP rolls the pod. Default none.
   */
  serviceAddresses?: readonly ServiceAddress[];
  /** The API server's cluster IPs (spec.kubernetesAccess): they join NO_PROXY, so kubectl dials it directly. */
  apiServer?: ApiServerAddress;
}

/** UID and GID the agent's processes run as. */
export const AGENT_UID = 1000;

const VOLUME_CONFIG = 'config';
const VOLUME_HOME = 'home';
const VOLUME_WORKSPACE = 'workspace';
const VOLUME_CA_CERT = 'egress-ca-cert';
const VOLUME_CA = 'egress-ca';
const VOLUME_CREDENTIALS = 'credentials';
const VOLUME_TEAM = 'team';
const VOLUME_MATRIX_TOKEN = 'matrix-token';
const VOLUME_UPSTREAM_CA = 'upstream-ca';

/** Mounts of the containers that run the agent's own code (setup, agent): no key, no credential. */
function agentMounts(agent: Agent): V1VolumeMount[] {
  return [
    ...(agent.spec.team ? [{ name: VOLUME_TEAM, mountPath: TEAM_DIR, readOnly: true }] : []),
    { name: VOLUME_CONFIG, mountPath: CONFIG_DIR, readOnly: true },
    { name: VOLUME_HOME, mountPath: HOME_DIR },
    { name: VOLUME_WORKSPACE, mountPath: WORKSPACE_DIR },
    { name: VOLUME_CA_CERT, mountPath: EGRESS_CA_CERT_DIR, readOnly: true },
  ];
}

/**
 * The Matrix access token (spec.matrix.accessTokenSecretRef, that one key) for the
 * supervisor's bridge: mounted into the agent container only, read-only, at
 * MATRIX_ACCESS_TOKEN_FILE. Not an environment variable, so nothing the CLI spawns inherits it.
 */
function matrixTokenMount(agent: Agent): V1VolumeMount[] {
  return agent.spec.matrix ? [{ name: VOLUME_MATRIX_TOKEN, mountPath: path.posix.dirname(MATRIX_ACCESS_TOKEN_FILE), readOnly: true }] : [];
}

/** Non-root, no privilege escalation, no capabilities, default seccomp. */
function restricted(uid: number): V1SecurityContext {
  return {
    runAsNonRoot: true,
    runAsUser: uid,
    runAsGroup: uid,
    allowPrivilegeEscalation: false,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  };
}

function volumeClaim(name: string, size: string, storageClassName: string | undefined): V1PersistentVolumeClaim {
  return {
    metadata: { name },
    spec: {
      accessModes: ['ReadWriteOnce'],
      resources: { requests: { storage: size } },
      ...(storageClassName ? { storageClassName } : {}),
    },
  };
}

/**
 * Environment that sends the agent's HTTP(S) to the proxy as an explicit proxy, in both
 * enforcement modes. In iptables mode it is not the enforcement (the firewall is): clients
 * hand the proxy the name (CONNECT host:443) and need no DNS; clients that ignore
 * HTTPS_PROXY resolve through the proxy's DNS listener (egress-init sends port 53 there;
 * allowed and declared names only) and are redirected to the proxy all the same.
 * NO_PROXY: loopback, in-cluster names, the spec's allowCidrs and the API server's cluster
 * IPs (`apiServerIPs`, with spec.kubernetesAccess: in-cluster kubeconfigs dial
 * KUBERNETES_SERVICE_HOST, an address, which the proxy would refuse), which go direct.
 */
function proxyEnv(allowCidrs: readonly string[], apiServerIPs: readonly string[]): V1EnvVar[] {
  const url = `http://127.0.0.1:${PROXY_PORT}`;
  const noProxy = [...new Set(['localhost', '127.0.0.1', '::1', '.svc', '.cluster.local', ...allowCidrs, ...apiServerIPs])].join(',');
  return ['HTTPS_PROXY', 'HTTP_PROXY', 'https_proxy', 'http_proxy']
    .map((name) => ({ name, value: url }))
    .concat([{ name: 'NO_PROXY', value: noProxy }, { name: 'no_proxy', value: noProxy }]);
}

/**
 * Environment that makes common TLS stacks trust the egress CA, for every process of the
 * agent and setup containers, `kubectl exec` included: the contract's trust variables
 * (contract/trust.ts), the same the supervisor gives the tmux panes.
 */
function trustEnvVars(): V1EnvVar[] {
  return Object.entries(trustEnv()).map(([name, value]) => ({ name, value }));
}

/**
 * The egress containers (DESIGN.md pod layout): `egress-init` (iptables mode only) and
 * the `egress-proxy` native sidecar. Only the proxy mounts the CA key, the real
 * credentials and the extra upstream CAs (spec.egress.upstreamCaConfigMapRef, at
 * UPSTREAM_CA_FILE, named by AGENT_SMITH_UPSTREAM_CA); only egress-init has NET_ADMIN, and
 * only to install the redirect.
 */
function egressContainers(agent: Agent, image: string, contractEnv: V1EnvVar[]): V1Container[] {
  const { egress } = agent.spec;
  const out: V1Container[] = [];
  if (egress.enforcement === 'iptables') {
    out.push({
      name: CONTAINERS.egressInit,
      image,
      command: ['agent-smith', SUBCOMMANDS.egressInit],
      env: [
        ...contractEnv,
        { name: POD_ENV.proxyUid, value: String(PROXY_UID) },
        { name: POD_ENV.proxyPort, value: String(PROXY_PORT) },
        { name: POD_ENV.proxyDnsPort, value: String(PROXY_DNS_PORT) },
      ],
      volumeMounts: [{ name: VOLUME_CONFIG, mountPath: CONFIG_DIR, readOnly: true }],
      securityContext: {
        // iptables needs root with NET_ADMIN (and NET_RAW for ip6tables) inside the pod's
        // network namespace; nothing else runs with either.
        runAsNonRoot: false,
        runAsUser: 0,
        allowPrivilegeEscalation: false,
        capabilities: { drop: ['ALL'], add: ['NET_ADMIN', 'NET_RAW'] },
        seccompProfile: { type: 'RuntimeDefault' },
      },
    });
  }
  out.push({
    name: CONTAINERS.egressProxy,
    image,
    command: ['agent-smith', SUBCOMMANDS.egressProxy],
    // A native sidecar: started before the next init containers, kept running, stopped last.
    restartPolicy: 'Always',
    env: [...contractEnv, ...(egress.upstreamCaConfigMapRef ? [{ name: UPSTREAM_CA_ENV, value: UPSTREAM_CA_FILE }] : [])],
    ports: [
      { name: 'proxy', containerPort: PROXY_PORT, protocol: 'TCP' },
      { name: 'proxy-health', containerPort: PROXY_HEALTH_PORT, protocol: 'TCP' },
    ],
    volumeMounts: [
      { name: VOLUME_CONFIG, mountPath: CONFIG_DIR, readOnly: true },
      { name: VOLUME_CA, mountPath: EGRESS_CA_DIR, readOnly: true },
      ...(egress.credentials.length ? [{ name: VOLUME_CREDENTIALS, mountPath: CREDENTIALS_DIR, readOnly: true }] : []),
      ...(egress.upstreamCaConfigMapRef ? [{ name: VOLUME_UPSTREAM_CA, mountPath: path.posix.dirname(UPSTREAM_CA_FILE), readOnly: true }] : []),
    ],
    securityContext: restricted(PROXY_UID),
    startupProbe: { httpGet: { path: PROBE_PATHS.readyz, port: 'proxy-health' }, periodSeconds: 1, failureThreshold: 30 },
    readinessProbe: { httpGet: { path: PROBE_PATHS.readyz, port: 'proxy-health' }, periodSeconds: 10 },
    livenessProbe: { httpGet: { path: PROBE_PATHS.healthz, port: 'proxy-health' }, periodSeconds: 20, failureThreshold: 3 },
    // It idles near 100 MB and stays near 125 MB after 10,000 distinct names
    // (test/bench/proxy-memory.ts): request what it uses, so the scheduler counts it.
    resources: { requests: { cpu: '20m', memory: '128Mi' }, limits: { memory: '256Mi' } },
  });
  return out;
}

function volumes(agent: Agent, names: ReturnType<typeof childNames>, egressCaSecret: string): V1Volume[] {
  const out: V1Volume[] = [
    { name: VOLUME_CONFIG, configMap: { name: names.configMap } },
    { name: VOLUME_CA_CERT, secret: { secretName: egressCaSecret, items: [{ key: EGRESS_CA_CERT_NAME, path: EGRESS_CA_CERT_NAME }], defaultMode: 0o444 } },
    { name: VOLUME_CA, secret: { secretName: egressCaSecret, defaultMode: 0o440 } },
  ];
  if (agent.spec.matrix) {
    const ref = agent.spec.matrix.accessTokenSecretRef;
    out.push({ name: VOLUME_MATRIX_TOKEN, secret: { secretName: ref.name, items: [{ key: ref.key, path: path.posix.basename(MATRIX_ACCESS_TOKEN_FILE) }], defaultMode: 0o440 } });
  }
  if (agent.spec.team) {
    out.push({ name: VOLUME_TEAM, configMap: { name: rosterName(agent.spec.team), optional: true } });
  }
  const creds = agent.spec.egress.credentials;
  if (creds.length) {
    out.push({
      name: VOLUME_CREDENTIALS,
      projected: {
        defaultMode: 0o440,
        sources: creds.map((c) => ({ secret: { name: c.secretRef.name, items: [{ key: c.secretRef.key, path: c.name }] } })),
      },
    });
  }
  const upstreamCa = agent.spec.egress.upstreamCaConfigMapRef;
  if (upstreamCa) {
    out.push({ name: VOLUME_UPSTREAM_CA, configMap: { name: upstreamCa.name, items: [{ key: upstreamCa.key, path: path.posix.basename(UPSTREAM_CA_FILE) }], defaultMode: 0o444 } });
  }
  return out;
}

/**
 * What differs between the volume claim templates of `desired` and those of the live
 * StatefulSet (name, size, StorageClass), as one line; `undefined` when they agree.
 * A StatefulSet's volumeClaimTemplates are immutable, so the reconciler keeps the live
 * ones and reports this instead of failing the whole apply. Pure.
 */
export function volumeClaimDrift(desired: V1StatefulSet, live: V1StatefulSet): string | undefined {
  const describe = (t: V1PersistentVolumeClaim) =>
    `${t.metadata?.name}=${t.spec?.resources?.requests?.storage ?? '?'}${t.spec?.storageClassName ? `(${t.spec.storageClassName})` : ''}`;
  const liveByName = new Map((live.spec?.volumeClaimTemplates ?? []).map((t) => [t.metadata?.name, t]));
  const diffs: string[] = [];
  for (const want of desired.spec?.volumeClaimTemplates ?? []) {
    const have = liveByName.get(want.metadata?.name);
    if (!have) {
      diffs.push(`${describe(want)} is new`);
      continue;
    }
    const sizeDiffers = have.spec?.resources?.requests?.storage !== want.spec?.resources?.requests?.storage;
    // An unset class in the spec means "the cluster default", which the API server may have filled in.
    const classDiffers = want.spec?.storageClassName !== undefined && have.spec?.storageClassName !== want.spec.storageClassName;
    if (sizeDiffers || classDiffers) diffs.push(`${describe(have)} -> ${describe(want)}`);
  }
  return diffs.length ? diffs.join(', ') : undefined;
}

/**
 * Every spelling of an in-cluster Service name the pod's /etc/hosts should carry for
 * `host` (a `<svc>.<ns>.svc[.cluster.local]` name as the spec writes it,
 * render/networkpolicy.ts inClusterService): the host itself, then its `.svc` and
 * `.svc.cluster.local` forms, without duplicates, e.g. `nats.demo.svc` ->
 * `['nats.demo.svc', 'nats.demo.svc.cluster.local']`. Any other host is returned alone. No
 * trailing-dot form: the API server refuses one in hostAliases (a DNS-1123 subdomain). Pure.
 */
export function serviceHostnames(host: string): string[] {
  const m = /^(.+\.svc)(\.cluster\.local)?$/.exec(host);
  if (!m?.[1]) return [host];
  return [...new Set([host, m[1], `${m[1]}.cluster.local`])];
}

/**
 * The pod's `spec.hostAliases` for the in-cluster Services the spec names (the NATS server
 * of spec.events.natsUrl, the Matrix homeserver of spec.matrix.homeserverUrl;
 * render/networkpolicy.ts inClusterServices) as the reconciler resolved them
 * (reconcile/references.ts resolveServiceAddresses): one entry per cluster IP, naming every
 * {@link serviceHostnames} spelling of every Service at that IP, in the order of `services`.
 * The kubelet writes them into every container's /etc/hosts.
 *
 * Only in iptables mode: there the pod's DNS is the proxy's DNS listener (egress-init
 * sends port 53 to it), which resolves these Services too (contract
 * egress.inClusterHosts) but answers SERVFAIL until the proxy has loaded its config; the
 * aliases let the supervisor's own NATS and Matrix connections (direct: NO_PROXY holds
 * `.svc`) resolve without it. Under proxy-env the pod keeps the cluster's DNS and gets
 * none. Nothing else gets an alias.
 *
 * They do not affect the egress proxy: it looks names up as absolute names (`"host."`,
 * agent-image/src/programs/proxy/policy.ts resolveChecked), which glibc does not match against
 * /etc/hosts, so the proxy's resolution and its address checks stay DNS's.
 *
 * The aliases are part of the pod template: when a Service's cluster IP changes (the
 * Service is deleted and recreated), the next reconcile that reads it renders a new
 * template and the StatefulSet rolls the pod (the IP is in allowCidrs too, so the config
 * hash changes with it). Pure.
 */
export function serviceHostAliases(agent: Agent, services: readonly ServiceAddress[]): V1HostAlias[] {
  if (agent.spec.egress.enforcement !== 'iptables') return [];
  const byIp = new Map<string, string[]>();
  for (const s of services) {
    for (const ip of s.addresses) {
      const names = byIp.get(ip) ?? [];
      for (const n of serviceHostnames(s.host)) if (!names.includes(n)) names.push(n);
      byIp.set(ip, names);
    }
  }
  return [...byIp].map(([ip, hostnames]) => ({ ip, hostnames }));
}

/**
 * The agent's StatefulSet (DESIGN.md "What the operator renders"): one replica (zero when
 * suspended); init containers `egress-init` (iptables mode), the `egress-proxy` native
 * sidecar and `setup`; the `agent` container (tini -> `agent-smith supervise`); the config
 * ConfigMap, the egress CA and credential volumes; in iptables mode the hostAliases of the
 * in-cluster Services the spec names ({@link serviceHostAliases}); and the `home` and
 * `workspace` volume claim templates, whose PVCs are kept or deleted with the StatefulSet
 * as `spec.storage.retainOnDelete` says. Pure.
 */
export function renderStatefulSet(agent: Agent, opts: StatefulSetOptions): V1StatefulSet {
  const { spec } = agent;
  const names = childNames(agent.metadata.name);
  const image = spec.pod?.image ?? opts.image;
  const contractEnv: V1EnvVar[] = [
    { name: POD_ENV.contract, value: `${CONFIG_DIR}/${CONTRACT_FILE}` },
    { name: POD_ENV.podName, valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
    { name: POD_ENV.namespace, valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
  ];
  const env: V1EnvVar[] = [
    { name: 'HOME', value: HOME_DIR },
    ...contractEnv,
    ...trustEnvVars(),
    ...proxyEnv(spec.egress.allowCidrs, opts.apiServer?.clusterIPs ?? []),
  ];
  const setup: V1Container = {
    name: CONTAINERS.setup,
    image,
    command: ['agent-smith', SUBCOMMANDS.setup],
    env,
    volumeMounts: agentMounts(agent),
    securityContext: restricted(AGENT_UID),
  };
  const agentContainer: V1Container = {
    name: AGENT_CONTAINER,
    image,
    command: ['tini', '-g', '--', 'agent-smith', SUBCOMMANDS.agent],
    env,
    workingDir: WORKSPACE_DIR,
    ports: [{ name: 'http', containerPort: SUPERVISOR_PORT, protocol: 'TCP' }],
    volumeMounts: [...agentMounts(agent), ...matrixTokenMount(agent)],
    securityContext: restricted(AGENT_UID),
    readinessProbe: { httpGet: { path: PROBE_PATHS.readyz, port: 'http' }, periodSeconds: 10, failureThreshold: 3 },
    livenessProbe: { httpGet: { path: PROBE_PATHS.healthz, port: 'http' }, periodSeconds: 20, failureThreshold: 6, initialDelaySeconds: 10 },
    ...(spec.pod?.resources ? { resources: spec.pod.resources } : {}),
    stdin: true,
    tty: true,
  };
  const retain = spec.storage.retainOnDelete ? 'Retain' : 'Delete';
  const aliases = serviceHostAliases(agent, opts.serviceAddresses ?? []);
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: childMeta(agent, names.statefulSet, 'agent'),
    spec: {
      replicas: spec.suspend ? 0 : 1,
      serviceName: names.service,
      selector: { matchLabels: selectorLabels(agent) },
      persistentVolumeClaimRetentionPolicy: { whenDeleted: retain, whenScaled: 'Retain' },
      template: {
        metadata: {
          labels: { ...(spec.pod?.labels ?? {}), ...standardLabels(agent, 'agent') },
          annotations: { ...(spec.pod?.annotations ?? {}), [ANNOTATION_CONFIG_HASH]: opts.configHash },
        },
        spec: {
          serviceAccountName: names.serviceAccount,
          automountServiceAccountToken: agent.spec.kubernetesAccess?.clusterRole !== undefined,
          securityContext: { runAsNonRoot: true, runAsUser: AGENT_UID, runAsGroup: AGENT_UID, fsGroup: AGENT_UID, seccompProfile: { type: 'RuntimeDefault' } },
          terminationGracePeriodSeconds: 60,
          initContainers: [...egressContainers(agent, image, contractEnv), setup],
          containers: [agentContainer],
          volumes: volumes(agent, names, opts.egressCaSecret),
          ...(spec.pod?.nodeSelector ? { nodeSelector: spec.pod.nodeSelector } : {}),
          ...(spec.pod?.tolerations ? { tolerations: spec.pod.tolerations } : {}),
          ...(spec.pod?.affinity ? { affinity: spec.pod.affinity } : {}),
          ...(spec.pod?.imagePullSecrets ? { imagePullSecrets: spec.pod.imagePullSecrets } : {}),
          ...(aliases.length ? { hostAliases: aliases } : {}),
        },
      },
      volumeClaimTemplates: [
        volumeClaim(VOLUME_HOME, spec.storage.home, spec.storage.storageClassName),
        volumeClaim(VOLUME_WORKSPACE, spec.storage.workspace, spec.storage.storageClassName),
      ],
    },
  };
}
