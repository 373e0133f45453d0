import { pino, type Logger } from 'pino';

/**
 * The agent pod's structured logger: JSON lines on stderr, so the container's stdout
 * stays the CLI's pane output (the supervisor tees pane 0 there). Fields named like
 * secrets are redacted as a second line of defence; code must not log secret values.
 */
export function makeLogger(name: string, level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino(
    {
      name,
      level,
      redact: { paths: ['*.authorization', '*.token', '*.accessToken', '*.password', '*.secret', 'headers.authorization'], censor: '[redacted]' },
    },
    pino.destination({ fd: 2, sync: true }),
  );
}

export type { Logger };
