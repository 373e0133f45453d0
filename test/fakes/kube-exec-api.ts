/**
 * A fake Kubernetes API server for `agent-smith attach NAME`: GET of Agents and Pods from
 * in-memory maps, and pods/exec over a WebSocket whose "container" is this machine: the
 * requested command really runs (under a PTY when tty=true), so a test can attach to a
 * real tmux server through client-node's Exec. The local control plane cannot do this:
 * kwok's fake nodes have no kubelet to exec into.
 *
 * Protocol facts (RFC 6455; k8s.io/apimachinery pkg/util/remotecommand and
 * pkg/util/httpstream/wsstream, Kubernetes 1.35):
 * - Exec is `GET /api/v1/namespaces/{ns}/pods/{pod}/exec?container=&command=...&stdin=&stdout=&stderr=&tty=`
 *   (one `command` parameter per argv element), upgraded to a WebSocket with subprotocol
 *   `v5.channel.k8s.io` (or v4..v1) chosen from the client's offer.
 * - Every message is binary, its first byte the channel: 0 stdin, 1 stdout, 2 stderr,
 *   3 error/status, 4 resize (`{"Width":w,"Height":h}`, case-insensitive JSON), and in v5
 *   255 "close stream" (second byte: the channel).
 * - The status channel carries one metav1.Status at the end: `{status: "Success"}`, or
 *   `Failure` with reason `NonZeroExitCode` and cause `{reason: "ExitCode", message: "<n>"}`.
 * - RBAC denial happens before the upgrade: HTTP 403 with a Status body.
 * - Frames from the client are masked, frames from the server are not (RFC 6455 5.1).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { spawn as spawnPty, type IPty } from 'node-pty';

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const PROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io'];

export interface ExecRequest {
  namespace: string;
  pod: string;
  container: string;
  command: string[];
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  protocol: string;
}

export interface FakeKubeApi {
  /** `http://127.0.0.1:<port>` */
  server: string;
  /** Agent objects by `namespace/name`. */
  agents: Map<string, object>;
  /** Pod objects by `namespace/name`. */
  pods: Map<string, object>;
  /** When true, exec is refused with 403 like an RBAC denial. */
  forbidExec: boolean;
  /** Every exec request, in order. */
  execs: ExecRequest[];
  /** Every resize message received, in order ({width, height}). */
  resizes: { width: number; height: number }[];
  /** Writes a kubeconfig for this server (context namespace `namespace`) and returns its path. */
  writeKubeconfig(file: string, namespace: string): Promise<string>;
  close(): Promise<void>;
}

function status(res: ServerResponse, code: number, reason: string, message: string): void {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code }));
}

/**
 * Starts the fake on 127.0.0.1.
 * @param execEnv environment of the commands exec runs (the "container's" environment).
 */
