/**
 * How the processes of the agent pod trust the per-agent egress CA: which variables name
 * which file. One list for the operator (the agent and setup containers' environment, so
 * `kubectl exec` sees it), setup (git while cloning) and the supervisor (the CLI's and the
 * shell's tmux panes), so a tool trusts the same roots however it was started.
 *
 * Two files:
 *
 * - the egress CA certificate alone ({@link EGRESS_CA_CERT_FILE}, mounted from the
 *   agent's egress CA Secret): for NODE_EXTRA_CA_CERTS, which ADDS certificates to Node's
 *   built-in roots (Node docs, "NODE_EXTRA_CA_CERTS");
 * - the bundle setup writes ({@link CA_BUNDLE_FILE}: the image's system roots plus the
 *   egress CA): for the variables that REPLACE a client's roots: SSL_CERT_FILE (OpenSSL's
 *   default file: curl, Go, Python's ssl), CURL_CA_BUNDLE (curl), GIT_SSL_CAINFO (git's
 *   http.sslCAInfo) and REQUESTS_CA_BUNDLE (Python requests, instead of certifi). With the
 *   egress CA alone there, a direct TLS peer (an in-cluster service on NO_PROXY) would no
 *   longer be trusted.
 */
import { access } from 'node:fs/promises';
import path from 'node:path';
import { EGRESS_CA_CERT_DIR, EGRESS_CA_CERT_NAME, HOME_DIR } from './contract.ts';
import type { Layout } from './layout.ts';

/** The egress CA certificate (PEM), as mounted in every container of the pod. */
export const EGRESS_CA_CERT_FILE = `${EGRESS_CA_CERT_DIR}/${EGRESS_CA_CERT_NAME}`;

/** Name of the bundle (system roots + egress CA) in agent-smith's state folder on the home volume. */
const CA_BUNDLE_NAME = 'ca-bundle.pem';

/** The bundle setup writes, as an in-pod path (HOME is /home/agent in the pod). */
export const CA_BUNDLE_FILE = `${HOME_DIR}/.agent-smith/${CA_BUNDLE_NAME}`;

/** Variables that add to a client's own roots: the egress CA certificate. */
const ADDING = ['NODE_EXTRA_CA_CERTS'] as const;
/** Variables that replace a client's roots: the bundle, so the system roots stay trusted. */
const REPLACING = ['SSL_CERT_FILE', 'GIT_SSL_CAINFO', 'CURL_CA_BUNDLE', 'REQUESTS_CA_BUNDLE'] as const;

/** Every variable the pod's trust is set by, in the order the operator renders them. */
export const TRUST_VARIABLES: readonly string[] = [...ADDING, ...REPLACING];

/**
 * The trust variables for these files: NODE_EXTRA_CA_CERTS -> `caCert`, SSL_CERT_FILE,
 * GIT_SSL_CAINFO, CURL_CA_BUNDLE, REQUESTS_CA_BUNDLE -> `bundle`. Defaults: the in-pod
 * paths (what the operator renders).
 */
export function trustEnv(files: { caCert: string; bundle: string } = { caCert: EGRESS_CA_CERT_FILE, bundle: CA_BUNDLE_FILE }): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of ADDING) out[name] = files.caCert;
  for (const name of REPLACING) out[name] = files.bundle;
  return out;
}

/** The bundle of this layout: `<stateDir>/ca-bundle.pem` (CA_BUNDLE_FILE in a pod). */
export function caBundleFile(layout: Pick<Layout, 'stateDir'>): string {
  return path.join(layout.stateDir, CA_BUNDLE_NAME);
}

/**
 * The trust variables for a process of this layout (setup's git, the supervisor's tmux
 * panes): {@link trustEnv} of the layout's files, or `{}` while setup has written no
 * bundle (no egress CA mounted: system roots only).
 */
export async function layoutTrustEnv(layout: Pick<Layout, 'stateDir' | 'caCertFile'>): Promise<Record<string, string>> {
  const bundle = caBundleFile(layout);
  try {
    await access(bundle);
  } catch {
    return {};
  }
  return trustEnv({ caCert: layout.caCertFile, bundle });
}
