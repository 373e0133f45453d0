/** The operator's health and metrics endpoints, as a kubelet probe and Prometheus see them. */
import { describe, expect, inject, it } from 'vitest';
import { waitFor } from '../support/kube.ts';

const base = inject('operatorHttp');

describe('operator HTTP endpoints', () => {
  it('is live and ready once its caches have synced', async () => {
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    await waitFor('/readyz 200', async () => (await fetch(`${base}/readyz`)).status === 200, 30_000);
  });

  it('exports controller-runtime style metrics in the Prometheus text format', async () => {
    const res = await fetch(`${base}/metrics`);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    for (const name of ['controller_runtime_reconcile_total', 'controller_runtime_reconcile_time_seconds', 'workqueue_depth', 'workqueue_queue_duration_seconds', 'agentsmith_api_requests_total', 'agentsmith_leader', 'agentsmith_agents', 'process_cpu_seconds_total']) {
      expect(text).toContain(`# TYPE ${name}`);
    }
  });
});
