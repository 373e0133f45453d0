/**
 * The GitHub API client of the PR watcher: Octokit core with the REST endpoint methods,
 * retry and throttling plugins, going out through the egress proxy, holding the stub
 * token (the proxy swaps it for the real one; DESIGN.md flow 5), and a conditional-request
 * cache on the home volume.
 *
 * - Proxy: undici's `EnvHttpProxyAgent` as the fetch dispatcher, from HTTPS_PROXY,
 *   HTTP_PROXY and NO_PROXY of the supervisor's environment (the operator sets them in
 *   both enforcement modes). TLS trust is Node's, which NODE_EXTRA_CA_CERTS extends with
 *   the per-agent egress CA.
 * - Authorization: `Bearer <token>`, the form the proxy swaps for `scheme: bearer`
 *   credentials (Octokit's default `token <x>` would pass the proxy unswapped).
 * - Conditional requests: every GET sends the cached ETag as If-None-Match; a 304 is
 *   answered from the cache and does not count against the primary rate limit
 *   (docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api#use-conditional-requests-if-appropriate).
 * - Rate limits (docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api):
 *   the throttling plugin queues requests (GraphQL and writes one at a time, a second
 *   apart) and calls back on a primary (`x-ratelimit-remaining: 0`, wait until
 *   `x-ratelimit-reset`) or secondary limit (`retry-after`, else 60 s). We retry once when
 *   the wait is at most `maxRetryWaitSeconds`, otherwise give up: the request throws, the
 *   watcher logs it and tries again at its next poll. The retry plugin retries 5xx and
 *   network errors (3 times, growing waits); 4xx other than limits are not retried.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import tls from 'node:tls';
import { Octokit } from '@octokit/core';
import { restEndpointMethods } from '@octokit/plugin-rest-endpoint-methods';
import { retry } from '@octokit/plugin-retry';
import { throttling } from '@octokit/plugin-throttling';
import { EnvHttpProxyAgent, fetch as undiciFetch } from 'undici';
import type { PodContract } from '../../contract/contract.ts';
import { canonicalHost, credentialFor } from '../../contract/hosts.ts';
import { writeFileAtomic } from '../../lib/files.ts';
import type { Logger } from '../../lib/log.ts';


/** Octokit with the plugins the watcher uses. */
export const GitHubOctokit = Octokit.plugin(restEndpointMethods, retry, throttling);
export type GitHubOctokit = InstanceType<typeof GitHubOctokit>;

export interface GitHubClientOptions {
  /** REST base URL, e.g. https://api.github.com. */
  apiUrl: string;
  /** The token the agent holds (the stub). Never logged. */
  token: string;
  log: Logger;
  /** HTTPS_PROXY, HTTP_PROXY, NO_PROXY (either case) are read from here. */
  env: NodeJS.ProcessEnv;
  /** Longest wait for a rate limit that is retried (s); longer waits fail the request. Default 60. */
  maxRetryWaitSeconds?: number;
  /** Scale of the plugins' waits (ms per second of retry-after); tests make it small. Default 1000. */
  retryAfterBaseValue?: number;
  /**
   * Extra CA certificates (PEM) to trust besides Node's (tests that run the client in
   * their own process; in a pod NODE_EXTRA_CA_CERTS names the egress CA already).
   */
  ca?: string[];
  /** Called with every response's status and rate-limit headers (metrics). */
  onResponse?: (r: { status: number; resource: string | undefined; remaining: number | undefined; reset: number | undefined }) => void;
}

/**
 * The token the watcher uses: the stub of the egress credential whose hosts match the API
 * host by the proxy's own rule (contract/hosts.ts credentialFor, so the stub sent is the one the proxy
 * swaps), else GH_TOKEN or GITHUB_TOKEN from `env`.
 * @returns undefined when there is none.
 * @throws HostError when the API host is not a valid host name, a credential's host
 *   pattern is invalid, or two credentials match the host (the proxy refuses those too).
 */
export function githubToken(contract: PodContract, apiUrl: string, env: NodeJS.ProcessEnv): string | undefined {
  const credential = credentialFor(contract.egress.credentials, canonicalHost(new URL(apiUrl).hostname));
  return credential?.stub ?? (env.GH_TOKEN || env.GITHUB_TOKEN || undefined);
}

/** Longest a single request may take, including the proxy's CONNECT (ms): a hung request must not stall the watcher. */
export const REQUEST_TIMEOUT_MS = 30_000;

function withTimeout(signal: AbortSignal | null | undefined): AbortSignal {
  const timeout = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
  return signal ? AbortSignal.any([signal, timeout]) : timeout;
}

