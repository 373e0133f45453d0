/**
 * Harnesses other than Claude Code. None of them has Claude Code's async-rewake hook, so
 * the supervisor types inbound messages into pane 0 (bracketed paste + Enter) and tells
 * idle from busy by the pane's output going quiet.
 *
 * Facts from each CLI's documentation (not run here: the binaries are not installed in
 * the test environment; see ../shared/notes/claude-code-offline.md "Other harnesses"):
 * - Codex: instructions in `$CODEX_HOME/AGENTS.md` (default `~/.codex`), MCP servers in
 *   `config.toml` `[mcp_servers.<name>]` with `url` for streamable HTTP; `codex resume --last`.
 * - opencode: `~/.config/opencode/opencode.json` (`mcp.<name> = {type: "remote", url}`),
 *   instructions in `~/.config/opencode/AGENTS.md`; `opencode --continue`.
 *
 * Permissions (spec.permissions, contract `permissions`; docs/permissions.md):
 * - Codex: the mode maps to `approval_policy` and `sandbox_mode` (developers.openai.com/codex
 *   "Agent approvals & security"): unattended = never + danger-full-access (the pod is the
 *   sandbox; Codex's own Landlock/seccomp sandbox may not work in a container), acceptEdits =
 *   untrusted + workspace-write with network (edits in the workspace run, commands outside
 *   Codex's safe set ask), ask = untrusted + read-only. Rules do not map: Codex's `.rules`
 *   files match exact command-token prefixes, Claude Code's rules wildcards anywhere; they
 *   are left out (a comment in config.toml says so).
 * - opencode: `permission` in opencode.json (opencode.ai/docs/permissions): per tool
 *   `allow`/`ask`/`deny`, an object of wildcard patterns where the LAST match wins. The mode
 *   is the `*` default (unattended allow, acceptEdits ask with `edit` allowed, ask ask); the
 *   Bash, Read and Edit rules of the persona's settings.json and of the spec become `bash`,
 *   `read` and `edit` patterns, written allow, then ask, then deny, so deny wins as in
 *   Claude Code. Rules for other tools are left out.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { HarnessAdapter, HarnessContext, LaunchSpec } from './adapter.ts';
import { MCP_SERVER_NAME } from './claude.ts';
import type { PodContract } from '../../contract/contract.ts';
import { isJsonObject, mergeJson, parseJsonObject, readJsonObject, type Json } from '../../contract/settings.ts';
import { writeFileAtomic } from '../../lib/files.ts';

async function instructions(ctx: HarnessContext): Promise<string> {
  return readFile(path.join(ctx.layout.configDir, ctx.contract.files.claudeMd), 'utf8');
}

async function nonEmptyDir(dir: string): Promise<boolean> {
  try {
    return (await readdir(dir)).length > 0;
  } catch {
    return false;
  }
}

/** A TOML basic string (quotes and backslashes escaped). */
function tomlString(s: string): string {
  return `"${s.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;
}

type Permissions = PodContract['permissions'];

/** Codex's `approval_policy` and `sandbox_mode` for each spec.permissions.mode. */
export const CODEX_MODES = {
  unattended: { approval_policy: 'never', sandbox_mode: 'danger-full-access' },
  acceptEdits: { approval_policy: 'untrusted', sandbox_mode: 'workspace-write' },
  ask: { approval_policy: 'untrusted', sandbox_mode: 'read-only' },
} as const satisfies Record<Permissions['mode'], { approval_policy: string; sandbox_mode: string }>;

/** The top-level config.toml lines of the permissions (before any table). */
function codexPermissionLines(p: Permissions): string[] {
  const { approval_policy, sandbox_mode } = CODEX_MODES[p.mode];
  const rules = p.allow.length + p.ask.length + p.deny.length;
  return [
    `approval_policy = ${tomlString(approval_policy)}`,
    `sandbox_mode = ${tomlString(sandbox_mode)}`,
    ...(rules ? [`# spec.permissions: ${rules} allow/ask/deny rule(s) in Claude Code syntax are not applied: Codex has no equivalent (docs/permissions.md).`] : []),
  ];
}

/** opencode's permission tools for Claude Code's rule tools (others do not map). */
const OPENCODE_TOOLS: Record<string, string> = { Bash: 'bash', Read: 'read', Edit: 'edit', Write: 'edit' };

/**
 * A Claude Code rule as an opencode [tool, pattern], or undefined when it does not map:
 * `Bash` → bash `*`; `Bash(npm test:*)` (legacy prefix) → `npm test *`; `Bash(x)` → `x`;
 * `Read(//abs/**)` → `/abs/**` (Claude's `//` is an absolute path, opencode's `/`);
 * `Read(~/x)` and relative paths as they are.
 */
export function opencodeRule(rule: string): [string, string] | undefined {
  const m = /^([A-Za-z]+)(?:\((.*)\))?$/.exec(rule);
  const tool = m && OPENCODE_TOOLS[m[1]!];
  if (!m || !tool) return undefined;
  const spec = m[2];
  if (spec === undefined || spec === '' || spec === '*' || spec === '**') return [tool, '*'];
  if (tool === 'bash') return [tool, spec.endsWith(':*') ? `${spec.slice(0, -2)} *` : spec];
  return [tool, spec.startsWith('//') ? spec.slice(1) : spec];
}

/** Claude Code-shaped permission lists (`allow`, `ask`, `deny`) of a settings.json, for opencode. */
function settingsRules(settings: { [k: string]: Json }): Pick<Permissions, 'allow' | 'ask' | 'deny'> {
  const p = isJsonObject(settings.permissions) ? settings.permissions : {};
  const list = (v: Json | undefined) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
  return { allow: list(p.allow), ask: list(p.ask), deny: list(p.deny) };
}

