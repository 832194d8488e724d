/**
 * virtio-blk (Virtio 1.2 §5.2): one request queue over a BlockBackend.
 *
 * Requests (§5.2.6): a 16-byte header {type, reserved, sector}, data, and a status byte as
 * the last device-writable byte. The layout across descriptors is free (VIRTIO_F_VERSION_1
 * implies ANY_LAYOUT), so the header, data and status are located by byte offsets.
 *
 * Host I/O is asynchronous: notify() starts it and returns; the completion copies data into
 * guest RAM, writes the status, pushes the used element, interrupts per EVENT_IDX and wakes
 * the machine. Requests may complete out of order (§5.2.6.4 lets them). A FLUSH waits for
 * every write submitted before it, then for the backend's fsync. At most MAX_INFLIGHT
 * requests run at once; the rest stay on the available ring until a completion.
 */
import type { BlockBackend } from '../device.js';
import type { VirtioDevice, VirtioTransport } from './mmio.js';
import type { Chain } from './virtqueue.js';

export const VIRTIO_ID_BLOCK = 2;
// Feature bits (§5.2.3).
export const VIRTIO_BLK_F_SEG_MAX = 2, VIRTIO_BLK_F_RO = 5, VIRTIO_BLK_F_BLK_SIZE = 6, VIRTIO_BLK_F_FLUSH = 9;
export const VIRTIO_BLK_F_TOPOLOGY = 10, VIRTIO_BLK_F_DISCARD = 13, VIRTIO_BLK_F_WRITE_ZEROES = 14;
// Request types and status (§5.2.6).
export const VIRTIO_BLK_T_IN = 0, VIRTIO_BLK_T_OUT = 1, VIRTIO_BLK_T_FLUSH = 4, VIRTIO_BLK_T_GET_ID = 8;
export const VIRTIO_BLK_T_DISCARD = 11, VIRTIO_BLK_T_WRITE_ZEROES = 13;
export const VIRTIO_BLK_S_OK = 0, VIRTIO_BLK_S_IOERR = 1, VIRTIO_BLK_S_UNSUPP = 2;

const SECTOR = 512;
const HEADER = 16;
const QUEUE_SIZE = 256;
/** Segments per request we advertise (seg_max); queue size minus header and status. */
const SEG_MAX = QUEUE_SIZE - 2;
const MAX_INFLIGHT = 64;
/** Largest data transfer per request; Linux sends at most 1280 KiB by default. Larger ones get IOERR rather than a huge host buffer. */
const MAX_TRANSFER = 32 << 20;
/** One discard/write-zeroes range per request; up to 4 GiB - 512 bytes each. */
const MAX_DISCARD_SECTORS = 0x7f_ffff;
/** virtio_blk_discard_write_zeroes: {le64 sector, le32 num_sectors, le32 flags}. */
const DWZ_SIZE = 16;
const DWZ_F_UNMAP = 1;
const EMPTY = new Float64Array(0);

export interface VirtioBlkState { v: 1 }

