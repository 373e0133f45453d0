import { createHmac } from 'node:crypto';

/** Prefix of every stub token, so a stub is recognisable in a log or a leak report. */
export const STUB_PREFIX = 'agent-smith-stub-';

/**
 * The stub token an agent holds instead of credential `credential`: HMAC-SHA256 keyed by
 * the per-agent egress CA private key (PEM) over the agent and the credential name,
 * base64url — 256 bits the agent cannot forge or tell from random, stable while the CA
 * is, and new when the CA rotates (which rolls the pod anyway). Pure. The proxy does not
 * derive it: it reads it from the pod contract like the agent does.
 */
export function credentialStub(caKeyPem: string, agentRef: string, credential: string): string {
  const mac = createHmac('sha256', caKeyPem).update('agent-smith credential stub v1\0').update(agentRef).update('\0').update(credential).digest('base64url');
  return `${STUB_PREFIX}${mac}`;
}
