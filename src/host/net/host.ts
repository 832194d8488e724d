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
