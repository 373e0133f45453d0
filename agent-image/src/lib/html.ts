/**
 * HTML text for Matrix `formatted_body` (org.matrix.custom.html).
 */

/**
 * `s` safe as HTML text or a quoted attribute value: `&`, `<`, `>`, `"` and `'` become
 * numeric character references (`&#38;` ...). Everything else is left as is.
 */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
