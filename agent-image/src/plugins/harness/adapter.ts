/**
 * One interface over the coding-agent CLIs the supervisor can run (contract
 * `harness.kind`): how to prepare the harness's home, how to launch it, and how an inbound
 * message reaches it. The supervisor owns tmux, restarts, the inbox and the HTTP side;
 * an adapter only knows its CLI.
 */
import type { PodContract } from '../../contract/contract.ts';
import type { Layout } from '../../contract/layout.ts';

/** What setup and the supervisor hand an adapter. */
export interface HarnessContext {
  contract: PodContract;
  layout: Layout;
  /** Real path of the CLI's working directory (the primary repo). */
  workdir: string;
  /** Base URL of the supervisor's loopback server, e.g. http://127.0.0.1:15090. */
  supervisorUrl: string;
  /** argv that runs this program (`agent-smith`), for hook commands: e.g. ['node', '/app/agent-image/src/cli.ts']. */
  selfCommand: string[];
}

/** How to start the CLI: argv for tmux pane 0 and extra environment (no secrets: panes are visible to people). */
export interface LaunchSpec {
  argv: string[];
  env: Record<string, string>;
}

/** How a message reaches the CLI: through an armed hook (Claude Code's asyncRewake Stop hook) or typed into pane 0. */
export type DeliveryRoute = 'hook' | 'tmux';

export interface HarnessAdapter {
  readonly kind: PodContract['harness']['kind'];
  /**
   * Writes the harness's configuration into the home volume (setup). Idempotent: state the
   * CLI wrote itself (history, projects, credentials caches) is kept.
   * @throws Error naming the file when a persona file cannot be used.
   */
  prepareHome(ctx: HarnessContext): Promise<void>;
  /**
   * argv for a (re)start. `session.resume` is true when a transcript of `session.id` exists
   * and the CLI should continue it; false for a new session with that id.
   */
  launch(ctx: HarnessContext, session: { id: string; resume: boolean }): LaunchSpec;
  /** Whether this harness reports idle/busy and takes messages through hooks (`agent-smith hook ...`). */
  readonly hasHooks: boolean;
  /**
   * Whether a transcript of `sessionId` exists on the home volume (so `launch` may resume it).
   * Harnesses without resumable sessions return false.
   */
  hasSession(ctx: HarnessContext, sessionId: string): Promise<boolean>;
}
