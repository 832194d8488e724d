/**
 * What the user-mode network needs from the host: TCP and UDP sockets and name lookup.
 * The protocol code uses only this interface, so it can run in a browser with another
 * adapter; node-host.ts is the Node implementation.
 */

/** Events of one host TCP socket, delivered to the NAT. */
export interface HostTcpEvents {
  /** The outgoing connection is established. */
  connect(): void;
  data(d: Uint8Array): void;
  /** The peer closed its sending side. */
  end(): void;
  /** Buffered outgoing data was written: the receive window may open. */
  drain(): void;
  /** The socket is gone; `error` is set for resets and failures (connection refused, ...). */
  close(error?: string): void;
}

export interface HostTcp {
  write(d: Uint8Array): void;
  /** Bytes written but not yet handed to the host kernel. */
  buffered(): number;
  pause(): void;
  resume(): void;
  /** Half-close: no more writes. */
  end(): void;
  destroy(): void;
}

/** An accepted connection, paused until `start` gives it its events. */
export interface AcceptedTcp extends HostTcp {
  readonly remoteAddress: string;
  readonly remotePort: number;
  start(ev: HostTcpEvents): void;
}

export interface HostListener {
  readonly port: number;
  close(): void;
}

export interface HostUdp {
  send(d: Uint8Array, addr: string, port: number): void;
  close(): void;
}

export interface HostNet {
  tcpConnect(addr: string, port: number, ev: HostTcpEvents): HostTcp;
  tcpListen(addr: string, port: number, accept: (s: AcceptedTcp) => void): Promise<HostListener>;
  /** Bind a UDP socket (port 0: any free port); datagrams arrive through `message`. */
  udpBind(addr: string, port: number, message: (d: Uint8Array, addr: string, port: number) => void): Promise<HostUdp>;
  /** The host resolver's IPv4 addresses for a name (empty when unknown). */
  lookup(name: string): Promise<string[]>;
}

/**
 * Live migration of a user network's TCP connections: the host sockets cannot leave the
 * source process, so it keeps them and relays each one to the destination, which connects
 * back (to `host`:`port`) with the connection's id and key. Nothing flows before `commit`.
 */
export interface HostTcpRelay {
  readonly host: string;
  readonly port: number;
  /** Hold a frozen socket for the destination; `guestEnded`: the guest closed its side (nothing more is written to it). */
  offer(h: HostTcp, id: number, key: Uint8Array, guestEnded: boolean): void;
  /** The move is done: relay; resolves once every relayed connection has ended. */
  commit(): Promise<void>;
  /** The move failed: stop listening and drop the destination's connections; the held sockets are untouched. */
  abort(): void;
}

/** How the destination's end of a relayed connection starts: magic, id (u32 LE), key. */
export const RELAY_MAGIC = [0x54, 0x56, 0x52, 0x31]; // "TVR1"
export const RELAY_KEY_BYTES = 16;
export const RELAY_HEADER_BYTES = 4 + 4 + RELAY_KEY_BYTES;

export function relayHeader(id: number, key: Uint8Array): Uint8Array {
  const h = new Uint8Array(RELAY_HEADER_BYTES);
  h.set(RELAY_MAGIC, 0);
  new DataView(h.buffer).setUint32(4, id, true);
  h.set(key, 8);
  return h;
}

/** Hosts that can relay connections (Node); a browser's cannot. */
export interface RelayingHostNet extends HostNet {
  openRelay(host: string): Promise<HostTcpRelay>;
}

export function canRelay(h: HostNet): h is RelayingHostNet {
  return typeof (h as Partial<RelayingHostNet>).openRelay === 'function';
}

/** A network backend whose state can follow a live migration (the user network). */
export interface MovableNet {
  /** Source, vCPU paused: the state to send (plain data); the host side holds still. */
  freeze(relayHost: string): Promise<unknown>;
  /** Source: the move failed; carry on. */
  thaw(): Promise<void>;
  /** Source: the move is done; resolves when nothing is relayed any more. */
  commitMove(): Promise<void>;
  /** Destination: take the state (null: none) and bind what the source let go of. */
  adopt(state: unknown): Promise<void>;
}
