/**
 * Turns a parsed netdev specification into a live `NetBackend` for a NIC (Node host):
 * a user-mode network, a socket transport (QEMU-compatible), or a port on a named switch.
 * `pcap=FILE` wraps the result in a capture tap. Errors carry the spec's text.
 */
import type { NetBackend, NetReceiver } from '../../devices/device.js';
import type { MovableNet } from './host.js';
import { parseNetdev, type NetdevSpec } from './netdev.js';
import { NodeHostNet, pcapFileSink } from './node-host.js';
import { PcapWriter, pcapTap } from './pcap.js';
import { UserNet } from './slirp.js';
import { connectStream, connectStreamAddr, DgramLink, listenStream, listenStreamAddr, ReconnectingStream, type StreamLink } from './socket-transport.js';
import { Switch } from './switch.js';

/** A stream listener as a backend: the latest peer to connect is the link (QEMU's `listen=`). */
class ListeningStream implements NetBackend {
  private rx: NetReceiver | null = null;
  private peer: StreamLink | null = null;
  constructor(private readonly server: { close(): void }) {}
  connected(l: StreamLink): void {
    this.peer?.close();
    this.peer = l;
    if (this.rx) l.attach(this.rx);
  }
  attach(nic: NetReceiver): void { this.rx = nic; this.peer?.attach(nic); }
  get gso(): boolean { return this.peer?.gso ?? false; }
  transmit(frame: Uint8Array): void { this.peer?.transmit(frame); }
  rxReady(): void { /* nothing held */ }
  close(): void { this.peer?.close(); this.server.close(); }
}

interface NamedSwitch { sw: Switch; closers: Array<() => void>; ports: number }
const switches = new Map<string, NamedSwitch>();

/** The switch of this process with that name, if any (for tests and diagnostics). */
export function namedSwitch(name: string): Switch | undefined { return switches.get(name)?.sw; }

async function openSwitch(spec: Extract<NetdevSpec, { type: 'switch' }>): Promise<NetBackend> {
  let ns = switches.get(spec.name);
  if (!ns) {
    const sw = new Switch(spec.name);
    const made: NamedSwitch = { sw, closers: [], ports: 0 };
    try {
      if (spec.uplink) {
        const un = new UserNet(new NodeHostNet());
        await un.start();
        sw.connect(un);
        made.closers.push(() => un.close());
      }
      if (spec.listen) {
        const srv = await listenStream(spec.listen.host, spec.listen.port, (l) => { sw.connect(l); });
        made.closers.push(() => srv.close());
      }
      if (spec.connect) {
        const l = await connectStream(spec.connect.host, spec.connect.port);
        sw.connect(l);
        made.closers.push(() => l.close());
      }
    } catch (e) {
      for (const c of made.closers) c();
      throw e;
    }
    switches.set(spec.name, made);
    ns = made;
  } else if (spec.listen || spec.connect || spec.uplink) {
    throw new Error(`switch ${spec.name} exists already: listen=, connect= and uplink= belong to its first use`);
  }
  const entry = ns;
  const port = entry.sw.createPort();
  entry.ports++;
  return {
    attach: (nic) => port.attach(nic),
    transmit: (f) => port.transmit(f),
    rxReady: () => port.rxReady(),
    close: () => {
      port.close();
      if (--entry.ports === 0) { for (const c of entry.closers) c(); switches.delete(spec.name); }
    },
  };
}

export interface OpenOptions {
  /** A live migration's destination: user networks bind their hostfwd ports only when they adopt the source's state. */
  deferListen?: boolean;
}

async function openSpec(spec: NetdevSpec, opts: OpenOptions, movable: { net: MovableNet | null }): Promise<NetBackend> {
  switch (spec.type) {
    case 'user': {
      const un = new UserNet(new NodeHostNet(), spec.user);
      try { await un.start({ listen: opts.deferListen !== true }); } catch (e) { un.close(); throw e; }
      movable.net = un;
      return un;
    }
    case 'socket': {
      if (spec.mode === 'connect') return connectStream(spec.addr.host, spec.addr.port);
      let ls: ListeningStream | null = null;
      const srv = await listenStream(spec.addr.host, spec.addr.port, (l) => ls?.connected(l));
      ls = new ListeningStream(srv);
      return ls;
    }
    case 'stream': {
      if (spec.server) {
        let ls: ListeningStream | null = null;
        const srv = await listenStreamAddr(spec.addr, (l) => ls?.connected(l));
        ls = new ListeningStream(srv);
        return ls;
      }
      if (!spec.reconnect) return connectStreamAddr(spec.addr);
      const rs = new ReconnectingStream(spec.addr, spec.reconnect);
      await rs.start();
      return rs;
    }
    case 'dgram': return DgramLink.open(spec.local, spec.remote);
    case 'switch': return openSwitch(spec);
  }
}

/** Parse and open a netdev (e.g. `user,hostfwd=tcp::8080-:80`); rejects with a message naming the spec. */
export async function openNetdev(text: string): Promise<NetBackend> {
  return (await openNetdevMovable(text)).backend;
}

/** openNetdev, and the part whose state can follow a live migration (a user network), if any. */
export async function openNetdevMovable(text: string, opts: OpenOptions = {}): Promise<{ backend: NetBackend; movable: MovableNet | null }> {
  let spec: NetdevSpec;
  try { spec = parseNetdev(text); } catch (e) { throw new Error(`-netdev ${text}: ${(e as Error).message}`); }
  let b: NetBackend;
  const movable: { net: MovableNet | null } = { net: null };
  try { b = await openSpec(spec, opts, movable); } catch (e) { throw new Error(`-netdev ${text}: ${(e as Error).message}`); }
  if (!spec.pcap) return { backend: b, movable: movable.net };
  let file: ReturnType<typeof pcapFileSink>;
  try { file = pcapFileSink(spec.pcap); } catch (e) { b.close(); throw new Error(`-netdev ${text}: pcap: ${(e as Error).message}`); }
  return { backend: pcapTap(b, new PcapWriter(file.sink), () => file.close()), movable: movable.net };
}
