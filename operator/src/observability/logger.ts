import { pino, type Logger } from 'pino';

/**
 * The root structured logger (JSON lines on stdout). Children carry their keys
 * (`controller`, `key`). Authorization headers and any field named like a secret are
 * redacted, as a second line of defence: code must not log secret values at all.
 */
export function makeLogger(level = process.env.LOG_LEVEL ?? 'info', name = 'agent-smith'): Logger {
  return pino({
    name,
    level,
    redact: { paths: ['*.authorization', '*.token', '*.password', '*.secret', 'headers.authorization'], censor: '[redacted]' },
  });
}
