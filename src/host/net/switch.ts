/**
 * A learning L2 switch. Each port is a `NetBackend`: a NIC attaches to `createPort()`, and
 * anything that is itself a backend (a user-mode NAT uplink, a socket transport to a QEMU
 * or typevisor process in another process) is plugged in with `connect()`. Unicast frames
 * go to the port their destination MAC was last seen on; broadcast, multicast and unknown
 * destinations flood to every other port. The MAC table and per-port queues are bounded.
 */
import type { NetBackend, NetReceiver } from '../../devices/device.js';
import { ETH_HLEN, isBroadcastOrMulticast, macKey } from './ethernet.js';

const MAX_MACS = 4096;
const PORT_QUEUE = 256;
const MAX_FRAME = 65550;

export class SwitchPort implements NetBackend {
  private rx: NetReceiver | null = null;
  private readonly queue: Uint8Array[] = [];
  dropped = 0;
  constructor(private readonly sw: Switch) {}

  attach(nic: NetReceiver): void { this.rx = nic; }
  transmit(frame: Uint8Array): void { this.sw.forward(this, frame); }

  rxReady(): void {
    const rx = this.rx;
    while (rx && this.queue.length > 0 && rx.receive(this.queue[0])) this.queue.shift();
  }

  /** A frame from the switch to this port's device. */
  deliver(frame: Uint8Array): void {
    if (this.queue.length === 0 && this.rx?.receive(frame)) return;
    if (!this.rx || this.queue.length >= PORT_QUEUE) { this.dropped++; return; }
    this.queue.push(frame);
  }

  close(): void { this.sw.remove(this); this.queue.length = 0; }
}

export class Switch {
  private readonly ports: SwitchPort[] = [];
  private readonly table = new Map<number, SwitchPort>();
  dropped = 0;
  constructor(readonly name = 'switch') {}

  /** A port for a NIC (the NIC attaches itself as the receiver). */
  createPort(): SwitchPort {
    const p = new SwitchPort(this);
    this.ports.push(p);
    return p;
  }

  /** Plug a backend (NAT uplink, socket transport) into a new port; returns that port. */
  connect(backend: NetBackend): SwitchPort {
    const p = this.createPort();
    p.attach({ receive: (f) => { backend.transmit(f); return true; } });
    backend.attach({ receive: (f) => { this.forward(p, f); return true; } });
    return p;
  }

  remove(p: SwitchPort): void {
    const i = this.ports.indexOf(p);
    if (i >= 0) this.ports.splice(i, 1);
    for (const [k, v] of this.table) if (v === p) this.table.delete(k);
  }

  get portCount(): number { return this.ports.length; }

  forward(from: SwitchPort, frame: Uint8Array): void {
    if (frame.length < ETH_HLEN || frame.length > MAX_FRAME) { this.dropped++; return; }
    const f = frame.slice(); // ports may queue it; the sender may reuse its buffer
    if (!isBroadcastOrMulticast(f, 6)) {
      const src = macKey(f, 6);
      if (this.table.get(src) !== from && (this.table.size < MAX_MACS || this.table.has(src))) this.table.set(src, from);
    }
    if (!isBroadcastOrMulticast(f, 0)) {
      const to = this.table.get(macKey(f, 0));
      if (to) { if (to !== from) to.deliver(f); return; }
    }
    for (const p of this.ports) if (p !== from) p.deliver(f);
  }
}

/** Connect two backends back to back (a NIC-less link: e.g. a socket transport to a UserNet). */
export function plug(a: NetBackend, b: NetBackend): void {
  a.attach({ receive: (f) => { b.transmit(f); return true; } });
  b.attach({ receive: (f) => { a.transmit(f); return true; } });
}
