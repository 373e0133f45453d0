import { createHash, type Hash } from 'node:crypto';
import type { AgentOptions } from 'node:https';
import { KubeConfig, type Cluster, type RequestContext } from '@kubernetes/client-node';

type Dispatcher = NonNullable<ReturnType<RequestContext['getDispatcher']>>;
type DispatcherOptions = ReturnType<KubeConfig['createDispatcherOptions']>;

/** Feeds a value (TLS options: buffers, strings, booleans, nested objects) into `hash`, key order ignored. */
function feed(hash: Hash, value: unknown): void {
  if (value instanceof Uint8Array) {
    hash.update(`b${value.length}:`).update(value);
  } else if (Array.isArray(value)) {
    hash.update(`a${value.length}:`);
    for (const v of value) feed(hash, v);
  } else if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    hash.update(`o${entries.length}:`);
    for (const [k, v] of entries) {
      hash.update(`${k.length}:${k}`);
      feed(hash, v);
    }
  } else {
    const s = typeof value === 'function' ? 'function' : (JSON.stringify(value) ?? 'undefined');
    hash.update(`${s.length}:${s}`);
  }
}

/**
 * A KubeConfig whose API requests and watches share one pool of keep-alive connections.
 *
 * client-node 2.0.1 builds a new undici Agent in every `applySecurityAuthentication`
 * call, that is for every request and every watch, so each request opens its own TLS
 * connection (a handshake with the client certificate, OpenSSL buffers, a socket left
 * idle for undici's 4 s keep-alive). During a burst of reconciles that was hundreds of
 * open sockets and most of the operator's memory outside the JS heap. Here the first
 * dispatcher built for a set of TLS options is kept and handed to every later request
 * with the same options; when the options change (a rotated client certificate or CA
 * file, whose bytes client-node reads on each request) a new dispatcher replaces it and
 * the old one is closed once its requests finish.
 *
 * It relies on client-node calling `createDispatcherOptions` and then
 * `context.setDispatcher` in one synchronous stretch of `applySecurityAuthentication`
 * (kubeconfig.test.ts checks that the dispatcher is shared and follows the options).
 */
export class PooledKubeConfig extends KubeConfig {
  private shared: { key: string; dispatcher: Dispatcher } | undefined;
  /** Fingerprint of the options of the dispatcher client-node is building right now. */
  private building: string | undefined;

  override createDispatcherOptions(cluster: Cluster | null, agentOptions: AgentOptions): DispatcherOptions {
    const opts = super.createDispatcherOptions(cluster, agentOptions);
    const hash = createHash('sha256');
    feed(hash, opts);
    this.building = hash.digest('hex');
    return opts;
  }

  override async applySecurityAuthentication(context: RequestContext): Promise<void> {
    const set = context.setDispatcher.bind(context);
    // The context is this request's own; only its setDispatcher is wrapped.
    context.setDispatcher = (fresh: Dispatcher) => set(this.share(fresh));
    await super.applySecurityAuthentication(context);
  }

  /** The shared dispatcher for the options just fingerprinted; `fresh` (no connection yet) becomes it when they changed. */
  private share(fresh: Dispatcher): Dispatcher {
    const key = this.building;
    this.building = undefined;
    if (key === undefined) return fresh; // not built through createDispatcherOptions: leave it alone
    if (this.shared?.key === key) return this.shared.dispatcher;
    const old = this.shared?.dispatcher;
    this.shared = { key, dispatcher: fresh };
    // Graceful: in-flight requests and watches on the old one finish first.
    old?.close().catch(() => undefined);
    return fresh;
  }
}
