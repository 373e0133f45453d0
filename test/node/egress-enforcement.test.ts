/**
 * What an agent pod's egress enforcement does on this machine's real node, as a user (or an
 * agent steered by what it read) meets it from inside the pod with `kubectl exec`:
 *
 * - `enforcement: iptables` (egress-init's firewall, agent-image/src/programs/egress-init/rules.ts, plus
 *   the proxy env the operator renders): a host outside spec.egress.allow is refused by the
 *   proxy; the pod's DNS is the proxy's (port 53 redirected to it): a name outside the
 *   allowlist gets NXDOMAIN and an audit line, an allowed one resolves; a raw address is
 *   sent to the proxy by the firewall, which refuses it; other UDP is dropped; an allowed host works through the proxy,
 *   which swaps the agent's stub for the real value only the proxy holds; the proxy's own
 *   UID goes out directly.
 * - `kubernetesAccess: {clusterRole: view}` in both enforcement modes: `kubectl get pods`
 *   typed into the supervisor's tmux shell (pane 1) lists the pod itself (the operator puts
 *   the API server's cluster IP in NO_PROXY, and under iptables in allowCidrs, and its name
 *   in the contract's egress.inClusterHosts, which the proxy's DNS resolves).
 *
 * The cluster, the images, the operator (Helm) and the demo's stand-ins for github.com are
 * those of test/node/e2e.test.ts; the agents run a custom harness (`sleep`) to stay light.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { publishDemoServices, type InClusterDemo } from '../../scripts/lib/demo/in-cluster.ts';
import { renderDemoAgent, type AgentManifest } from '../../scripts/lib/demo/render.ts';
import { startDemoServices, type DemoServices } from '../../scripts/lib/demo/services.ts';
import { OPERATOR_NAMESPACE, startDevCluster, type DevCluster } from '../../scripts/lib/real-cluster.ts';
import { kubeClients, kubectl, makeNamespace, waitFor, type KubeClients } from '../support/kube.ts';
import { podProcesses } from '../support/node.ts';
import { ROOT } from '../../scripts/lib/paths.ts';

/** The Agent under iptables enforcement, and the one under proxy-env. */
const IPTABLES = 'devbot';
const PROXY_ENV = 'devbot-env';

let dev: DevCluster | undefined;
let c: KubeClients;
let ns: { name: string; remove: () => Promise<void> };
let services: DemoServices | undefined;
let inCluster: InClusterDemo | undefined;
let servicesDir = '';
let failed = false;

interface Exec {
  code: number;
  stdout: string;
  stderr: string;
}

/** `kubectl exec` into `container` of the agent's pod, as a user runs it; never throws (the exit code is kubectl's, which is the command's). */
const exec = (agent: string, container: string, cmd: string[]): Promise<Exec> =>
  kubectl(dev!.kubeconfig, ['exec', '-n', ns.name, `${agent}-0`, '-c', container, '--', ...cmd]);
/** A command in the agent container through bash (for $GITHUB_TOKEN and redirections). */
const sh = (agent: string, script: string) => exec(agent, 'agent', ['bash', '-c', script]);

let typed = 0;
/**
 * Types `command` into the supervisor's tmux shell (session main, pane 1, as
 * `agent-smith attach` shows it; the pane's environment holds the credential stubs) and
 * waits for it to finish. tmux's default socket for the agent UID, which the supervisor
 * uses (no AGENT_SMITH_TMUX_SOCKET in the pod).
 * @returns the command's exit status and its output (stdout and stderr)
 */
async function inShell(agent: string, command: string): Promise<{ rc: number; output: string }> {
  const out = `/tmp/typed-${++typed}`;
  const sent = await exec(agent, 'agent', ['tmux', 'send-keys', '-t', 'main.1', `{ ${command}; } > ${out} 2>&1; echo $? > ${out}.rc`, 'Enter']);
  if (sent.code !== 0) throw new Error(`tmux send-keys in ${agent}-0: exit ${sent.code}: ${sent.stderr}`);
  const { rc } = await waitFor(`"${command}" in ${agent}-0's tmux shell`, async () => {
    const r = await exec(agent, 'agent', ['cat', `${out}.rc`]);
    return r.code === 0 && /^\d+\n$/.test(r.stdout) && { rc: Number(r.stdout) };
  }, 60_000, 300);
  return { rc, output: (await exec(agent, 'agent', ['cat', out])).stdout };
}

