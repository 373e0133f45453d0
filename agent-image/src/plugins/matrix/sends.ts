/**
 * What the Matrix bridge (bridge.ts) sends: the 👀 acknowledgement, the ⚠️ reaction or
 * short m.notice for a message that did not get through, the one notice in an encrypted
 * room, and the agent's answers. Sends a replay could repeat use a transaction id derived
 * from the event (or room) id, so a retried batch sends the same event (client-server API
 * "Transaction identifiers"); a transient failure is retried, then fails the batch unless
 * it is the batch's last try.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Logger } from '../../lib/log.ts';
import type { EventOutbox } from '../../core/outbox.ts';
import { MatrixError, withRetry, type MatrixClient } from './client.ts';
import type { MatrixMetrics } from './metrics.ts';
import { remember, type BridgeState } from './state.ts';
import { clip, type EventFault } from './validate.ts';

export const EYES = '👀';
export const WARNING = '⚠️';

/** Why an event is skipped: a fault of its content (validate.ts), a lookup that kept failing, or an error of ours on it. */
export type SkipReason = EventFault['reason'] | 'unavailable' | 'error';

/** Why a skipped event did not get through, in general terms, for the person who sent it. */
const SKIP_REASON: Record<SkipReason, string> = {
  invalid_id: 'it carries an id that is not a valid Matrix id',
  invalid_relation: 'it replies to or threads on an event id that is not valid (longer than the 255 bytes the Matrix spec allows, or malformed)',
  invalid_content: 'one of its fields has the wrong type or size',
  too_large: 'it is larger than the 64 KB the Matrix spec allows for an event',
  unavailable: 'the message it refers to could not be looked up',
  error: 'it could not be processed',
};

/** A skipped message's answer: a notice in reply (in `thread` when valid), or a ⚠️ reaction when `notice` is false. */
export interface Warning {
  room: string;
  event: string;
  reason: SkipReason;
  notice: boolean;
  thread?: string | undefined;
}

/** What a batch sends after its events are in the inbox. */
export interface Outgoing {
  eyes: Array<{ room: string; event: string }>;
  warnings: Warning[];
  encrypted: string[];
}

/** A transaction id that is the same for the same purpose and event, so a replay sends nothing new. */
function txnFor(purpose: string, eventId: string): string {
  return `${purpose}-${createHash('sha256').update(eventId).digest('hex').slice(0, 32)}`;
}

/** The bridge's sends over its client; `signal` is the bridge's stop. */
export class MatrixSends {
  private readonly client: MatrixClient;
  private readonly metrics: MatrixMetrics;
  private readonly log: Logger;
  private readonly signal: AbortSignal;
  private readonly outbox: Pick<EventOutbox, 'emit'> | undefined;

  constructor(opts: { client: MatrixClient; metrics: MatrixMetrics; log: Logger; signal: AbortSignal; outbox?: Pick<EventOutbox, 'emit'> | undefined }) {
    this.client = opts.client;
    this.metrics = opts.metrics;
    this.log = opts.log;
    this.signal = opts.signal;
    this.outbox = opts.outbox;
  }

  /**
   * The 👀 acknowledgement. A transient failure (homeserver away) fails the batch, so the
   * sync loop's backoff retries it from the saved token (the inbox recognises the messages,
   * the transaction id makes the reaction the same event), except on the batch's last try;
   * a refusal (no permission to react in the room) is logged and skipped.
   */
  async eyes(roomId: string, eventId: string, lastTry: boolean): Promise<void> {
    try {
      await this.reaction(roomId, eventId, EYES, txnFor('eyes', eventId), 2);
    } catch (err) {
      this.failed(err, lastTry, { room: roomId, event: eventId }, `cannot send the ${EYES} reaction`);
    }
  }

  /** Rethrows a transient failure to retry the batch (not on its last try, not when stopping); logs anything else. */
  private failed(err: unknown, lastTry: boolean, where: Record<string, string>, msg: string): void {
    if (this.signal.aborted) return;
    if (err instanceof MatrixError && err.transient && !lastTry) throw err;
    this.log.warn({ ...where, error: clip((err as Error).message, 200) }, msg);
  }

