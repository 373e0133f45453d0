/**
 * Container probes as the kubelet runs them (pkg/kubelet/prober): httpGet (success is a
 * status in 200..399), tcpSocket (a connection opens), exec (exit code 0), each with
 * initialDelaySeconds, periodSeconds (10), timeoutSeconds (1), successThreshold (1) and
 * failureThreshold (3). gRPC probes are not supported: they count as succeeding, with a
 * warning. Ports are the runner's host ports (a named port is the container's port of
 * that name).
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import type { V1Probe } from '@kubernetes/client-node';

export interface ProbeTarget {
  /** In-pod port (number or the container's port name) → host port; undefined when unknown. */
  port(p: number | string): number | undefined;
  /** Runs an exec probe's command in the container's context; resolves with its exit code. */
  exec(command: string[], timeoutMs: number): Promise<number>;
  warn(message: string): void;
}

/** One probe attempt. @returns success, and a message on failure (for events and logs). */
export async function probeOnce(probe: V1Probe, target: ProbeTarget): Promise<{ ok: boolean; message?: string }> {
  const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000;
  if (probe.httpGet) {
    const g = probe.httpGet;
    const port = target.port(g.port);
    if (port === undefined) return { ok: false, message: `port ${String(g.port)} is not a port of the container` };
    const https = g.scheme === 'HTTPS';
    return await new Promise((resolve) => {
      const req = (https ? httpsRequest : httpRequest)(
        {
          host: g.host ?? '127.0.0.1',
          port,
          path: g.path ?? '/',
          method: 'GET',
          timeout: timeoutMs,
          headers: Object.fromEntries((g.httpHeaders ?? []).map((h) => [h.name, h.value])),
          ...(https ? { rejectUnauthorized: false } : {}),
        },
        (res) => {
          res.resume();
          const code = res.statusCode ?? 0;
          resolve(code >= 200 && code < 400 ? { ok: true } : { ok: false, message: `HTTP probe failed with statuscode: ${code}` });
        },
      );
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (err) => resolve({ ok: false, message: `Get "http${https ? 's' : ''}://127.0.0.1:${port}${g.path ?? '/'}": ${err.message}` }));
      req.end();
    });
  }
  if (probe.tcpSocket) {
    const port = target.port(probe.tcpSocket.port);
    if (port === undefined) return { ok: false, message: `port ${String(probe.tcpSocket.port)} is not a port of the container` };
    return await new Promise((resolve) => {
      const s = connect({ host: probe.tcpSocket?.host ?? '127.0.0.1', port, timeout: timeoutMs });
      s.once('connect', () => {
        s.destroy();
        resolve({ ok: true });
      });
      s.once('timeout', () => s.destroy(new Error('timeout')));
      s.once('error', (err) => resolve({ ok: false, message: `dial tcp 127.0.0.1:${port}: ${err.message}` }));
    });
  }
  if (probe.exec?.command?.length) {
    const code = await target.exec(probe.exec.command, timeoutMs).catch(() => -1);
    return code === 0 ? { ok: true } : { ok: false, message: `exec probe exited with ${code}` };
  }
  target.warn('gRPC (or empty) probe: not supported by the pod runner; counted as succeeding');
  return { ok: true };
}

/**
 * A probe on its period. `onResult(ok)` is called when the result changes after the
 * thresholds (success/failureThreshold consecutive results), and for every failure once
 * failureThreshold is reached (liveness and startup act on it).
 */
export class ProbeLoop {
  private timer: NodeJS.Timeout | undefined;
  private successes = 0;
  private failures = 0;
  private stopped = false;
  private readonly probe: V1Probe;
  private readonly target: ProbeTarget;
  private readonly onResult: (ok: boolean, message?: string) => void;

  constructor(probe: V1Probe, target: ProbeTarget, onResult: (ok: boolean, message?: string) => void) {
    this.probe = probe;
    this.target = target;
    this.onResult = onResult;
  }

  start(): void {
    this.schedule((this.probe.initialDelaySeconds ?? 0) * 1000);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), ms);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    const r = await probeOnce(this.probe, this.target);
    if (this.stopped) return;
    if (r.ok) {
      this.failures = 0;
      this.successes++;
      if (this.successes === (this.probe.successThreshold ?? 1)) this.onResult(true);
    } else {
      this.successes = 0;
      this.failures++;
      if (this.failures >= (this.probe.failureThreshold ?? 3)) this.onResult(false, r.message);
    }
    this.schedule((this.probe.periodSeconds ?? 10) * 1000);
  }
}
