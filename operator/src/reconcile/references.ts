/**
 * Gathering what an Agent refers to (its persona ConfigMap, its credential Secrets)
 * before anything is decided. Each check returns a condition, so a user sees every
 * broken reference at once, with the field and the fix; none throws for a missing
 * object (API errors other than 404 do throw, and are retried).
 */
import type { V1ConfigMap, V1Secret } from '@kubernetes/client-node';
import { parseCaBundle } from '../../../agent-image/src/contract/ca-bundle.ts';
import type { Agent } from '../api/agent.ts';
import { ConditionType, Reason } from '../api/constants.ts';
import type { Clients } from '../kube/clients.ts';
import { inClusterServices, type ApiServerAddress, type ServiceAddress } from '../render/networkpolicy.ts';
import { personaJsonProblem, type PersonaFiles } from '../render/persona.ts';
import { httpStatusOf } from '../runtime/errors.ts';
import type { ConditionInput } from './conditions.ts';

async function readOrUndefined<T>(read: () => Promise<T>): Promise<T | undefined> {
  try {
    return await read();
  } catch (err) {
    if (httpStatusOf(err) === 404) return undefined;
    throw err;
  }
}

/** PersonaResolved, and the persona files when resolved (inline instructions, or the ConfigMap's keys). */
export async function resolvePersona(clients: Clients, agent: Agent): Promise<{ condition: ConditionInput; files?: PersonaFiles }> {
  const { persona } = agent.spec;
  const type = ConditionType.PersonaResolved;
  if (!persona.configMapRef) {
    return {
      condition: { type, status: 'True', reason: Reason.AsExpected, message: persona.instructions ? 'inline persona' : 'no persona given; the shared rules only' },
      files: { ...(persona.instructions ? { claudeMd: persona.instructions } : {}), subagents: {} },
    };
  }
  const namespace = agent.metadata.namespace ?? 'default';
  const name = persona.configMapRef.name;
  const cm: V1ConfigMap | undefined = await readOrUndefined(() => clients.core.readNamespacedConfigMap({ name, namespace }));
  if (!cm) {
    return {
      condition: { type, status: 'False', reason: Reason.PersonaNotFound, message: `spec.persona.configMapRef: ConfigMap ${namespace}/${name} not found; create it or fix the name` },
    };
  }
  const data = cm.data ?? {};
  if (data['CLAUDE.md'] === undefined) {
    const keys = Object.keys(data);
    return {
      condition: {
        type,
        status: 'False',
        reason: Reason.PersonaInvalid,
        message: `spec.persona.configMapRef: ConfigMap ${namespace}/${name} has no CLAUDE.md key (it has ${keys.length ? keys.map((k) => `"${k}"`).join(', ') : 'no keys'}); add the persona text under CLAUDE.md`,
      },
    };
  }
  const problem = personaJsonProblem({ settingsJson: data['settings.json'], mcpJson: data['mcp.json'] });
  if (problem) {
    return {
      condition: {
        type,
        status: 'False',
        reason: Reason.PersonaInvalid,
        message: `spec.persona.configMapRef: ConfigMap ${namespace}/${name} ${problem}; fix that key of the ConfigMap (kubectl edit configmap ${name} -n ${namespace})`,
      },
    };
  }
  const subagents: Record<string, string> = {};
  for (const [key, value] of Object.entries(data)) {
    const m = /^subagent\.(.+)\.md$/.exec(key);
    if (m?.[1]) subagents[m[1]] = value;
  }
  return {
    condition: { type, status: 'True', reason: Reason.AsExpected, message: `from ConfigMap ${namespace}/${name}` },
    files: {
      ...(data['CLAUDE.md'] !== undefined ? { claudeMd: data['CLAUDE.md'] } : {}),
      ...(data['settings.json'] !== undefined ? { settingsJson: data['settings.json'] } : {}),
      ...(data['mcp.json'] !== undefined ? { mcpJson: data['mcp.json'] } : {}),
      subagents,
    },
  };
}

/** The Secret keys CredentialsResolved checks, each with the spec field that names it. Pure. */
function credentialSecretRefs(agent: Agent): Array<{ field: string; name: string; key: string }> {
  const refs = agent.spec.egress.credentials.map((c, i) => ({ field: `spec.egress.credentials[${i}] (${c.name}).secretRef`, ...c.secretRef }));
  if (agent.spec.matrix) refs.push({ field: 'spec.matrix.accessTokenSecretRef', ...agent.spec.matrix.accessTokenSecretRef });
  return refs;
}