export class VirtioBlk implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_BLOCK;
  readonly name = 'virtio-blk';
  readonly queueMax = [QUEUE_SIZE];
  readonly features: number;
  readonly config = new Uint8Array(60);
  private t!: VirtioTransport;
  private inflight = 0;
  private drainWaiters: Array<() => void> = [];
  /** Writes not yet completed, which a later FLUSH must wait for. */
  private writes = new Set<Promise<unknown>>();
  private readonly hdr = new Uint8Array(HEADER);
  private readonly hdrView = new DataView(this.hdr.buffer);
  private readonly status = new Uint8Array(1);
  private readonly dwz = new Uint8Array(DWZ_SIZE);
  private readonly dwzView = new DataView(this.dwz.buffer);
  private readonly sectors: number;

  constructor(readonly disk: BlockBackend) {
    this.sectors = Math.floor(disk.sizeBytes / SECTOR);
    this.features = (1 << VIRTIO_BLK_F_SEG_MAX) | (1 << VIRTIO_BLK_F_BLK_SIZE) | (1 << VIRTIO_BLK_F_FLUSH) |
      (1 << VIRTIO_BLK_F_TOPOLOGY) | (1 << VIRTIO_BLK_F_DISCARD) | (1 << VIRTIO_BLK_F_WRITE_ZEROES) |
      (disk.readOnly ? 1 << VIRTIO_BLK_F_RO : 0);
    // Config layout (§5.2.4).
    const c = new DataView(this.config.buffer);
    c.setUint32(0, this.sectors >>> 0, true);
    c.setUint32(4, Math.floor(this.sectors / 0x1_0000_0000), true);
    c.setUint32(12, SEG_MAX, true); // seg_max
    c.setUint32(20, SECTOR, true); // blk_size
    // topology: physical_block_exp 3 (4 KiB), alignment_offset 0, min_io_size 1 block, opt_io_size 0
    c.setUint8(24, 3); c.setUint8(25, 0); c.setUint16(26, 1, true); c.setUint32(28, 0, true);
    c.setUint32(36, MAX_DISCARD_SECTORS, true); // max_discard_sectors
    c.setUint32(40, 1, true); // max_discard_seg
    c.setUint32(44, 8, true); // discard_sector_alignment (4 KiB)
    c.setUint32(48, MAX_DISCARD_SECTORS, true); // max_write_zeroes_sectors
    c.setUint32(52, 1, true); // max_write_zeroes_seg
    c.setUint8(56, 1); // write_zeroes_may_unmap
  }

  attach(t: VirtioTransport): void { this.t = t; }

  reset(): void {
    // In-flight requests finish on the host but their completions see a new epoch and drop.
    this.inflight = 0;
    this.drained();
  }

  /** Requests taken from the ring whose host I/O has not completed. */
  get busy(): boolean { return this.inflight > 0; }

  /**
   * Resolves once no request is in flight. In-flight requests are not part of the saved
   * state, so a snapshot waits for this (with the vCPU paused) before save().
   */
  drain(): Promise<void> {
    return this.inflight === 0 ? Promise.resolve() : new Promise((r) => { this.drainWaiters.push(r); });
  }

  private drained(): void {
    const w = this.drainWaiters;
    this.drainWaiters = [];
    for (const f of w) f();
  }

  notify(): void { this.process(); }

  /** Take requests off the available ring while under the in-flight bound. */
  private process(): void {
    const t = this.t, q = t.queue(0), c = t.chain(0);
    while (t.live && this.inflight < MAX_INFLIGHT) {
      const r = q.pop(c);
      if (r === 0) break;
      if (r < 0) { t.fail(); return; }
      this.start(c);
    }
  }

  /** Parse one request and start its host I/O (or complete it at once). */
  private start(c: Chain): void {
    const head = c.head;
    // The status byte is the last writable byte; the header the first 16 readable bytes.
    if (c.writeLen < 1 || c.read(0, this.hdr) < HEADER) { this.t.fail(); return; }
    const type = this.hdrView.getUint32(0, true);
    const sector = this.hdrView.getUint32(8, true) + this.hdrView.getUint32(12, true) * 0x1_0000_0000;
    const statusAt = c.writeLen - 1;
    const disk = this.disk;
    switch (type) {
      case VIRTIO_BLK_T_IN: {
        const len = statusAt;
        if (!this.inRange(sector, len)) { this.done(head, c, statusAt, VIRTIO_BLK_S_IOERR, 0); return; }
        const buf = new Uint8Array(len);
        const segs = this.dataSegments(c);
        this.track(disk.read(sector * SECTOR, buf), head, c.writableAddr(statusAt), len, segs, buf, false);
        this.t.yieldSoon(); // (a cached read completes at once: host/storage/nowait.ts)
        return;
      }
      case VIRTIO_BLK_T_OUT: {
        const len = c.readLen - HEADER;
        if (disk.readOnly || !this.inRange(sector, len)) { this.done(head, c, statusAt, VIRTIO_BLK_S_IOERR, 0); return; }
        const buf = new Uint8Array(len);
        c.read(HEADER, buf);
        this.track(disk.write(sector * SECTOR, buf), head, c.writableAddr(statusAt), 0, EMPTY, null, true);
        return;
      }
      case VIRTIO_BLK_T_FLUSH: {
        // (With no write in flight the fsync starts now, not from the microtask queue, which
        // runs only when the machine's run loop yields.)
        const pending = [...this.writes];
        const p = pending.length ? Promise.allSettled(pending).then(() => disk.flush()) : disk.flush();
        this.track(p, head, c.writableAddr(statusAt), 0, EMPTY, null, false);
        return;
      }
      case VIRTIO_BLK_T_GET_ID: {
        // §5.2.6: 20 bytes, NUL-padded if shorter.
        const id = new Uint8Array(20);
        const s = new TextEncoder().encode(disk.serial);
        id.set(s.subarray(0, 20));
        const n = c.write(0, id.subarray(0, Math.min(20, statusAt)));
        this.done(head, c, statusAt, VIRTIO_BLK_S_OK, n);
        return;
      }
      case VIRTIO_BLK_T_DISCARD: case VIRTIO_BLK_T_WRITE_ZEROES: {
        const wz = type === VIRTIO_BLK_T_WRITE_ZEROES;
        const len = c.readLen - HEADER;
        // We advertise one segment per request.
        if (len !== DWZ_SIZE || c.read(HEADER, this.dwz) !== DWZ_SIZE) { this.done(head, c, statusAt, VIRTIO_BLK_S_UNSUPP, 0); return; }
        const v = this.dwzView;
        const s = v.getUint32(0, true) + v.getUint32(4, true) * 0x1_0000_0000;
        const n = v.getUint32(8, true), flags = v.getUint32(12, true);
        // §5.2.6.2: unknown flags, UNMAP on discard, or too many sectors: UNSUPP / IOERR.
        if ((flags & ~DWZ_F_UNMAP) || (!wz && flags) || n > MAX_DISCARD_SECTORS) { this.done(head, c, statusAt, VIRTIO_BLK_S_UNSUPP, 0); return; }
        if (disk.readOnly || !(s <= this.sectors && n <= this.sectors - s)) { this.done(head, c, statusAt, VIRTIO_BLK_S_IOERR, 0); return; }
        const p = wz ? disk.writeZeroes(s * SECTOR, n * SECTOR, (flags & DWZ_F_UNMAP) !== 0) : disk.discard(s * SECTOR, n * SECTOR);
        this.track(p, head, c.writableAddr(statusAt), 0, EMPTY, null, wz);
        return;
      }
      default:
        this.done(head, c, statusAt, VIRTIO_BLK_S_UNSUPP, 0);
    }
  }

  private inRange(sector: number, len: number): boolean {
    return len % SECTOR === 0 && len <= MAX_TRANSFER && sector <= this.sectors && len / SECTOR <= this.sectors - sector;
  }

  /**
   * A read's writable segments as (address, length) pairs, copied out of the scratch Chain
   * (which the next request reuses) for the async completion.
   */
  private dataSegments(c: Chain): Float64Array {
    const from = c.firstWrite;
    const n = c.count - from;
    const s = new Float64Array(2 * n);
    for (let i = 0; i < n; i++) { s[2 * i] = c.addr[from + i]; s[2 * i + 1] = c.len[from + i]; }
    return s;
  }

  private track(p: Promise<void>, head: number, statusAddr: number, dataLen: number, segs: Float64Array, data: Uint8Array | null, isWrite: boolean): void {
    const epoch = this.t.epoch;
    this.inflight++;
    const finish = (ok: boolean): void => {
      if (epoch !== this.t.epoch) return; // the device was reset meanwhile
      if (--this.inflight === 0) this.drained();
      let written = 0;
      if (ok && data) { this.scatter(segs, data); written = dataLen; }
      this.status[0] = ok ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
      this.t.bus.dmaWrite(statusAddr, this.status);
      const q = this.t.queue(0);
      q.push(head, written + 1);
      this.t.notifyUsed(0);
      if (q.pending()) this.process();
      this.t.wake();
    };
    const settled = p.then(() => finish(true), () => finish(false));
    if (isWrite) {
      this.writes.add(p);
      void settled.then(() => { this.writes.delete(p); });
    }
  }

  /** Copy read data into the request's writable segments (all but the status byte). */
  private scatter(segs: Float64Array, data: Uint8Array): void {
    let done = 0;
    for (let i = 0; i < segs.length && done < data.length; i += 2) {
      const n = Math.min(segs[i + 1], data.length - done);
      this.t.bus.dmaWrite(segs[i], data.subarray(done, done + n));
      done += n;
    }
  }

  /** Complete a request synchronously (errors, GET_ID). */
  private done(head: number, c: Chain, statusAt: number, status: number, written: number): void {
    this.status[0] = status;
    c.write(statusAt, this.status);
    const q = this.t.queue(0);
    q.push(head, written + 1);
    this.t.notifyUsed(0);
  }

  save(): VirtioBlkState { return { v: 1 }; }
  load(s: { v: number }): void {
    if (s.v !== 1) throw new Error(`virtio-blk: unknown state version ${String(s.v)}`);
  }
}