  /**
   * Tells the sender of a skipped message that it did not get through: a short m.notice in
   * reply (in its thread when that is valid) saying why in general terms, or a ⚠️ reaction
   * when `notice` is false. The transaction id comes from the event id, so a retried batch
   * sends the same event.
   */
  async warning(w: Warning, lastTry: boolean): Promise<void> {
    try {
      if (!w.notice) {
        await this.reaction(w.room, w.event, WARNING, txnFor('warn', w.event), 2);
        return;
      }
      const content = {
        msgtype: 'm.notice',
        body: `${WARNING} This message did not reach me: ${SKIP_REASON[w.reason]}. Please send it again without that.`,
        'm.mentions': {},
        'm.relates_to': w.thread
          ? { rel_type: 'm.thread', event_id: w.thread, is_falling_back: false, 'm.in_reply_to': { event_id: w.event } }
          : { 'm.in_reply_to': { event_id: w.event } },
      };
      await withRetry(() => this.client.send(w.room, 'm.room.message', content, txnFor('refused', w.event), this.signal), { attempts: 2, signal: this.signal });
    } catch (err) {
      this.failed(err, lastTry, { room: w.room, event: w.event }, 'cannot tell the sender that a message was skipped');
    }
  }

  /**
   * Says once in an encrypted room that the agent cannot read it (the bridge has no
   * end-to-end encryption): an m.notice (transaction id from the room id, so a retry is the
   * same event), a warning line, a `matrix_encrypted_room` event and the metric. Remembered
   * in the state even when the room refuses the notice (power levels), so it is not retried
   * on every batch; a transient failure retries the batch.
   */
  async tellEncrypted(roomId: string, draft: BridgeState, lastTry: boolean): Promise<void> {
    const content = {
      msgtype: 'm.notice',
      body: `${WARNING} I cannot read end-to-end encrypted messages, so nothing encrypted in this room reaches me. Talk to me in an unencrypted room.`,
      'm.mentions': {},
    };
    let sent = true;
    try {
      await withRetry(() => this.client.send(roomId, 'm.room.message', content, txnFor('encrypted', roomId), this.signal), { attempts: 2, signal: this.signal });
    } catch (err) {
      this.failed(err, lastTry, { room: roomId }, 'cannot post the encrypted-room notice');
      sent = false;
    }
    remember(draft.encryptedRooms, roomId);
    this.metrics.encryptedRooms.inc();
    this.log.warn({ room: roomId, noticeSent: sent }, 'Matrix room is end-to-end encrypted: the agent cannot read its messages (told the room once)');
    void this.outbox?.emit('matrix_encrypted_room', { room: roomId, noticeSent: sent });
  }

  /** Reacts to `eventId` with `key`. @returns the reaction's event id (undefined: it was there already) */
  async reaction(roomId: string, eventId: string, key: string, txnId: string = `react-${randomUUID()}`, attempts = 4): Promise<string | undefined> {
    const content = { 'm.relates_to': { rel_type: 'm.annotation', event_id: eventId, key } };
    try {
      const id = await withRetry(() => this.client.send(roomId, 'm.reaction', content, txnId, this.signal), { attempts, signal: this.signal });
      this.metrics.reactionsSent.inc();
      return id;
    } catch (err) {
      // Synapse refuses the same annotation twice from one user: it is there already.
      if (err instanceof MatrixError && err.errcode === 'M_DUPLICATE_ANNOTATION') return undefined;
      throw err;
    }
  }

  /**
   * The agent's answer as `m.notice`: in `thread` when given (replying to `event`, or to
   * the thread root), else a rich reply to `event`, else a top-level message. No one is
   * pinged (empty `m.mentions`). @returns the new event id
   */
  async reply(args: { room: string; text: string; html?: string | undefined; event?: string | undefined }, thread: string | undefined): Promise<string> {
    const relates = thread
      ? { 'm.relates_to': { rel_type: 'm.thread', event_id: thread, is_falling_back: !args.event || args.event === thread, 'm.in_reply_to': { event_id: args.event ?? thread } } }
      : args.event
        ? { 'm.relates_to': { 'm.in_reply_to': { event_id: args.event } } }
        : {};
    const content = {
      msgtype: 'm.notice',
      body: args.text,
      ...(args.html ? { format: 'org.matrix.custom.html', formatted_body: args.html } : {}),
      // Intentional mentions: nobody is pinged by an answer unless the text says so.
      'm.mentions': {},
      ...relates,
    };
    const txnId = `reply-${randomUUID()}`;
    const id = await withRetry(() => this.client.send(args.room, 'm.room.message', content, txnId, this.signal), { attempts: 5, signal: this.signal });
    this.metrics.repliesSent.inc();
    this.log.info({ room: args.room, event: id, ...(thread ? { thread } : {}) }, 'agent replied in Matrix');
    return id;
  }
}
