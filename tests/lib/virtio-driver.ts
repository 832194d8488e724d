/**
 * A minimal virtio-mmio driver for device tests: builds split rings by hand in guest RAM,
 * negotiates features and posts descriptor chains, the way Linux's virtio_mmio and
 * virtio_ring drivers do (Virtio 1.2 §3.1, §2.7).
 */
import { Bus } from '../../src/machine/bus.js';
import { VirtioMmio, type VirtioDevice } from '../../src/devices/virtio/mmio.js';

export const RAM_BASE = 0x8000_0000;
export const RAM_SIZE = 4 << 20;
export const F_NEXT = 1, F_WRITE = 2, F_INDIRECT = 4;
export const VERSION_1_HI = 1, EVENT_IDX = 1 << 29, INDIRECT = 1 << 28;

export class TestDriver {
  readonly bus: Bus;
  irqLevel = false;
  wakes = 0;
  /** Slices the device asked the run loop to end (VirtioTransport.yieldSoon). */
  slicesEnded = 0;
  readonly slot: VirtioMmio;
  /** Ring areas per queue: desc at base, avail at base+0x1000, used at base+0x2000. */
  readonly qbase: number[] = [];
  readonly qnum: number[] = [];
  private availIdx: number[] = [];
  /** Next free scratch address for buffers. */
  private heap = RAM_BASE + 0x10_0000;

  constructor(dev: VirtioDevice | null, ramSize = RAM_SIZE) {
    this.bus = new Bus(RAM_BASE, ramSize);
    this.slot = new VirtioMmio(0, this.bus, { set: (l) => { this.irqLevel = l; } }, () => { this.wakes++; }, () => { this.slicesEnded++; });
    if (dev) this.slot.plug(dev);
  }

  r(off: number): number { return this.slot.read(off, 4); }
  w(off: number, v: number): void { this.slot.write(off, 4, v); }
  get status(): number { return this.r(0x70); }
  get isr(): number { return this.r(0x60); }
  ack(bits = 3): void { this.w(0x64, bits); }

  /** §3.1.1 steps 1-6; returns whether FEATURES_OK stuck. */
  negotiate(lo: number, hi = VERSION_1_HI): boolean {
    this.w(0x70, 0);
    this.w(0x70, 1);
    this.w(0x70, 1 | 2);
    this.w(0x24, 0); this.w(0x20, lo >>> 0);
    this.w(0x24, 1); this.w(0x20, hi >>> 0);
    this.w(0x70, 1 | 2 | 8);
    return (this.status & 8) !== 0;
  }

  deviceFeatures(): [number, number] {
    this.w(0x14, 0); const lo = this.r(0x10);
    this.w(0x14, 1); const hi = this.r(0x10);
    return [lo, hi];
  }

  setupQueue(q: number, num: number, addrs?: { desc: number; avail: number; used: number }): void {
    const base = RAM_BASE + 0x1_0000 * (q + 1);
    const a = addrs ?? { desc: base, avail: base + 0x1000, used: base + 0x2000 };
    this.qbase[q] = base; this.qnum[q] = num; this.availIdx[q] = 0;
    this.w(0x30, q);
    this.w(0x38, num);
    this.w(0x80, a.desc >>> 0); this.w(0x84, Math.floor(a.desc / 2 ** 32));
    this.w(0x90, a.avail >>> 0); this.w(0x94, Math.floor(a.avail / 2 ** 32));
    this.w(0xa0, a.used >>> 0); this.w(0xa4, Math.floor(a.used / 2 ** 32));
    this.w(0x44, 1);
  }

  driverOk(): void { this.w(0x70, this.status | 4); }

  /** Full bring-up: negotiate, queues, DRIVER_OK. */
  up(lo: number, queues: number[]): void {
    if (!this.negotiate(lo)) throw new Error('features refused');
    queues.forEach((n, i) => this.setupQueue(i, n));
    this.driverOk();
  }

  alloc(len: number, align = 16): number {
    this.heap = Math.ceil(this.heap / align) * align;
    const a = this.heap;
    this.heap += len;
    return a;
  }

  put(addr: number, bytes: Uint8Array): void { this.bus.writeBytes(addr, bytes); }
  get(addr: number, len: number): Uint8Array { return this.bus.readBytes(addr, len) ?? new Uint8Array(0); }
  w16(addr: number, v: number): void { this.bus.dv.setUint16(this.bus.ramOffset(addr, 2), v, true); }
  r16(addr: number): number { return this.bus.dv.getUint16(this.bus.ramOffset(addr, 2), true); }
  r32(addr: number): number { return this.bus.dv.getUint32(this.bus.ramOffset(addr, 4), true); }

  /** Write a descriptor into a table at `table` (the queue's table if omitted). */
  desc(q: number, i: number, addr: number, len: number, flags: number, next = 0, table?: number): void {
    const d = (table ?? this.qbase[q]) + 16 * i;
    const o = this.bus.ramOffset(d, 16);
    const dv = this.bus.dv;
    dv.setUint32(o, addr >>> 0, true); dv.setUint32(o + 4, Math.floor(addr / 2 ** 32), true);
    dv.setUint32(o + 8, len >>> 0, true); dv.setUint16(o + 12, flags, true); dv.setUint16(o + 14, next, true);
  }

  /** Make `head` available and notify (unless notify=false). */
  post(q: number, head: number, notify = true): void {
    const avail = this.qbase[q] + 0x1000, num = this.qnum[q];
    this.w16(avail + 4 + 2 * (this.availIdx[q] % num), head);
    this.availIdx[q] = (this.availIdx[q] + 1) & 0xffff;
    this.w16(avail + 2, this.availIdx[q]);
    if (notify) this.w(0x50, q);
  }

  /** Set the avail ring's flags / used_event. */
  availFlags(q: number, f: number): void { this.w16(this.qbase[q] + 0x1000, f); }
  usedEvent(q: number, v: number): void { this.w16(this.qbase[q] + 0x1000 + 4 + 2 * this.qnum[q], v); }
  availEvent(q: number): number { return this.r16(this.qbase[q] + 0x2000 + 4 + 8 * this.qnum[q]); }
  /** Force the avail index (for malformed-ring tests). */
  setAvailIdx(q: number, v: number): void { this.availIdx[q] = v; this.w16(this.qbase[q] + 0x1000 + 2, v); }

  usedIdx(q: number): number { return this.r16(this.qbase[q] + 0x2000 + 2); }
  used(q: number, k: number): { id: number; len: number } {
    const e = this.qbase[q] + 0x2000 + 4 + 8 * (k % this.qnum[q]);
    return { id: this.r32(e), len: this.r32(e + 4) };
  }

  /** Wait for host promises (async device completions) to settle. */
  async settle(ms = 0): Promise<void> {
    await new Promise((r) => setTimeout(r, ms));
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  }
}
