/** Small networking helpers shared by the development tools and the tests. */
import { createServer } from 'node:net';

/**
 * A free TCP port on 127.0.0.1, found by binding port 0 and closing again. Racy in theory
 * (another process may take it before the caller binds it); fine for development tools and
 * tests on one machine.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}
