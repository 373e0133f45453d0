import type { PodContract } from '../../contract/contract.ts';
import type { HarnessAdapter } from './adapter.ts';
import { ClaudeAdapter } from './claude.ts';
import { CodexAdapter, CustomAdapter, OpencodeAdapter } from './others.ts';

/** The adapter for a contract's `harness.kind`. */
export function adapterFor(kind: PodContract['harness']['kind']): HarnessAdapter {
  switch (kind) {
    case 'claude':
      return new ClaudeAdapter();
    case 'codex':
      return new CodexAdapter();
    case 'opencode':
      return new OpencodeAdapter();
    case 'custom':
      return new CustomAdapter();
  }
}

export type { HarnessAdapter, HarnessContext, LaunchSpec } from './adapter.ts';
