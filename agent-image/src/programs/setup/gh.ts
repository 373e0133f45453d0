/**
 * The GitHub CLI's login for the agent (issue 17 item 3): `~/.config/gh/hosts.yml` entries
 * that give `gh` the credential STUB for each GitHub host of the contract, so `gh` works
 * through the egress proxy, which swaps the stub for the real token. No real token is
 * ever written: setup never sees one.
 *
 * gh 2.23 (Debian bookworm's, the agent image's; github.com/cli/go-gh v1.0.0 pkg/auth and
 * cli/cli v2.23.0 pkg/cmd/factory/remote_resolver.go) decides as follows:
 * - token for github.com: GH_TOKEN, then GITHUB_TOKEN, then `oauth_token` of the host's
 *   hosts.yml entry; for any other host (GitHub Enterprise Server): GH_ENTERPRISE_TOKEN,
 *   then GITHUB_ENTERPRISE_TOKEN, then hosts.yml (GH_TOKEN is NOT used there);
 * - known hosts: GH_HOST, github.com when it has a token, and every hosts.yml key. In a
 *   repository gh uses the remotes on a known host, so a GHES host must be in hosts.yml
 *   (or GH_HOST) for `gh pr create` in a clone from it;
 * - default host outside a repository: GH_HOST, else the only hosts.yml key when there is
 *   exactly one, else github.com;
 * - API: https://api.github.com for github.com, https://<host>/api/v3 and
 *   https://<host>/api/graphql for GHES; `git_protocol: https` makes gh's own clones and
 *   pushes use HTTPS remotes (git's credential helper, written by setup, hands git the stub).
 */
import { readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { parseDocument, stringify } from 'yaml';
import { DEFAULT_GITHUB_API_URL, type PodContract } from '../../contract/contract.ts';
import { canonicalHost, credentialFor } from '../../contract/hosts.ts';
import type { Layout } from '../../contract/layout.ts';
import { writeFileAtomic } from '../../lib/files.ts';

/** The API host of github.com (gh's host name for it is github.com). */
const GITHUB_API_HOST = 'api.github.com';
const GITHUB_HOST = 'github.com';

/** One hosts.yml entry setup writes. */
export interface GhHost {
  /** gh's name of the host: github.com, or the GHES host name (with `:port` when the API URL has one). */
  host: string;
  /** The host the proxy sees API requests for (api.github.com, or the GHES host). */
  apiHost: string;
  /** Name of the egress credential whose stub gh presents. */
  credential: string;
  /** The stub (`oauth_token`). */
  token: string;
  /** The agent's login on this host (`user`), when the contract knows it. */
  user?: string;
}

/** What {@link ghHosts} found: entries to write, and GitHub hosts left without one because no credential covers their API host. */
export interface GhHostsPlan {
  hosts: GhHost[];
  /** With `github` in the contract: the API host of its GitHub that no egress credential covers (gh is not logged in there). */
  uncovered: string[];
  /** Where an existing hosts.yml that was not a YAML mapping was moved before a fresh one was written. */
  setAside?: string;
}

/**
 * The GitHub hosts of the contract and their stubs: github.com when an egress credential
 * covers api.github.com, and the GitHub Enterprise Server host of `github.apiUrl`
 * (`https://<host>/api/v3`) when it names one, each with the stub of the credential whose
 * hosts match its API host by the proxy's own rule (contract/hosts.ts credentialFor).
 * Pure.
 * @throws HostError when a credential's host pattern is invalid or two credentials match a host (the proxy refuses those too)
 */
export function ghHosts(contract: PodContract): GhHostsPlan {
  const apiUrl = new URL(contract.github?.apiUrl ?? DEFAULT_GITHUB_API_URL);
  const enterprise = apiUrl.hostname !== GITHUB_API_HOST;
  const wanted: Array<{ host: string; apiHost: string; user: string | undefined }> = [];
  if (enterprise) wanted.push({ host: apiUrl.host, apiHost: apiUrl.hostname, user: contract.github?.login });
  // github.com: always when it is the contract's GitHub; beside a GHES host only when a credential covers it.
  wanted.push({ host: GITHUB_HOST, apiHost: GITHUB_API_HOST, user: enterprise ? undefined : contract.github?.login });
  const plan: GhHostsPlan = { hosts: [], uncovered: [] };
  for (const w of wanted) {
    const credential = credentialFor(contract.egress.credentials, canonicalHost(w.apiHost));
    if (credential) plan.hosts.push({ host: w.host, apiHost: w.apiHost, credential: credential.name, token: credential.stub, ...(w.user ? { user: w.user } : {}) });
    else if (contract.github && (w.host !== GITHUB_HOST || !enterprise)) plan.uncovered.push(w.apiHost);
  }
  return plan;
}

/** `~/.config/gh/hosts.yml` of this layout (gh's default config dir: no GH_CONFIG_DIR or XDG_CONFIG_HOME is set in the pod). */
export function ghHostsFile(layout: Pick<Layout, 'homeDir'>): string {
  return path.join(layout.homeDir, '.config', 'gh', 'hosts.yml');
}

/**
 * Writes the entries of {@link ghHosts} into hosts.yml (mode 0600, as gh writes it):
 * `oauth_token` (the stub), `git_protocol: https` and `user` for each; other hosts and
 * other keys already there (gh's own, or the agent's) are kept. Idempotent. An existing
 * hosts.yml that is not a YAML mapping (the agent can write its home) is moved aside to
 * `hosts.yml.invalid` and a fresh one written: setup must not fail at every start over it.
 * @returns the plan written (`setAside` when a file was moved)
 * @throws HostError as ghHosts; an I/O error of the home volume
 */
export async function writeGhHosts(layout: Pick<Layout, 'homeDir'>, contract: PodContract): Promise<GhHostsPlan> {
  const plan = ghHosts(contract);
  if (plan.hosts.length === 0) return plan;
  const file = ghHostsFile(layout);
  let existing: Record<string, unknown> = {};
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return '';
    throw err;
  });
  if (text.trim() !== '') {
    const doc = parseDocument(text);
    const value: unknown = doc.errors.length === 0 ? doc.toJS() : undefined;
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      // The parser's message quotes the text around the error (a token, maybe): not repeated anywhere.
      plan.setAside = `${file}.invalid`;
      await rename(file, plan.setAside);
    } else {
      existing = value as Record<string, unknown>;
    }
  }
  for (const h of plan.hosts) {
    const before = existing[h.host];
    const kept = before !== null && typeof before === 'object' && !Array.isArray(before) ? (before as Record<string, unknown>) : {};
    existing[h.host] = { ...kept, ...(h.user ? { user: h.user } : {}), oauth_token: h.token, git_protocol: 'https' };
  }
  await writeFileAtomic(file, stringify(existing), 0o600);
  return plan;
}