/** A Secret or ConfigMap in the Agent's namespace that its spec names. */
export interface ObjectReference {
  kind: 'Secret' | 'ConfigMap';
  namespace: string;
  name: string;
}

/**
 * Every Secret and ConfigMap the checks below read for `agent`: the persona ConfigMap
 * (spec.persona.configMapRef), the upstream CA ConfigMap (spec.egress.upstreamCaConfigMapRef),
 * the credential Secrets (spec.egress.credentials[].secretRef),
 * the Matrix access token Secret (spec.matrix.accessTokenSecretRef) and the image pull
 * Secrets (spec.pod.imagePullSecrets), each once. A change to any of them can change a
 * condition, so the operator watches them (operator.ts). Pure.
 */
export function referencedObjects(agent: Agent): ObjectReference[] {
  const namespace = agent.metadata.namespace ?? 'default';
  const seen = new Map<string, ObjectReference>();
  const add = (kind: ObjectReference['kind'], name: string) => seen.set(`${kind}/${name}`, { kind, namespace, name });
  if (agent.spec.persona.configMapRef) add('ConfigMap', agent.spec.persona.configMapRef.name);
  if (agent.spec.egress.upstreamCaConfigMapRef) add('ConfigMap', agent.spec.egress.upstreamCaConfigMapRef.name);
  for (const { name } of credentialSecretRefs(agent)) add('Secret', name);
  for (const { name } of agent.spec.pod?.imagePullSecrets ?? []) add('Secret', name);
  return [...seen.values()];
}

/**
 * CredentialsResolved: every `spec.egress.credentials[i].secretRef` names an existing
 * Secret that has the key, with a non-empty value. Values are read only to check they
 * exist and are never returned, logged or copied: the pod mounts the Secrets directly
 * into the egress-proxy container.
 */
export async function checkCredentials(clients: Clients, agent: Agent): Promise<ConditionInput> {
  const type = ConditionType.CredentialsResolved;
  const refs = credentialSecretRefs(agent);
  if (!refs.length) return { type, status: 'True', reason: Reason.AsExpected, message: 'no credentials configured' };
  const namespace = agent.metadata.namespace ?? 'default';
  const problems: string[] = [];
  const secrets = new Map<string, V1Secret | undefined>();
  for (const { field, name, key } of refs) {
    if (!secrets.has(name)) secrets.set(name, await readOrUndefined(() => clients.core.readNamespacedSecret({ name, namespace })));
    const secret = secrets.get(name);
    if (!secret) problems.push(`${field}: Secret ${namespace}/${name} not found; create it or fix the name`);
    else if (!secret.data?.[key] && !secret.stringData?.[key]) {
      const keys = Object.keys(secret.data ?? {});
      problems.push(`${field}: Secret ${namespace}/${name} has no key "${key}" (or it is empty); it has ${keys.length ? keys.map((k) => `"${k}"`).join(', ') : 'no keys'}`);
    }
  }
  return problems.length
    ? { type, status: 'False', reason: Reason.CredentialsMissing, message: problems.join('; ') }
    : { type, status: 'True', reason: Reason.AsExpected, message: `${refs.length} credential(s) found` };
}

/** What {@link resolveUpstreamCa} found: the checked PEM bundle, or what is wrong with the reference. */
export interface UpstreamCaResolution {
  /** The ConfigMap key's text, every certificate in it parsed; unset when the field is, or on a problem. */
  pem?: string;
  /** `spec.egress.upstreamCaConfigMapRef: ... ; <the fix>` when the ConfigMap or key is missing or not PEM. */
  problem?: { reason: typeof Reason.ReferenceNotFound | typeof Reason.ReferenceInvalid; message: string };
}

/**
 * The PEM bundle of spec.egress.upstreamCaConfigMapRef: the ConfigMap exists in the
 * Agent's namespace, has the key (in `data`, or `binaryData` as UTF-8), and every
 * certificate block in it parses (the proxy's own check, agent-image/src/programs/proxy/config.ts
 * parseCaBundle), so a pod is never rolled out with a bundle its proxy would refuse.
 * One GET of the ConfigMap; nothing without the field.
 * @throws the API error of a failed read other than 404
 */
