/**
 * Split virtqueues (Virtio 1.2 §2.7): descriptor table, available ring, used ring, with
 * VIRTIO_F_INDIRECT_DESC (§2.7.5.3) and VIRTIO_F_EVENT_IDX (§2.7.7, §2.7.10).
 *
 * Everything the guest supplies is checked: ring placement (once, when the queue becomes
 * ready), every descriptor's address and length (must lie in RAM), chain length (at most
 * the queue size, counting an indirect table's entries by the table size: this also bounds
 * loops), descriptor order (device-readable before device-writable, §2.7.4.2) and indirect
 * tables (no nesting, no NEXT with INDIRECT, a multiple of 16 bytes). A violation makes
 * pop() return -1 and the transport puts the device in DEVICE_NEEDS_RESET (§2.1.2).
 */
import type { Bus } from '../../machine/bus.js';

const VIRTQ_DESC_F_NEXT = 1, VIRTQ_DESC_F_WRITE = 2, VIRTQ_DESC_F_INDIRECT = 4;
const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
/** The largest queue size the split ring allows (§2.7). */
export const VIRTQ_MAX_SIZE = 32768;

/** One descriptor chain as the device sees it: segments in order, readable ones first. */
export class Chain {
  head = 0;
  count = 0;
  /** Total bytes in device-readable (driver→device) and device-writable segments. */
  readLen = 0;
  writeLen = 0;
  /** Index of the first writable segment (== count if none). */
  firstWrite = 0;
  readonly addr: Float64Array;
  readonly len: Uint32Array;
  /** Host byte offset of each segment in the bus memory. */
  readonly off: Float64Array;

  constructor(readonly bus: Bus, maxSegments: number) {
    this.addr = new Float64Array(maxSegments);
    this.len = new Uint32Array(maxSegments);
    this.off = new Float64Array(maxSegments);
  }

  /** Copy device-readable bytes starting at `offset` (within the readable part) into dst; returns bytes copied. */
  read(offset: number, dst: Uint8Array): number {
    const u8 = this.bus.u8;
    let done = 0;
    for (let i = 0; i < this.firstWrite && done < dst.length; i++) {
      const l = this.len[i];
      if (offset >= l) { offset -= l; continue; }
      const n = Math.min(l - offset, dst.length - done);
      const o = this.off[i] + offset;
      dst.set(u8.subarray(o, o + n), done);
      done += n;
      offset = 0;
    }
    return done;
  }

  /** Guest address of byte `offset` of the device-writable part (offset < writeLen). */
  writableAddr(offset: number): number {
    for (let i = this.firstWrite; i < this.count; i++) {
      if (offset < this.len[i]) return this.addr[i] + offset;
      offset -= this.len[i];
    }
    return -1;
  }

  /** Copy src into the device-writable part starting at `offset`; returns bytes copied. Notifies code caches. */
  write(offset: number, src: Uint8Array): number {
    const u8 = this.bus.u8;
    let done = 0;
    for (let i = this.firstWrite; i < this.count && done < src.length; i++) {
      const l = this.len[i];
      if (offset >= l) { offset -= l; continue; }
      const n = Math.min(l - offset, src.length - done);
      u8.set(src.subarray(done, done + n), this.off[i] + offset);
      this.bus.notifyRamWrite(this.addr[i] + offset, n);
      done += n;
      offset = 0;
    }
    return done;
  }
}

/** Plain, serializable queue state (§4.2.2 registers plus the device's ring position). */
export interface QueueState {
  num: number;
  ready: boolean;
  desc: number;
  driver: number;
  device: number;
  lastAvail: number;
  usedIdx: number;
}

export class Virtqueue {
  /** QueueNum: the size the driver chose (≤ maxSize). */
  num: number;
  ready = false;
  desc = 0;
  driver = 0;
  device = 0;
  /** Next available-ring index the device will read. */
  lastAvail = 0;
  /** Next used-ring index the device will write. */
  usedIdx = 0;
  /** Negotiated VIRTIO_F_EVENT_IDX. */
  eventIdx = false;
  private signalled = 0;
  private signalValid = false;
  // Host offsets of the three areas, valid while ready.
  private descOff = 0;
  private availOff = 0;
  private usedOff = 0;

  constructor(private readonly bus: Bus, readonly maxSize: number) {
    this.num = maxSize;
  }

  reset(): void {
    this.num = this.maxSize;
    this.ready = false;
    this.desc = this.driver = this.device = 0;
    this.lastAvail = this.usedIdx = 0;
    this.signalValid = false;
  }

  /** Check the rings' placement (§2.7: sizes and alignment) and start using them. False if invalid. */
  activate(): boolean {
    const n = this.num;
    if (n === 0 || n > this.maxSize || (n & (n - 1)) !== 0) return false;
    if (this.desc % 16 || this.driver % 2 || this.device % 4) return false;
    const d = this.bus.ramOffset(this.desc, 16 * n);
    const a = this.bus.ramOffset(this.driver, 6 + 2 * n);
    const u = this.bus.ramOffset(this.device, 6 + 8 * n);
    if (d < 0 || a < 0 || u < 0) return false;
    this.descOff = d; this.availOff = a; this.usedOff = u;
    this.ready = true;
    this.signalValid = false;
    return true;
  }

