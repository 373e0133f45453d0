/**
 * `spec.permissions` of the Agent: how much the coding-agent CLI may do without a person
 * answering, and rules for single tools. The rules are written in Claude Code's
 * permission-rule syntax (code.claude.com/docs/en/permissions; checked against Claude Code
 * 2.1.330): `Tool` or `Tool(specifier)`, e.g. `Bash(git push * main)` (`*` matches any
 * characters, spaces included), `Bash(npm test:*)` (legacy prefix form),
 * `Read(//etc/agent-smith/**)` (a gitignore-style path; `//` starts an absolute path, a
 * single `/` is relative to the settings file, which in the pod is ~/.claude/: so a
 * single-`/` Read or Edit rule is refused here). Other harnesses get what maps
 * (docs/permissions.md).
 *
 * Bounds (items, length, one line) keep the CRD's CEL cost estimate finite and a rule from
 * smuggling a second line into a settings file.
 */
import { z } from 'zod';
import { PERMISSION_MODES } from '../../../agent-image/src/contract/contract.ts';
import { cel } from './schema.ts';

/** Most rules per list (allow, ask, deny). */
export const MAX_PERMISSION_RULES = 128;
/** Longest rule (characters). */
export const MAX_PERMISSION_RULE_LENGTH = 1024;

const RULE_MESSAGE =
  'must be one Claude Code permission rule on one line: a tool name, optionally with a specifier in parentheses, e.g. Bash(git push * main) or Read(//etc/agent-smith/**)';

/** One permission rule: `Tool` or `Tool(specifier)`, one line, no control characters. */
const rule = cel(
  z
    .string()
    .min(1)
    .max(MAX_PERMISSION_RULE_LENGTH)
    .regex(/^[A-Za-z][A-Za-z0-9_*.-]*(\([^\x00-\x1f\x7f]*\))?$/, RULE_MESSAGE),
  {
    rule: "!self.matches('^(Read|Edit)\\\\(/[^/]')",
    message: 'a Read or Edit rule with one leading "/" is relative to the settings file (~/.claude/ in the pod); an absolute path starts with "//", e.g. Read(//etc/agent-smith/**)',
  },
);

const rules = (what: string) => z.array(rule).max(MAX_PERMISSION_RULES).default([]).describe(what);

export const PermissionsSpec = z
  .object({
    mode: z
      .enum(PERMISSION_MODES)
      .default('unattended')
      .describe(
        'unattended (default): every tool runs without asking unless a deny or ask rule matches; the pod is the sandbox (default-deny egress through the proxy, stub credentials only, non-root, no capabilities). Claude Code: defaultMode bypassPermissions. acceptEdits: file edits and the allow rules run, everything else asks. ask: only the allow rules run, everything else asks. Asking goes to the CLI\'s PermissionRequest hook (approvals over chat) or the pane.',
      ),
    allow: rules(
      'Rules of tool uses that run without asking (what acceptEdits and ask modes let through), after the shared and persona settings\' own, e.g. Bash(npm test*). Claude Code permission-rule syntax.',
    ),
    ask: rules(
      'Rules of tool uses that always ask a person first, in every mode, e.g. Bash(gh pr merge*). An ask rule wins over an allow rule. Claude Code permission-rule syntax.',
    ),
    deny: rules(
      'Rules of tool uses that are always refused (the model is told so), in every mode, e.g. Bash(git push * main) or Read(//etc/agent-smith/matrix/**). A deny rule wins over ask and allow. Command rules match the command text: a speed bump for a cooperative model, not a security boundary (docs/permissions.md). Claude Code permission-rule syntax.',
    ),
  })
  .describe(
    'What the coding-agent CLI may do without a person answering: a mode, and allow, ask and deny rules added to the shared and persona settings. Mapped to each harness\'s own settings (Claude Code permissions; codex approval_policy/sandbox_mode and opencode permission as far as they go).',
  );
export type PermissionsSpec = z.infer<typeof PermissionsSpec>;
