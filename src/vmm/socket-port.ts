/**
 * The runner protocol over a Unix socket, so a runner outlives its manager: the runner
 * listens on DIR/run/NAME.sock (mode 0600) and serves one manager at a time; a manager that
 * goes away leaves the VM running, and the next one connects, reads the runner's `hello`
 * (protocol version and whether its machine already runs) and takes over.
 *
 * Frames: a 4-byte little-endian length, then the message as V8 structured-clone data
 * (v8.serialize: Uint8Array passes as is, as over IPC with serialization 'advanced').
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { chmodSync, rmSync } from 'node:fs';
import { serialize, deserialize } from 'node:v8';
import type { FromRunner, Port, ToRunner } from './protocol.js';

/**
 * Larger frames are a protocol error. Snapshots and migration rounds carry guest RAM, so the
 * bound is the largest guest (3840 MiB) plus room for the rest of the message.
 */
const MAX_FRAME = 0xf000_0000 + (64 << 20);
/** Console output kept for the next manager while none is connected (the newest bytes). */
export const DETACHED_CONSOLE_BYTES = 64 * 1024;
/** Unix socket paths are limited to 107 bytes on Linux (sun_path). */
export const MAX_SOCKET_PATH = 107;

/**
 * Splits a byte stream into frames; calls `onMessage` per frame, destroys the socket on a bad
 * one. Chunks are kept as they come and joined once per frame, so a frame of N bytes costs
 * O(N), not one copy of everything so far per chunk.
 */
function reader(sock: Socket, onMessage: (m: unknown) => void): void {
  let chunks: Buffer[] = [];
  let have = 0;
  /** Length of the frame being read (after its 4-byte header), or -1 before the header. */
  let need = -1;
  const take = (n: number): Buffer => {
    const all = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, have);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    chunks = rest.length ? [rest] : [];
    have = rest.length;
    return out;
  };
  sock.on('data', (d: Buffer) => {
    chunks.push(d);
    have += d.length;
    for (;;) {
      if (need < 0) {
        if (have < 4) return;
        need = take(4).readUInt32LE(0);
        if (need > MAX_FRAME) { sock.destroy(); return; }
      }
      if (have < need) return;
      const body = take(need);
      need = -1;
      let m: unknown;
      try { m = deserialize(body); } catch { sock.destroy(); return; }
      onMessage(m);
    }
  });
}

function frame(msg: unknown): Buffer {
  const body = serialize(msg);
  const head = Buffer.alloc(4);
  head.writeUInt32LE(body.length, 0);
  return Buffer.concat([head, body]);
}

/** The manager's end: a connected socket to a runner. onClose fires when it closes. */
export class SocketPort<In, Out> implements Port<In, Out> {
  private readonly messageCbs: Array<(m: In) => void> = [];
  private closed = false;

  constructor(private readonly sock: Socket) {
    reader(sock, (m) => { for (const cb of this.messageCbs) cb(m as In); });
    sock.on('error', () => { /* 'close' follows */ });
  }

  post(msg: Out): void {
    if (this.closed || this.sock.destroyed) return;
    this.sock.write(frame(msg));
  }

  onMessage(cb: (msg: In) => void): void { this.messageCbs.push(cb); }
  onClose(cb: () => void): void { this.sock.on('close', () => cb()); }

  close(): void {
    this.closed = true;
    this.sock.end();
  }
}

/** Connect to a runner's socket, retrying while the runner starts (ENOENT, ECONNREFUSED). */
export async function connectRunner(path: string, timeoutMs: number, alive: () => boolean = () => true): Promise<Socket> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const s = connect(path);
        s.once('connect', () => { s.off('error', reject); resolve(s); });
        s.once('error', reject);
      });
    } catch (e) {
      if (performance.now() > end || !alive()) throw e;
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

/**
 * The runner's end. Messages posted while no manager is connected are dropped, except
 * console output (the newest DETACHED_CONSOLE_BYTES, replayed to the next manager) and
 * the final `exit`. `onConnect` runs for each new manager before the replay (the runner
 * says hello there). A new connection replaces the current one (a takeover).
 */
export class RunnerSocketServer implements Port<ToRunner, FromRunner> {
  private readonly server: Server;
  private sock: Socket | null = null;
  private readonly messageCbs: Array<(m: ToRunner) => void> = [];
  private readonly connectCbs: Array<() => void> = [];
  private backlog: Uint8Array[] = [];
  private backlogBytes = 0;
  private ending = false;

  constructor(private readonly path: string, onListening: () => void, onError: (e: Error) => void) {
    if (Buffer.byteLength(path) > MAX_SOCKET_PATH) throw new Error(`socket path too long (${Buffer.byteLength(path)} bytes > ${MAX_SOCKET_PATH}): ${path}`);
    rmSync(path, { force: true });
    this.server = createServer((s) => this.accept(s));
    this.server.on('error', onError);
    // Only the owner may connect: the socket is created 0600 (umask), and chmod makes sure.
    const umask = process.umask(0o177);
    this.server.listen(path, () => {
      process.umask(umask);
      try { chmodSync(path, 0o600); } catch (e) { onError(e as Error); return; }
      onListening();
    });
  }

  private accept(s: Socket): void {
    if (this.ending) { s.destroy(); return; }
    const old = this.sock;
    this.sock = s;
    old?.destroy();
    s.on('error', () => { /* 'close' follows */ });
    s.on('close', () => { if (this.sock === s) this.sock = null; });
    reader(s, (m) => { if (this.sock === s) for (const cb of this.messageCbs) cb(m as ToRunner); });
    for (const cb of this.connectCbs) cb();
    for (const data of this.backlog) s.write(frame({ type: 'console', data }));
    this.backlog = [];
    this.backlogBytes = 0;
  }

  /** A manager connected (each time one does). */
  onConnect(cb: () => void): void { this.connectCbs.push(cb); }

  post(msg: FromRunner): void {
    const s = this.sock;
    if (s && !s.destroyed) { s.write(frame(msg)); return; }
    if (msg.type === 'console' && msg.data instanceof Uint8Array) {
      this.backlog.push(msg.data);
      this.backlogBytes += msg.data.length;
      while (this.backlogBytes - this.backlog[0].length >= DETACHED_CONSOLE_BYTES) this.backlogBytes -= this.backlog.shift()!.length;
    }
  }

  onMessage(cb: (msg: ToRunner) => void): void { this.messageCbs.push(cb); }
  /** The runner does not end with a manager: nothing to report. */
  onClose(): void { /* a manager leaving is not the end */ }

  private holdExit: Promise<void> | null = null;
  private exiting = false;

  /** The process outlives the machine until `p` settles (it relays a moved VM's connections). */
  holdExitUntil(p: Promise<void>): void { this.holdExit = p; }

  private exit(): void {
    if (this.exiting) return;
    this.exiting = true;
    if (this.holdExit) void this.holdExit.finally(() => process.exit(0));
    else process.exit(0);
  }

  /** The machine ended: let the manager read what was sent, then exit the process (see holdExitUntil). */
  close(): void {
    if (this.ending) return;
    this.ending = true;
    this.server.close();
    rmSync(this.path, { force: true });
    const s = this.sock;
    if (!s || s.destroyed) { this.exit(); return; }
    s.end(() => this.exit());
    setTimeout(() => this.exit(), 2000).unref();
  }
}
