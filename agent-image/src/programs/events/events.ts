/**
 * `agent-smith events`: prints the events of the log matching --agent, --team, --type and
 * --since, oldest first, one JSON envelope per line (for jq). The NATS URL, stream and
 * subject prefix come from the flags, or from the pod contract's `events` (--contract, or
 * AGENT_SMITH_CONTRACT / the mounted contract in a pod).
 */
import { EventsConfig, type PodContract } from '../../contract/contract.ts';
import { ContractError, loadContract } from '../../contract/load.ts';
import { layoutFromEnv } from '../../contract/layout.ts';
import { connectOnce } from '../../plugins/events/log.ts';
import { QUERY_DEFAULT_LIMIT, QUERY_MAX_LIMIT, queryEvents } from '../../plugins/events/query.ts';
import { parseSince } from '../../plugins/events/subject.ts';

export interface EventsCommandOptions {
  agent?: string | undefined;
  team?: string | undefined;
  type?: string | undefined;
  since?: string | undefined;
  limit?: string | undefined;
  natsUrl?: string | undefined;
  stream?: string | undefined;
  subjectPrefix?: string | undefined;
  contract?: string | undefined;
}

/** Where to read from: flags over the contract's `events` over the defaults. @throws ContractError */
export function eventsSource(opts: EventsCommandOptions, env: NodeJS.ProcessEnv): EventsConfig {
  let fromContract: PodContract['events'];
  const contractFile = opts.contract ?? (opts.natsUrl ? undefined : layoutFromEnv(env).contractFile);
  if (contractFile) fromContract = loadContract(contractFile).events;
  const natsUrl = opts.natsUrl ?? fromContract?.natsUrl;
  if (!natsUrl) {
    throw new ContractError(`no event log: pass --nats-url, or a contract with events (${contractFile ?? 'none given'} has none)`);
  }
  return EventsConfig.parse({
    ...fromContract,
    natsUrl,
    ...(opts.stream ? { stream: opts.stream } : {}),
    ...(opts.subjectPrefix ? { subjectPrefix: opts.subjectPrefix } : {}),
  });
}

/**
 * Runs the query and writes the events to `out`.
 * @returns the exit code: 0, or 1 when NATS or the stream cannot be read (message on stderr)
 * @throws ContractError for a bad contract or no NATS URL (exit 2 in cli.ts); Error for a bad --since or --limit
 */
export async function runEvents(opts: EventsCommandOptions, env: NodeJS.ProcessEnv = process.env, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const since = opts.since ? parseSince(opts.since) : undefined;
  const limit = opts.limit !== undefined ? Number(opts.limit) : QUERY_DEFAULT_LIMIT;
  if (!Number.isInteger(limit) || limit < 1 || limit > QUERY_MAX_LIMIT) throw new Error(`--limit: expected an integer from 1 to ${QUERY_MAX_LIMIT}, got ${opts.limit}`);
  const config = eventsSource(opts, env);
  let nc;
  try {
    nc = await connectOnce(config.natsUrl, 'agent-smith events');
  } catch (err) {
    process.stderr.write(`agent-smith events: cannot connect to NATS: ${(err as Error).message}\n`);
    return 1;
  }
  try {
    const events = await queryEvents(nc, { stream: config.stream, subjectPrefix: config.subjectPrefix, agent: opts.agent, team: opts.team, type: opts.type, since, limit });
    for (const e of events) out.write(JSON.stringify(e) + '\n');
    return 0;
  } catch (err) {
    process.stderr.write(`agent-smith events: cannot read stream ${config.stream}: ${(err as Error).message}\n`);
    return 1;
  } finally {
    await nc.close();
  }
}
