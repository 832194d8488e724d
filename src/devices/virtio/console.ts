/**
 * virtio-console (Virtio 1.2 §5.3) with a single port and no optional features: queue 0 is
 * receiveq (host→guest), queue 1 transmitq (guest→host). Linux names it hvc0.
 *
 * Host input waits in a bounded buffer until the guest posts receive buffers; output goes to
 * a SerialBackend as soon as the guest notifies the transmit queue.
 */
import type { SerialBackend } from '../device.js';
import type { VirtioDevice, VirtioTransport } from './mmio.js';

export const VIRTIO_ID_CONSOLE = 3;
const RX = 0, TX = 1;
const QUEUE_SIZE = 64;
/** Host input held while the guest has no receive buffers; beyond it input is dropped. */
const MAX_PENDING = 64 * 1024;

export interface VirtioConsoleState { v: 1; pending: Uint8Array }

export class VirtioConsole implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_CONSOLE;
  readonly name = 'virtio-console';
  readonly queueMax = [QUEUE_SIZE, QUEUE_SIZE];
  readonly features = 0;
  /** struct virtio_console_config {cols, rows, max_nr_ports, emerg_wr} (§5.3.4); only used with features we do not offer. */
  readonly config = new Uint8Array(12);
  private t!: VirtioTransport;
  private pending = new Uint8Array(MAX_PENDING);
  private pendingLen = 0;
  /** Bytes of input dropped because the buffer was full. */
  dropped = 0;

  constructor(private readonly out: SerialBackend) {}

  attach(t: VirtioTransport): void { this.t = t; }
  reset(): void { /* pending host input survives a driver reset */ }
  driverOk(): void { this.deliver(); }

  notify(i: number): void {
    if (i === RX) this.deliver();
    else if (i === TX) this.transmit();
  }

  /** Host input for the guest (keyboard, socket). */
  receive(bytes: Uint8Array): void {
    const room = MAX_PENDING - this.pendingLen;
    const n = Math.min(room, bytes.length);
    this.pending.set(bytes.subarray(0, n), this.pendingLen);
    this.pendingLen += n;
    this.dropped += bytes.length - n;
    this.deliver();
    this.t.wake();
  }

  private deliver(): void {
    const t = this.t;
    if (!t.live || this.pendingLen === 0) return;
    const q = t.queue(RX), c = t.chain(RX);
    let any = false;
    while (this.pendingLen > 0) {
      const r = q.pop(c);
      if (r === 0) break;
      if (r < 0) { t.fail(); return; }
      const n = c.write(0, this.pending.subarray(0, this.pendingLen));
      this.pending.copyWithin(0, n, this.pendingLen);
      this.pendingLen -= n;
      q.push(c.head, n);
      any = true;
    }
    if (any) t.notifyUsed(RX);
  }

  private transmit(): void {
    const t = this.t, q = t.queue(TX), c = t.chain(TX);
    let any = false;
    for (;;) {
      const r = q.pop(c);
      if (r === 0) break;
      if (r < 0) { t.fail(); return; }
      if (c.readLen > 0) {
        const data = new Uint8Array(c.readLen);
        c.read(0, data);
        this.out.write(data);
      }
      q.push(c.head, 0);
      any = true;
    }
    if (any) t.notifyUsed(TX);
  }

  save(): VirtioConsoleState { return { v: 1, pending: this.pending.slice(0, this.pendingLen) }; }
  load(s: { v: number; pending?: unknown }): void {
    if (s.v !== 1 || !(s.pending instanceof Uint8Array) || s.pending.length > MAX_PENDING) throw new Error('virtio-console: malformed or unknown state');
    this.pending.set(s.pending);
    this.pendingLen = s.pending.length;
  }
}
