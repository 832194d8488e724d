/**
 * Socket transports between processes, compatible with QEMU's netdevs: a stream link
 * (`-netdev socket,connect=|listen=` / `-netdev stream`: length-prefixed frames over TCP or a
 * unix socket) and a datagram link (`-netdev dgram` / `-netdev socket,udp=`: one frame per
 * UDP datagram). Each link is a `NetBackend`, so it plugs into a NIC, a switch or a UserNet.
 *
 * Between two typevisor ends a stream link carries large TCP segments (GSO frames) whole:
 * each end opens with GSO_HELLO, and an end that has heard it sends them uncut; toward a
 * QEMU peer (which never says it) they are cut into MTU-sized frames first.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createConnection, createServer, type Socket } from 'node:net';
import type { NetBackend, NetReceiver } from '../../devices/device.js';
import { MAX_FRAME, TcpSegmenter, type FrameSink } from '../../devices/virtio/tcp-offload.js';
import { encodeFrame, GSO_HELLO, isGsoHello, StreamDecoder, STREAM_MAX_FRAME } from './framing.js';
import { corkedWriter } from './node-host.js';
import type { StreamAddr } from './netdev.js';

/** Bytes we let the host socket buffer before dropping frames (the peer is not reading). */
const MAX_BUFFERED = 2 << 20;

export class StreamLink implements NetBackend {
  private rx: NetReceiver | null = null;
  private readonly dec: StreamDecoder;
  private readonly write: (d: Uint8Array) => void;
  /** Cuts large segments for a peer or a device that takes only MTU-sized frames. */
  private readonly segmenter = new TcpSegmenter();
  /** The peer said GSO_HELLO: large TCP segments go to it whole. */
  private peerGso = false;
  /** The socket as a FrameSink, for the segmenter. */
  private readonly wire: FrameSink;
  dropped = 0;
  error: string | null = null;
  readonly closed: Promise<void>;

  constructor(private readonly sock: Socket) {
    this.dec = new StreamDecoder((f) => this.fromPeer(f), (m) => { this.error = m; sock.destroy(); });
    sock.setNoDelay(true);
    this.write = corkedWriter(sock);
    const peerGso = (): boolean => this.peerGso;
    this.wire = {
      receive: (f) => { this.write(encodeFrame(f)); return true; },
      get maxFrame() { return peerGso() ? STREAM_MAX_FRAME : MAX_FRAME; },
    };
    this.write(encodeFrame(GSO_HELLO));
    sock.on('data', (d: Buffer) => this.dec.push(d));
    sock.on('error', (e) => { this.error ??= e.message; });
    this.closed = new Promise((r) => sock.once('close', () => r()));
  }

  attach(nic: NetReceiver): void { this.rx = nic; }

  get gso(): boolean { return this.peerGso; }

  private fromPeer(f: Uint8Array): void {
    if (isGsoHello(f)) { this.peerGso = true; return; }
    if (!this.rx || !this.segmenter.deliver(this.rx, f)) this.dropped++;
    this.dropped += this.segmenter.dropped; this.segmenter.dropped = 0;
  }

  transmit(frame: Uint8Array): void {
    if (this.sock.destroyed || this.sock.writableLength > MAX_BUFFERED) { this.dropped++; return; }
    this.segmenter.deliver(this.wire, frame);
    this.dropped += this.segmenter.dropped; this.segmenter.dropped = 0;
  }

  rxReady(): void { /* frames are delivered as they arrive; a full NIC drops */ }
  close(): void { this.sock.destroy(); }
}

export function connectStream(host: string, port: number): Promise<StreamLink> {
  return connectStreamAddr({ kind: 'inet', host, port });
}

/** Connect a stream link to TCP HOST:PORT or a unix socket. */
export function connectStreamAddr(addr: StreamAddr): Promise<StreamLink> {
  return new Promise((resolve, reject) => {
    const s = addr.kind === 'unix' ? createConnection({ path: addr.path }) : createConnection({ host: addr.host, port: addr.port });
    s.once('error', reject);
    s.once('connect', () => { s.off('error', reject); resolve(new StreamLink(s)); });
  });
}

