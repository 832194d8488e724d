/** The Node implementation of `HostNet` (node:net, node:dgram, node:dns). */
import { createSocket } from 'node:dgram';
import { closeSync, openSync, writeSync } from 'node:fs';
import { lookup } from 'node:dns/promises';
import { createServer, Socket } from 'node:net';
import type { AcceptedTcp, HostListener, HostTcp, HostTcpEvents, HostTcpRelay, HostUdp, RelayingHostNet } from './host.js';
import { TcpRelay } from './relay.js';

/** Write through cork/uncork so the segments of one event-loop turn leave in one writev. */
export function corkedWriter(sock: Socket): (d: Uint8Array) => void {
  let corked = false;
  const uncork = (): void => { corked = false; sock.uncork(); };
  return (d) => {
    if (sock.destroyed || !sock.writable) return;
    if (!corked) { corked = true; sock.cork(); process.nextTick(uncork); }
    sock.write(d);
  };
}

/** The socket behind each HostTcp this module made (a live migration's relay takes it over). */
const sockets = new WeakMap<HostTcp, Socket>();

function wrap(sock: Socket): HostTcp {
  const write = corkedWriter(sock);
  const h: HostTcp = {
    write,
    buffered: () => sock.writableLength,
    pause: () => { sock.pause(); },
    resume: () => { sock.resume(); },
    end: () => { if (!sock.destroyed) sock.end(); },
    destroy: () => { sock.destroy(); },
  };
  sockets.set(h, sock);
  return h;
}

function bind(sock: Socket, ev: HostTcpEvents): void {
  let err: string | undefined;
  sock.on('connect', () => ev.connect());
  sock.on('data', (d: Buffer) => ev.data(d));
  sock.on('end', () => ev.end());
  sock.on('drain', () => ev.drain());
  sock.on('error', (e: NodeJS.ErrnoException) => { err = e.code ?? e.message; });
  sock.on('close', () => ev.close(err));
}

export class NodeHostNet implements RelayingHostNet {
  tcpConnect(addr: string, port: number, ev: HostTcpEvents): HostTcp {
    const sock = new Socket({ allowHalfOpen: true });
    bind(sock, ev);
    sock.setNoDelay(true);
    sock.connect({ host: addr, port });
    return wrap(sock);
  }

  tcpListen(addr: string, port: number, accept: (s: AcceptedTcp) => void): Promise<HostListener> {
    return new Promise((resolve, reject) => {
      const srv = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (sock) => {
        sock.setNoDelay(true);
        sock.on('error', () => undefined);
        const h = wrap(sock);
        const a: AcceptedTcp = { ...h, remoteAddress: sock.remoteAddress ?? '', remotePort: sock.remotePort ?? 0, start: (ev) => bind(sock, ev) };
        sockets.set(a, sock);
        accept(a);
      });
      srv.once('error', reject);
      srv.listen(port, addr, () => {
        srv.off('error', reject);
        srv.on('error', () => undefined);
        const a = srv.address();
        resolve({ port: typeof a === 'object' && a ? a.port : port, close: () => { srv.close(); } });
      });
    });
  }

  udpBind(addr: string, port: number, message: (d: Uint8Array, addr: string, port: number) => void): Promise<HostUdp> {
    return new Promise((resolve, reject) => {
      const s = createSocket('udp4');
      s.once('error', reject);
      s.on('message', (d, r) => message(d, r.address, r.port));
      s.bind(port, addr, () => {
        s.off('error', reject);
        s.on('error', () => undefined);
        resolve({
          send: (d, a, p) => { s.send(d, p, a, () => undefined); },
          close: () => { try { s.close(); } catch { /* already closed */ } },
        });
      });
    });
  }

  openRelay(host: string): Promise<HostTcpRelay> {
    return TcpRelay.open(host, (h) => sockets.get(h));
  }

  async lookup(name: string): Promise<string[]> {
    try {
      return (await lookup(name, { family: 4, all: true })).map((r) => r.address);
    } catch {
      return [];
    }
  }
}

/** A pcap sink writing to a file (synchronously, so records stay in order and survive a crash). */
export function pcapFileSink(path: string): { sink: (chunk: Uint8Array) => void; close(): void } {
  const fd = openSync(path, 'w');
  let open = true;
  return {
    sink: (c) => { if (open) writeSync(fd, c); },
    close: () => { if (open) { open = false; closeSync(fd); } },
  };
}
