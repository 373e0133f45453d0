/**
 * Claude Code (`harness.kind: claude`, the default).
 *
 * Facts this relies on (checked on Claude Code 2.1.330, ../shared/notes/claude-code-offline.md):
 * - Config lives in `$HOME/.claude/` (CLAUDE.md, settings.json, agents/*.md) and
 *   `$HOME/.claude.json` (first-run state). `hasCompletedOnboarding` and a trusted
 *   project entry for the working directory skip every start-up dialog;
 *   `permissions.disableAutoMode: "disable"` and `skipDangerousModePermissionPrompt`
 *   skip the permission-mode dialogs.
 * - Hooks (settings.json `hooks.<Event>[].hooks[]`): a Stop hook with `async` and
 *   `asyncRewake` that exits 2 wakes the idle session with its stderr; SessionStart gets
 *   `session_id` and `source`; UserPromptSubmit gets `prompt`.
 * - `--session-id <uuid>` starts a session with that id; `--resume <uuid>` continues it;
 *   transcripts are `$HOME/.claude/projects/<munged cwd>/<uuid>.jsonl`.
 * - `--mcp-config <file>` loads MCP servers from a `.mcp.json`-shaped file; MCP tools are
 *   deferred behind ToolSearch unless the server entry says `alwaysLoad: true`.
 */
