import { describe, expect, it } from 'vitest';
import { EventsConfig } from '../../contract/contract.ts';
import { streamConfig } from './log.ts';

const seconds = (ns: number) => ns / 1e9;

describe('streamConfig', () => {
  it('binds every subject of the prefix with the configured limits', () => {
    const c = streamConfig(EventsConfig.parse({ natsUrl: 'nats://n:4222', subjectPrefix: 'org.agents', stream: 'ORG', maxMessages: 500, maxBytes: -1 }));
    expect(c).toMatchObject({ name: 'ORG', subjects: ['org.agents.>'], max_msgs: 500, max_bytes: -1, retention: 'limits', storage: 'file', discard: 'old' });
    expect(seconds(c.max_age)).toBe(30 * 86_400);
    expect(seconds(c.duplicate_window)).toBe(3600);
  });

  it('keeps the duplicate window within max age, which JetStream requires', () => {
    expect(seconds(streamConfig(EventsConfig.parse({ natsUrl: 'nats://n', maxAgeSeconds: 600 })).duplicate_window)).toBe(600);
    expect(seconds(streamConfig(EventsConfig.parse({ natsUrl: 'nats://n', maxAgeSeconds: 0 })).duplicate_window)).toBe(3600);
  });
});