export async function resolveUpstreamCa(clients: Clients, agent: Agent): Promise<UpstreamCaResolution> {
  const ref = agent.spec.egress.upstreamCaConfigMapRef;
  if (!ref) return {};
  const namespace = agent.metadata.namespace ?? 'default';
  const field = 'spec.egress.upstreamCaConfigMapRef';
  const cm: V1ConfigMap | undefined = await readOrUndefined(() => clients.core.readNamespacedConfigMap({ name: ref.name, namespace }));
  if (!cm) {
    return {
      problem: {
        reason: Reason.ReferenceNotFound,
        message: `${field}: ConfigMap ${namespace}/${ref.name} not found; create it (kubectl create configmap ${ref.name} -n ${namespace} --from-file=${ref.key}=<ca-bundle.pem>) or fix the name`,
      },
    };
  }
  const binary = cm.binaryData?.[ref.key];
  const text = cm.data?.[ref.key] ?? (binary !== undefined ? Buffer.from(binary, 'base64').toString('utf8') : undefined);
  if (text === undefined) {
    const keys = [...Object.keys(cm.data ?? {}), ...Object.keys(cm.binaryData ?? {})];
    return {
      problem: {
        reason: Reason.ReferenceNotFound,
        message: `${field}: ConfigMap ${namespace}/${ref.name} has no key "${ref.key}" (it has ${keys.length ? keys.map((k) => `"${k}"`).join(', ') : 'no keys'}); put the PEM bundle under "${ref.key}" or fix the key`,
      },
    };
  }
  try {
    parseCaBundle(text);
  } catch (err) {
    return {
      problem: {
        reason: Reason.ReferenceInvalid,
        message: `${field}: key "${ref.key}" of ConfigMap ${namespace}/${ref.name}: ${(err as Error).message}; put the CA certificates there in PEM form`,
      },
    };
  }
  return { pem: text };
}

/**
 * ReferencesResolved: the cluster objects the spec names exist — the ClusterRole of
 * spec.kubernetesAccess, the StorageClass of spec.storage, the pull Secrets of
 * spec.pod.imagePullSecrets — and the upstream CA bundle of
 * spec.egress.upstreamCaConfigMapRef, as `upstreamCa` ({@link resolveUpstreamCa}) found
 * it, is usable. Without them the pod would be unusable or never start. The reason is
 * ReferenceNotFound when something is missing, else ReferenceInvalid.
 */
export async function checkClusterReferences(clients: Clients, agent: Agent, upstreamCa: UpstreamCaResolution = {}): Promise<ConditionInput> {
  const type = ConditionType.ReferencesResolved;
  const namespace = agent.metadata.namespace ?? 'default';
  const problems: string[] = [];
  const role = agent.spec.kubernetesAccess?.clusterRole;
  if (role && !(await readOrUndefined(() => clients.rbac.readClusterRole({ name: role })))) {
    problems.push(`spec.kubernetesAccess.clusterRole: ClusterRole "${role}" not found; name an existing one (kubectl get clusterroles)`);
  }
  const sc = agent.spec.storage.storageClassName;
  if (sc && !(await readOrUndefined(() => clients.storage.readStorageClass({ name: sc })))) {
    problems.push(`spec.storage.storageClassName: StorageClass "${sc}" not found; name an existing one (kubectl get storageclasses) or leave it unset for the default`);
  }
  for (const [i, s] of (agent.spec.pod?.imagePullSecrets ?? []).entries()) {
    if (!(await readOrUndefined(() => clients.core.readNamespacedSecret({ name: s.name, namespace })))) {
      problems.push(`spec.pod.imagePullSecrets[${i}]: Secret ${namespace}/${s.name} not found; create it or remove the entry`);
    }
  }
  if (upstreamCa.problem) problems.push(upstreamCa.problem.message);
  const invalidOnly = problems.length === 1 && upstreamCa.problem?.reason === Reason.ReferenceInvalid;
  return problems.length
    ? { type, status: 'False', reason: invalidOnly ? Reason.ReferenceInvalid : Reason.ReferenceNotFound, message: problems.join('; ') }
    : { type, status: 'True', reason: Reason.AsExpected, message: 'every referenced object exists' };
}

/**
 * The cluster IPs of the in-cluster Services the spec names for the supervisor's own
 * connections (render/networkpolicy.ts inClusterServices: the NATS server, a Matrix
 * homeserver), for the pod's allowCidrs and hostAliases. Only under iptables enforcement:
 * the supervisor dials these Services directly (NO_PROXY holds in-cluster names), which only
 * egress-init's rules can block, and hostAliases are rendered in that mode only; under
 * proxy-env nothing stops a direct connection, so that Agent gets none and costs no read.
 * Otherwise one GET per named Service and reconcile (0 to 2; the child caches hold only
 * managed objects).
 * @returns `addresses`: {host as the spec writes it, spec.clusterIPs}; `unresolved`:
 *   `<namespace>/<name> (not found | headless: no cluster IP)` for a Service that is missing
 *   (404) or has no cluster IP, left out of `addresses` (the caller logs it; the agent still
 *   runs, its events wait in the outbox)
 * @throws the API error of any other failed read (403, 5xx, transport): the reconcile is
 *   retried with backoff
 */
