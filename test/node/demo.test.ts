/**
 * The README's main job, as a newcomer runs it (after the bootstrap scripts/demo does):
 * both example Agents reach Ready and are printed, devbot (a real pod on the real node,
 * against the offline demo model) answers a message sent with the printed
 * `scripts/say` line, its egress is refused to a host off its allowlist and passes to
 * one on it, and Ctrl-C leaves no process behind. It brings up its own cluster (the real
 * node is one per machine: test/node files run one at a time).
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it, onTestFinished } from 'vitest';
import { waitFor } from '../support/kube.ts';
import { ROOT } from '../../scripts/lib/paths.ts';

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

/** PIDs of live processes in a cgroup of the kubelet's (`/kubepods`): the node's containers. */
function processesInKubepods(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cgroup`, 'utf8').includes('/kubepods')) pids.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

describe('scripts/demo (the main job)', () => {
  it('brings both example agents to Ready, prints them, answers a message sent with the printed helper, and stops everything on Ctrl-C', async () => {
    // The offline demo, whatever the machine's environment holds.
    const env = { ...process.env };
    delete env.ANTHROPIC_API_KEY;
    const demo = spawn(process.execPath, [join(ROOT, 'scripts/demo.ts')], { stdio: ['ignore', 'pipe', 'pipe'], env });
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
      // Either the demo says it is up, or it exits (a failure it printed): whichever comes first.
      await Promise.race([
        waitFor('the demo to say both agents are Ready', async () => out.includes('press Ctrl-C'), 840_000, 500),
        exited.then((code) => {
          throw new Error(`the demo exited with code ${code} before it was up`);
        }),
      ]);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- demo output ---\n${out}`);
    }
    // (RESTARTS, when the CRD has that column, sits between PHASE and HARNESS.)
    expect(out).toMatch(/devbot\s+True\s+Ready\s+(\d+\s+)?claude\s+homelab/);
    expect(out).toMatch(/infrabot\s+True\s+Ready\s+(\d+\s+)?claude\s+homelab/);
    // The agent container and the egress-proxy native sidecar, on the real node with a pod IP.
    expect(out).toMatch(/devbot-0\s+2\/2\s+Running\s+0\s+\S+\s+10\.\d+\.\d+\.\d+\s+local\s/);
    expect(out).toContain('OFFLINE DEMO');
    const kubeconfig = /export KUBECONFIG=(\S+)/.exec(out)?.[1];
    expect(kubeconfig).toBeDefined();
    const clusterDir = join(kubeconfig!, '..');
    expect(processesMentioning(clusterDir).length).toBeGreaterThan(0);

    // The printed way to talk to devbot, run as printed (PATH and AGENT_SMITH_DEMO exported).
    const path = /export PATH=(\S+):\$PATH/.exec(out)?.[1];
    const demoFile = /export AGENT_SMITH_DEMO=(\S+)/.exec(out)?.[1];
    const sayLine = /^\s*(\S+\/scripts\/say devbot "[^"]*")/m.exec(out)?.[1];
    expect(path && demoFile && sayLine).toBeTruthy();
    const said = await promisify(execFile)('sh', ['-c', `${sayLine!.replace('"hello"', '"hello from the demo test"')} --timeout 120`], {
      env: { ...env, PATH: `${path}:${process.env.PATH}`, AGENT_SMITH_DEMO: demoFile },
    });
    expect(said.stdout.trim()).toBe('[offline demo] you said: devbot: hello from the demo test');

    // The printed egress line: refused off the allowlist; the same to an allowed host gets
    // that host's answer (github.com is the demo git server, which asks for credentials).
    const exec = async (url: string) =>
      promisify(execFile)('kubectl', ['exec', 'devbot-0', '-c', 'agent', '--', 'curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', url], {
        env: { ...env, PATH: `${path}:${process.env.PATH}`, KUBECONFIG: kubeconfig },
      }).then(
        (r) => ({ ok: true, out: r.stdout, err: r.stderr }),
        (e: { stdout?: string; stderr?: string }) => ({ ok: false, out: e.stdout ?? '', err: e.stderr ?? '' }),
      );
    expect(out).toContain('kubectl exec devbot-0 -c agent -- curl -sS https://example.org');
    const refused = await exec('https://example.org');
    expect(refused.ok).toBe(false);
    expect(refused.err).toMatch(/curl: \(\d+\)/);
    const allowed = await exec('https://github.com/agent-smith/agent-smith.git/info/refs?service=git-upload-pack');
    expect(allowed).toMatchObject({ ok: true, out: '401' });

    demo.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(out).toContain('nothing left running');
    await waitFor('every process of the demo to be gone', async () => processesMentioning(clusterDir).length === 0, 15_000);
    // And every container of the node: nothing is left in the kubelet's cgroups.
    expect(processesInKubepods()).toEqual([]);
    expect(existsSync(clusterDir)).toBe(false);
  }, 900_000);
});
