import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { runAttach } from './attach.ts';
import {
  AttachError,
  apiErrorMessage,
  defaultTmuxSocket,
  execErrorMessage,
  exitCodeFromStatus,
  hasSessionArgs,
  localAttachArgs,
  noSessionMessage,
  parseAttachArgs,
  podAttachCommand,
  podNameForAgent,
  podProblem,
  remoteTerm,
  resolveNamespace,
  tmuxClientEnv,
} from './resolve.ts';
import type { TerminalIO } from './terminal.ts';

describe('parseAttachArgs', () => {
  it('takes --socket over $AGENT_SMITH_TMUX_SOCKET, and leaves tmux its default socket when neither is set', () => {
    expect(parseAttachArgs({ local: true, socket: '/s/flag' }, { AGENT_SMITH_TMUX_SOCKET: '/s/env' })).toEqual({ kind: 'local', socket: '/s/flag' });
    expect(parseAttachArgs({ local: true }, { AGENT_SMITH_TMUX_SOCKET: '/s/env' })).toEqual({ kind: 'local', socket: '/s/env' });
    expect(parseAttachArgs({ local: true }, { AGENT_SMITH_TMUX_SOCKET: '' })).toEqual({ kind: 'local', socket: undefined });
    expect(parseAttachArgs({ local: true }, {})).toEqual({ kind: 'local', socket: undefined });
  });

  it('passes the Agent name and kube flags through for a pod attach', () => {
    expect(parseAttachArgs({ agent: 'devbot', namespace: 'team', kubeconfig: '/k', context: 'c' }, { AGENT_SMITH_TMUX_SOCKET: '/s' })).toEqual({
      kind: 'pod',
      agent: 'devbot',
      namespace: 'team',
      kubeconfig: '/k',
      context: 'c',
    });
    expect(parseAttachArgs({ agent: 'devbot' }, {})).toMatchObject({ namespace: undefined, kubeconfig: undefined, context: undefined });
  });

  it('rejects contradictory or missing arguments with exit code 2', () => {
    const fails = (args: Record<string, string | boolean | undefined>): AttachError => {
      try {
        parseAttachArgs(args, {});
      } catch (err) {
        return err as AttachError;
      }
      throw new Error('expected an AttachError');
    };
    expect(fails({})).toMatchObject({ exitCode: 2, message: expect.stringContaining('name the Agent') as unknown });
    expect(fails({ agent: 'devbot', local: true })).toMatchObject({ exitCode: 2, message: expect.stringContaining('drop the Agent name "devbot"') as unknown });
    expect(fails({ agent: 'devbot', socket: '/s' })).toMatchObject({ exitCode: 2, message: '--socket only applies with --local' });
  });
});

describe('tmux socket and client', () => {
  it("names tmux's default socket from TMUX_TMPDIR and the uid, /tmp without it", () => {
    expect(defaultTmuxSocket({ TMUX_TMPDIR: '/run/user/1000' }, 1000)).toBe('/run/user/1000/tmux-1000/default');
    expect(defaultTmuxSocket({}, 0)).toBe('/tmp/tmux-0/default');
    expect(defaultTmuxSocket({ TMUX_TMPDIR: '' }, 7)).toBe('/tmp/tmux-7/default');
  });

  it('drops $TMUX so attach works from inside another tmux and uses the default socket, not the enclosing one', () => {
    const env = { TMUX: '/tmp/tmux-0/other,123,0', TERM: 'screen', HOME: '/h' };
    expect(tmuxClientEnv(env)).toEqual({ TERM: 'screen', HOME: '/h' });
    expect(env.TMUX).toBeDefined();
  });

  it('builds the tmux argv with -S only when a socket is given, and checks for exactly session main', () => {
    expect(localAttachArgs('/s')).toEqual(['-S', '/s', 'attach', '-t', 'main']);
    expect(localAttachArgs(undefined)).toEqual(['attach', '-t', 'main']);
    expect(hasSessionArgs(undefined)).toEqual(['has-session', '-t', '=main']);
  });

  it('says which socket has no session and what to check', () => {
    expect(noSessionMessage('/tmp/x/sock')).toBe("no tmux session 'main' on socket /tmp/x/sock: is the supervisor running?");
  });
});

