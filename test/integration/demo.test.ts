/**
 * The README's main job, as a newcomer runs it (after the bootstrap scripts/demo does):
 * both example Agents reach Ready and are printed, and Ctrl-C leaves no process behind.
 * It brings up its own control plane beside the suite's.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { waitFor } from '../support/kube.ts';
import { ROOT } from '../support/paths.ts';

/** PIDs of live processes whose command line mentions `needle`. */
function processesMentioning(needle: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cmdline.includes(needle)) pids.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

describe('scripts/demo (the main job)', () => {
  it('brings both example agents to Ready, prints them, and stops everything on Ctrl-C', async () => {
    const demo = spawn(process.execPath, [join(ROOT, 'scripts/demo.ts')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    demo.stdout.on('data', (d: Buffer) => (out += d.toString()));
    demo.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => demo.once('exit', (code) => resolve(code)));
    // On any failure below, stop the demo the way a person would, so nothing is left running.
    onTestFinished(async () => {
      if (demo.exitCode === null && demo.signalCode === null) {
        demo.kill('SIGINT');
        await exited;
      }
    });
    try {
      await waitFor('the demo to say both agents are Ready', async () => out.includes('press Ctrl-C'), 240_000, 500);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- demo output ---\n${out}`);
    }
    expect(out).toMatch(/devbot\s+True\s+Ready\s+claude\s+homelab/);
    expect(out).toMatch(/infrabot\s+True\s+Ready\s+claude\s+homelab/);
    // The agent container and the egress-proxy native sidecar.
    expect(out).toMatch(/devbot-0\s+2\/2\s+Running/);
    const kubeconfig = /export KUBECONFIG=(\S+)/.exec(out)?.[1];
    expect(kubeconfig).toBeDefined();
    const clusterDir = join(kubeconfig!, '..');
    expect(processesMentioning(clusterDir).length).toBeGreaterThan(0);

    demo.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(out).toContain('nothing left running');
    await waitFor('every process of the demo to be gone', async () => processesMentioning(clusterDir).length === 0, 15_000);
    expect(existsSync(clusterDir)).toBe(false);
  }, 300_000);
});
