/**
 * The demo's public stand-ins (the git server as github.com, the GitHub fake as
 * api.github.com) reached by their public names from host programs (git, gh, curl), without
 * DNS: an HTTP CONNECT proxy (RFC 9110 section 9.3.6) that tunnels `name:443` to the
 * stand-in's local port and refuses every other target. Clients find it through
 * HTTPS_PROXY (git's libcurl and gh's Go net/http both honour it) and trust the stand-ins'
 * CAs through a bundle file (SSL_CERT_FILE for gh, GIT_SSL_CAINFO for git).
 *
 * No TLS is terminated here: the client talks TLS end to end with the stand-in, whose
 * certificate names the public host.
 */
import { writeFile } from 'node:fs/promises';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';

export interface StandInProxy {
  /** `http://127.0.0.1:<port>`: the HTTPS_PROXY value. */
  url: string;
  /** The CONNECT targets asked for, in order (`github.com:443`). */
  targets: string[];
  close(): Promise<void>;
}

/**
 * Starts the tunnel. `routes`: public `host:port` → the local address that serves it
 * (`{host: '127.0.0.1', port}`). Any other CONNECT target gets 403.
 */
export async function startStandInProxy(routes: Record<string, { host: string; port: number }>): Promise<StandInProxy> {
  const targets: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = http.createServer((_req, res) => res.writeHead(405, { 'content-type': 'text/plain' }).end('CONNECT only\n'));
  server.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    const target = (req.url ?? '').toLowerCase();
    targets.push(target);
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => client.destroy());
    const to = routes[target];
    if (!to) {
      client.end(`HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n`);
      return;
    }
    const upstream = net.connect(to.port, to.host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    targets,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Writes the PEM bundle `pems` to `file` (for SSL_CERT_FILE / GIT_SSL_CAINFO); returns `file`. */
export async function writeCaBundle(file: string, pems: readonly string[]): Promise<string> {
  await writeFile(file, pems.map((p) => (p.endsWith('\n') ? p : `${p}\n`)).join(''));
  return file;
}
