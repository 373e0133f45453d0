/**
 * Checks of an Agent that the CRD schema cannot express: each problem names the field
 * and the fix. Pure (no API calls): what needs the API server (a Secret exists, a
 * ClusterRole exists) is in references.ts.
 *
 * An Agent with an error here is not rolled out (SpecValid=False); warnings are shown
 * (SpecValid=True, reason ValidWithWarnings). One that passes here may still be blocked
 * by a missing reference.
 */
import { canonicalHost, HostError, allowlistMatch, parseHostPattern, patternCovers, patternMatchesName, patternsOverlap, registrableOf, type HostPattern } from '../../../agent-image/src/contract/hosts.ts';
import { DEFAULT_GITHUB_API_URL } from '../../../agent-image/src/contract/contract.ts';
import { ContractError } from '../../../agent-image/src/contract/load.ts';
import { coveredBy, parseCidr, type Cidr } from '../../../agent-image/src/contract/net.ts';
import { CLUSTER_WIDE_UNSUPPORTED, type Agent } from '../api/agent.ts';
import { repoDir } from '../render/configmap.ts';
import { inClusterService } from '../render/networkpolicy.ts';


/**
 * Parses a host pattern as the egress proxy does (contract/hosts.ts); a pattern it would
 * refuse becomes a problem naming `field`, and undefined.
 */
function hostPattern(raw: string, field: string, problems: string[]): HostPattern | undefined {
  try {
    return parseHostPattern(raw);
  } catch (err) {
    if (!(err instanceof HostError)) throw err;
    problems.push(`${field}: ${JSON.stringify(raw)} ${err.detail}`);
    return undefined;
  }
}

/** What validateAgent found: errors block the rollout, warnings are only shown. */
export interface Validation {
  errors: string[];
  warnings: string[];
}

/**
 * Every problem of `agent` that makes it unable to work as written (errors), or makes a
 * feature it asks for unable to work (warnings), as `field: what is wrong; what to do`.
 */