/** The Agent as the demo renders it for the real node, trimmed to what these checks need. */
function agentManifest(base: AgentManifest, name: string, enforcement: 'iptables' | 'proxy-env'): AgentManifest {
  const a = structuredClone(base);
  a.metadata.name = name;
  // No Matrix, no events, no model: a shell is all that is typed into; setup still clones
  // the repos from the stand-in for github.com through the proxy.
  delete a.spec.matrix;
  delete a.spec.events;
  a.spec.harness = { kind: 'custom', command: ['sh', '-c', 'exec sleep 86400'] };
  a.spec.egress = { ...a.spec.egress, enforcement, credentials: (a.spec.egress?.credentials ?? []).filter((x) => (x as { name: string }).name === 'github') };
  a.spec.kubernetesAccess = { clusterRole: 'view' };
  a.spec.storage = { home: '1Gi', workspace: '1Gi', retainOnDelete: false };
  return a;
}

beforeAll(async () => {
  failed = true; // until the pods are up: a failed start keeps the logs too
  dev = await startDevCluster({ log: (line) => console.log(`[egress] ${line}`) });
  c = kubeClients(dev.kubeconfig);
  ns = await makeNamespace(c, 'egress');
  servicesDir = await mkdtemp(join(tmpdir(), 'egress-services-'));
  services = await startDemoServices({ dir: servicesDir, bots: [IPTABLES], host: dev.real.podGateway });
  inCluster = await publishDemoServices(services, dev.kubectl, dev.real.dnsHostsFile);

  const manifests = renderDemoAgent(services, { root: ROOT, folder: 'example-devbot', namespace: ns.name, node: dev.real.name, inCluster });
  const base = manifests.find((m): m is AgentManifest => m.kind === 'Agent');
  if (!base) throw new Error('renderDemoAgent gave no Agent');
  const docs = [...manifests.filter((m) => m.kind !== 'Agent'), agentManifest(base, IPTABLES, 'iptables'), agentManifest(base, PROXY_ENV, 'proxy-env')];
  const applied = await kubectl(dev.kubeconfig, ['apply', '-f', '-'], docs.map((m) => stringify(m)).join('---\n'));
  if (applied.code !== 0) throw new Error(`kubectl apply: ${applied.stderr}`);
  for (const name of [IPTABLES, PROXY_ENV]) {
    await waitFor(`Agent ${name} Ready=True`, async () => {
      const a = (await c.custom.getNamespacedCustomObject({ group: 'agentsmith.dev', version: 'v1alpha1', namespace: ns.name, plural: 'agents', name })) as { status?: { conditions?: { type: string; status: string }[] } };
      return a.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True');
    }, 300_000, 1000);
  }
  failed = false;
}, 900_000);

afterEach((ctx) => {
  if (ctx.task.result?.state === 'fail') failed = true;
});

afterAll(async () => {
  if (failed && dev) {
    const operator = await kubectl(dev.kubeconfig, ['logs', '-n', OPERATOR_NAMESPACE, '-l', 'app.kubernetes.io/name=agent-smith-operator', '--tail=100', '--all-containers']);
    console.log(`[egress] operator logs:\n${operator.stdout}${operator.stderr}`);
    if (ns) {
      for (const agent of [IPTABLES, PROXY_ENV]) {
        const proxy = await kubectl(dev.kubeconfig, ['logs', '-n', ns.name, `${agent}-0`, '-c', 'egress-proxy', '--tail=50']);
        console.log(`[egress] ${agent}-0 egress-proxy logs:\n${proxy.stdout}${proxy.stderr}`);
      }
    }
    console.log(`[egress] cluster logs: ${dev.dir}/logs, services: ${servicesDir} (kept: the run failed)`);
  }
  await services?.stop();
  await dev?.stop();
  if (!failed && servicesDir) await rm(servicesDir, { recursive: true, force: true });
}, 180_000);