/**
 * opencode's `permission` object for the contract's permissions and the persona's (shared)
 * rules, persona first. Pure.
 */
export function opencodePermission(p: Permissions, persona: Pick<Permissions, 'allow' | 'ask' | 'deny'> = { allow: [], ask: [], deny: [] }): { [k: string]: Json } {
  const base = p.mode === 'unattended' ? 'allow' : 'ask';
  const out: { [k: string]: Json } = { '*': base, ...(p.mode === 'acceptEdits' ? { edit: 'allow' } : {}) };
  const tools: Record<string, Record<string, string>> = {};
  for (const action of ['allow', 'ask', 'deny'] as const) {
    for (const rule of [...persona[action], ...p[action]]) {
      const mapped = opencodeRule(rule);
      if (!mapped) continue;
      const [tool, pattern] = mapped;
      const preset = out[tool];
      const patterns = (tools[tool] ??= { '*': typeof preset === 'string' ? preset : base });
      // Last match wins in opencode: re-inserting moves the pattern after the earlier actions.
      delete patterns[pattern];
      patterns[pattern] = action;
    }
  }
  return { ...out, ...tools };
}

export class CodexAdapter implements HarnessAdapter {
  readonly kind = 'codex' as const;
  readonly hasHooks = false;

  private home(ctx: HarnessContext): string {
    return path.join(ctx.layout.homeDir, '.codex');
  }

  async prepareHome(ctx: HarnessContext): Promise<void> {
    const dir = this.home(ctx);
    await writeFileAtomic(path.join(dir, 'AGENTS.md'), await instructions(ctx));
    const toml = [
      '# Written by agent-smith setup on every start; edits are overwritten.',
      ...(ctx.contract.harness.model ? [`model = ${tomlString(ctx.contract.harness.model)}`] : []),
      ...codexPermissionLines(ctx.contract.permissions),
      // acceptEdits' workspace-write sandbox has no network by default; the pod's egress is the proxy's to police.
      ...(ctx.contract.permissions.mode === 'acceptEdits' ? ['[sandbox_workspace_write]', 'network_access = true'] : []),
      `[projects.${tomlString(ctx.workdir)}]`,
      'trust_level = "trusted"',
      `[mcp_servers.${MCP_SERVER_NAME}]`,
      `url = ${tomlString(`${ctx.supervisorUrl}/mcp`)}`,
      '',
    ].join('\n');
    await writeFileAtomic(path.join(dir, 'config.toml'), toml);
  }

  launch(ctx: HarnessContext, session: { id: string; resume: boolean }): LaunchSpec {
    const argv = ['codex', ...(session.resume ? ['resume', '--last'] : []), ...ctx.contract.harness.args];
    return { argv, env: { CODEX_HOME: this.home(ctx), AGENT_SMITH_SUPERVISOR_URL: ctx.supervisorUrl } };
  }

  hasSession(ctx: HarnessContext): Promise<boolean> {
    return nonEmptyDir(path.join(this.home(ctx), 'sessions'));
  }
}

export class OpencodeAdapter implements HarnessAdapter {
  readonly kind = 'opencode' as const;
  readonly hasHooks = false;

  async prepareHome(ctx: HarnessContext): Promise<void> {
    const dir = path.join(ctx.layout.homeDir, '.config', 'opencode');
    await writeFileAtomic(path.join(dir, 'AGENTS.md'), await instructions(ctx));
    const file = path.join(dir, 'opencode.json');
    const settingsKey = ctx.contract.files.settingsJson;
    const persona = settingsRules(parseJsonObject(await readFile(path.join(ctx.layout.configDir, settingsKey), 'utf8'), `${settingsKey} (persona settings.json)`));
    const ours = {
      $schema: 'https://opencode.ai/config.json',
      ...(ctx.contract.harness.model ? { model: ctx.contract.harness.model } : {}),
      autoupdate: false,
      mcp: { [MCP_SERVER_NAME]: { type: 'remote', url: `${ctx.supervisorUrl}/mcp`, enabled: true } },
    };
    // The permission object is replaced, not merged: a rule dropped from the spec must go.
    const config = { ...(mergeJson(await readJsonObject(file), ours) as { [k: string]: Json }), permission: opencodePermission(ctx.contract.permissions, persona) };
    await writeFileAtomic(file, JSON.stringify(config, null, 2) + '\n');
  }

  launch(ctx: HarnessContext, session: { id: string; resume: boolean }): LaunchSpec {
    return {
      argv: ['opencode', ...(session.resume ? ['--continue'] : []), ...ctx.contract.harness.args],
      env: { AGENT_SMITH_SUPERVISOR_URL: ctx.supervisorUrl },
    };
  }

  hasSession(ctx: HarnessContext): Promise<boolean> {
    return nonEmptyDir(path.join(ctx.layout.homeDir, '.local', 'share', 'opencode', 'storage'));
  }
}

/** `harness.kind: custom`: the contract's `harness.command` (+ args) as is; nothing to prepare, nothing to resume. */
export class CustomAdapter implements HarnessAdapter {
  readonly kind = 'custom' as const;
  readonly hasHooks = false;

  async prepareHome(): Promise<void> {}

  launch(ctx: HarnessContext): LaunchSpec {
    const { command, args } = ctx.contract.harness;
    if (!command?.length) throw new Error('harness.command: a custom harness needs a command (spec.harness.command in the Agent)');
    return { argv: [...command, ...args], env: { AGENT_SMITH_SUPERVISOR_URL: ctx.supervisorUrl } };
  }

  hasSession(): Promise<boolean> {
    return Promise.resolve(false);
  }
}
