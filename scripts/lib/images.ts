/**
 * The operator and agent images, built from our Dockerfile with buildah by `scripts/images`
 * (scripts/lib/images.sh: bases from Debian packages and the npm registry, cached by a hash
 * of the inputs), for the tools that run them on the real node (real-cluster.ts).
 */
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), '../images');

/** What `scripts/images` prints: the image names (tagged by input hash) and their archives. */
export interface Images {
  /** `localhost/agent-smith/operator:<hash>` */
  operator: string;
  /** `localhost/agent-smith/agent:<hash>` */
  agent: string;
  operatorArchive: string;
  agentArchive: string;
}

/**
 * Builds the images, or finds them in the cache when their inputs have not changed
 * (about a second). `log` gets the builder's progress lines.
 * @throws Error with the end of the builder's output when the build fails
 */
export function ensureImages(log: (line: string) => void = () => undefined): Promise<Images> {
  return runImages([], log);
}

/**
 * Imports the images into the containerd at `address` (namespace k8s.io, where the kubelet
 * looks), skipping those already there.
 * @throws Error with the end of the importer's output
 */
export async function importImages(address: string, images: Images, log: (line: string) => void = () => undefined): Promise<void> {
  const got = await runImages(['--import', address], log);
  if (got.operator !== images.operator || got.agent !== images.agent) {
    throw new Error(`the images changed while importing them (${images.operator} → ${got.operator}); run again`);
  }
}

async function runImages(args: string[], log: (line: string) => void): Promise<Images> {
  const child = spawn('bash', [SCRIPT, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const tail: string[] = [];
  createInterface({ input: child.stderr }).on('line', (line) => {
    tail.push(line);
    if (tail.length > 30) tail.shift();
    log(line);
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  if (code !== 0) throw new Error(`scripts/images ${args.join(' ')} failed (exit ${code}):\n${tail.join('\n')}`);
  const line = out.trim().split('\n').pop() ?? '';
  try {
    const parsed = JSON.parse(line) as Partial<Images>;
    if (parsed.operator && parsed.agent && parsed.operatorArchive && parsed.agentArchive) return parsed as Images;
  } catch {
    // reported below
  }
  throw new Error(`scripts/images printed no image names: ${JSON.stringify(line.slice(0, 300))}`);
}
