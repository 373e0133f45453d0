/**
 * `scripts/say AGENT TEXT...`: the demo's way to talk to an agent from a terminal (see
 * scripts/say). Development tooling: it is not in the agent image.
 */
import { Command } from 'commander';
import { runSay } from './lib/demo/say.ts';

const program = new Command('scripts/say')
  .description("talk to an agent of the local demo (scripts/demo): post to its Matrix room as the demo user, mentioning the agent, and print the answer")
  .argument('<agent>', 'Agent name, e.g. devbot')
  .argument('<text...>', 'what to say')
  .option('--demo <file>', 'the connection file scripts/demo prints (default: $AGENT_SMITH_DEMO)')
  .option('--timeout <seconds>', 'how long to wait for the answer (default 120)')
  .showHelpAfterError()
  .action(async (agent: string, words: string[], opts: { demo?: string; timeout?: string }) => {
    process.exitCode = await runSay(agent, words, opts);
  });
await program.parseAsync();
