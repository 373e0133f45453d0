/**
 * The PR rewake module (DESIGN.md flow 3): `startPrRewake` builds the GitHub client
 * (client.ts), the watcher (watcher.ts) and the rewake (rewake.ts) from the pod contract.
 */
import type { PodContract } from '../../contract/contract.ts';
import type { Layout } from '../../contract/layout.ts';
import type { Logger } from '../../lib/log.ts';
import type { Inbox } from '../../core/inbox.ts';
import { DEFAULT_GITHUB_API_URL } from '../../contract/contract.ts';
import { githubToken, makeGitHubClient } from './client.ts';
import type { GitHubMetrics } from './metrics.ts';
import { PrRewake, type IdleProbe } from './rewake.ts';
import { PrWatcher } from './watcher.ts';

export { GitHubMetrics } from './metrics.ts';
export { PrRewake } from './rewake.ts';

/**
 * Starts the PR rewake when the contract asks for it (`github.watchPullRequests.enabled`,
 * at least one repository) and a token is at hand (githubToken). Otherwise logs why not
 * and resolves undefined (also when the egress credentials are ambiguous or invalid for the
 * API host). Never throws for GitHub being unreachable (checks log and retry).
 */
export async function startPrRewake(opts: {
  contract: PodContract;
  layout: Layout;
  env: NodeJS.ProcessEnv;
  inbox: Inbox;
  probe: IdleProbe;
  metrics: GitHubMetrics;
  log: Logger;
  emit: (type: string, data: Record<string, unknown>) => Promise<void>;
}): Promise<PrRewake | undefined> {
  const { contract, log } = opts;
  const gh = contract.github;
  if (!gh?.watchPullRequests.enabled) return undefined;
  const repos = contract.repos.map((r) => r.name).filter((n) => /^[^/\s]+\/[^/\s]+$/.test(n));
  if (!repos.length) {
    log.info({}, 'PR rewake off: the agent has no repositories');
    return undefined;
  }
  const apiUrl = gh.apiUrl ?? DEFAULT_GITHUB_API_URL;
  // The host only: a URL's userinfo is a credential and never logged.
  const apiHost = new URL(apiUrl).host;
  let token: string | undefined;
  try {
    token = githubToken(contract, apiUrl, opts.env);
  } catch (err) {
    log.warn({ apiHost, error: (err as Error).message }, 'PR rewake off: the egress credentials cannot say which one serves the API host');
    return undefined;
  }
  if (!token) {
    log.warn({ apiHost }, 'PR rewake off: no GitHub token (no egress credential for the API host, no GH_TOKEN)');
    return undefined;
  }
  const child = log.child({ component: 'github', login: gh.login });
  const octokit = makeGitHubClient({
    apiUrl,
    token,
    log: child,
    env: opts.env,
    onResponse: (r) => {
      opts.metrics.requests.inc({ status: String(r.status) });
      if (r.resource && r.remaining !== undefined && r.status !== 304) opts.metrics.rateLimitRemaining.set({ resource: r.resource }, r.remaining);
    },
  });
  const watcher = new PrWatcher({ octokit, login: gh.login, repos, stateDir: opts.layout.stateDir, log: child });
  const rewake = new PrRewake({
    watcher,
    inbox: opts.inbox,
    probe: opts.probe,
    login: gh.login,
    intervalSeconds: gh.watchPullRequests.intervalSeconds,
    maxConsecutiveRewakes: gh.watchPullRequests.maxConsecutiveRewakes,
    stateDir: opts.layout.stateDir,
    metrics: opts.metrics,
    log: child,
    emit: opts.emit,
  });
  await rewake.start();
  return rewake;
}
