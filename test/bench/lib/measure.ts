/**
 * What the scale benchmark reads about a process and the machine: peak RSS and CPU
 * seconds from /proc (proc(5): VmHWM in kB; utime + stime in clock ticks, 100 a second
 * on Linux), the load average, and counters out of a Prometheus text exposition.
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

/**
 * Sum of the samples of counter `name` whose labels pass `keep` (all when omitted), from
 * a Prometheus text exposition.
 */
export function sumCounter(exposition: string, name: string, keep: (labels: Record<string, string>) => boolean = () => true): number {
  let sum = 0;
  const line = new RegExp(`^${name}(?:\\{([^}]*)\\})? (\\S+)$`, 'gm');
  for (const m of exposition.matchAll(line)) {
    const labels = Object.fromEntries([...(m[1] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1]!, l[2]!]));
    if (keep(labels)) sum += Number(m[2]);
  }
  return sum;
}

/** GET a metrics endpoint's text (throws on a non-2xx). */
export async function scrape(url: string): Promise<string> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return res.text();
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
