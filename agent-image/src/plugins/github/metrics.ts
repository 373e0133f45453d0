import { Counter, Gauge, type Registry } from 'prom-client';

/** The PR rewake's Prometheus metrics, on the supervisor's registry (/metrics of the pod's `http` port). */
export class GitHubMetrics {
  readonly checks: Counter<'trigger' | 'result'>;
  readonly rewakes: Counter<'trigger'>;
  readonly suppressed: Counter<'reason'>;
  readonly requests: Counter<'status'>;
  readonly unanswered: Gauge;
  readonly rateLimitRemaining: Gauge<'resource'>;
  readonly skipped: Counter<'what'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.checks = new Counter({
      name: 'agentsmith_supervisor_github_checks_total',
      help: 'PR watcher checks, by trigger (stop, poll) and result (ok, incomplete: a repository could not be read)',
      labelNames: ['trigger', 'result'] as const,
      registers,
    });
    this.rewakes = new Counter({
      name: 'agentsmith_supervisor_github_rewakes_total',
      help: 'rewakes put in the inbox for new unanswered PR comments, by trigger (stop, poll)',
      labelNames: ['trigger'] as const,
      registers,
    });
    this.suppressed = new Counter({
      name: 'agentsmith_supervisor_github_rewakes_suppressed_total',
      help: 'rewakes not sent, by reason (consecutive_limit)',
      labelNames: ['reason'] as const,
      registers,
    });
    this.requests = new Counter({
      name: 'agentsmith_supervisor_github_requests_total',
      help: 'GitHub API responses by HTTP status (304: answered from the conditional-request cache, free of rate limit)',
      labelNames: ['status'] as const,
      registers,
    });
    this.unanswered = new Gauge({ name: 'agentsmith_supervisor_github_unanswered', help: 'unanswered comments on the agent\'s open pull requests at the last complete check', registers });
    this.rateLimitRemaining = new Gauge({
      name: 'agentsmith_supervisor_github_rate_limit_remaining',
      help: 'x-ratelimit-remaining of the last GitHub response, by x-ratelimit-resource (core, graphql)',
      labelNames: ['resource'] as const,
      registers,
    });
    this.skipped = new Counter({
      name: 'agentsmith_supervisor_github_skipped_total',
      help: 'what a PR watcher check skipped, by what: pull_request (could not be read: 404, GraphQL error) or item (a malformed pull request, comment or review in a list)',
      labelNames: ['what'] as const,
      registers,
    });
  }
}
