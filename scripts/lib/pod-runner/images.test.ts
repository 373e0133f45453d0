import { describe, expect, it } from 'vitest';
import { imageRepository, planContainer } from './images.ts';

const opts = { agentImages: ['ghcr.io/agent-smith/agent'], checkout: '/src' };

describe('imageRepository', () => {
  it.each([
    ['ghcr.io/agent-smith/agent:0.1.0', 'ghcr.io/agent-smith/agent'],
    ['localhost:5000/agent@sha256:abc', 'localhost:5000/agent'],
    ['localhost:5000/agent:1', 'localhost:5000/agent'],
    ['busybox', 'busybox'],
  ])('%s → %s', (image, repo) => expect(imageRepository(image)).toBe(repo));
});

describe('planContainer', () => {
  it('maps the agent image: tini dropped, agent-smith from the checkout, ENTRYPOINT/CMD semantics', () => {
    expect(planContainer({ name: 'a', image: 'ghcr.io/agent-smith/agent:9', command: ['tini', '-g', '--', 'agent-smith', 'supervise'] }, opts)).toMatchObject({
      kind: 'agent',
      argv: ['/src/agent-image/bin/agent-smith', 'supervise'],
    });
    // No command: the image's ENTRYPOINT (tini -g -- agent-smith) with args or its CMD.
    expect(planContainer({ name: 'a', image: 'ghcr.io/agent-smith/agent:9' }, opts)).toMatchObject({ argv: ['/src/agent-image/bin/agent-smith', 'supervise'] });
    expect(planContainer({ name: 'a', image: 'ghcr.io/agent-smith/agent:9', args: ['setup'] }, opts)).toMatchObject({ argv: ['/src/agent-image/bin/agent-smith', 'setup'] });
    expect(planContainer({ name: 'a', image: 'ghcr.io/agent-smith/agent:9', command: ['git', 'version'] }, opts)).toMatchObject({ argv: ['git', 'version'] });
  });

  it('skips egress-init, saying why', () => {
    const plan = planContainer({ name: 'egress-init', image: 'ghcr.io/agent-smith/agent:9', command: ['agent-smith', 'egress-init'] }, opts);
    expect(plan.kind === 'agent' && plan.skip).toContain('network namespace');
  });

  it('runs the shell image only with a command, and refuses other images', () => {
    expect(planContainer({ name: 's', image: 'agent-smith-dev/shell', command: ['sh', '-c', 'true'], args: ['x'] }, opts)).toMatchObject({ kind: 'shell', argv: ['sh', '-c', 'true', 'x'] });
    expect(planContainer({ name: 's', image: 'agent-smith-dev/shell:1' }, opts)).toMatchObject({ kind: 'refused', message: expect.stringContaining('must set command') as unknown });
    expect(planContainer({ name: 'n', image: 'nginx' }, opts)).toMatchObject({ kind: 'refused', message: expect.stringContaining('cannot run image "nginx"') as unknown });
  });
});
