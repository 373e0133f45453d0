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
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { HarnessAdapter, HarnessContext, LaunchSpec } from './adapter.ts';
import { MCP_SERVER_NAME } from './claude.ts';
import { mergeJson, readJsonObject } from '../../contract/settings.ts';
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
    const ours = {
      $schema: 'https://opencode.ai/config.json',
      ...(ctx.contract.harness.model ? { model: ctx.contract.harness.model } : {}),
      autoupdate: false,
      mcp: { [MCP_SERVER_NAME]: { type: 'remote', url: `${ctx.supervisorUrl}/mcp`, enabled: true } },
    };
    await writeFileAtomic(file, JSON.stringify(mergeJson(await readJsonObject(file), ours), null, 2) + '\n');
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
