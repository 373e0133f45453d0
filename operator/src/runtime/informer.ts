import {
  ListWatch,
  Watch,
  type KubeConfig,
  type RequestContext,
  type KubernetesObject,
  type KubernetesListObject,
  type ObjectCache,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { ExponentialBackoff } from './backoff.ts';
import { describeError } from './errors.ts';

/**
 * `kc` for a watch that sends `accept` as its Accept header. client-node's Watch sets no
 * Accept header and reads only `getCurrentCluster` and `applySecurityAuthentication` of
 * its config; every call goes to `kc` itself (its connection pool included).
 */
function withAcceptHeader(kc: KubeConfig, accept: string): KubeConfig {
  return new Proxy(kc, {
    get(target, prop) {
      if (prop === 'applySecurityAuthentication') {
        return async (ctx: RequestContext) => {
          await target.applySecurityAuthentication(ctx);
          ctx.setHeaderParam('Accept', accept);
        };
      }
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/**
 * Watch that asks the server for bookmarks, so a quiet resource keeps a fresh
 * resourceVersion, and passes each added, modified or deleted object through
 * `transform` before the cache sees it.
 */
class BookmarkWatch<T> extends Watch {
  private readonly transform: ((obj: T) => T) | undefined;

  constructor(kc: KubeConfig, transform?: (obj: T) => T, accept?: string) {
    super(accept ? withAcceptHeader(kc, accept) : kc);
    this.transform = transform;
  }

  override watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    const transform = this.transform;
    const cb = transform
      ? (phase: string, apiObj: unknown, watchObj?: unknown) =>
          callback(phase, phase === 'ADDED' || phase === 'MODIFIED' || phase === 'DELETED' ? transform(apiObj as T) : apiObj, watchObj)
      : callback;
    return super.watch(path, { ...queryParams, allowWatchBookmarks: true }, cb, done);
  }
}

export interface InformerOptions<T extends KubernetesObject> {
  /** Short name for logs and metrics, e.g. `agents`. */
  name: string;
  /** Collection path, e.g. `/apis/apps/v1/statefulsets`. */
  path: string;
  /** Lists the collection (with the same selector as `labelSelector`). */
  list: () => Promise<KubernetesListObject<T>>;
  labelSelector?: string;
  /** Field selector of the list and the watch, e.g. `spec.nodeName=local` (the list must use the same). */
  fieldSelector?: string;
  /** Called for every add, update and delete (the object as last seen). */
  onChange: (obj: T) => void;
  /** Also called for a delete (after it left the cache), before `onChange`. */
  onDelete?: (obj: T) => void;
  /**
   * Applied to every listed and watched object before it is cached (client-go's
   * TransformFunc): drop what readers of the cache never look at. Must keep
   * `metadata.name`, `namespace` and `resourceVersion`. Default: keep everything.
   */
  transform?: (obj: T) => T;
  /**
   * Accept header of the watch request, e.g. kube/metadata.ts's PartialObjectMetadata
   * type for a metadata-only watch; `list` must then ask for the same representation.
   * Default: none (full JSON objects).
   */
  watchAccept?: string;
  log: Logger;
  /** Restart backoff; defaults to 1 s doubling to 30 s. */
  backoff?: ExponentialBackoff;
}

/**
 * A shared informer that never gives up. client-node's `ListWatch` relists on 410 Gone
 * but stops for good on any other error (connection refused while the API server
 * restarts, a 5xx, a 403 while RBAC propagates); this wrapper restarts it with capped
 * exponential backoff, keeping the cache, so a watch resumes from its last
 * resourceVersion or relists when that is too old. Bookmarks are requested so a quiet
 * collection's resourceVersion stays fresh.
 *
 * `hasSynced()` becomes true after the first complete list.
 */
export class ResilientInformer<T extends KubernetesObject> {
  private readonly lw: ListWatch<T>;
  private synced = false;
  private stopped = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private readonly backoff: ExponentialBackoff;
  private readonly syncWaiters: Array<() => void> = [];

  private readonly opts: InformerOptions<T>;

  constructor(kc: KubeConfig, opts: InformerOptions<T>) {
    this.opts = opts;
    this.backoff = opts.backoff ?? new ExponentialBackoff(1000, 30_000);
    const list = async (): Promise<KubernetesListObject<T>> => {
      const result = await opts.list();
      if (opts.transform) result.items = result.items.map(opts.transform);
      // The list replaces the cache; the first one completes the initial sync.
      // ListWatch fills its cache right after this promise settles; mark synced after that.
      setImmediate(() => this.markSynced());
      return result;
    };
    this.lw = new ListWatch<T>(opts.path, new BookmarkWatch<T>(kc, opts.transform, opts.watchAccept), list, false, opts.labelSelector, opts.fieldSelector);
    for (const verb of ['add', 'update', 'delete'] as const) {
      this.lw.on(verb, (obj: T) => {
        this.backoff.forget('watch');
        if (verb === 'delete') opts.onDelete?.(obj);
        opts.onChange(obj);
      });
    }
    this.lw.on('error', (err: unknown) => this.scheduleRestart(err));
  }

  /** The read-only cache (get by name and namespace, list by namespace). */
  get cache(): ObjectCache<T> {
    return this.lw;
  }

  hasSynced(): boolean {
    return this.synced;
  }

  /** Resolves once the first list has completed (retrying through errors). */
  waitForSync(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  start(): void {
    this.stopped = false;
    this.lw.start().catch((err: unknown) => this.scheduleRestart(err));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    await this.lw.stop();
  }

  private markSynced(): void {
    if (this.synced) return;
    this.synced = true;
    for (const w of this.syncWaiters.splice(0)) w();
  }

  private scheduleRestart(err: unknown): void {
    if (this.stopped || this.restartTimer) return;
    const delay = this.backoff.next('watch');
    this.opts.log.warn({ informer: this.opts.name, err: describeError(err), retryInMs: delay }, 'watch failed; restarting');
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.stopped) return;
      this.lw.start().catch((e: unknown) => this.scheduleRestart(e));
    }, delay);
    this.restartTimer.unref();
  }
}
