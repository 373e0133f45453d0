#!/usr/bin/env node
/**
 * `agent-smith`: the one entry point of the agent image.
 *
 *   agent-smith egress-init  init container (iptables mode): install the firewall that sends all egress through the proxy
 *   agent-smith setup        init container: assemble the harness's home, trust the CA, clone repos
 *   agent-smith supervise    main container (behind tini): keep the CLI alive in tmux
 *   agent-smith attach NAME  for people: `tmux attach -t main` in an agent's pod (or a local supervisor)
 *   agent-smith hook EVENT   called by the harness's hooks (Claude Code settings.json); not for people
 *   agent-smith events       query the team's event log (NATS JetStream): --agent, --type, --since, --limit
 *   agent-smith proxy        egress-proxy sidecar: the credential-swap proxy
 *
 * Every subcommand reads the pod contract (AGENT_SMITH_CONTRACT, default
 * /etc/agent-smith/contract.json) through agent-image/src/contract/load.ts; a bad contract
 * exits 2 with the field named. Modules load lazily so `attach` does not pay for the
 * supervisor's imports.
 */
import { Command } from 'commander';
import { ContractError } from './contract/load.ts';

const program = new Command('agent-smith').description('agent-smith agent pod runtime').showHelpAfterError();

program
  .command('egress-init')
  .description("install the egress firewall (iptables and ip6tables): outbound TCP of every UID but the proxy's redirected to the proxy, the rest dropped; verify it or fail")
  .action(async () => {
    const { runEgressInit } = await import('./programs/egress-init/init.ts');
    await runEgressInit();
  });

program
  .command('setup')
  .description('assemble the harness home from the mounted config, trust the egress CA, clone or fetch the repos (idempotent)')
  .action(async () => {
    const { runSetup } = await import('./programs/setup/setup.ts');
    await runSetup();
  });

program
  .command('supervise')
  .description('run the coding-agent CLI in tmux session "main", restart it with backoff, serve /healthz, /readyz, /metrics and the MCP server')
  .action(async () => {
    const { runSupervise } = await import('./programs/supervise/main.ts');
    await runSupervise();
  });

program
  .command('attach')
  .description("attach to an agent's tmux session (detach with C-b d)")
  .argument('[agent]', 'Agent name (omit with --local)')
  .option('-n, --namespace <ns>', 'namespace of the Agent (default: the kubeconfig context namespace)')
  .option('--kubeconfig <path>', 'kubeconfig file (default: $KUBECONFIG or ~/.kube/config)')
  .option('--context <name>', 'kubeconfig context')
  .option('--local', 'attach to a supervisor on this machine instead of a pod')
  .option('--socket <path>', 'tmux socket of the local supervisor (default: $AGENT_SMITH_TMUX_SOCKET or tmux default)')
  .action(async (agent: string | undefined, opts: Record<string, string | boolean | undefined>) => {
    const { runAttach } = await import('./programs/attach/attach.ts');
    process.exitCode = await runAttach({ agent, ...opts });
  });

program
  .command('proxy')
  .description('egress-proxy sidecar: the credential-swap proxy on 127.0.0.1/::1 (explicit and transparent), health and metrics on the health port')
  .action(async () => {
    const { runProxy } = await import('./programs/proxy/main.ts');
    await runProxy();
  });

program
  .command('events')
  .description("print the team's event log (NATS JetStream), oldest first, one JSON event per line")
  .option('--agent <name>', 'only events of this agent')
  .option('--team <name>', 'only events of this team (default: every team)')
  .option('--type <type>', 'only this event type (pr_opened, task_done, agent_started, ...)')
  .option('--since <when>', 'a duration back from now (30m, 1h, 2d) or an RFC 3339 time')
  .option('--limit <n>', 'at most this many events, the newest (default 100)')
  .option('--nats-url <url>', "NATS server (default: the contract's events.natsUrl)")
  .option('--stream <name>', "JetStream stream (default: the contract's, or AGENT_EVENTS)")
  .option('--subject-prefix <prefix>', "subject prefix (default: the contract's, or agents)")
  .option('--contract <file>', 'pod contract to read events from (default: $AGENT_SMITH_CONTRACT or the mounted one)')
  .action(async (opts: Record<string, string | undefined>) => {
    const { runEvents } = await import('./programs/events/events.ts');
    process.exitCode = await runEvents(opts);
  });

program
  .command('hook')
  .description('internal: a harness hook (stop, session-start, prompt-submit, notification, permission-request); reads the hook JSON on stdin')
  .argument('<event>', 'hook event')
  .action(async (event: string) => {
    const { runHook } = await import('./programs/hook/hook.ts');
    process.exitCode = await runHook(event);
  });

try {
  await program.parseAsync();
} catch (err) {
  // A clear line, no stack trace (AGENT_SMITH_DEBUG=1 shows it): a bad contract exits 2,
  // anything else 1, so the pod's status shows which it was.
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`agent-smith: ${message}\n`);
  if (process.env.AGENT_SMITH_DEBUG && err instanceof Error) process.stderr.write(`${err.stack ?? ''}\n`);
  process.exit(err instanceof ContractError ? 2 : 1);
}
