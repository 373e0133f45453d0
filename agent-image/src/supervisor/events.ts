/**
 * Lifecycle events of the supervisor (`agent_started`, `cli_restarted`, `crash_loop`,
 * `message_received`, ...). Each is logged and appended to an on-disk outbox on the home
 * volume (`<stateDir>/events/outbox.jsonl`, one JSON object per line) that the event-log
 * publisher drains to NATS JetStream (DESIGN.md flow 4). Appends are serialised.
 */
import { appendFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../log.ts';

export interface LifecycleEvent {
  type: string;
  /** RFC 3339. */
  time: string;
  agent: string;
  data: Record<string, unknown>;
}

export class EventOutbox {
  private readonly file: string;
  private readonly agent: string;
  private readonly log: Logger;
  private chain: Promise<void> = Promise.resolve();

  constructor(stateDir: string, agent: string, log: Logger) {
    this.file = path.join(stateDir, 'events', 'outbox.jsonl');
    this.agent = agent;
    this.log = log;
  }

  /** Records an event; never throws (a full disk is logged, not fatal). */
  emit(type: string, data: Record<string, unknown> = {}): Promise<void> {
    const event: LifecycleEvent = { type, time: new Date().toISOString(), agent: this.agent, data };
    this.log.info({ event: type, ...data }, `event ${type}`);
    this.chain = this.chain
      .then(async () => {
        await mkdir(path.dirname(this.file), { recursive: true });
        await appendFile(this.file, JSON.stringify(event) + '\n');
      })
      .catch((err: unknown) => this.log.error({ err, event: type }, 'cannot write the event outbox'));
    return this.chain;
  }
}
