/**
 * Reading the pod contract file, with errors a person can act on.
 */
import { readFileSync } from 'node:fs';
import { CONTRACT_VERSION, PodContract } from './contract.ts';

/** The contract file is missing, not JSON, or does not match the schema. `message` names the field. */
export class ContractError extends Error {
  override name = 'ContractError';
}

/**
 * Parses and validates a contract document. Errors name each bad field by its JSON path
 * (e.g. `harness.kind: Invalid option: expected one of "claude"|...`) and the file.
 *
 * @throws ContractError
 */
export function parseContract(text: string, source = 'contract'): PodContract {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ContractError(`${source}: not valid JSON (${(err as Error).message}); the operator renders it into the agent's ConfigMap key contract.json`);
  }
  if (raw && typeof raw === 'object' && 'version' in raw && raw.version !== CONTRACT_VERSION) {
    throw new ContractError(
      `${source}: version: this image understands contract version ${CONTRACT_VERSION}, got ${JSON.stringify(raw.version)}; run an agent image that matches the operator`,
    );
  }
  const parsed = PodContract.safeParse(raw);
  if (!parsed.success) {
    const fields = parsed.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`);
    throw new ContractError(`${source}: invalid pod contract: ${fields.join('; ')}`);
  }
  return parsed.data;
}

/** Reads and validates the contract file. @throws ContractError */
export function loadContract(file: string): PodContract {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ContractError(`${file}: cannot read the pod contract (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); is the agent ConfigMap mounted?`);
  }
  return parseContract(text, file);
}