export async function resolveServiceAddresses(clients: Clients, agent: Agent): Promise<{ addresses: ServiceAddress[]; unresolved: string[] }> {
  const addresses: ServiceAddress[] = [];
  const unresolved: string[] = [];
  if (agent.spec.egress.enforcement !== 'iptables') return { addresses, unresolved };
  for (const svc of inClusterServices(agent)) {
    const live = await readOrUndefined(() => clients.core.readNamespacedService({ name: svc.name, namespace: svc.namespace }));
    const ips = (live?.spec?.clusterIPs ?? (live?.spec?.clusterIP ? [live.spec.clusterIP] : [])).filter((ip) => ip && ip !== 'None');
    if (ips.length) addresses.push({ host: svc.host, addresses: ips });
    else unresolved.push(`${svc.namespace}/${svc.name}${live ? ' (headless: no cluster IP)' : ' (not found)'}`);
  }
  return { addresses, unresolved };
}

/** The Service in-cluster kubeconfigs dial (KUBERNETES_SERVICE_HOST): `kubernetes` in `default`. */
export const API_SERVER_SERVICE = { name: 'kubernetes', namespace: 'default' } as const;

/**
 * Where the agent's kubectl reaches the API server, for an Agent with
 * spec.kubernetesAccess.clusterRole (none otherwise, at no cost): the cluster IPs and
 * ports of default/kubernetes, and the ready addresses and ports of its EndpointSlices
 * (label kubernetes.io/service-name=kubernetes). One GET and one LIST per reconcile. Both
 * enforcement modes: NO_PROXY needs the address in each.
 * @returns `apiServer`, undefined when the Service is missing or headless; `unresolved`
 *   says what is missing (the caller logs it; the agent still runs, its kubectl cannot
 *   reach the API server until it resolves). A 403 on the EndpointSlices (an operator
 *   ClusterRole without `list` on discovery.k8s.io endpointslices) is reported the same
 *   way and leaves the endpoints out, so the rest of the Agent is still reconciled.
 * @throws the API error of any other failed read: the reconcile is retried with backoff
 */
export async function resolveApiServer(clients: Clients, agent: Agent): Promise<{ apiServer?: ApiServerAddress; unresolved: string[] }> {
  if (!agent.spec.kubernetesAccess?.clusterRole) return { unresolved: [] };
  const { name, namespace } = API_SERVER_SERVICE;
  const svc = await readOrUndefined(() => clients.core.readNamespacedService({ name, namespace }));
  const clusterIPs = (svc?.spec?.clusterIPs ?? (svc?.spec?.clusterIP ? [svc.spec.clusterIP] : [])).filter((ip) => ip && ip !== 'None');
  if (!clusterIPs.length) return { unresolved: [`${namespace}/${name}${svc ? ' (headless: no cluster IP)' : ' (not found)'}`] };
  const servicePorts = (svc?.spec?.ports ?? []).filter((p) => (p.protocol ?? 'TCP') === 'TCP').map((p) => p.port);
  const unresolved: string[] = [];
  const endpointAddresses: string[] = [];
  const endpointPorts: number[] = [];
  try {
    const slices = await clients.discovery.listNamespacedEndpointSlice({ namespace, labelSelector: `kubernetes.io/service-name=${name}` });
    for (const slice of slices.items) {
      for (const ep of slice.endpoints ?? []) {
        // Not-ready endpoints are left out, as kube-proxy leaves them out; unset means ready.
        if (ep.conditions?.ready === false) continue;
        for (const a of ep.addresses) if (!endpointAddresses.includes(a)) endpointAddresses.push(a);
      }
      for (const p of slice.ports ?? []) {
        if ((p.protocol ?? 'TCP') === 'TCP' && p.port !== undefined && !endpointPorts.includes(p.port)) endpointPorts.push(p.port);
      }
    }
  } catch (err) {
    if (httpStatusOf(err) !== 403) throw err;
    unresolved.push(`EndpointSlices of ${namespace}/${name} (forbidden: grant the operator list on discovery.k8s.io endpointslices)`);
  }
  if (!unresolved.length && !endpointAddresses.length) unresolved.push(`EndpointSlices of ${namespace}/${name} (no ready endpoint)`);
  return { apiServer: { clusterIPs, servicePorts, endpointAddresses, endpointPorts }, unresolved };
}
