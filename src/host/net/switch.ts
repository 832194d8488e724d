/**
 * A learning L2 switch. Each port is a `NetBackend`: a NIC attaches to `createPort()`, and
 * anything that is itself a backend (a user-mode NAT uplink, a socket transport to a QEMU
 * or typevisor process in another process) is plugged in with `connect()`. Unicast frames
 * go to the port their destination MAC was last seen on; broadcast, multicast and unknown
 * destinations flood to every other port. The MAC table and per-port queues are bounded.
 *
 * Large TCP segments (GSO frames, `NetBackend.gso`) cross the switch whole: a port whose
 * device takes them (a NIC with guest TSO, a link to another typevisor) gets one frame, any
 * other gets it cut into MTU-sized segments here (tcp-offload.ts), as a software bridge with
 * GSO does.
 */
import type { NetBackend, NetReceiver } from '../../devices/device.js';
import { MAX_FRAME, MAX_GSO_FRAME, TcpSegmenter, type FrameSink } from '../../devices/virtio/tcp-offload.js';
import { ETH_HLEN, isBroadcastOrMulticast, macKey } from './ethernet.js';

const MAX_MACS = 4096;
const PORT_QUEUE = 256;
/** Bytes a port may hold for a device without buffers (a few windows of 64 KiB frames). */
const PORT_QUEUE_BYTES = 4 << 20;

export class SwitchPort implements NetBackend {
  private rx: NetReceiver | null = null;
  private readonly queue: Uint8Array[] = [];
  private queued = 0;
  dropped = 0;
  /** The switch cuts large segments for ports that cannot take them. */
  readonly gso = true;
  constructor(private readonly sw: Switch) {}

  attach(nic: NetReceiver): void { this.rx = nic; }
  transmit(frame: Uint8Array): void { this.sw.forward(this, frame); }

  rxReady(): void {
    const rx = this.rx;
    while (rx && this.queue.length > 0 && this.sw.offer(rx, this.queue[0])) this.queued -= this.queue.shift()!.length;
  }

  /** A frame from the switch to this port's device (copied if it must wait: the sender reuses its buffer). */
  deliver(frame: Uint8Array): void {
    if (this.queue.length === 0 && this.rx && this.sw.offer(this.rx, frame)) return;
    if (!this.rx || this.queue.length >= PORT_QUEUE || this.queued + frame.length > PORT_QUEUE_BYTES) { this.dropped++; return; }
    this.queue.push(frame.slice());
    this.queued += frame.length;
  }

  close(): void { this.sw.remove(this); this.queue.length = 0; this.queued = 0; }
}

export class Switch {
  private readonly ports: SwitchPort[] = [];
  private readonly table = new Map<number, SwitchPort>();
  private readonly segmenter = new TcpSegmenter();
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
    p.attach({ receive: (f) => { backend.transmit(f); return true; }, get maxFrame() { return backend.gso ? MAX_GSO_FRAME : MAX_FRAME; } });
    backend.attach({ receive: (f) => { this.forward(p, f); return true; }, maxFrame: MAX_GSO_FRAME });
    return p;
  }

  /** Frames cut for a port or given to its device, whole or in segments. */
  offer(rx: FrameSink, frame: Uint8Array): boolean {
    // A device that answers synchronously with a large frame would re-enter: cut with a spare.
    const seg = this.segmenter.busy ? new TcpSegmenter() : this.segmenter;
    const taken = seg.deliver(rx, frame);
    this.dropped += seg.dropped; seg.dropped = 0;
    return taken;
  }

  remove(p: SwitchPort): void {
    const i = this.ports.indexOf(p);
    if (i >= 0) this.ports.splice(i, 1);
    for (const [k, v] of this.table) if (v === p) this.table.delete(k);
  }

  get portCount(): number { return this.ports.length; }

  forward(from: SwitchPort, frame: Uint8Array): void {
    if (frame.length < ETH_HLEN || frame.length > MAX_GSO_FRAME) { this.dropped++; return; }
    if (!isBroadcastOrMulticast(frame, 6)) {
      const src = macKey(frame, 6);
      if (this.table.get(src) !== from && (this.table.size < MAX_MACS || this.table.has(src))) this.table.set(src, from);
    }
    if (!isBroadcastOrMulticast(frame, 0)) {
      const to = this.table.get(macKey(frame, 0));
      if (to) { if (to !== from) to.deliver(frame); return; }
    }
    for (const p of this.ports) if (p !== from) p.deliver(frame);
  }
}

/** Connect two backends back to back (a NIC-less link: e.g. a socket transport to a UserNet). */
export function plug(a: NetBackend, b: NetBackend): void {
  a.attach({ receive: (f) => { b.transmit(f); return true; } });
  b.attach({ receive: (f) => { a.transmit(f); return true; } });
}
