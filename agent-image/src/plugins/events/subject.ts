/**
 * Subjects of the event log: `<prefix>.<team>.<agent>.<type>`, e.g.
 * `agents.homelab.devbot.pr_opened`. One stream (`<prefix>.>`) holds every agent's
 * events, so a filter with wildcards selects by team, agent or type.
 *
 * NATS subject tokens are separated by `.` and may not contain whitespace, `*` or `>`
 * (NATS docs, "Subject-Based Messaging": characters allowed and recommended). Team and
 * agent names are Kubernetes names (DNS labels), which never contain them; `token()`
 * replaces such characters by `_` anyway, so a hand-written contract cannot publish to a
 * wildcard. An agent without a team publishes under the team token `_` (NO_TEAM).
 */
import { redactUrl as redactOneUrl } from '../../lib/redact.ts';

/** The team token of an agent that has no team. */
export const NO_TEAM = '_';

/** `s` as one subject token: `.`, `*`, `>` and whitespace become `_`; empty becomes `_`. */
export function token(s: string): string {
  const t = s.replace(/[.*>\s]/g, '_');
  return t === '' ? '_' : t;
}

/** The subject of one event: `<prefix>.<team or _>.<agent>.<type>`. */
export function eventSubject(prefix: string, event: { team?: string | undefined; agent: string; type: string }): string {
  return `${prefix}.${event.team ? token(event.team) : NO_TEAM}.${token(event.agent)}.${token(event.type)}`;
}

/**
 * A filter subject for a query or a consumer: an omitted part is the `*` wildcard, e.g.
 * `{type: 'pr_opened'}` → `agents.*.*.pr_opened`. `team: null` selects agents without a team.
 */
export function filterSubject(prefix: string, f: { team?: string | null | undefined; agent?: string | undefined; type?: string | undefined }): string {
  const team = f.team === null ? NO_TEAM : f.team ? token(f.team) : '*';
  return `${prefix}.${team}.${f.agent ? token(f.agent) : '*'}.${f.type ? token(f.type) : '*'}`;
}

/** The subjects a stream of the log binds: every subject under the prefix. */
export function streamSubjects(prefix: string): string[] {
  return [`${prefix}.>`];
}

/**
 * Parses `--since`: a duration back from `now` (`90s`, `15m`, `1h`, `2d`, `1h30m`) or an
 * RFC 3339 time (`2026-12-06T13:00:00Z`).
 * @throws Error naming the accepted forms when `s` is neither
 */
export function parseSince(s: string, now: Date = new Date()): Date {
  const trimmed = s.trim();
  const duration = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(trimmed);
  if (duration && trimmed !== '') {
    const [, d = '0', h = '0', m = '0', sec = '0'] = duration;
    const ms = ((Number(d) * 24 + Number(h)) * 60 + Number(m)) * 60_000 + Number(sec) * 1000;
    return new Date(now.getTime() - ms);
  }
  if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/i.test(trimmed)) {
    const t = new Date(trimmed);
    if (!Number.isNaN(t.getTime())) return t;
  }
  throw new Error(`since: expected a duration (90s, 15m, 1h, 2d, 1h30m) or an RFC 3339 time (2026-12-06T13:00:00Z), got ${JSON.stringify(s)}`);
}

/**
 * A NATS server list (comma-separated URLs) without user info, for logs:
 * `nats://user:pass@host:4222` → `nats://host:4222`. Each URL goes through the same
 * redaction as a repository URL (lib/redact.ts redactUrl, WHATWG URL parsing), so a
 * password with an unencoded `@` is removed whole.
 */
export function redactUrl(natsUrl: string): string {
  return natsServers(natsUrl).map(redactOneUrl).join(',');
}

/** The servers of a NATS URL list (`events.natsUrl`, comma-separated), as the client's `servers` option takes them. */
export function natsServers(natsUrl: string): string[] {
  return natsUrl.split(',').map((u) => u.trim());
}
