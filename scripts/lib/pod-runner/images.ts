/**
 * What the development pod runner can run for a container image. It has no container
 * runtime and cannot pull or unpack images, so it knows exactly two "images":
 *
 * - the agent image (the operator's default `ghcr.io/agent-smith/agent`, any tag, plus any
 *   repository passed as `agentImages`): its programs come from this checkout. `agent-smith`
 *   is agent-image/bin/agent-smith; `tini [opts] -- X` runs X (every container already runs
 *   in its own process group, which is what `tini -g` is for); other commands (git, tmux,
 *   sh ...) are the host's. The image's ENTRYPOINT, CMD, ENV, WORKDIR and USER (Dockerfile,
 *   target `agent`) apply as a runtime would apply them.
 * - `agent-smith-dev/shell` (any tag), the runner's own test image: no entrypoint, so a
 *   container must set `command`; it runs with the host's tools (/bin/sh, node ...).
 *
 * Every other image is refused with a message that says why. Pure.
 */
import path from 'node:path';
import type { V1Container } from '@kubernetes/client-node';
import { DEFAULT_AGENT_IMAGE } from '../../../operator/src/config.ts';

/** The runner's own test image: runs `command` with the host's tools. Development only. */
export const SHELL_IMAGE = 'agent-smith-dev/shell';

/** What an image's config (Dockerfile) contributes to a container. */
export interface ImageConfig {
  entrypoint: string[];
  cmd: string[];
  env: Record<string, string>;
  workingDir: string;
  /** USER of the image (numeric); undefined: the runner's own user. */
  user?: { uid: number; gid: number };
}

/** The agent image's config, as the Dockerfile's `agent` target sets it. */
export const AGENT_IMAGE_CONFIG: ImageConfig = {
  entrypoint: ['tini', '-g', '--', 'agent-smith'],
  cmd: ['supervise'],
  env: { HOME: '/home/agent', SHELL: '/bin/bash' },
  workingDir: '/workspace',
  user: { uid: 1000, gid: 1000 },
};

const SHELL_IMAGE_CONFIG: ImageConfig = { entrypoint: [], cmd: [], env: {}, workingDir: '/' };

/** Paths the agent image puts `agent-smith` at (PATH lookup, the /usr/local/bin link, /app). */
const AGENT_SMITH_NAMES = new Set(['agent-smith', '/usr/local/bin/agent-smith', '/app/agent-image/bin/agent-smith']);

export type ImagePlan =
  | {
      kind: 'agent' | 'shell';
      config: ImageConfig;
      /** argv to execute; argv[0] is absolute, or a name looked up on the container's PATH. */
      argv: string[];
      /** Set when the container is not run at all (egress-init): why, for its status and the log. */
      skip?: string;
    }
  | { kind: 'refused'; message: string };

/** `registry/repo:tag@sha256:...` → `registry/repo`. */
export function imageRepository(image: string): string {
  const noDigest = image.split('@')[0] ?? image;
  const slash = noDigest.lastIndexOf('/');
  const colon = noDigest.lastIndexOf(':');
  return colon > slash ? noDigest.slice(0, colon) : noDigest;
}

/** Repositories treated as the agent image by default. */
export const DEFAULT_AGENT_IMAGES = [imageRepository(DEFAULT_AGENT_IMAGE)];

/** Tini's options that take a value (tini -h). */
const TINI_VALUE_OPTIONS = new Set(['-p', '-e']);

/** Drops `tini [options] [--]` from the front of argv. */
function stripTini(argv: string[]): string[] {
  if (argv[0] !== 'tini' && argv[0] !== '/usr/bin/tini' && argv[0] !== '/sbin/tini') return argv;
  const dashes = argv.indexOf('--');
  if (dashes >= 0) return argv.slice(dashes + 1);
  let i = 1;
  while (i < argv.length && argv[i]?.startsWith('-')) i += TINI_VALUE_OPTIONS.has(argv[i] ?? '') ? 2 : 1;
  return argv.slice(i);
}

/**
 * The argv a container runs, Kubernetes-style: `command` replaces the ENTRYPOINT and
 * drops the CMD; `args` replaces the CMD.
 * (https://kubernetes.io/docs/tasks/inject-data-application/define-command-argument-container/#notes)
 */
function containerArgv(container: V1Container, config: ImageConfig): string[] {
  if (container.command?.length) return [...container.command, ...(container.args ?? [])];
  return [...config.entrypoint, ...(container.args ?? config.cmd)];
}

/**
 * How to run `container` here.
 * @param opts.agentImages repositories (no tag) treated as the agent image
 * @param opts.checkout root of this repository (where agent-image/bin/agent-smith is)
 */
export function planContainer(container: V1Container, opts: { agentImages: readonly string[]; checkout: string }): ImagePlan {
  const image = container.image ?? '';
  const repo = imageRepository(image);
  if (repo === SHELL_IMAGE) {
    if (!container.command?.length) {
      return { kind: 'refused', message: `image ${SHELL_IMAGE} has no entrypoint: container ${container.name} must set command` };
    }
    return { kind: 'shell', config: SHELL_IMAGE_CONFIG, argv: containerArgv(container, SHELL_IMAGE_CONFIG) };
  }
  if (opts.agentImages.includes(repo)) {
    const argv = stripTini(containerArgv(container, AGENT_IMAGE_CONFIG));
    if (!argv.length) return { kind: 'refused', message: `container ${container.name}: nothing to run after tini` };
    if (AGENT_SMITH_NAMES.has(argv[0] ?? '')) argv[0] = path.join(opts.checkout, 'agent-image/bin/agent-smith');
    const plan: ImagePlan = { kind: 'agent', config: AGENT_IMAGE_CONFIG, argv };
    if (argv[1] === 'egress-init' && argv[0]?.endsWith('/agent-smith')) {
      plan.skip =
        'pod-runner (development): egress-init skipped; its iptables rules belong in the pod\'s own network namespace and the runner runs pods in the host\'s. Egress is NOT enforced: only clients that honour HTTPS_PROXY go through the proxy.';
    }
    return plan;
  }
  return {
    kind: 'refused',
    message: `pod-runner (development) cannot run image "${image}": it has no container runtime and runs only the agent image (${opts.agentImages.join(', ')}, from this checkout) and ${SHELL_IMAGE}`,
  };
}
