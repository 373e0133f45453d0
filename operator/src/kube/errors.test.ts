import { ApiException } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { RetryAfter, TemporaryError } from '../runtime/errors.ts';
import { apiCall, readOrUndefined, toReconcileError } from './errors.ts';

const apiError = (code: number, headers: Record<string, string> = {}) =>
  new ApiException(code, `HTTP-Code: ${code}`, JSON.stringify({ kind: 'Status', message: `status ${code} from the server` }), headers);

describe('toReconcileError', () => {
  it('turns a 429 into RetryAfter with the delay of its Retry-After header', () => {
    const err = toReconcileError('reading Secret ns/a', apiError(429, { 'retry-after': '3' }));
    expect(err).toBeInstanceOf(RetryAfter);
    expect((err as RetryAfter).delayMs).toBe(3000);
    expect(err.message).toBe('reading Secret ns/a: HTTP 429: status 429 from the server');
  });

  it('waits 1 s on a 429 without a usable Retry-After (an HTTP date is not parsed)', () => {
    expect((toReconcileError('x', apiError(429)) as RetryAfter).delayMs).toBe(1000);
    expect((toReconcileError('x', apiError(429, { 'retry-after': 'Wed, 21 Oct 2015 07:28:00 GMT' })) as RetryAfter).delayMs).toBe(1000);
  });

  it('keeps a hostile or broken Retry-After within 1 s and 5 min (no hot loop, no Agent parked for weeks)', () => {
    const delay = (h: string) => (toReconcileError('x', apiError(429, { 'retry-after': h })) as RetryAfter).delayMs;
    expect(delay('0')).toBe(1000);
    expect(delay('')).toBe(1000);
    expect(delay('-5')).toBe(1000);
    expect(delay('3000000')).toBe(300_000);
    expect(delay('1e9')).toBe(1000);
  });

  it('makes any other failure a TemporaryError naming the request, keeping the cause', () => {
    const cause = apiError(503);
    const err = toReconcileError('applying ConfigMap ns/a-config', cause);
    expect(err).toBeInstanceOf(TemporaryError);
    expect(err.message).toBe('applying ConfigMap ns/a-config: HTTP 503: status 503 from the server');
    expect(err.cause).toBe(cause);
    const transport = toReconcileError('reading Service ns/nats', new Error('connect ECONNREFUSED 127.0.0.1:6443'));
    expect(transport.message).toBe('reading Service ns/nats: connect ECONNREFUSED 127.0.0.1:6443');
  });
});

describe('apiCall and readOrUndefined', () => {
  it('resolve a 404 to undefined only when reading', async () => {
    expect(await readOrUndefined('reading Secret ns/a', () => Promise.reject(apiError(404)))).toBeUndefined();
    await expect(apiCall('deleting x', () => Promise.reject(apiError(404)))).rejects.toBeInstanceOf(TemporaryError);
    await expect(readOrUndefined('reading Secret ns/a', () => Promise.reject(apiError(500)))).rejects.toThrow('reading Secret ns/a: HTTP 500');
    expect(await apiCall('x', () => Promise.resolve(7))).toBe(7);
  });
});
