/** The Helm chart lints, and everything it renders is accepted by the real API server. */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, inject, it } from 'vitest';
import { CACHE_BIN } from '../../scripts/lib/cluster.ts';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { stringify } from 'yaml';
import { kubeClients, kubectl, makeNamespace, waitFor } from '../support/kube.ts';
import { ROOT } from '../../scripts/lib/paths.ts';

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

  it('installs into the cluster, and an Agent from its agents: values becomes Ready', async () => {
    const c = kubeClients(kubeconfig);
    const ns = await makeNamespace(c, 'helm');
    try {
      const values = join(mkdtempSync(join(tmpdir(), 'helm-values-')), 'values.yaml');
      writeFileSync(
        values,
        stringify({ agents: [{ name: 'chartbot', spec: { team: 'charts', persona: { instructions: 'You are chartbot.' }, egress: { allow: ['github.com'] } } }] }),
      );
      const { stdout } = await run(helm, ['install', 'smith', chart, '--kubeconfig', kubeconfig, '--namespace', ns.name, '--values', values, '--wait=false']);
      expect(stdout).toContain('STATUS: deployed');
      const dep = await c.apps.readNamespacedDeployment({ name: 'smith-operator', namespace: ns.name });
      expect(dep.spec?.replicas).toBe(2);
      expect(dep.spec?.template.spec?.containers[0]?.args).toContain('--leader-elect');
      // The suite's operator reconciles it (the chart's own pods only run on kwok here).
      const agent = await waitFor('chartbot Ready', async () => {
        const a = (await c.custom.getNamespacedCustomObject({ group: 'agentsmith.dev', version: 'v1alpha1', namespace: ns.name, plural: 'agents', name: 'chartbot' })) as {
          metadata?: { labels?: Record<string, string> };
          status?: { conditions?: { type: string; status: string }[] };
        };
        return a.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True') ? a : undefined;
      }, 90_000);
      expect(agent.metadata?.labels?.['app.kubernetes.io/managed-by']).toBe('Helm');
      const { stdout: uninstall } = await run(helm, ['uninstall', 'smith', '--kubeconfig', kubeconfig, '--namespace', ns.name]);
      expect(uninstall).toContain('uninstalled');
    } finally {
      await ns.remove();
    }
  });
});
