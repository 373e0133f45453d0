import { defineConfig } from 'vitest/config';

/**
 * Four projects:
 * - unit: pure logic beside the code (`*.test.ts` under operator/ and agent-image/), no I/O.
 * - runtime: `test/runtime`, the agent pod's programs with real tmux, git and Claude Code.
 * - integration: `test/integration`, against a real control plane (scripts/localcluster,
 *   started once by the global setup, or an existing cluster: see test/support/global-setup.ts).
 * - node: `test/node`, agent pods run for real: each file starts the local cluster with its
 *   real node (kubelet, containerd, CNI, kube-proxy, CoreDNS), our images built from the
 *   Dockerfile, and the operator installed by our Helm chart (scripts/lib/real-cluster.ts).
 *   A machine has one real node at a time, so these files run one after another.
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
          name: 'runtime',
          // The in-pod runtime with its real parts (tmux, git, the Claude Code binary, the
          // fake model API, a local HTTPS git server); no Kubernetes control plane.
          include: ['test/runtime/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          // The Claude Code binary is large; one file at a time keeps 2 cores responsive.
          fileParallelism: false,
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
      {
        test: {
          name: 'node',
          include: ['test/node/**/*.test.ts'],
          testTimeout: 300_000,
          hookTimeout: 900_000,
          // One real node per machine (localcluster takes a lock): one file at a time.
          fileParallelism: false,
        },
      },
    ],
  },
});
