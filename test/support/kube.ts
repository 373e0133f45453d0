/**
 * Test helpers that talk to the API server with client-node (and kubectl where a user
 * would). Nothing here fakes the API server.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  ApiextensionsV1Api,
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  KubernetesObjectApi,
  NetworkingV1Api,
  RbacAuthorizationV1Api,
} from '@kubernetes/client-node';
import { CACHE_BIN } from '../../scripts/lib/cluster.ts';

const run = promisify(execFile);

export function kubeClients(kubeconfig: string) {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  return {
    kc,
    core: kc.makeApiClient(CoreV1Api),
    apps: kc.makeApiClient(AppsV1Api),
    custom: kc.makeApiClient(CustomObjectsApi),
    ext: kc.makeApiClient(ApiextensionsV1Api),
    objects: KubernetesObjectApi.makeApiClient(kc),
    rbac: kc.makeApiClient(RbacAuthorizationV1Api),
    networking: kc.makeApiClient(NetworkingV1Api),
  };
}
export type KubeClients = ReturnType<typeof kubeClients>;

import { waitFor } from './wait.ts';

export { waitFor };

/** A fresh namespace for one test file; deleted by the returned function. */
export async function makeNamespace(c: KubeClients, prefix: string): Promise<{ name: string; remove: () => Promise<void> }> {
  const name = `${prefix}-${Math.random().toString(36).slice(2, 8)}`;
  await c.core.createNamespace({ body: { metadata: { name } } });
  return { name, remove: async () => void (await c.core.deleteNamespace({ name }).catch(() => undefined)) };
}

/**
 * Waits (up to 180 s) until no namespace is Terminating: the suite shares one operator,
 * and while a namespace an earlier test file removed is still terminating, the operator
 * rightly writes the status of an Agent there whose Secret went first. A test that counts
 * the operator's writes measures from there.
 */
export async function waitForNoTerminatingNamespace(c: KubeClients): Promise<void> {
  await waitFor('no namespace terminating', async () => (await c.core.listNamespace()).items.every((n) => n.status?.phase !== 'Terminating'), 180_000, 1000);
}

/** kubectl: the one built from Go modules by tools.sh, or the one on PATH for an existing cluster. */
export async function kubectl(kubeconfig: string, args: string[], input?: string): Promise<{ stdout: string; stderr: string; code: number }> {
  const bin = existsSync(join(CACHE_BIN, 'kubectl')) ? join(CACHE_BIN, 'kubectl') : 'kubectl';
  const child = run(bin, ['--kubeconfig', kubeconfig, ...args], { maxBuffer: 16 * 1024 * 1024 });
  if (input !== undefined) {
    child.child.stdin?.end(input);
  }
  try {
    const { stdout, stderr } = await child;
    return { stdout, stderr, code: 0 };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; code?: number };
    return { stdout: e.stdout ?? '', stderr: e.stderr ?? '', code: typeof e.code === 'number' ? e.code : 1 };
  }
}
