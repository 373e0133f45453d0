/**
 * The proxy's health port (PROXY_HEALTH_PORT, 15021; the kubelet probes it on the pod
 * IP, so it listens on every interface): `GET /healthz` (the process is alive),
 * `GET /readyz` (200 once config, CA and every credential are loaded; 503 with the reason
 * otherwise), `GET /metrics` (Prometheus text format). Nothing here changes state or
 * shows a value.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../../lib/log.ts';
import type { ProxyMetrics } from './metrics.ts';
import { PROBE_PATHS } from '../../contract/pod.ts';

export interface HealthServer {
  port: number;
  close(): Promise<void>;
}

function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host, exclusive: true }, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** Serves the health endpoints. `status()` is undefined when ready, else the reason. */
export async function serveHealth(opts: { port: number; status: () => string | undefined; metrics: ProxyMetrics; log: Logger }): Promise<HealthServer> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const text = (status: number, body: string, type = 'text/plain; charset=utf-8') => res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store' }).end(body);
    if (req.method !== 'GET' && req.method !== 'HEAD') return text(405, 'method not allowed\n');
    if (path === PROBE_PATHS.healthz) return text(200, 'ok\n');
    if (path === PROBE_PATHS.readyz) {
      const reason = opts.status();
      return reason === undefined ? text(200, 'ready\n') : text(503, `not ready: ${reason}\n`);
    }
    if (path === '/metrics') {
      opts.metrics.registry.metrics().then(
        (body) => text(200, body, opts.metrics.registry.contentType),
        (err: Error) => text(500, `metrics: ${err.message}\n`),
      );
      return;
    }
    text(404, 'not found: /healthz, /readyz, /metrics\n');
  });
  server.keepAliveTimeout = 5_000;
  let port: number;
  try {
    // Dual-stack where IPv6 exists; the kubelet may probe either family.
    port = await listen(server, opts.port, '::');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EAFNOSUPPORT' && code !== 'EADDRNOTAVAIL') throw err;
    opts.log.warn({ code }, 'egress proxy health: IPv6 unavailable; listening on 0.0.0.0');
    port = await listen(server, opts.port, '0.0.0.0');
  }
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
