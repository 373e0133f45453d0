/** The Helm chart lints, and everything it renders is accepted by the real API server. */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, inject, it } from 'vitest';
import { CACHE_BIN } from '../../scripts/lib/cluster.ts';
import { kubectl } from '../support/kube.ts';
import { ROOT } from '../support/paths.ts';

const run = promisify(execFile);
const helm = existsSync(join(CACHE_BIN, 'helm')) ? join(CACHE_BIN, 'helm') : 'helm';
const chart = join(ROOT, 'charts/agent-smith');
const kubeconfig = inject('kubeconfig');

describe('charts/agent-smith', () => {
  it('passes helm lint', async () => {
    const { stdout } = await run(helm, ['lint', chart]);
    expect(stdout).toContain('0 chart(s) failed');
  });

  it('renders objects the API server accepts (server-side dry run), CRD included', async () => {
    const { stdout: manifest } = await run(helm, ['template', 'agent-smith', chart, '--namespace', 'default', '--include-crds']);
    expect(manifest).toContain('kind: CustomResourceDefinition');
    expect(manifest).toContain('kind: Deployment');
    const applied = await kubectl(kubeconfig, ['apply', '--dry-run=server', '--server-side', '--field-manager=helm-test', '-f', '-'], manifest);
    expect(applied.stderr).toBe('');
    expect(applied.stdout).toMatch(/deployment.apps\/agent-smith-operator serverside-applied \(server dry run\)/);
    expect(applied.stdout).toMatch(/clusterrole.rbac.authorization.k8s.io\/agent-smith-operator serverside-applied/);
  });
});
