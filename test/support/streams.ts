/** Stream helpers for tests of transforms. */
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';

/** Pushes `input` through the transform `t` cut into chunks at the byte offsets `cuts`; resolves what comes out, as text. */
export async function through(t: NodeJS.ReadWriteStream, input: Buffer, cuts: number[]): Promise<string> {
  const chunks: Buffer[] = [];
  let prev = 0;
  for (const c of [...cuts, input.length]) {
    chunks.push(input.subarray(prev, c));
    prev = c;
  }
  return text(Readable.from(chunks).pipe(t));
}