/** Listen for stream peers (QEMU's `connect=` side); each connection becomes a link. */
export function listenStream(host: string, port: number, onLink: (l: StreamLink) => void): Promise<{ port: number; close(): void }> {
  return listenStreamAddr({ kind: 'inet', host, port }, onLink);
}

/** Listen on TCP or a unix socket; `port` is the TCP port bound (0 for unix). */
export function listenStreamAddr(addr: StreamAddr, onLink: (l: StreamLink) => void): Promise<{ port: number; close(): void }> {
  return new Promise((resolve, reject) => {
    const srv = createServer((s) => onLink(new StreamLink(s)));
    srv.once('error', reject);
    const ready = (): void => {
      srv.off('error', reject);
      const a = srv.address();
      resolve({ port: typeof a === 'object' && a ? a.port : 0, close: () => { srv.close(); } });
    };
    if (addr.kind === 'unix') srv.listen(addr.path, ready);
    else srv.listen(addr.port, addr.host, ready);
  });
}

/**
 * A stream client that reconnects (QEMU 8's `reconnect=SECONDS`): while the server is away,
 * frames are dropped and counted, as on an unplugged cable; every `seconds` it tries again.
 * The first attempt may fail too, so a VM can start before its switch.
 */
export class ReconnectingStream implements NetBackend {
  private rx: NetReceiver | null = null;
  private link: StreamLink | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private closed = false;
  dropped = 0;
  /** Connections made (1 after the first). */
  connects = 0;

  constructor(private readonly addr: StreamAddr, private readonly seconds: number) {}

  /** First attempt; resolves either way (a failure schedules the next). */
  async start(): Promise<void> { await this.attempt(); }

  private async attempt(): Promise<void> {
    this.timer = null;
    if (this.closed) return;
    try {
      const l = await connectStreamAddr(this.addr);
      if (this.closed) { l.close(); return; }
      this.link = l;
      this.connects++;
      if (this.rx) l.attach(this.rx);
      void l.closed.then(() => {
        if (this.link === l) this.link = null;
        this.schedule();
      });
    } catch {
      this.schedule();
    }
  }

  private schedule(): void {
    if (this.closed || this.timer) return;
    this.timer = setTimeout(() => { void this.attempt(); }, this.seconds * 1000);
    this.timer.unref();
  }

  get connected(): boolean { return this.link !== null; }
  get gso(): boolean { return this.link?.gso ?? false; }
  attach(nic: NetReceiver): void { this.rx = nic; this.link?.attach(nic); }
  transmit(frame: Uint8Array): void {
    if (this.link) this.link.transmit(frame);
    else this.dropped++;
  }
  rxReady(): void { /* frames are delivered as they arrive */ }
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.link?.close();
    this.link = null;
  }
}

export class DgramLink implements NetBackend {
  private rx: NetReceiver | null = null;
  dropped = 0;
  private constructor(private readonly sock: UdpSocket, private readonly remoteHost: string, private readonly remotePort: number) {
    sock.on('message', (d) => { if (!this.rx?.receive(new Uint8Array(d.buffer, d.byteOffset, d.length))) this.dropped++; });
    sock.on('error', () => undefined);
  }

  static open(local: { host: string; port: number }, remote: { host: string; port: number }): Promise<DgramLink> {
    return new Promise((resolve, reject) => {
      const s = createSocket('udp4');
      s.once('error', reject);
      s.bind(local.port, local.host, () => { s.off('error', reject); resolve(new DgramLink(s, remote.host, remote.port)); });
    });
  }

  get localPort(): number { return this.sock.address().port; }
  attach(nic: NetReceiver): void { this.rx = nic; }
  transmit(frame: Uint8Array): void {
    if (frame.length > 65507) { this.dropped++; return; }
    this.sock.send(frame.slice(), this.remotePort, this.remoteHost);
  }
  rxReady(): void { /* nothing held */ }
  close(): void { try { this.sock.close(); } catch { /* closed */ } }
}
