/**
 * Socket transports between processes, compatible with QEMU's netdevs: a stream link
 * (`-netdev socket,connect=|listen=` / `-netdev stream`: length-prefixed frames over TCP or a
 * unix socket) and a datagram link (`-netdev dgram` / `-netdev socket,udp=`: one frame per
 * UDP datagram). Each link is a `NetBackend`, so it plugs into a NIC, a switch or a UserNet.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createConnection, createServer, type Socket } from 'node:net';
import type { NetBackend, NetReceiver } from '../../devices/device.js';
import { encodeFrame, StreamDecoder, STREAM_MAX_FRAME } from './framing.js';
import { corkedWriter } from './node-host.js';

/** Bytes we let the host socket buffer before dropping frames (the peer is not reading). */
const MAX_BUFFERED = 2 << 20;

export class StreamLink implements NetBackend {
  private rx: NetReceiver | null = null;
  private readonly dec: StreamDecoder;
  private readonly write: (d: Uint8Array) => void;
  dropped = 0;
  error: string | null = null;
  readonly closed: Promise<void>;

  constructor(private readonly sock: Socket) {
    this.dec = new StreamDecoder((f) => { if (!this.rx?.receive(f)) this.dropped++; }, (m) => { this.error = m; sock.destroy(); });
    sock.setNoDelay(true);
    this.write = corkedWriter(sock);
    sock.on('data', (d: Buffer) => this.dec.push(d));
    sock.on('error', (e) => { this.error ??= e.message; });
    this.closed = new Promise((r) => sock.once('close', () => r()));
  }

  attach(nic: NetReceiver): void { this.rx = nic; }

  transmit(frame: Uint8Array): void {
    if (this.sock.destroyed || frame.length > STREAM_MAX_FRAME || this.sock.writableLength > MAX_BUFFERED) { this.dropped++; return; }
    this.write(encodeFrame(frame));
  }

  rxReady(): void { /* frames are delivered as they arrive; a full NIC drops */ }
  close(): void { this.sock.destroy(); }
}

export function connectStream(host: string, port: number): Promise<StreamLink> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ host, port });
    s.once('error', reject);
    s.once('connect', () => { s.off('error', reject); resolve(new StreamLink(s)); });
  });
}

/** Listen for stream peers (QEMU's `connect=` side); each connection becomes a link. */
export function listenStream(host: string, port: number, onLink: (l: StreamLink) => void): Promise<{ port: number; close(): void }> {
  return new Promise((resolve, reject) => {
    const srv = createServer((s) => onLink(new StreamLink(s)));
    srv.once('error', reject);
    srv.listen(port, host, () => {
      srv.off('error', reject);
      const a = srv.address();
      resolve({ port: typeof a === 'object' && a ? a.port : port, close: () => { srv.close(); } });
    });
  });
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
