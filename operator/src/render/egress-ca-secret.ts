import type { V1Secret } from '@kubernetes/client-node';
import type { Agent } from '../api/agent.ts';
import { childMeta, childNames } from './meta.ts';
import { EGRESS_CA_CERT_NAME, EGRESS_CA_KEY_NAME } from '../../../agent-image/src/contract/contract.ts';

/** Annotation: hash of the allowlist the CA's name constraints were made for. */
export const ANNOTATION_CA_ALLOWLIST = 'agentsmith.dev/ca-allowlist-hash';
/** Annotation: the CA's notAfter (RFC 3339), so rotation needs no certificate parsing. */
export const ANNOTATION_CA_NOT_AFTER = 'agentsmith.dev/ca-not-after';

/**
 * `<agent>-egress-ca`: the per-agent CA (`ca.crt` for every container's trust store,
 * `ca.key` for the egress proxy only). Pure: the CA material is made by the reconciler.
 */
export function renderEgressCaSecret(agent: Agent, ca: { certPem: string; keyPem: string; notAfter: Date }, allowlistHash: string): V1Secret {
  const meta = childMeta(agent, childNames(agent.metadata.name).egressCa, 'egress-ca');
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { ...meta, annotations: { [ANNOTATION_CA_ALLOWLIST]: allowlistHash, [ANNOTATION_CA_NOT_AFTER]: ca.notAfter.toISOString() } },
    type: 'Opaque',
    data: { [EGRESS_CA_CERT_NAME]: Buffer.from(ca.certPem).toString('base64'), [EGRESS_CA_KEY_NAME]: Buffer.from(ca.keyPem).toString('base64') },
  };
}
