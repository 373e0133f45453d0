/**
 * The audit trail: one JSON line per request, CONNECT or refused TLS handshake, and one
 * per DNS name refused by the proxy's DNS listener (mode `dns`, dns.ts: per name the
 * client meant, not per search-list expansion), on the proxy's log (stderr), with
 * `audit: true` so a collector can route it.
 *
 * Fields: time (pino's, epoch ms), mode (explicit | connect | transparent), conn (connection id),
 * host, port, method, path (query values removed, names kept), decision (allow | deny | error),
 * reason, rule (the allowlist entry that matched), credential and location (what was
 * swapped, e.g. `header:authorization`), qname and qtype (mode `dns`: the query as sent,
 * e.g. `evil.example.ns.svc.cluster.local` and `A`; host is then the name meant), status (the upstream's, or the proxy's own for a
 * refusal), bytesIn / bytesOut (body bytes to the upstream / to the agent), durationMs.
 *
 * Never a value: every string field passes the credential redactor (stubs and real
 * values in any encoded form become `[redacted:<name>]` / `[stub:<name>]`) before it is
 * cut to its length limit, query values are dropped, and no header value is logged
 * except as a redacted quote inside a refusal message.
 */
import type { Logger } from '../../lib/log.ts';
import { shorten } from './swap.ts';

export type Mode = 'explicit' | 'connect' | 'transparent' | 'dns';
/** allow: passed policy (forwarded); deny: refused by policy; error: allowed, but the upstream failed. */
export type Decision = 'allow' | 'deny' | 'error';

export interface AuditRecord {
  mode: Mode;
  conn: number;
  host?: string;
  port?: number;
  method?: string;
  path?: string;
  decision: Decision;
  reason: string;
  rule?: string;
  credential?: string;
  location?: string;
  status?: number;
  bytesIn?: number;
  bytesOut?: number;
  durationMs?: number;
  upgrade?: boolean;
  /** Mode `dns`: the query name as the client sent it. */
  qname?: string;
  /** Mode `dns`: the query type (`A`, `AAAA`, `TXT`...). */
  qtype?: string;
  /** A human explanation for a refusal (no values). */
  message?: string;
}

/** Longest path kept in an audit line (characters, after redaction). */
const MAX_PATH = 512;
/** Longest other string field (characters, after redaction). */
const MAX_FIELD = 1024;

/**
 * `target` without query values and fragment: `/search?q=secret&page=2` becomes
 * `/search?q&page`. An absolute-form target keeps only its path.
 */
export function auditPath(target: string): string {
  let t = target;
  if (!t.startsWith('/')) {
    try {
      const u = new URL(t);
      t = u.pathname + u.search;
    } catch {
      return '(not a path)';
    }
  }
  const hash = t.indexOf('#');
  if (hash >= 0) t = t.slice(0, hash);
  const q = t.indexOf('?');
  let out = t;
  if (q >= 0) {
    const names = t
      .slice(q + 1)
      .split('&')
      .filter(Boolean)
      .map((kv) => kv.split('=')[0] ?? '');
    out = `${t.slice(0, q)}?${names.join('&')}`;
  }
  // Not cut here: the Auditor redacts the whole path, then cuts it (MAX_PATH).
  return out;
}

/** Writes audit lines through `log`, redacting every string field with `redact`. */
export class Auditor {
  readonly #log: Logger;
  #redact: (s: string) => string;

  constructor(log: Logger, redact: (s: string) => string = (s) => s) {
    this.#log = log;
    this.#redact = redact;
  }

  /** Replaces the redactor (when credentials are loaded). */
  setRedactor(redact: (s: string) => string): void {
    this.#redact = redact;
  }

  write(rec: AuditRecord): void {
    // pino adds `time` (epoch ms) to every line.
    const out: Record<string, unknown> = { audit: true };
    for (const [k, v] of Object.entries(rec)) {
      if (v === undefined) continue;
      // Redact first, then cut: a cut value would hide a secret's prefix from the redactor.
      out[k] = typeof v === 'string' ? shorten(this.#redact(v), k === 'path' ? MAX_PATH : MAX_FIELD) : v;
    }
    if (rec.decision === 'allow') this.#log.info(out, 'egress');
    else this.#log.warn(out, rec.decision === 'deny' ? 'egress denied' : 'egress failed');
  }
}

/**
 * The audit line of one request, filled in as it progresses and written exactly once
 * (`done`), whichever of response end, refusal, upstream error or client abort comes first.
 */
export class Trail {
  readonly rec: AuditRecord;
  readonly #write: (rec: AuditRecord) => void;
  readonly #started = performance.now();
  #finished = false;

  constructor(base: AuditRecord, write: (rec: AuditRecord) => void) {
    this.rec = base;
    this.#write = write;
  }

  get finished(): boolean {
    return this.#finished;
  }

  /** Merges `patch` and writes the line (only the first call writes). */
  done(patch: Partial<AuditRecord>): void {
    if (this.#finished) return;
    this.#finished = true;
    Object.assign(this.rec, patch);
    this.rec.durationMs = Math.round((performance.now() - this.#started) * 10) / 10;
    this.#write(this.rec);
  }
}
