/**
 * `agent-smith setup`, the init container: validate the contract, trust the egress CA,
 * assemble the harness's home, give git (credential helpers) and gh (hosts.yml, gh.ts)
 * the credential stubs, clone or fetch the repositories. Idempotent: a second run
 * on the same volumes changes nothing that the agent made and fails nothing.
 *
 * It never sees a real credential: those are mounted into the egress-proxy container only.
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { parseCaBundle } from '../../contract/ca-bundle.ts';
import { EGRESS_CA_CERT_NAME, type PodContract } from '../../contract/contract.ts';
import { loadContract } from '../../contract/load.ts';
import { caBundleFile, layoutTrustEnv } from '../../contract/trust.ts';
import { harnessContext } from '../../plugins/harness/context.ts';
import { adapterFor } from '../../plugins/harness/index.ts';
import { writeFileAtomic } from '../../lib/files.ts';
import { layoutFromEnv, type Layout } from '../../contract/layout.ts';
import { makeLogger } from '../../lib/log.ts';
import { ghHostsFile, writeGhHosts } from './gh.ts';
import { syncRepos } from './repos.ts';

const run = promisify(execFile);

/** Where the system's CA bundle is on Debian (the agent image's base). */
export const SYSTEM_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';

/**
 * Writes the CA bundle (system roots + egress CA). The container runs as a non-root user,
 * so the system store itself cannot change; every tool is pointed at the bundle instead.
 * @returns false when no egress CA is mounted.
 */
export async function writeCaBundle(layout: Layout): Promise<boolean> {
  let ca: string;
  try {
    ca = await readFile(layout.caCertFile, 'utf8');
  } catch {
    return false;
  }
  try {
    parseCaBundle(ca);
  } catch (err) {
    throw new Error(`${layout.caCertFile}: ${(err as Error).message}; check the agent's egress CA Secret (key ${EGRESS_CA_CERT_NAME})`);
  }
  const system = await readFile(SYSTEM_CA_BUNDLE, 'utf8').catch(() => '');
  await writeFileAtomic(caBundleFile(layout), `${system.trimEnd()}\n# agent-smith egress CA\n${ca.trim()}\n`);
  return true;
}

/**
 * Configures git (the agent's `~/.gitconfig`) to present each Authorization-header
 * credential's STUB as the password for its exact hosts (`x-access-token:<stub>`, the
 * form GitHub documents for tokens over HTTPS); the egress proxy swaps it for the real
 * token. Wildcard hosts get no helper (git's credential matching is per host). The helper
 * answers every git operation on `https://<host>/...`: clones, fetches and pushes alike,
 * on github.com and on a GitHub Enterprise host a credential names. Idempotent.
 */
export async function writeGitCredentials(layout: Layout, contract: PodContract, env: NodeJS.ProcessEnv): Promise<number> {
  const file = path.join(layout.homeDir, '.gitconfig');
  let n = 0;
  for (const c of contract.egress.credentials) {
    if (c.header.toLowerCase() !== 'authorization') continue;
    for (const host of c.hosts.filter((h) => !h.startsWith('*.'))) {
      const [name] = host.split(':');
      const helper = `!f() { test "$1" = get && printf 'username=x-access-token\\npassword=%s\\n' '${c.stub}'; }; f`;
      await run('git', ['config', '--file', file, '--replace-all', `credential.https://${name}.helper`, helper], { env });
      n++;
    }
  }
  return n;
}

/**
 * Writes the contract's git identity (user.name, user.email) into the agent's
 * `~/.gitconfig`, so its commits carry it; `git config` quotes the values. Idempotent.
 * @returns whether the contract has one (an older operator's contract may not)
 * @throws Error from git (not on PATH, ~/.gitconfig not writable): setup fails, as it does
 *   for the credential helpers written to the same file
 */
export async function writeGitIdentity(layout: Layout, contract: PodContract, env: NodeJS.ProcessEnv): Promise<boolean> {
  if (!contract.git) return false;
  const file = path.join(layout.homeDir, '.gitconfig');
  await run('git', ['config', '--file', file, 'user.name', contract.git.name], { env });
  await run('git', ['config', '--file', file, 'user.email', contract.git.email], { env });
  return true;
}

/** Runs setup. @throws ContractError (bad contract), Error naming the file or repository that failed. */
export async function runSetup(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const log = makeLogger('agent-smith-setup');
  const layout = layoutFromEnv(env);
  const contract = loadContract(layout.contractFile);
  const ctx = harnessContext(contract, layout, env);
  log.info({ agent: contract.agent.name, harness: contract.harness.kind, repos: contract.repos.length }, 'setup starting');

  await mkdir(layout.stateDir, { recursive: true, mode: 0o700 });
  const trusted = await writeCaBundle(layout);
  log.info({ trusted, bundle: trusted ? caBundleFile(layout) : undefined }, trusted ? 'egress CA trusted' : 'no egress CA mounted; system roots only');

  await adapterFor(contract.harness.kind).prepareHome(ctx);
  log.info({ home: layout.homeDir }, 'harness home assembled');

  const gitEnv = { ...env, HOME: layout.homeDir, ...(await layoutTrustEnv(layout)) };
  const helpers = await writeGitCredentials(layout, contract, gitEnv);
  if (await writeGitIdentity(layout, contract, gitEnv)) log.info({ name: contract.git?.name, email: contract.git?.email }, 'git identity set');
  if (helpers) log.info({ hosts: helpers }, 'git presents the credential stubs (never a real token) for their hosts');
  const gh = await writeGhHosts(layout, contract);
  if (gh.setAside) log.warn({ file: gh.setAside }, 'gh hosts.yml was not a YAML mapping of host names: moved aside, a fresh one written');
  if (gh.hosts.length) log.info({ file: ghHostsFile(layout), hosts: gh.hosts.map((h) => ({ host: h.host, credential: h.credential })) }, 'gh logged in with the credential stubs');
  for (const apiHost of gh.uncovered) log.warn({ apiHost }, `gh is not logged in: no egress credential covers ${apiHost}; add one to spec.egress.credentials with ${apiHost} in its hosts`);
  const results = await syncRepos(contract.repos, { env: gitEnv, log });
  await mkdir(ctx.workdir, { recursive: true });
  log.info({ repos: results, workdir: ctx.workdir }, 'setup done');
}