  /** Available-ring entries the device has not taken yet. */
  pending(): boolean {
    return this.ready && this.bus.dv.getUint16(this.availOff + 2, true) !== this.lastAvail;
  }

  /**
   * Take the next available chain into `c`. Returns 1 if one was taken, 0 if the ring is
   * empty, -1 if the ring or chain is malformed (the device must be reset).
   */
  pop(c: Chain): number {
    if (!this.ready) return 0;
    const dv = this.bus.dv;
    const availIdx = dv.getUint16(this.availOff + 2, true);
    if (availIdx === this.lastAvail) { this.setAvailEvent(); return 0; }
    if (((availIdx - this.lastAvail) & 0xffff) > this.num) return -1;
    const head = dv.getUint16(this.availOff + 4 + 2 * (this.lastAvail % this.num), true);
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    this.setAvailEvent();
    if (head >= this.num) return -1;
    return this.walk(c, head) ? 1 : -1;
  }

  /** Give back one chain taken by pop(): the device reads it again (used to undo a pop). */
  unpop(): void { this.lastAvail = (this.lastAvail - 1) & 0xffff; }

  private walk(c: Chain, head: number): boolean {
    const bus = this.bus, dv = bus.dv;
    c.head = head; c.count = 0; c.readLen = 0; c.writeLen = 0; c.firstWrite = 0;
    let table = this.descOff, tableLen = this.num, i = head, seen = 0, indirect = false, sawWrite = false;
    for (;;) {
      if (++seen > tableLen || c.count >= c.len.length) return false;
      const d = table + 16 * i;
      const lo = dv.getUint32(d, true), hi = dv.getUint32(d + 4, true);
      const len = dv.getUint32(d + 8, true);
      const flags = dv.getUint16(d + 12, true), next = dv.getUint16(d + 14, true);
      if (hi >= 0x20_0000) return false;
      const addr = hi * 0x1_0000_0000 + lo;
      if (flags & VIRTQ_DESC_F_INDIRECT) {
        // §2.7.5.3.1: not inside an indirect table, not with NEXT, a whole number of descriptors.
        if (indirect || (flags & VIRTQ_DESC_F_NEXT) || len === 0 || len % 16 || len / 16 > this.num) return false;
        const off = bus.ramOffset(addr, len);
        if (off < 0) return false;
        table = off; tableLen = len / 16; i = 0; seen = 0; indirect = true;
        continue;
      }
      const off = bus.ramOffset(addr, len);
      if (off < 0) return false;
      const k = c.count++;
      c.addr[k] = addr; c.len[k] = len; c.off[k] = off;
      if (flags & VIRTQ_DESC_F_WRITE) {
        if (!sawWrite) { sawWrite = true; c.firstWrite = k; }
        c.writeLen += len;
      } else {
        if (sawWrite) return false; // readable after writable
        c.readLen += len;
      }
      if (!(flags & VIRTQ_DESC_F_NEXT)) break;
      if (next >= tableLen) return false;
      i = next;
    }
    if (!sawWrite) c.firstWrite = c.count;
    return true;
  }

  /** Put a chain on the used ring (§2.7.8) with `written` bytes written by the device. */
  push(head: number, written: number): void {
    if (!this.ready) return;
    const dv = this.bus.dv;
    const slot = this.usedIdx % this.num;
    const e = this.usedOff + 4 + 8 * slot;
    dv.setUint32(e, head, true);
    dv.setUint32(e + 4, written, true);
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    dv.setUint16(this.usedOff + 2, this.usedIdx, true);
    this.bus.notifyRamWrite(this.device + 4 + 8 * slot, 8);
    this.bus.notifyRamWrite(this.device + 2, 2);
  }

  /** Whether the driver wants an interrupt for the entries pushed since the last call (§2.7.10). */
  shouldNotify(): boolean {
    if (!this.ready) return false;
    const dv = this.bus.dv;
    const now = this.usedIdx, old = this.signalled, valid = this.signalValid;
    this.signalled = now; this.signalValid = true;
    if (!this.eventIdx) return !(dv.getUint16(this.availOff, true) & VIRTQ_AVAIL_F_NO_INTERRUPT);
    if (!valid) return true;
    const usedEvent = dv.getUint16(this.availOff + 4 + 2 * this.num, true);
    // vring_need_event: does usedEvent lie in [old, now)?
    return ((now - usedEvent - 1) & 0xffff) < ((now - old) & 0xffff);
  }

  private setAvailEvent(): void {
    if (!this.eventIdx) return;
    const p = this.usedOff + 4 + 8 * this.num;
    this.bus.dv.setUint16(p, this.lastAvail, true);
    this.bus.notifyRamWrite(this.device + 4 + 8 * this.num, 2);
  }

  save(): QueueState {
    return { num: this.num, ready: this.ready, desc: this.desc, driver: this.driver, device: this.device, lastAvail: this.lastAvail, usedIdx: this.usedIdx };
  }

  /** Restore; false if the saved rings are not valid on this machine. */
  load(s: QueueState): boolean {
    this.num = s.num; this.desc = s.desc; this.driver = s.driver; this.device = s.device;
    this.lastAvail = s.lastAvail & 0xffff; this.usedIdx = s.usedIdx & 0xffff;
    this.ready = false;
    this.signalValid = false;
    return s.ready ? this.activate() : true;
  }
}
