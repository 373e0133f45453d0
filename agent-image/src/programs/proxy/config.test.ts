import { describe, expect, it } from 'vitest';
import { ConfigError, DEFAULT_LIMITS, limitsFromEnv } from './config.ts';

describe('limitsFromEnv', () => {
  it('gives the defaults without AGENT_SMITH_PROXY_LIMITS, and overrides only the fields it names', () => {
    expect(limitsFromEnv({})).toEqual(DEFAULT_LIMITS);
    expect(limitsFromEnv({ AGENT_SMITH_PROXY_LIMITS: '{"headersTimeoutMs": 2000, "maxConnections": 512}' })).toEqual({ ...DEFAULT_LIMITS, headersTimeoutMs: 2000, maxConnections: 512 });
  });

  it('refuses what is not a JSON object of known limits with positive integers, naming the field', () => {
    for (const [text, message] of [
      ['nope', /not JSON/],
      ['[1]', /JSON object/],
      ['{"headerTimeoutMs": 5}', /unknown limit "headerTimeoutMs"/],
      ['{"headersTimeoutMs": 0}', /headersTimeoutMs must be a positive integer/],
      ['{"headersTimeoutMs": "10"}', /headersTimeoutMs must be a positive integer/],
      ['{"certCacheSize": 1.5}', /certCacheSize must be a positive integer/],
    ] as const) {
      expect(() => limitsFromEnv({ AGENT_SMITH_PROXY_LIMITS: text })).toThrow(ConfigError);
      expect(() => limitsFromEnv({ AGENT_SMITH_PROXY_LIMITS: text })).toThrow(message);
    }
  });
});
