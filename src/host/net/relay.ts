/**
 * The source's half of moving a user network's TCP connections (live migration), for Node.
 *
 * A host socket belongs to its process; it cannot follow the VM to another host. So the
 * source keeps each connection's socket and relays its byte stream: the destination's NAT
 * connects back here, names the connection (id) and proves it was sent the state (a
 * 16-byte key that travelled with the device state over the authenticated migration
 * channel), and from the commit on the two sockets are spliced, half-closes and resets
 * passed through. Until the commit nothing flows either way, so a failed move leaves the
 * source's connections exactly where they were (their sockets are paused, not read).
 */
import { createServer, type Server, type Socket } from 'node:net';
import { timingSafeEqual } from 'node:crypto';
import { RELAY_HEADER_BYTES, RELAY_MAGIC, type HostTcp, type HostTcpRelay } from './host.js';

/** How long the destination has to connect, and to send its header. */
const CONNECT_WINDOW_MS = 30_000;
const HEADER_WINDOW_MS = 10_000;

interface Held { sock: Socket; key: Uint8Array; guestEnded: boolean; peer: Socket | null; spliced: boolean }

export class TcpRelay implements HostTcpRelay {
  private readonly held = new Map<number, Held>();
  private readonly pending = new Set<Socket>();
  private committed = false;
  private aborted = false;
  private finish: () => void = () => {};
  private readonly done = new Promise<void>((r) => { this.finish = r; });
  private expire: ReturnType<typeof setTimeout> | null = null;

  private constructor(private readonly server: Server, readonly host: string, readonly port: number,
    private readonly socketOf: (h: HostTcp) => Socket | undefined) {}

  /** Listen on `host` (the address the destination reaches this host at), any port; `socketOf`: the Node socket behind a HostTcp. */
  static open(host: string, socketOf: (h: HostTcp) => Socket | undefined): Promise<TcpRelay> {
    return new Promise((resolve, reject) => {
      let relay: TcpRelay | null = null;
      const server = createServer({ allowHalfOpen: true }, (s) => relay?.accept(s));
      server.once('error', reject);
      server.listen(0, host, () => {
        server.off('error', reject);
        server.on('error', () => undefined);
        const a = server.address();
        relay = new TcpRelay(server, host, typeof a === 'object' && a ? a.port : 0, socketOf);
        resolve(relay);
      });
    });
  }

  offer(h: HostTcp, id: number, key: Uint8Array, guestEnded: boolean): void {
    const sock = this.socketOf(h);
    if (!sock) throw new Error('relay: not a Node socket');
    sock.pause();
    this.held.set(id, { sock, key: key.slice(), guestEnded, peer: null, spliced: false });
  }

  commit(): Promise<void> {
    if (this.committed || this.aborted) return this.done;
    this.committed = true;
    for (const [id, h] of this.held) {
      // The NAT's handlers go: from now on the bytes are the relay's.
      for (const ev of ['data', 'end', 'drain', 'close', 'connect', 'error', 'timeout']) h.sock.removeAllListeners(ev);
      h.sock.on('error', () => undefined);
      if (h.peer) this.splice(id, h);
    }
    // Connections the destination never claims are reset, so their peers learn of it.
    this.expire = setTimeout(() => {
      for (const [id, h] of this.held) if (!h.peer) { h.sock.resetAndDestroy(); this.held.delete(id); }
      this.server.close();
      this.settle();
    }, CONNECT_WINDOW_MS);
    this.expire.unref();
    this.settle();
    return this.done;
  }

  abort(): void {
    if (this.committed || this.aborted) return;
    this.aborted = true;
    this.server.close();
    for (const s of this.pending) s.resetAndDestroy();
    for (const h of this.held.values()) h.peer?.resetAndDestroy();
    this.held.clear();
    this.finish();
  }

  /** Connections still relayed (or waiting for the destination). */
  get size(): number { return this.held.size; }

  private settle(): void {
    if (!this.committed || this.held.size > 0) return;
    if (this.expire) clearTimeout(this.expire);
    this.server.close();
    this.finish();
  }

  private accept(s: Socket): void {
    if (this.aborted) { s.resetAndDestroy(); return; }
    this.pending.add(s);
    s.on('error', () => undefined);
    s.on('close', () => this.pending.delete(s));
    const timer = setTimeout(() => s.resetAndDestroy(), HEADER_WINDOW_MS);
    let buf = new Uint8Array(0);
    const onData = (d: Buffer): void => {
      const b = new Uint8Array(buf.length + d.length);
      b.set(buf); b.set(d, buf.length);
      buf = b;
      if (buf.length < RELAY_HEADER_BYTES) return;
      s.off('data', onData);
      s.pause();
      clearTimeout(timer);
      this.pending.delete(s);
      if (buf.length > RELAY_HEADER_BYTES) s.unshift(buf.subarray(RELAY_HEADER_BYTES));
      this.claim(s, buf.subarray(0, RELAY_HEADER_BYTES));
    };
    s.on('data', onData);
  }

  private claim(s: Socket, hdr: Uint8Array): void {
    const id = new DataView(hdr.buffer, hdr.byteOffset, hdr.length).getUint32(4, true);
    const h = this.held.get(id);
    const magicOk = RELAY_MAGIC.every((b, i) => hdr[i] === b);
    if (!magicOk || !h || h.peer || !timingSafeEqual(hdr.subarray(8), h.key)) { s.resetAndDestroy(); return; }
    h.peer = s;
    if (this.committed) this.splice(id, h);
  }

  /** Join the held host socket and the destination's: bytes, half-closes and resets pass through. */
  private splice(id: number, h: Held): void {
    if (h.spliced || !h.peer) return;
    h.spliced = true;
    const a = h.sock, b = h.peer;
    if (a.destroyed) {
      // The host peer reset (or the socket failed) while the move was under way.
      b.on('close', () => { this.held.delete(id); this.settle(); });
      b.resetAndDestroy();
      return;
    }
    let closed = 0;
    const closedOne = (): void => { if (++closed === 2) { this.held.delete(id); this.settle(); } };
    a.on('close', (hadError) => { if (hadError) b.resetAndDestroy(); closedOne(); });
    b.on('close', (hadError) => { if (hadError) a.resetAndDestroy(); closedOne(); });
    a.on('error', () => undefined);
    // Host peer → destination (the peer's FIN becomes the relay's FIN).
    if (a.readableEnded) b.end(); else a.pipe(b);
    // Destination → host peer; after the guest's FIN there is nothing more to write.
    if (h.guestEnded || a.writableEnded) { b.on('data', () => undefined); b.resume(); } else b.pipe(a);
  }
}
