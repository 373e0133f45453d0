/** A bulk response body for benchmarks, shared by the HTTPS fakes. */
import type { ServerResponse } from 'node:http';

/**
 * Answers 200 with `n` bytes of text filler (application/octet-stream, Content-Length n)
 * in 64 KiB writes, waiting for 'drain' when the socket's buffer is full.
 */
export function writeFiller(res: ServerResponse, n: number): void {
  res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(n) });
  const block = Buffer.alloc(64 * 1024, 'abcdefghijklmnopqrstuvwxyz0123456789\n');
  let left = n;
  const pump = () => {
    while (left > 0) {
      const part = block.subarray(0, Math.min(block.length, left));
      left -= part.length;
      if (!res.write(part)) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  pump();
}