/** Makes the Octokit instance. Never throws for network reasons; requests do. */
export function makeGitHubClient(opts: GitHubClientOptions): GitHubOctokit {
  const { log, env } = opts;
  const dispatcher = new EnvHttpProxyAgent({
    httpProxy: env.HTTP_PROXY ?? env.http_proxy ?? '',
    httpsProxy: env.HTTPS_PROXY ?? env.https_proxy ?? env.HTTP_PROXY ?? env.http_proxy ?? '',
    noProxy: env.NO_PROXY ?? env.no_proxy ?? '',
    ...(opts.ca ? { connect: { ca: [...tls.rootCertificates, ...opts.ca] }, requestTls: { ca: [...tls.rootCertificates, ...opts.ca] } } : {}),
  });
  const maxWait = opts.maxRetryWaitSeconds ?? 60;
  const base = opts.retryAfterBaseValue ?? 1000;
  const fetchThroughProxy = (url: string | URL, init?: RequestInit) =>
    undiciFetch(url, { ...(init as Parameters<typeof undiciFetch>[1]), dispatcher, signal: withTimeout(init?.signal) }).then((res) => {
      const h = (name: string) => {
        const v = res.headers.get(name);
        return v === null ? undefined : Number(v);
      };
      opts.onResponse?.({ status: res.status, resource: res.headers.get('x-ratelimit-resource') ?? undefined, remaining: h('x-ratelimit-remaining'), reset: h('x-ratelimit-reset') });
      return res;
    });
  const limitHandler = (kind: 'primary' | 'secondary') => (retryAfter: number, options: { method: string; url: string }, _octokit: unknown, retryCount: number) => {
    const retrying = retryCount < 1 && retryAfter <= maxWait;
    log.warn({ kind, method: options.method, route: options.url, retryAfterSeconds: retryAfter, retrying }, `GitHub ${kind} rate limit`);
    return retrying;
  };
  const octokit = new GitHubOctokit({
    baseUrl: opts.apiUrl.replace(/\/+$/, ''),
    userAgent: 'agent-smith-pr-watcher',
    request: { fetch: fetchThroughProxy },
    retry: { retryAfterBaseValue: base },
    throttle: { onRateLimit: limitHandler('primary'), onSecondaryRateLimit: limitHandler('secondary'), retryAfterBaseValue: base },
    // Octokit's own log would print request URLs at debug and warnings as text: route them to pino.
    log: {
      debug: () => undefined,
      info: () => undefined,
      warn: (msg: string) => log.warn({ octokit: true }, msg),
      error: (msg: string) => log.error({ octokit: true }, msg),
    },
  });
  octokit.hook.before('request', (options) => {
    options.headers.authorization = `Bearer ${opts.token}`;
    options.headers['x-github-api-version'] = '2022-11-28';
  });
  return octokit;
}

/** The HTTP status of an Octokit error (RequestError), if any. */
export function errorStatus(err: unknown): number | undefined {
  const s = (err as { status?: unknown } | null)?.status;
  return typeof s === 'number' ? s : undefined;
}

interface CacheEntry {
  etag: string;
  link?: string | undefined;
  data: unknown;
}

/**
 * ETags and bodies of GET responses, one JSON file per request under `dir` (the home
 * volume), so a restarted supervisor still sends If-None-Match and pays nothing when
 * nothing changed. Keys are request URLs; file names are their SHA-256 (no token, no
 * query string values in names or logs).
 */
export class ConditionalCache {
  private readonly dir: string;
  private readonly memory = new Map<string, CacheEntry>();

  constructor(dir: string) {
    this.dir = dir;
  }

  private file(key: string): string {
    return path.join(this.dir, `${createHash('sha256').update(key).digest('hex').slice(0, 32)}.json`);
  }

  /** The entry for `key` (a request URL), from memory or its file; undefined when there is none or the file is unreadable. Never throws. */
  async get(key: string): Promise<CacheEntry | undefined> {
    const hit = this.memory.get(key);
    if (hit) return hit;
    try {
      const entry = JSON.parse(await readFile(this.file(key), 'utf8')) as CacheEntry;
      this.memory.set(key, entry);
      return entry;
    } catch {
      return undefined;
    }
  }

  /** Keeps `entry` for `key` in memory and writes its file (atomically, mode 0600). @throws the fs error when the file cannot be written. */
  async set(key: string, entry: CacheEntry): Promise<void> {
    this.memory.set(key, entry);
    await writeFileAtomic(this.file(key), JSON.stringify(entry), 0o600);
  }
}

/** One page of a REST list call with the page number and request headers applied. */
export type PageCall<T> = (page: number, headers: Record<string, string>) => Promise<{ data: T[]; headers: Record<string, string | number | undefined> }>;

/** What `cachedList` returns: the items of all pages and their ETags. */
export interface CachedList<T> {
  items: T[];
  /** The ETags of the pages, joined: changes when any page changes. */
  etags: string;
}

/** Most pages read of one list (100 items each). */
export const MAX_PAGES = 5;

/**
 * Reads a paginated REST list with conditional requests: page 1, then the `rel="next"`
 * pages of the Link header (docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api),
 * at most MAX_PAGES. A 304 page is served from the cache.
 * @throws the Octokit RequestError of a failed page (after the plugins' retries).
 */
export async function cachedList<T>(cache: ConditionalCache, key: string, call: PageCall<T>): Promise<CachedList<T>> {
  const items: T[] = [];
  const etags: string[] = [];
  for (let page = 1; page <= MAX_PAGES; page++) {
    const pageKey = `${key}&page=${page}`;
    const cached = await cache.get(pageKey);
    let entry: CacheEntry;
    try {
      const res = await call(page, cached ? { 'if-none-match': cached.etag } : {});
      const etag = String(res.headers.etag ?? '');
      entry = { etag, link: res.headers.link === undefined ? undefined : String(res.headers.link), data: res.data };
      if (etag) await cache.set(pageKey, entry);
    } catch (err) {
      if (errorStatus(err) !== 304 || !cached) throw err;
      entry = cached;
    }
    items.push(...(entry.data as T[]));
    etags.push(entry.etag);
    if (!entry.link || !/rel="next"/.test(entry.link)) break;
  }
  return { items, etags: etags.join(',') };
}
