import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';

export interface HealthChecks {
  /** Liveness: the process can make progress. */
  healthy: () => boolean;
  /** Readiness: caches synced and workers running. */
  ready: () => boolean;
}

/**
 * Serves `/healthz`, `/readyz` (200 or 503, plain text) and `/metrics` (Prometheus text
 * format) on `port` (0 picks a free one). Resolves with the listening server.
 */
export function serveHealthAndMetrics(port: number, host: string, checks: HealthChecks, registry: Registry): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const reply = (ok: boolean) => {
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' });
      res.end(ok ? 'ok\n' : 'not ready\n');
    };
    if (path === '/healthz') return reply(checks.healthy());
    if (path === '/readyz') return reply(checks.ready());
    if (path === '/metrics') {
      registry
        .metrics()
        .then((text) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(text);
        })
        .catch(() => {
          res.writeHead(500);
          res.end();
        });
      return;
    }
    res.writeHead(404);
    res.end();
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