describe('pod resolution', () => {
  it('uses status.podName when the operator set it, else <agent>-0', () => {
    expect(podNameForAgent({ metadata: { name: 'devbot' }, status: { podName: 'devbot-7' } }, 'devbot')).toBe('devbot-7');
    expect(podNameForAgent({ metadata: { name: 'devbot' }, status: {} }, 'devbot')).toBe('devbot-0');
    expect(podNameForAgent({ metadata: { name: 'devbot' }, status: { podName: '' } }, 'devbot')).toBe('devbot-0');
    expect(podNameForAgent({ metadata: { name: 'devbot' }, status: { podName: 42 } }, 'devbot')).toBe('devbot-0');
    expect(podNameForAgent({}, 'infrabot')).toBe('infrabot-0');
  });

  it("shows the pod's phase and why when it is not running", () => {
    expect(podProblem({ status: { phase: 'Pending' } }, 'devbot-0')).toBe('pod devbot-0 is Pending, not Running');
    expect(
      podProblem({ status: { phase: 'Pending', containerStatuses: [{ name: 'agent', state: { waiting: { reason: 'ImagePullBackOff' } } }] } }, 'devbot-0'),
    ).toBe('pod devbot-0 is Pending, not Running (container "agent" ImagePullBackOff)');
    expect(podProblem({ status: { phase: 'Failed', reason: 'Evicted', message: 'low on memory' } }, 'devbot-0')).toBe(
      'pod devbot-0 is Failed, not Running (Evicted: low on memory)',
    );
    expect(podProblem({}, 'devbot-0')).toBe('pod devbot-0 is Unknown, not Running');
    expect(
      podProblem({ status: { phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable' }] } }, 'devbot-0'),
    ).toBe('pod devbot-0 is Pending, not Running (not scheduled: Unschedulable)');
  });

  it('requires the agent container to be running in a Running pod', () => {
    const running = { name: 'agent', state: { running: {} } };
    expect(podProblem({ spec: { containers: [{ name: 'agent' }] }, status: { phase: 'Running', containerStatuses: [running] } }, 'p')).toBeUndefined();
    expect(podProblem({ spec: { containers: [{ name: 'shell' }] }, status: { phase: 'Running' } }, 'p')).toBe('pod p has no container "agent"');
    expect(
      podProblem({ status: { phase: 'Running', containerStatuses: [{ name: 'agent', state: { waiting: { reason: 'CrashLoopBackOff' } } }] } }, 'p'),
    ).toBe('container "agent" of pod p is waiting (CrashLoopBackOff)');
    expect(
      podProblem({ status: { phase: 'Running', containerStatuses: [{ name: 'agent', state: { terminated: { reason: 'Error', exitCode: 3 } } }] } }, 'p'),
    ).toBe('container "agent" of pod p has terminated (Error, exit code 3)');
  });

  it('takes the namespace from the flag, then the kubeconfig context, then default', () => {
    expect(resolveNamespace('a', 'b')).toBe('a');
    expect(resolveNamespace(undefined, 'b')).toBe('b');
    expect(resolveNamespace(undefined, undefined)).toBe('default');
  });
});

describe('remote command', () => {
  it("runs tmux attach with the person's TERM when the image surely knows it, xterm-256color otherwise", () => {
    expect(podAttachCommand('screen-256color')).toEqual(['env', 'TERM=screen-256color', 'tmux', 'attach', '-t', 'main']);
    expect(remoteTerm('xterm-kitty')).toBe('xterm-256color');
    expect(remoteTerm(undefined)).toBe('xterm-256color');
  });

  it('reads the exit code from the exec status', () => {
    expect(exitCodeFromStatus({ status: 'Success' })).toBe(0);
    expect(
      exitCodeFromStatus({
        status: 'Failure',
        reason: 'NonZeroExitCode',
        message: 'command terminated with non-zero exit code: error executing command [tmux attach -t main], exit code 1',
        details: { causes: [{ reason: 'ExitCode', message: '1' }] },
      }),
    ).toBe(1);
    expect(exitCodeFromStatus({ status: 'Failure', reason: 'InternalError', message: 'exec: "tmux": executable file not found in $PATH' })).toBeUndefined();
    expect(exitCodeFromStatus({ status: 'Failure', reason: 'NonZeroExitCode', details: { causes: [] } })).toBeUndefined();
  });
});

describe('API and exec errors', () => {
  const what = { verb: 'get', resource: 'agents.agentsmith.dev', namespace: 'team', notFound: 'Agent "x" not found in namespace "team"', server: 'https://k:6443' };

  it('names the namespace for a missing Agent and the RBAC rule for a 403', () => {
    expect(apiErrorMessage({ code: 404 }, what)).toBe('Agent "x" not found in namespace "team"');
    expect(apiErrorMessage({ code: 403 }, what)).toBe('forbidden: attaching needs RBAC verb "get" on "agents.agentsmith.dev" in namespace "team"');
    expect(apiErrorMessage(new Error('connect ECONNREFUSED 127.0.0.1:6443'), what)).toBe(
      'cannot reach the API server at https://k:6443: connect ECONNREFUSED 127.0.0.1:6443',
    );
    expect(apiErrorMessage({ code: 500 }, what)).toContain('answered 500');
  });

  it('says that create on pods/exec is needed when the exec upgrade is refused with 403', () => {
    // client-node rejects with ws's ErrorEvent, not an Error.
    const event = { type: 'error', message: 'Unexpected server response: 403', error: new Error('Unexpected server response: 403') };
    expect(execErrorMessage(event, 'team', 'devbot-0')).toBe('forbidden: attaching needs RBAC verb "create" on "pods/exec" in namespace "team"');
    expect(execErrorMessage(new Error('Unexpected server response: 500'), 'team', 'devbot-0')).toBe(
      'exec into pod team/devbot-0 failed: the API server answered 500',
    );
    expect(execErrorMessage(new Error('getaddrinfo ENOTFOUND k'), 'team', 'devbot-0')).toBe('exec into pod team/devbot-0 failed: getaddrinfo ENOTFOUND k');
  });
});

describe('runAttach', () => {
  it('reports bad arguments on stderr with exit code 2, touching nothing else', async () => {
    let stderr = '';
    const io = {
      stdin: process.stdin,
      stdout: process.stdout,
      stderr: new Writable({
        write(chunk: Buffer, _enc, cb) {
          stderr += chunk.toString();
          cb();
        },
      }),
    } as unknown as TerminalIO;
    expect(await runAttach({ agent: undefined }, io, {})).toBe(2);
    expect(stderr).toBe('agent-smith attach: name the Agent to attach to (agent-smith attach NAME), or use --local\n');
  });
});
