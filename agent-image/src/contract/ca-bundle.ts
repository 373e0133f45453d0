/**
 * The extra upstream CAs of an Agent (spec.egress.upstreamCaConfigMapRef): what the
 * operator checks before it rolls a pod (operator/src/reconcile/references.ts) and what
 * the egress proxy checks when it starts (programs/proxy/config.ts upstreamCaFromEnv), so
 * a bundle the operator accepts is one the proxy accepts; and the wire between the two
 * (the variable and the path the operator mounts the bundle at). Pure.
 */
import { X509Certificate } from 'node:crypto';

/**
 * The variable naming the PEM file of extra upstream CAs. The operator sets it on the
 * egress-proxy container, to {@link UPSTREAM_CA_FILE}, only when the Agent has
 * spec.egress.upstreamCaConfigMapRef; the proxy trusts the system roots only without it.
 */
export const UPSTREAM_CA_ENV = 'AGENT_SMITH_UPSTREAM_CA';

/** Where the egress-proxy container finds that bundle (one ConfigMap key, mounted read-only in that container only). */
export const UPSTREAM_CA_FILE = '/etc/agent-smith/upstream-ca/ca.crt';

/** Largest upstream CA bundle accepted, in bytes (a distribution's whole root store is ~220 kB). */
export const MAX_CA_BUNDLE_BYTES = 512 * 1024;

const BEGIN = '-----BEGIN CERTIFICATE-----';
const END = '-----END CERTIFICATE-----';

/** The `BEGIN CERTIFICATE … END CERTIFICATE` blocks of `text`, in order; an unterminated block ends the scan. Linear. */
function pemBlocks(text: string): string[] {
  const blocks: string[] = [];
  for (let at = text.indexOf(BEGIN); at >= 0; at = text.indexOf(BEGIN, at)) {
    const end = text.indexOf(END, at + BEGIN.length);
    if (end < 0) break;
    blocks.push(text.slice(at, end + END.length));
    at = end + END.length;
  }
  return blocks;
}

/**
 * The certificates of a PEM bundle, each parsed: every `-----BEGIN CERTIFICATE-----`
 * block must be an X.509 certificate; text between blocks (comments, the headers of
 * distribution bundles) is ignored.
 * The scan is linear in the text (a regular expression over many BEGIN lines without an
 * END took quadratic time: seconds for a ConfigMap-sized input), and a bundle over
 * {@link MAX_CA_BUNDLE_BYTES} is refused before it.
 * @returns the PEM blocks and their subjects (`CN=..., O=...`)
 * @throws Error saying what is wrong (too large, no block, or which block does not parse),
 *   never quoting the text
 */
export function parseCaBundle(text: string): { pems: string[]; subjects: string[] } {
  if (Buffer.byteLength(text) > MAX_CA_BUNDLE_BYTES) throw new Error(`it is larger than ${MAX_CA_BUNDLE_BYTES / 1024} KiB; keep only the CAs the agent's upstreams need`);
  const pems = pemBlocks(text);
  if (!pems.length) throw new Error('no PEM certificate in it; it must hold one or more -----BEGIN CERTIFICATE----- blocks');
  const subjects: string[] = [];
  for (const [i, p] of pems.entries()) {
    try {
      subjects.push(new X509Certificate(p).subject.replace(/\n/g, ', '));
    } catch (err) {
      throw new Error(`certificate ${i + 1} of ${pems.length} is not a valid certificate (${(err as Error).message})`);
    }
  }
  return { pems, subjects };
}
