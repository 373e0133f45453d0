/** `kubectl explain` shows the schema's descriptions, so a user can read the API from the cluster. */
import { describe, expect, inject, it } from 'vitest';
import { kubectl } from '../support/kube.ts';

const kubeconfig = inject('kubeconfig');

describe('kubectl explain agent', () => {
  it('describes the spec fields', async () => {
    const out = await kubectl(kubeconfig, ['explain', 'agent.spec']);
    expect(out.stderr).toBe('');
    expect(out.stdout).toContain('Desired state of an agent.');
    for (const field of ['harness', 'persona', 'repos', 'primaryRepo', 'matrix', 'github', 'egress', 'events', 'kubernetesAccess', 'storage', 'suspend', 'pod']) {
      expect(out.stdout).toMatch(new RegExp(`^\\s+${field}\\s`, 'm'));
    }
  });

  it('describes nested fields with their defaults', async () => {
    const out = await kubectl(kubeconfig, ['explain', 'agent.spec.egress.enforcement']);
    expect(out.stdout).toContain('iptables: transparent redirect');
    const storage = await kubectl(kubeconfig, ['explain', 'agent.spec.storage.home']);
    expect(storage.stdout).toContain('Size of the home volume');
  });
});