export function validateAgent(agent: Agent): Validation {
  const { spec } = agent;
  const problems: string[] = [];
  const warnings: string[] = [];
  const allow = spec.egress.allow;

  // Allowlist: entries the proxy accepts (contract/hosts.ts: no wildcard over a public
  // suffix, no IP literal, a port 1-65535 without leading zeros ...), no duplicates.
  const allowPatterns = allow.map((a, i) => {
    const first = allow.indexOf(a);
    if (first !== i) problems.push(`spec.egress.allow[${i}]: "${a}" repeats spec.egress.allow[${first}]; remove one`);
    return hostPattern(a, `spec.egress.allow[${i}]`, problems);
  });
  const allowed = allowPatterns.filter((p): p is HostPattern => p !== undefined);

  // allowCidrs: well-formed, and never so wide that it switches the private-range protection off.
  // The pod's grammar (contract/net.ts: egress-init and the proxy parse them the same way).
  const cidrs: Cidr[] = [];
  spec.egress.allowCidrs.forEach((c, i) => {
    try {
      cidrs.push(parseCidr(c, `spec.egress.allowCidrs[${i}]`));
    } catch (err) {
      if (!(err instanceof ContractError)) throw err;
      problems.push(err.message);
    }
  });

  // Credentials: hosts allowed, each host reached by one credential only (the proxy picks the credential by host).
  // The proxy's own rules (contract/hosts.ts patternCovers, patternsOverlap; ports ignored, as credentialFor does).
  const creds = spec.egress.credentials;
  const credPatterns = creds.map((c, i) => c.hosts.map((h, j) => hostPattern(h, `spec.egress.credentials[${i}].hosts[${j}]`, problems)));
  creds.forEach((c, i) => {
    const mine = credPatterns[i] ?? [];
    c.hosts.forEach((h, j) => {
      const p = mine[j];
      if (p && !allowed.some((a) => patternCovers(a, p))) {
        problems.push(`spec.egress.credentials[${i}].hosts[${j}]: "${h}" is not allowed by spec.egress.allow; add it there or remove it here`);
      }
    });
    for (let k = 0; k < i; k++) {
      const other = creds[k];
      if (!other) continue;
      const theirs = (credPatterns[k] ?? []).filter((o): o is HostPattern => o !== undefined);
      const clash = c.hosts.find((_h, j) => {
        const p = mine[j];
        return p !== undefined && theirs.some((o) => patternsOverlap(p, o));
      });
      if (clash) {
        problems.push(
          `spec.egress.credentials[${i}] (${c.name}): host "${clash}" already gets credential "${other.name}"; the proxy swaps one credential per host, so scope them to different hosts`,
        );
      }
    }
  });

  // Agents stored before the CRD refused it (its CEL rule) still reach the operator.
  if (spec.kubernetesAccess?.clusterWide) problems.push(`spec.kubernetesAccess.clusterWide: ${CLUSTER_WIDE_UNSUPPORTED}`);

  // Repositories: one directory each.
  const dirs = new Map<string, string>();
  spec.repos.forEach((r, i) => {
    const dir = repoDir(r.name);
    const prev = dirs.get(dir);
    if (prev) problems.push(`spec.repos[${i}]: "${r.name}" would be cloned into ${dir} like "${prev}"; keep one of them (repository names must differ)`);
    else dirs.set(dir, r.name);
  });

  // Services the supervisor talks to must be reachable through the egress policy: an IP
  // directly (allowCidrs), a name through the proxy (its allowlist). `viaProxy`: the
  // connection is HTTP(S) through the proxy, which also checks the port (an entry without
  // a port admits 80 and 443 only); NATS is checked by name only.
  const reachable = (url: string, kind: string, field: string, defaultPort: number, viaProxy: boolean) => {
    if (inClusterService(url, defaultPort)) return; // the NetworkPolicy lets in-cluster services through
    let u: URL;
    try {
      u = new URL(url.replace(/^(nats|tls|wss?):/, 'http:'));
    } catch {
      return; // the schema's pattern already refused what cannot be parsed
    }
    const port = u.port ? Number(u.port) : defaultPort;
    let host;
    try {
      host = canonicalHost(u.hostname);
    } catch (err) {
      if (!(err instanceof HostError)) throw err;
      problems.push(`${field}: the ${kind} ${err.message}; the egress proxy refuses it`);
      return;
    }
    if (host.kind !== 'dns') {
      if (!coveredBy(host.host, cidrs)) problems.push(`${field}: the ${kind} at IP ${host.host} is not in spec.egress.allowCidrs; add its range there`);
      return;
    }
    if (viaProxy ? !allowlistMatch(allowed, host, port) : !allowed.some((p) => patternMatchesName(p, host.host, registrableOf(host.host)))) {
      const entry = viaProxy && port !== 443 && port !== 80 ? `${host.host}:${port}` : host.host;
      problems.push(`${field}: the ${kind} host "${host.host}" is not allowed by spec.egress.allow${viaProxy ? ` on port ${port}` : ''}; add "${entry}" there`);
    }
  };
  if (spec.matrix) reachable(spec.matrix.homeserverUrl, 'Matrix homeserver', 'spec.matrix.homeserverUrl', spec.matrix.homeserverUrl.startsWith('https:') ? 443 : 80, true);
  if (spec.events) reachable(spec.events.natsUrl, 'NATS server', 'spec.events.natsUrl', 4222, false);
  if (spec.matrix) {
    const self = spec.matrix.allowedUsers.indexOf(spec.matrix.userId);
    if (self >= 0) problems.push(`spec.matrix.allowedUsers[${self}]: the agent's own user id; remove it (an agent must not take its own messages)`);
  }

  const watcher = prWatcherWarning(spec, credPatterns);
  if (watcher) warnings.push(watcher);
  return { errors: problems, warnings };
}

/**
 * The PR watcher needs a GitHub credential for its API host (spec.github.apiUrl, default
 * GitHub.com) to read the agent's pull requests; the pod picks it by the same rule
 * (contract/hosts.ts credentialFor). A warning when none covers it, else undefined.
 */
function prWatcherWarning(spec: Agent['spec'], credPatterns: ReadonlyArray<ReadonlyArray<HostPattern | undefined>>): string | undefined {
  if (!spec.github?.watchPullRequests.enabled) return undefined;
  let apiHost: string;
  try {
    apiHost = canonicalHost(new URL(spec.github.apiUrl ?? DEFAULT_GITHUB_API_URL).hostname).host;
  } catch {
    return undefined; // the schema's pattern already refused what cannot be parsed
  }
  const registrable = registrableOf(apiHost);
  if (credPatterns.some((ps) => ps.some((p) => p !== undefined && patternMatchesName(p, apiHost, registrable)))) return undefined;
  return `spec.github.watchPullRequests: enabled but no spec.egress.credentials entry covers ${apiHost}${spec.github.apiUrl ? ' (spec.github.apiUrl)' : ''}; add one, or set watchPullRequests.enabled to false`;
}
