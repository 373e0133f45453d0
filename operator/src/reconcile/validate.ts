/**
 * Checks of an Agent that the CRD schema cannot express: each problem names the field
 * and the fix. Pure (no API calls): what needs the API server (a Secret exists, a
 * ClusterRole exists) is in references.ts.
 *
 * An Agent with an error here is not rolled out (SpecValid=False); warnings are shown
 * (SpecValid=True, reason ValidWithWarnings). One that passes here may still be blocked
 * by a missing reference.
 */
import { getDomain } from 'tldts';

/**
 * Public Suffix List options: the private section counts too (github.io,
 * githubusercontent.com, s3.amazonaws.com ...), as in the egress proxy's policy, so a
 * wildcard the proxy would refuse is refused here first, with the field named.
 */
const PSL = { allowPrivateDomains: true } as const;
import { ContractError } from '../../../agent-image/src/contract/load.ts';
import { parseCidr } from '../../../agent-image/src/contract/net.ts';
import type { Agent } from '../api/agent.ts';
import { repoDir } from '../render/configmap.ts';
import { inClusterService } from '../render/networkpolicy.ts';

/** Host of an allowlist entry or credential host, without `*.` and `:port`. */
function bareHost(pattern: string): string {
  return pattern.replace(/^\*\./, '').replace(/:\d+$/, '');
}

/** Whether `host` (a plain name) is matched by an allowlist `pattern` (exact, or `*.` for subdomains only). */
export function hostAllowed(host: string, pattern: string): boolean {
  const p = pattern.replace(/:\d+$/, '');
  return p.startsWith('*.') ? host.endsWith(p.slice(1)) : host === p;
}

/** Whether two host patterns can match one same host. */
function patternsOverlap(a: string, b: string): boolean {
  const x = a.replace(/:\d+$/, '');
  const y = b.replace(/:\d+$/, '');
  if (x === y) return true;
  if (x.startsWith('*.') && y.startsWith('*.')) return x.endsWith(y.slice(1)) || y.endsWith(x.slice(1));
  if (x.startsWith('*.')) return hostAllowed(y, x);
  if (y.startsWith('*.')) return hostAllowed(x, y);
  return false;
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

  // Allowlist: no wildcard over a public suffix, no duplicates.
  allow.forEach((a, i) => {
    if (a.startsWith('*.') && getDomain(bareHost(a), PSL) === null) {
      problems.push(`spec.egress.allow[${i}]: "${a}" covers a whole public suffix; name the domains the agent needs (e.g. *.example.com)`);
    }
    const first = allow.indexOf(a);
    if (first !== i) problems.push(`spec.egress.allow[${i}]: "${a}" repeats spec.egress.allow[${first}]; remove one`);
  });

  // allowCidrs: well-formed, and never so wide that it switches the private-range protection off.
  // The pod's grammar (contract/net.ts: egress-init and the proxy parse them the same way).
  spec.egress.allowCidrs.forEach((c, i) => {
    try {
      parseCidr(c, `spec.egress.allowCidrs[${i}]`);
    } catch (err) {
      if (!(err instanceof ContractError)) throw err;
      problems.push(err.message);
    }
  });

  // Credentials: hosts allowed, each host reached by one credential only (the proxy picks the credential by host).
  const creds = spec.egress.credentials;
  creds.forEach((c, i) => {
    c.hosts.forEach((h, j) => {
      if (h.startsWith('*.') && getDomain(bareHost(h), PSL) === null) {
        problems.push(`spec.egress.credentials[${i}].hosts[${j}]: "${h}" covers a whole public suffix; scope the credential to the hosts that need it`);
      }
      if (!allow.some((a) => patternsOverlap(h, a) && (a.startsWith('*.') || !h.startsWith('*.')))) {
        problems.push(`spec.egress.credentials[${i}].hosts[${j}]: "${h}" is not allowed by spec.egress.allow; add it there or remove it here`);
      }
    });
    for (let k = 0; k < i; k++) {
      const other = creds[k];
      if (!other) continue;
      const clash = c.hosts.find((h) => other.hosts.some((o) => patternsOverlap(h, o)));
      if (clash) {
        problems.push(
          `spec.egress.credentials[${i}] (${c.name}): host "${clash}" already gets credential "${other.name}"; the proxy swaps one credential per host, so scope them to different hosts`,
        );
      }
    }
  });

  // Repositories: one directory each.
  const dirs = new Map<string, string>();
  spec.repos.forEach((r, i) => {
    const dir = repoDir(r.name);
    const prev = dirs.get(dir);
    if (prev) problems.push(`spec.repos[${i}]: "${r.name}" would be cloned into ${dir} like "${prev}"; keep one of them (repository names must differ)`);
    else dirs.set(dir, r.name);
  });

  // Services the supervisor talks to must be reachable through the egress policy.
  const reachable = (url: string, kind: string, field: string, defaultPort: number) => {
    if (inClusterService(url, defaultPort)) return; // the NetworkPolicy lets in-cluster services through
    let host: string;
    try {
      host = new URL(url.replace(/^(nats|tls|wss?):/, 'http:')).hostname;
    } catch {
      return; // the schema's pattern already refused what cannot be parsed
    }
    if (/^[\d.]+$/.test(host) || host.includes(':')) {
      if (!spec.egress.allowCidrs.length) problems.push(`${field}: the ${kind} at IP ${host} is not in spec.egress.allowCidrs; add its range there`);
      return;
    }
    if (!allow.some((a) => hostAllowed(host, a))) problems.push(`${field}: the ${kind} host "${host}" is not allowed by spec.egress.allow; add it there`);
  };
  if (spec.matrix) reachable(spec.matrix.homeserverUrl, 'Matrix homeserver', 'spec.matrix.homeserverUrl', 443);
  if (spec.events) reachable(spec.events.natsUrl, 'NATS server', 'spec.events.natsUrl', 4222);
  if (spec.matrix) {
    const self = spec.matrix.allowedUsers.indexOf(spec.matrix.userId);
    if (self >= 0) problems.push(`spec.matrix.allowedUsers[${self}]: the agent's own user id; remove it (an agent must not take its own messages)`);
  }

  // The PR watcher needs a GitHub credential to read the agent's pull requests.
  if (spec.github?.watchPullRequests.enabled && !creds.some((c) => c.hosts.some((h) => hostAllowed('api.github.com', h)))) {
    warnings.push('spec.github.watchPullRequests: enabled but no spec.egress.credentials entry covers api.github.com; add one, or set watchPullRequests.enabled to false');
  }
  return { errors: problems, warnings };
}
