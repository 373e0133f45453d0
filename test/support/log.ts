/**
 * A pino logger whose lines tests can read: each line is parsed and pushed onto `lines`
 * (the caller's array, so a test can keep one array across loggers).
 */
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';

/** One parsed log line (pino's JSON: level, time, msg and the line's fields). */
export type LogLine = Record<string, unknown>;

/** A logger at `level` writing parsed lines into `lines`. */
export function capturingLogger(lines: LogLine[], level = 'debug'): Logger {
  return pino(
    { level },
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(JSON.parse(chunk.toString()) as LogLine);
        cb();
      },
    }),
  );
}
