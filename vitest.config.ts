import { defineConfig } from 'vitest/config';

/**
 * Two projects:
 * - unit: pure logic beside the code (`*.test.ts` under operator/ and agent-image/), no I/O.
 * - integration: `test/integration`, against a real control plane (scripts/localcluster,
 *   started once by the global setup, or an existing cluster: see test/support/global-setup.ts).
 */
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['operator/**/*.test.ts', 'agent-image/**/*.test.ts', 'scripts/**/*.test.ts', 'test/unit/**/*.test.ts'],
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          // Restarting kube-apiserver needs the local control plane; an existing
          // cluster (AGENT_SMITH_TEST_CLUSTER=existing) cannot be restarted from here.
          exclude: process.env.AGENT_SMITH_TEST_CLUSTER === 'existing' ? ['test/integration/apiserver-restart.test.ts'] : [],
          globalSetup: ['test/support/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 300_000,
          // One control plane for the whole run; files run one at a time to keep a
          // 2-core machine responsive (each test works in its own namespace anyway).
          fileParallelism: false,
        },
      },
    ],
  },
});
