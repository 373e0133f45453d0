import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { V1MicroTime, type CoordinationV1Api, type V1Lease } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { describeError, httpStatusOf } from './errors.ts';

/** Timing of leader election, in milliseconds (client-go's defaults: 15 s, 10 s, 2 s). */
export interface LeaderTiming {
  /** How long a lease is valid after its last renewal; a standby waits this long for a silent leader. */
  leaseDurationMs: number;
  /** The leader gives up if it could not renew for this long (must be < leaseDurationMs). */
  renewDeadlineMs: number;
  /** Time between attempts to acquire or renew. */
  retryPeriodMs: number;
}

export const DEFAULT_LEADER_TIMING: LeaderTiming = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 };

export interface LeaderElectorOptions {
  api: CoordinationV1Api;
  namespace: string;
  /** Name of the coordination.k8s.io/v1 Lease. */
  name: string;
  /** This replica's identity; defaults to `<hostname>_<random>`. */
  identity?: string;
  timing?: LeaderTiming;
  log: Logger;
  /** Clock in ms; injectable for tests. */
  now?: () => number;
}

/**
 * Leader election on a `coordination.k8s.io/v1` Lease, with client-go's LeaderElector
 * semantics (k8s.io/client-go/tools/leaderelection):
 *
 * - a replica takes the lease when it is unheld, expired, or already its own; expiry is
 *   judged by when *this* replica last saw the lease change (local clock), never by the
 *   holder's timestamps, so clock skew between nodes does not matter;
 * - writes use the Lease's resourceVersion (optimistic concurrency), so two replicas
 *   can never both win the same round;
 * - the leader renews every retry period; if it cannot renew for `renewDeadlineMs` it
 *   stops leading (the caller should exit: a replica that may have lost the lease must
 *   not keep reconciling);
 * - on `release()` the leader hands the lease back at once (holder cleared), so a
 *   graceful shutdown fails over without waiting for expiry.
 */
export class LeaderElector {
  readonly identity: string;
  private readonly opts: LeaderElectorOptions;
  private readonly timing: LeaderTiming;
  private readonly now: () => number;
  private observed: { record: string; at: number } | undefined;
  private lease: V1Lease | undefined;
  private leading = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(opts: LeaderElectorOptions) {
    this.opts = opts;
    this.timing = opts.timing ?? DEFAULT_LEADER_TIMING;
    if (this.timing.renewDeadlineMs >= this.timing.leaseDurationMs) throw new Error('leader election: renewDeadline must be shorter than leaseDuration');
    this.identity = opts.identity ?? `${hostname()}_${randomBytes(4).toString('hex')}`;
    this.now = opts.now ?? Date.now;
  }

  isLeader(): boolean {
    return this.leading;
  }

  /**
   * Runs the election until `release()`: calls `onStartedLeading` once this replica
   * holds the lease, and `onStoppedLeading` if it loses it afterwards.
   */
  run(callbacks: { onStartedLeading: () => void; onStoppedLeading: () => void }): void {
    const { log } = this.opts;
    let lastRenew = this.now();
    const tick = async () => {
      if (this.stopped) return;
      const ok = await this.tryAcquireOrRenew();
      if (this.stopped) return;
      if (ok) {
        lastRenew = this.now();
        if (!this.leading) {
          this.leading = true;
          log.info({ lease: `${this.opts.namespace}/${this.opts.name}`, identity: this.identity }, 'became leader');
          callbacks.onStartedLeading();
        }
      } else if (this.leading && this.now() - lastRenew > this.timing.renewDeadlineMs) {
        this.leading = false;
        log.error({ identity: this.identity }, 'could not renew the leader lease in time; stopped leading');
        callbacks.onStoppedLeading();
        return;
      }
      this.timer = setTimeout(() => void tick(), this.timing.retryPeriodMs);
    };
    void tick();
  }

  /** Stops the election; if leading, clears the holder so another replica takes over at once. */
  async release(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (!this.leading || !this.lease) return;
    this.leading = false;
    const lease: V1Lease = {
      ...this.lease,
      spec: { ...this.lease.spec, holderIdentity: undefined, leaseDurationSeconds: 1, renewTime: new V1MicroTime(this.now()) },
    };
    try {
      await this.opts.api.replaceNamespacedLease({ name: this.opts.name, namespace: this.opts.namespace, body: lease });
      this.opts.log.info({ identity: this.identity }, 'released the leader lease');
    } catch (err) {
      this.opts.log.warn({ err: describeError(err) }, 'could not release the leader lease; the next leader waits for it to expire');
    }
  }

  /** One round: returns true when this replica holds the lease afterwards. Never throws. */
  private async tryAcquireOrRenew(): Promise<boolean> {
    const { api, namespace, name, log } = this.opts;
    const now = this.now();
    const durationS = Math.ceil(this.timing.leaseDurationMs / 1000);
    try {
      let current: V1Lease;
      try {
        current = await api.readNamespacedLease({ name, namespace });
      } catch (err) {
        if (httpStatusOf(err) !== 404) throw err;
        this.lease = await api.createNamespacedLease({
          namespace,
          body: {
            metadata: { name, namespace },
            spec: {
              holderIdentity: this.identity,
              leaseDurationSeconds: durationS,
              acquireTime: new V1MicroTime(now),
              renewTime: new V1MicroTime(now),
              leaseTransitions: 0,
            },
          },
        });
        this.observe(this.lease, now);
        return true;
      }
      this.observe(current, now);
      const spec = current.spec ?? {};
      const holder = spec.holderIdentity ?? '';
      const mine = holder === this.identity;
      const expired = !holder || now - (this.observed?.at ?? now) > (spec.leaseDurationSeconds ?? durationS) * 1000;
      if (!mine && !expired) return false;
      const body: V1Lease = {
        ...current,
        spec: {
          ...spec,
          holderIdentity: this.identity,
          leaseDurationSeconds: durationS,
          renewTime: new V1MicroTime(now),
          acquireTime: mine && spec.acquireTime ? new V1MicroTime(new Date(spec.acquireTime).getTime()) : new V1MicroTime(now),
          leaseTransitions: (spec.leaseTransitions ?? 0) + (mine ? 0 : 1),
        },
      };
      this.lease = await api.replaceNamespacedLease({ name, namespace, body });
      this.observe(this.lease, now);
      return true;
    } catch (err) {
      // 409: another replica wrote first this round.
      if (httpStatusOf(err) !== 409) log.warn({ err: describeError(err) }, 'leader election round failed');
      return false;
    }
  }

  /** Remembers when the lease record last changed, by this replica's clock. */
  private observe(lease: V1Lease, now: number): void {
    const s = lease.spec ?? {};
    const record = JSON.stringify([s.holderIdentity, s.renewTime ? new Date(s.renewTime).getTime() : 0, s.leaseTransitions]);
    if (this.observed?.record !== record) this.observed = { record, at: now };
  }
}
