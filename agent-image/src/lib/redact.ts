/**
 * Secrets in URLs kept out of logs and errors: userinfo (`scheme://user:pass@`) removed,
 * and a URL's password blanked wherever a tool quoted it back. Used by repository sync
 * (programs/setup/repos.ts) and the event log's NATS URLs (plugins/events/subject.ts).
 * URLs are parsed by WHATWG URL (Node's `URL`).
 */

/**
 * The URL with its userinfo (user and password) removed, for logs and errors.
 * `https://user:token@host/x.git` → `https://host/x.git`. scp-like `git@host:x.git` is
 * kept: its user is a login name, not a secret. Unparseable input passes through
 * redactText.
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (!u.username && !u.password) return url;
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return redactText(url);
  }
}

/**
 * Removes userinfo from every `scheme://user:pass@` in text, and every literal occurrence
 * of the password (raw and percent-decoded) of `url` when given: git and curl sometimes
 * quote the URL they were given.
 */
export function redactText(text: string, url?: string): string {
  let out = text;
  // The literal password first: a password holding "@" would otherwise be cut at it below.
  if (url) {
    for (const secret of urlSecrets(url)) out = out.split(secret).join('[redacted]');
  }
  // Userinfo runs to the last "@" before the path (RFC 3986: "@" cannot be in the host).
  return out.replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/'"]*@/gi, '$1');
}

function urlSecrets(url: string): string[] {
  try {
    const { password } = new URL(url);
    if (!password) return [];
    let decoded = password;
    try {
      decoded = decodeURIComponent(password);
    } catch {
      // not percent-encoded validly; the raw form is enough
    }
    return [...new Set([password, decoded])].filter((s) => s.length > 0);
  } catch {
    return [];
  }
}
