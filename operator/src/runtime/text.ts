/**
 * Text the API server bounds: an Event's `note` (1 kB, events.k8s.io/v1) and a condition's
 * `message` (32768, metav1.Condition). Both are cut by UTF-8 bytes, which also keeps a
 * character limit of the same number.
 */

/**
 * `text` cut to at most `maxBytes` UTF-8 bytes, ending in "…" when it was cut, never inside
 * a character (a surrogate pair or a multi-byte sequence stays whole or goes).
 * @param maxBytes at least 3 (the ellipsis)
 */
export function cutToBytes(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text) <= maxBytes) return text;
  const room = maxBytes - 3;
  let bytes = 0;
  let end = 0;
  for (const ch of text) {
    const n = Buffer.byteLength(ch);
    if (bytes + n > room) break;
    bytes += n;
    end += ch.length;
  }
  return `${text.slice(0, end)}…`;
}
