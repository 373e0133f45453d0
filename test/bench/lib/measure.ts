/**
 * What the scale benchmark reads about a process and the machine: peak RSS and CPU
 * seconds from /proc (proc(5): VmHWM in kB; utime + stime in clock ticks, 100 a second
 * on Linux) and the load average. Counters come from test/support/metrics.ts.
 */
import { readFileSync } from 'node:fs';

/** Peak RSS (`rssMb`: VmHWM, MB), current RSS (`nowMb`: VmRSS, MB) and CPU seconds (user + system) of a live process. */
export function procStats(pid: number): { rssMb: number; nowMb: number; cpuSeconds: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const ticks = Number(stat[11]) + Number(stat[12]);
  return { rssMb: kb('VmHWM') / 1024, nowMb: kb('VmRSS') / 1024, cpuSeconds: ticks / 100 };
}

/** The 1, 5 and 15 minute load averages, as /proc/loadavg gives them. */
export function loadAverage(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

/** Runs `fn` over `items` with at most `width` in flight. */
export async function pool<T>(items: readonly T[], width: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