export async function startFakeKubeApi(execEnv: NodeJS.ProcessEnv): Promise<FakeKubeApi> {
  const sockets = new Set<Socket>();
  const processes = new Set<{ kill: () => void }>();
  const api: FakeKubeApi = {
    server: '',
    agents: new Map(),
    pods: new Map(),
    forbidExec: false,
    execs: [],
    resizes: [],
    writeKubeconfig: async (file, namespace) => {
      await writeFile(
        file,
        [
          'apiVersion: v1',
          'kind: Config',
          // client-node refuses plain HTTP unless TLS verification is off.
          `clusters: [{name: fake, cluster: {server: "${api.server}", insecure-skip-tls-verify: true}}]`,
          'users: [{name: someone, user: {token: fake-token}}]',
          `contexts: [{name: fake, context: {cluster: fake, user: someone, namespace: ${namespace}}}]`,
          'current-context: fake',
          '',
        ].join('\n'),
      );
      return file;
    },
    close: async () => {
      for (const p of processes) p.kill();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://fake');
    let m = /^\/apis\/agentsmith\.dev\/v1alpha1\/namespaces\/([^/]+)\/agents\/([^/]+)$/.exec(url.pathname);
    if (req.method === 'GET' && m) {
      const agent = api.agents.get(`${m[1]}/${m[2]}`);
      if (!agent) return status(res, 404, 'NotFound', `agents.agentsmith.dev "${m[2]}" not found`);
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify(agent));
    }
    m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)$/.exec(url.pathname);
    if (req.method === 'GET' && m) {
      const pod = api.pods.get(`${m[1]}/${m[2]}`);
      if (!pod) return status(res, 404, 'NotFound', `pods "${m[2]}" not found`);
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify(pod));
    }
    status(res, 404, 'NotFound', 'the server could not find the requested resource');
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
    const url = new URL(req.url ?? '/', 'http://fake');
    const m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/exec$/.exec(url.pathname);
    const reject = (code: number, text: string, body: object): void => {
      const json = JSON.stringify(body);
      socket.end(`HTTP/1.1 ${code} ${text}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(json)}\r\n\r\n${json}`);
    };
    if (!m) return reject(404, 'Not Found', { kind: 'Status', status: 'Failure', reason: 'NotFound', code: 404 });
    const [, namespace = '', pod = ''] = m;
    if (api.forbidExec) {
      return reject(403, 'Forbidden', {
        kind: 'Status',
        status: 'Failure',
        reason: 'Forbidden',
        code: 403,
        message: `pods "${pod}" is forbidden: User "someone" cannot create resource "pods/exec" in API group "" in the namespace "${namespace}"`,
      });
    }
    const offered = String(req.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((p) => p.trim());
    const protocol = PROTOCOLS.find((p) => offered.includes(p));
    if (!protocol) return reject(400, 'Bad Request', { kind: 'Status', status: 'Failure', code: 400 });
    const accept = createHash('sha1')
      .update(String(req.headers['sec-websocket-key']) + WS_GUID)
      .digest('base64');
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: ${protocol}\r\n\r\n`,
    );
    const exec: ExecRequest = {
      namespace,
      pod,
      container: url.searchParams.get('container') ?? '',
      command: url.searchParams.getAll('command'),
      tty: url.searchParams.get('tty') === 'true',
      stdin: url.searchParams.get('stdin') === 'true',
      stdout: url.searchParams.get('stdout') === 'true',
      stderr: url.searchParams.get('stderr') === 'true',
      protocol,
    };
    api.execs.push(exec);
    runExec(exec, socket, execEnv, api.resizes, processes);
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  api.server = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return api;
}

/** One unmasked server frame (RFC 6455 5.2). */
function frame(opcode: number, payload: Buffer): Buffer {
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x80 | opcode, len]) : len < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  if (len >= 126 && len < 65536) {
    head[0] = 0x80 | opcode;
    head[1] = 126;
    head.writeUInt16BE(len, 2);
  } else if (len >= 65536) {
    head[0] = 0x80 | opcode;
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  return Buffer.concat([head, payload]);
}

/** Parses masked client frames from a byte stream; calls onMessage per complete message. */
function frameReader(onMessage: (opcode: number, payload: Buffer) => void): (chunk: Buffer) => void {
  let buf = Buffer.alloc(0);
  let fragments: Buffer[] = [];
  let fragmentOpcode = 0;
  return (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      if (buf.length < 2) return;
      const fin = (buf[0]! & 0x80) !== 0;
      const opcode = buf[0]! & 0x0f;
      const masked = (buf[1]! & 0x80) !== 0;
      let len = buf[1]! & 0x7f;
      let offset = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        offset = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        len = Number(buf.readBigUInt64BE(2));
        offset = 10;
      }
      const maskLen = masked ? 4 : 0;
      if (buf.length < offset + maskLen + len) return;
      const mask = buf.subarray(offset, offset + maskLen);
      const payload = Buffer.from(buf.subarray(offset + maskLen, offset + maskLen + len));
      if (masked) for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i % 4]!;
      buf = buf.subarray(offset + maskLen + len);
      if (opcode >= 0x8) onMessage(opcode, payload);
      else {
        if (opcode !== 0) fragmentOpcode = opcode;
        fragments.push(payload);
        if (fin) {
          onMessage(fragmentOpcode, Buffer.concat(fragments));
          fragments = [];
        }
      }
    }
  };
}

function exitStatus(code: number | null, signal: NodeJS.Signals | number | null, command: string[]): object {
  if (code === 0) return { metadata: {}, status: 'Success' };
  const exitCode = code ?? 128 + (typeof signal === 'number' ? signal : 9);
  return {
    metadata: {},
    status: 'Failure',
    message: `command terminated with non-zero exit code: error executing command [${command.join(' ')}], exit code ${exitCode}`,
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: String(exitCode) }] },
  };
}

/** Runs the exec'd command on this machine and relays it over the channel protocol. */
function runExec(exec: ExecRequest, socket: Socket, env: NodeJS.ProcessEnv, resizes: { width: number; height: number }[], processes: Set<{ kill: () => void }>): void {
  const send = (channel: number, data: Buffer | string): void => {
    if (socket.writable) socket.write(frame(0x2, Buffer.concat([Buffer.from([channel]), Buffer.from(data)])));
  };
  let closed = false;
  const finish = (statusObject: object): void => {
    if (closed) return;
    closed = true;
    send(3, JSON.stringify(statusObject));
    const code = Buffer.alloc(2);
    code.writeUInt16BE(1000);
    if (socket.writable) socket.end(frame(0x8, code));
  };
  const [file = 'false', ...args] = exec.command;

  let write: (data: Buffer) => void = () => {};
  let resize: (cols: number, rows: number) => void = () => {};
  let kill: () => void;
  if (exec.tty) {
    const pty: IPty = spawnPty(file, args, { cols: 80, rows: 24, env, encoding: null });
    pty.onData((d: string | Buffer) => send(1, d));
    pty.onExit(({ exitCode, signal }) => finish(exitStatus(signal ? null : exitCode, signal ?? null, exec.command)));
    write = (d) => pty.write(d);
    resize = (c, r) => pty.resize(c, r);
    kill = () => pty.kill('SIGHUP');
  } else {
    const child: ChildProcess = spawn(file, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdout?.on('data', (d: Buffer) => exec.stdout && send(1, d));
    child.stderr?.on('data', (d: Buffer) => exec.stderr && send(2, d));
    child.on('error', (err) => finish({ metadata: {}, status: 'Failure', message: String(err), reason: 'InternalError' }));
    child.on('close', (code, signal) => finish(exitStatus(code, signal, exec.command)));
    write = (d) => child.stdin?.write(d);
    kill = () => child.kill('SIGHUP');
  }
  const handle = {
    kill: () => {
      try {
        kill();
      } catch {
        // already exited
      }
    },
  };
  processes.add(handle);

  socket.on(
    'data',
    frameReader((opcode, payload) => {
      if (opcode === 0x8) {
        // The client closed (detach from its side or a signal): hang up the command.
        closed = true;
        handle.kill();
        if (socket.writable) socket.end(frame(0x8, payload.subarray(0, 2)));
        return;
      }
      if (opcode !== 0x2 && opcode !== 0x1) return;
      const channel = payload[0];
      const data = payload.subarray(1);
      if (channel === 0) write(data);
      else if (channel === 4) {
        const size = JSON.parse(data.toString('utf8')) as Record<string, number>;
        const width = size.Width ?? size.width ?? 0;
        const height = size.Height ?? size.height ?? 0;
        resizes.push({ width, height });
        if (width > 0 && height > 0) resize(width, height);
      }
    }),
  );
  socket.on('close', () => {
    processes.delete(handle);
    if (!closed) handle.kill();
  });
}