describe('enforcement: iptables, from the agent container', () => {
  it('a host outside spec.egress.allow: the proxy refuses the CONNECT (403); without the proxy env the name does not resolve (the proxy\'s DNS says NXDOMAIN)', async () => {
    const pod = await c.core.readNamespacedPod({ name: `${IPTABLES}-0`, namespace: ns.name });
    expect(pod.spec?.initContainers?.map((x) => x.name)).toEqual(['egress-init', 'egress-proxy', 'setup']);
    const viaProxy = await sh(IPTABLES, 'curl -sS --max-time 20 https://example.org');
    expect(viaProxy.code).toBe(56);
    expect(viaProxy.stderr).toContain('CONNECT tunnel failed, response 403');
    const direct = await sh(IPTABLES, "curl -sS --max-time 20 --noproxy '*' https://example.org");
    expect(direct.code).toBe(6);
    expect(direct.stderr).toContain('Could not resolve host: example.org');
  });

  it('a raw address: the firewall hands the connection to the proxy, which refuses it; the proxy\'s UID reaches the same address', async () => {
    // The git server itself, by the host address it listens on (the pod gateway, not in
    // allowCidrs), bypassing the proxy env: only the firewall can stop it.
    const git = new URL(services!.git.url);
    // TLS to an address: the proxy gets it transparently and has no name to check (no SNI).
    const tlsDirect = await sh(IPTABLES, `curl -sSk --max-time 20 --noproxy '*' https://${git.host}/agent-smith/agent-smith.git/info/refs`);
    expect(tlsDirect.code).toBe(35);
    expect(tlsDirect.stderr).toContain('alert handshake failure');
    // Plain HTTP to the same address: the proxy answers 403 and says why.
    const httpDirect = await sh(IPTABLES, `curl -sS --max-time 20 --noproxy '*' -w 'HTTP %{http_code}\\n' http://${git.host}/`);
    expect(httpDirect.code).toBe(0);
    expect(httpDirect.stdout).toContain(`agent-smith egress proxy: not_allowed: ${git.hostname} is not in the egress allowlist (spec.egress.allow)`);
    expect(httpDirect.stdout).toMatch(/HTTP 403\n$/);
    // What the proxy's log says about the two (its audit lines).
    const logs = await kubectl(dev!.kubeconfig, ['logs', '-n', ns.name, `${IPTABLES}-0`, '-c', 'egress-proxy']);
    const denied = logs.stdout.split('\n').filter((l) => l.includes('"audit":true') && l.includes('"decision":"deny"')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(denied).toContainEqual(expect.objectContaining({ mode: 'transparent', method: 'TLS', reason: 'no_sni' }));
    expect(denied).toContainEqual(expect.objectContaining({ mode: 'transparent', method: 'GET', reason: 'not_allowed', status: 403, host: git.hostname, port: Number(git.port) }));
    // The address is there: the proxy's UID connects to it.
    const js = `require('net').connect(${git.port},'${git.hostname}').on('connect',()=>{console.log('ok');process.exit(0)}).on('error',e=>{console.error(e.message);process.exit(1)})`;
    expect(await exec(IPTABLES, 'egress-proxy', ['node', '-e', js])).toMatchObject({ code: 0, stdout: 'ok\n' });
    // An address outside the cluster never reaches the firewall here: this node's pod network
    // has no default route (a machine rule: nothing leaves it), so connect() fails at once.
    const outside = await sh(IPTABLES, "curl -sS --max-time 20 --noproxy '*' https://1.1.1.1");
    expect(outside.code).toBe(7);
    expect(outside.stderr).toContain('Failed to connect to 1.1.1.1 port 443');
  });

  it('UDP other than DNS is dropped: a send to the cluster DNS address on another port fails with EPERM', async () => {
    const udp = await sh(IPTABLES, `echo x > /dev/udp/${dev!.real.clusterDNS}/5353`);
    expect(udp.code).toBe(1);
    expect(udp.stderr).toContain('echo: write error: Operation not permitted');
    // Outside the cluster: no route on this node (see above), before any firewall.
    const outside = await sh(IPTABLES, 'echo x > /dev/udp/1.1.1.1/53');
    expect(outside.code).toBe(1);
    expect(outside.stderr).toContain('/dev/udp/1.1.1.1/53: Network is unreachable');
  });

  it('a DNS lookup of a non-allowed name returns NXDOMAIN from the agent container, with one audit line in the proxy', async () => {
    // glibc through the pod's resolv.conf (search list, ndots:5): every expansion and the name itself NXDOMAIN.
    const glibc = await exec(IPTABLES, 'agent', ['getent', 'hosts', 'via-glibc.example.org']);
    expect(glibc.code).toBe(2);
    expect(glibc.stdout).toBe('');
    // A DNS query of its own (c-ares, no search list), to the cluster DNS address the pod's
    // resolv.conf names: the firewall hands it to the proxy, which answers NXDOMAIN (ENOTFOUND).
    const js = `const r=new (require('dns').promises.Resolver)();r.setServers(['${dev!.real.clusterDNS}']);r.resolve4('not-allowed.example.org').then(a=>console.log('resolved',a),e=>console.log(e.code))`;
    const query = await exec(IPTABLES, 'agent', ['node', '-e', js]);
    expect(query).toMatchObject({ code: 0, stdout: 'ENOTFOUND\n' });
    const logs = await kubectl(dev!.kubeconfig, ['logs', '-n', ns.name, `${IPTABLES}-0`, '-c', 'egress-proxy']);
    const dnsDenied = logs.stdout.split('\n').filter((l) => l.includes('"audit":true') && l.includes('"mode":"dns"')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(dnsDenied).toContainEqual(expect.objectContaining({ host: 'via-glibc.example.org', decision: 'deny', reason: 'not_allowed' }));
    expect(dnsDenied).toContainEqual(expect.objectContaining({ host: 'not-allowed.example.org', qname: 'not-allowed.example.org', qtype: 'A' }));
    // One line per name meant, not one per search expansion (glibc asked four names: three search expansions and the name).
    expect(dnsDenied.filter((l) => l.host === 'via-glibc.example.org')).toHaveLength(1);
  });

  it('an allowed name resolves for the agent UID through the proxy\'s DNS (to the stand-in for github.com)', async () => {
    const ip = inCluster!.publicStandIns['github.com'] ?? '';
    const r = await exec(IPTABLES, 'agent', ['getent', 'hosts', 'github.com']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^${ip.replace(/\./g, '\\.')}\\s+github\\.com`));
  });

  it('an allowed host works through the proxy, which swaps the stub for the real password the agent never holds', async () => {
    const url = 'https://github.com/agent-smith/agent-smith.git/info/refs?service=git-upload-pack';
    // In the tmux shell, whose environment holds the stub (GITHUB_TOKEN), as the CLI's does.
    const withStub = await inShell(IPTABLES, `curl -sS --max-time 30 -w 'HTTP %{http_code}\\n' -u "x-access-token:$GITHUB_TOKEN" '${url}'`);
    expect(withStub.rc).toBe(0);
    expect(withStub.output).toContain('# service=git-upload-pack');
    expect(withStub.output).toMatch(/[0-9a-f]{40} refs\/heads\/main/);
    expect(withStub.output).toMatch(/HTTP 200\n$/);
    // Any other token is passed on as it is, and the git server refuses it.
    const wrong = await inShell(IPTABLES, `curl -sS --max-time 30 -w 'HTTP %{http_code}\\n' -u "x-access-token:not-the-stub" '${url}'`);
    expect(wrong.output).toMatch(/HTTP 401\n$/);
    // The stand-in's cluster IP is in allowCidrs, so the agent reaches it directly too, but
    // there the stub is only the stub.
    const ip = inCluster!.publicStandIns['github.com'] ?? '';
    const direct = await inShell(IPTABLES, `curl -sSk --max-time 30 --noproxy '*' --resolve github.com:443:${ip} -w 'HTTP %{http_code}\\n' -u "x-access-token:$GITHUB_TOKEN" '${url}'`);
    expect(direct.output).toMatch(/^authentication required\n[\s\S]*HTTP 401\n$/);
    // The real password is in no environment of the agent container: not the shell's, not
    // kubectl exec's, not any process's.
    const paneEnv = await inShell(IPTABLES, 'env');
    expect(paneEnv.output).toMatch(/^GITHUB_TOKEN=\S+$/m);
    expect(paneEnv.output).not.toContain(services!.github.bots[IPTABLES]!.token);
    const env = await exec(IPTABLES, 'agent', ['env']);
    expect(env.code).toBe(0);
    expect(env.stdout).toContain('HTTPS_PROXY=http://127.0.0.1:');
    expect(env.stdout).not.toContain(services!.github.bots[IPTABLES]!.token);
    const procs = podProcesses(await c.core.readNamespacedPod({ name: `${IPTABLES}-0`, namespace: ns.name }));
    const agentProcs = procs.filter((p) => p.container === 'agent');
    expect(agentProcs.length).toBeGreaterThanOrEqual(3);
    for (const p of agentProcs) expect(p.environ, p.cmd).not.toContain(services!.github.bots[IPTABLES]!.token);
  });

  it('the proxy container goes out directly and has DNS (its UID is the firewall\'s one way out)', async () => {
    const ip = inCluster!.publicStandIns['github.com'] ?? '';
    expect(ip).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(await exec(IPTABLES, 'egress-proxy', ['id', '-u'])).toMatchObject({ code: 0, stdout: '1337\n' });
    const js = `require('net').connect(443,'${ip}').on('connect',()=>{console.log('ok');process.exit(0)}).on('error',e=>{console.error(e.message);process.exit(1)})`;
    expect(await exec(IPTABLES, 'egress-proxy', ['node', '-e', js])).toMatchObject({ code: 0, stdout: 'ok\n' });
    const resolved = await exec(IPTABLES, 'egress-proxy', ['getent', 'hosts', 'github.com']);
    expect(resolved.code).toBe(0);
    expect(resolved.stdout).toMatch(new RegExp(`^${ip.replace(/\./g, '\\.')}\\s+github\\.com`));
  });
});

describe('kubernetesAccess (clusterRole view): kubectl in the supervisor\'s tmux shell lists the pod itself', () => {
  it('enforcement iptables: the API server\'s cluster IP is in NO_PROXY (without it the proxy refuses it)', async () => {
    const r = await inShell(IPTABLES, `kubectl get pods -n ${ns.name}`);
    expect(r.rc).toBe(0);
    expect(r.output).toMatch(/^NAME\s+READY\s+STATUS/);
    expect(r.output).toMatch(new RegExp(`^${IPTABLES}-0\\s+2/2\\s+Running`, 'm'));
    // Its name resolves too (a declared in-cluster destination: the proxy's DNS asks the
    // cluster DNS), to the address kubectl dials, which goes direct (allowCidrs).
    const name = await inShell(IPTABLES, 'getent hosts kubernetes.default.svc; echo "service host $KUBERNETES_SERVICE_HOST"');
    const serviceHost = /service host (\S+)/.exec(name.output)?.[1] ?? '';
    expect(serviceHost).toMatch(/^[0-9a-f.:]+$/);
    expect(name.output).toMatch(new RegExp(`^${serviceHost.replace(/\./g, '\\.')}\\s+kubernetes\\.default\\.svc`, 'm'));
    // The same through the proxy: it refuses the API server's address (not allow-listed).
    const viaProxy = await inShell(IPTABLES, `NO_PROXY= no_proxy= kubectl get pods -n ${ns.name}`);
    expect(viaProxy.rc).toBe(1);
    expect(viaProxy.output).toContain('Unable to connect to the server: Forbidden');
  });

  it('enforcement proxy-env (no egress-init in the pod)', async () => {
    const pod = await c.core.readNamespacedPod({ name: `${PROXY_ENV}-0`, namespace: ns.name });
    expect(pod.spec?.initContainers?.map((x) => x.name)).toEqual(['egress-proxy', 'setup']);
    const r = await inShell(PROXY_ENV, `kubectl get pods -n ${ns.name}`);
    expect(r.rc).toBe(0);
    expect(r.output).toMatch(new RegExp(`^${PROXY_ENV}-0\\s+2/2\\s+Running`, 'm'));
    // The agent UID has DNS in this mode; a host outside the allowlist is still refused by the proxy.
    const viaProxy = await sh(PROXY_ENV, 'curl -sS --max-time 20 https://example.org');
    expect(viaProxy.code).toBe(56);
    expect(viaProxy.stderr).toContain('CONNECT tunnel failed, response 403');
    // HTTPS_PROXY only: a client that ignores it goes direct, here to the git server's host
    // address, which the iptables pod could not reach (the test above). The NetworkPolicy is
    // the wall behind it on a cluster whose CNI enforces policies; this node's bridge does not.
    const git = new URL(services!.git.url);
    const bypass = await sh(PROXY_ENV, `curl -sSk --max-time 20 --noproxy '*' -w 'HTTP %{http_code}\\n' https://${git.host}/agent-smith/agent-smith.git/info/refs`);
    expect(bypass.code).toBe(0);
    expect(bypass.stdout).toMatch(/^authentication required\n[\s\S]*HTTP 401\n$/);
  });
});