import { access, copyFile, mkdir, readdir, readFile, realpath, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { HarnessAdapter, HarnessContext, LaunchSpec } from './adapter.ts';
import { DEFAULT_APPROVAL_TIMEOUT_SECONDS, type PERMISSION_MODES, type PodContract } from '../../contract/contract.ts';
import { isJsonObject, mergeJson, parseJsonObject, readJsonObject, type Json } from '../../contract/settings.ts';
import { shellQuote, writeFileAtomic } from '../../lib/files.ts';

/** Name of the supervisor's MCP server in the CLI's MCP config (tools appear as `mcp__agent-smith__<tool>`). */
export const MCP_SERVER_NAME = 'agent-smith';

/** A spec.permissions.mode. */
type PermissionMode = (typeof PERMISSION_MODES)[number];

/** Hook timeout of the inbox waiter (s): it long-polls the supervisor and must outlive any idle spell. */
const WAITER_TIMEOUT_SECONDS = 7 * 24 * 3600;

export function claudeDir(ctx: Pick<HarnessContext, 'layout'>): string {
  return path.join(ctx.layout.homeDir, '.claude');
}

/** The MCP config file setup writes and `--mcp-config` names. */
export function mcpConfigFile(ctx: Pick<HarnessContext, 'layout'>): string {
  return path.join(ctx.layout.homeDir, '.mcp.json');
}

/**
 * The settings.json fragment that wires Claude Code's hooks to `agent-smith hook <event>`.
 * PermissionRequest (a tool call an `ask` rule holds) waits for an approver in Matrix up to
 * `approvalTimeoutSeconds` (spec.matrix.approvals.timeoutSeconds); its hook timeout is a
 * minute longer, so the hook's own deny always arrives before Claude Code gives up on it.
 */
export function hookSettings(selfCommand: string[], approvalTimeoutSeconds = DEFAULT_APPROVAL_TIMEOUT_SECONDS): Record<string, unknown> {
  const cmd = (event: string) => [...selfCommand, 'hook', event].map(shellQuote).join(' ');
  const sync = (event: string) => [{ hooks: [{ type: 'command', command: cmd(event), timeout: 15 }] }];
  return {
    hooks: {
      SessionStart: sync('session-start'),
      UserPromptSubmit: sync('prompt-submit'),
      Notification: sync('notification'),
      PermissionRequest: [{ hooks: [{ type: 'command', command: cmd('permission-request'), timeout: approvalTimeoutSeconds + 60 }] }],
      Stop: [{ hooks: [{ type: 'command', command: cmd('stop'), async: true, asyncRewake: true, timeout: WAITER_TIMEOUT_SECONDS }] }],
    },
  };
}

/**
 * Claude Code's `permissions.defaultMode` for each spec.permissions.mode (code.claude.com
 * docs "Permission modes"; checked on 2.1.330 with the real binary): bypassPermissions runs
 * every tool without a dialog, yet deny rules still refuse (the model reads "Permission to
 * use Bash with command ... has been denied.") and ask rules still ask (the PermissionRequest
 * hook, else the dialog). As root it also needs IS_SANDBOX=1; the pod runs non-root.
 */
export const CLAUDE_DEFAULT_MODES = { unattended: 'bypassPermissions', acceptEdits: 'acceptEdits', ask: 'default' } as const satisfies Record<PermissionMode, string>;

/**
 * The settings.json fragment for the contract's permissions, merged over the persona's
 * settings (mergeJson: the lists add up without duplicates, persona and shared rules first,
 * the spec's after; the spec's mode replaces a persona's `defaultMode`). Our MCP tools are
 * always allowed; auto mode and the bypass-mode warning dialog are off, so no mode dialog
 * waits for a key nobody presses.
 */
export function permissionSettings(permissions: PodContract['permissions']): { permissions: Record<string, Json>; skipDangerousModePermissionPrompt: true } {
  const list = (rules: string[]) => [...new Set(rules)];
  return {
    permissions: {
      defaultMode: CLAUDE_DEFAULT_MODES[permissions.mode],
      allow: list([`mcp__${MCP_SERVER_NAME}`, ...permissions.allow]),
      ...(permissions.ask.length ? { ask: list(permissions.ask) } : {}),
      ...(permissions.deny.length ? { deny: list(permissions.deny) } : {}),
      disableAutoMode: 'disable',
    },
    skipDangerousModePermissionPrompt: true,
  };
}

export class ClaudeAdapter implements HarnessAdapter {
  readonly kind = 'claude' as const;
  readonly hasHooks = true;

  async prepareHome(ctx: HarnessContext): Promise<void> {
    const { contract, layout } = ctx;
    const dir = claudeDir(ctx);
    await mkdir(dir, { recursive: true });
    const read = (key: string) => readFile(path.join(layout.configDir, key), 'utf8');

    // Read and check every input before writing anything: a bad persona file leaves the home as it was.
    const claudeMd = await read(contract.files.claudeMd);
    const personaSettings = parseJsonObject(await read(contract.files.settingsJson), `${contract.files.settingsJson} (persona settings.json)`);
    const personaMcp = contract.files.mcpJson ? parseJsonObject(await read(contract.files.mcpJson), `${contract.files.mcpJson} (persona mcp.json)`) : {};
    const subagents = await Promise.all(
      Object.entries(contract.files.subagents).map(async ([name, key]) => {
        if (!/^[\w.-]+$/.test(name) || name.startsWith('.')) throw new Error(`files.subagents: "${name}" is not a usable subagent name (letters, digits, '.', '_', '-')`);
        return [name, await read(key)] as const;
      }),
    );

    // CLAUDE.md: shared rules + persona + the live team roster import (assembled by the operator).
    await writeFileAtomic(path.join(dir, 'CLAUDE.md'), claudeMd);

    // settings.json: the persona's settings, then ours (hooks, our MCP tools allowed, the
    // spec's permission mode and rules after the persona's, no dialogs).
    const ours = { ...hookSettings(ctx.selfCommand, contract.matrix?.approvals.timeoutSeconds), ...permissionSettings(contract.permissions) };
    await writeFileAtomic(path.join(dir, 'settings.json'), JSON.stringify(mergeJson(personaSettings, ours), null, 2) + '\n');

    // MCP servers: the persona's, plus the supervisor's own (loopback HTTP).
    const servers = isJsonObject(personaMcp.mcpServers) ? personaMcp.mcpServers : {};
    const mcp = { mcpServers: { ...servers, [MCP_SERVER_NAME]: { type: 'http', url: `${ctx.supervisorUrl}/mcp`, alwaysLoad: true } } };
    await writeFileAtomic(mcpConfigFile(ctx), JSON.stringify(mcp, null, 2) + '\n');

    // Subagents: exactly the contract's set (a removed subagent disappears).
    const agentsDir = path.join(dir, 'agents');
    await rm(agentsDir, { recursive: true, force: true });
    await mkdir(agentsDir, { recursive: true });
    for (const [name, text] of subagents) await writeFileAtomic(path.join(agentsDir, `${name}.md`), text);

    // First-run state: onboarding done, the working directory trusted. Keys the CLI wrote are kept.
    const stateFile = path.join(layout.homeDir, '.claude.json');
    const state = await readJsonObject(stateFile);
    // Claude Code keys a project by its real path: the workdir itself, unless a symlink
    // leads to it; then only the real path is sure to be the one the CLI sees, so both are trusted.
    const trusted = { hasTrustDialogAccepted: true, hasCompletedProjectOnboarding: true, enableAllProjectMcpServers: true };
    // A key in ANTHROPIC_API_KEY makes the CLI ask "use this API key?" once, unless its last
    // 20 characters are in customApiKeyResponses.approved (checked against Claude Code
    // 2.1.330). The agent's key is a credential stub, known here, so it is approved.
    const stubKeys = contract.egress.credentials.filter((c) => c.env.includes('ANTHROPIC_API_KEY')).map((c) => c.stub.slice(-20));
    const firstRun = {
      hasCompletedOnboarding: true,
      theme: typeof state.theme === 'string' ? state.theme : 'dark',
      projects: Object.fromEntries([...new Set([ctx.workdir, await resolvedPath(ctx.workdir)])].map((p) => [p, trusted])),
      // mergeJson adds to the approved list the CLI may already hold.
      ...(stubKeys.length ? { customApiKeyResponses: { approved: stubKeys } } : {}),
    };
    await writeFileAtomic(stateFile, JSON.stringify(mergeJson(state, firstRun), null, 2) + '\n', 0o600);
  }

  launch(ctx: HarnessContext, session: { id: string; resume: boolean }): LaunchSpec {
    const { harness } = ctx.contract;
    const argv = [
      'claude',
      ...(session.resume ? ['--resume', session.id] : ['--session-id', session.id]),
      '--mcp-config',
      mcpConfigFile(ctx),
      ...(harness.model ? ['--model', harness.model] : []),
      ...harness.args,
    ];
    return {
      argv,
      env: {
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
        DISABLE_AUTOUPDATER: '1',
        AGENT_SMITH_SUPERVISOR_URL: ctx.supervisorUrl,
      },
    };
  }

  /**
   * Whether the transcript of `sessionId` holds a conversation Claude Code can resume.
   * A CLI killed while it rewrites its transcript on `--resume` can leave one that it then
   * refuses ("No conversation found with session ID"), which would crash-loop every later
   * start; so a good transcript is copied aside before each start
   * (`<id>.jsonl.agent-smith-good`) and put back when the live one has no conversation.
   */
  async hasSession(ctx: HarnessContext, sessionId: string): Promise<boolean> {
    const projects = path.join(claudeDir(ctx), 'projects');
    let dirs: string[];
    try {
      dirs = await readdir(projects);
    } catch {
      return false;
    }
    for (const d of dirs) {
      const file = path.join(projects, d, `${sessionId}.jsonl`);
      const good = `${file}.agent-smith-good`;
      if (await hasConversation(file)) {
        await copyFile(file, `${good}.tmp`);
        await rename(`${good}.tmp`, good);
        return true;
      }
      if (await hasConversation(good)) {
        await copyFile(good, file);
        return true;
      }
    }
    return false;
  }
}

/** Whether a transcript file exists and records at least one user turn. */
async function hasConversation(file: string): Promise<boolean> {
  try {
    await access(file);
    return (await readFile(file, 'utf8')).includes('"type":"user"');
  } catch {
    return false;
  }
}

/**
 * `p` with symbolic links resolved as far as it exists (the workdir is cloned after the
 * home is assembled): the real path of its nearest existing ancestor, plus the rest.
 */
async function resolvedPath(p: string): Promise<string> {
  const rest: string[] = [];
  for (let dir = p; ; dir = path.dirname(dir)) {
    const real = await realpath(dir).catch(() => undefined);
    if (real !== undefined) return path.join(real, ...rest.reverse());
    if (dir === path.dirname(dir)) return p;
    rest.push(path.basename(dir));
  }
}
