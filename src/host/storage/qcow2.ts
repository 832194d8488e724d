/**
 * A qcow2 disk (version 2 and 3) over a HostFile: reads through L1/L2 tables (unallocated
 * clusters from the backing disk or zeros, zero clusters, compressed clusters), writes by
 * allocating clusters (freed ones first, else at the end of the file) with refcounts kept
 * exact, so `qemu-img check` finds no leaks or errors. Metadata is written through (data, then refcount, then the L2
 * entry), so the file is consistent after every completed request: a kill loses nothing
 * and a flush is one fsync. No Node imports: decompression is passed in.
 */
import type { BlockBackend } from '../../devices/device.js';
import { DiskError, readFull, type HostFile } from './file.js';
import { checkRange } from './raw.js';
import {
  readQcow2Header, entryOffset, compressedExtent, getRefcount, setRefcount, maxRefcount, setU64, type Qcow2Header,
  INCOMPAT_DIRTY, INCOMPAT_CORRUPT, OFLAG_COPIED_HI, OFLAG_COMPRESSED_HI, OFLAG_ZERO_LO,
} from './qcow2-format.js';

/** Raw-deflate decompression of `src` into exactly outLen bytes, or null if that fails. */
export type Inflate = (src: Uint8Array, outLen: number) => Uint8Array | null;

export interface Qcow2Options {
  readOnly: boolean;
  /** The opened backing disk (the caller resolves names and formats), or null. */
  backing: BlockBackend | null;
  inflate: Inflate;
  /** cache=none: fsync after every write request. */
  syncEachWrite?: boolean;
}

/** Bytes of L2 tables and refcount blocks kept in memory per image. */
const CACHE_BYTES = 4 << 20;
/** Allocation gives up after skipping this many in-use clusters past the end of the file. */
const MAX_SKIP = 1 << 16;
/** Freed clusters remembered for reuse (the rest are found again by nobody: harmless holes). */
const MAX_FREED = 1 << 16;

/** Serialises metadata updates (allocation): one holder at a time, FIFO. */
class Mutex {
  private tail: Promise<void> = Promise.resolve();
  lock(): Promise<() => void> {
    let release!: () => void;
    const held = new Promise<void>((r) => { release = r; });
    const prev = this.tail;
    this.tail = prev.then(() => held);
    return prev.then(() => release);
  }
}

interface CacheEntry { table: Promise<DataView>; pins: number; value: DataView | undefined }

/**
 * A bounded LRU of metadata tables keyed by file offset. Loads are shared (one promise per
 * table); a writer puts its (newest) copy and pins it until its write-through completes.
 */
class TableCache {
  private readonly map = new Map<number, CacheEntry>();
  constructor(private readonly max: number, private readonly load: (off: number) => Promise<DataView>) {}
  get(off: number): Promise<DataView> {
    const e = this.map.get(off);
    if (e) { this.map.delete(off); this.map.set(off, e); return e.table; }
    const table = this.load(off);
    const entry: CacheEntry = { table, pins: 0, value: undefined };
    this.map.set(off, entry);
    // (A copy a writer put meanwhile is newer than this load: keep it.)
    table.then((v) => { if (entry.table === table) entry.value = v; }, () => { if (this.map.get(off) === entry) this.map.delete(off); });
    this.evict();
    return table;
  }
  /**
   * The table at `off` if it is cached and loaded, without waiting: a caller that needs no
   * load then reaches its host I/O in the same synchronous step (an await, even of a
   * settled promise, defers the rest to the microtask queue, which the machine runs only
   * when its run loop yields: a request's host read started ~2,800 guest instructions late).
   */
  peek(off: number): DataView | undefined {
    const e = this.map.get(off);
    if (e?.value === undefined) return undefined;
    this.map.delete(off); this.map.set(off, e);
    return e.value;
  }
  /** Makes `t` the cached copy of `off` and pins it; call unpin when its write is done. */
  pin(off: number, t: DataView): void {
    const e = this.map.get(off);
    if (e) { this.map.delete(off); e.table = Promise.resolve(t); e.value = t; e.pins++; this.map.set(off, e); }
    else this.map.set(off, { table: Promise.resolve(t), pins: 1, value: t });
    this.evict();
  }
  unpin(off: number): void {
    const e = this.map.get(off);
    if (e && e.pins > 0) e.pins--;
    this.evict();
  }
  drop(off: number): void { this.map.delete(off); }
  private evict(): void {
    if (this.map.size <= this.max) return;
    for (const [off, e] of this.map) {
      if (this.map.size <= this.max) break;
      if (e.pins === 0) this.map.delete(off);
    }
  }
}

export class Qcow2Disk implements BlockBackend {
  readonly serial = '';
  readonly sizeBytes: number;
  readonly readOnly: boolean;
  readonly header: Qcow2Header;
  private readonly name: string;
  private readonly cs: number;
  private readonly cb: number;
  private readonly l2Entries: number;
  private readonly rbEntries: number;
  private readonly order: number;
  private readonly maxRef: number;
  private readonly v3: boolean;
  private readonly l1: DataView;
  private rt: number[];
  private rtOff: number;
  private rtClusters: number;
  /** Cluster-aligned end of the file: the next allocation goes here. */
  private end: number;
  /** Host cluster indexes holding metadata: a data write there would corrupt the image. */
  private readonly meta = new Set<number>();
  private readonly l2Cache: TableCache;
  private readonly rbCache: TableCache;
  private readonly mutex = new Mutex();
  private scratch: Uint8Array | null = null;
  private readonly freed: number[] = [];
  /** Host clusters with in-place writes in flight, and how many. */
  private readonly inflight = new Map<number, number>();
  private lastCompressed = { hi: 0, lo: 0, data: null as Uint8Array | null };
  private closed = false;
  private corruptFound = false;

  private constructor(private readonly f: HostFile, h: Qcow2Header, l1: DataView, rt: number[], fileSize: number, private readonly o: Qcow2Options) {
    this.name = f.name;
    this.header = h;
    this.readOnly = o.readOnly;
    this.cb = h.clusterBits;
    this.cs = 2 ** h.clusterBits;
    this.l2Entries = this.cs / 8;
    this.order = h.refcountOrder;
    this.rbEntries = (this.cs * 8) / (1 << this.order);
    this.maxRef = maxRefcount(this.order);
    this.v3 = h.version === 3;
    this.sizeBytes = Math.floor(h.size / 512) * 512;
    this.l1 = l1;
    this.rt = rt;
    this.rtOff = h.refcountTableOffset;
    this.rtClusters = h.refcountTableClusters;
    this.end = Math.ceil(fileSize / this.cs) * this.cs;
    const cacheEntries = Math.max(4, Math.floor(CACHE_BYTES / this.cs));
    this.l2Cache = new TableCache(cacheEntries, (off) => this.loadTable(off, 'L2 table'));
    this.rbCache = new TableCache(cacheEntries, (off) => this.loadTable(off, 'refcount block'));
  }

  static async open(f: HostFile, o: Qcow2Options): Promise<Qcow2Disk> {
    const h = await readQcow2Header(f);
    const name = f.name;
    const bad = (why: string): DiskError => new DiskError(`'${name}': corrupt qcow2 image: ${why}`);
    if (h.dataFile !== null) throw new DiskError(`'${name}': qcow2 images with an external data file are not supported`);
    if (!o.readOnly) {
      if (h.incompatible & INCOMPAT_CORRUPT) throw new DiskError(`'${name}': the image is marked corrupt; it can only be opened read-only (repair it with 'qemu-img check -r all')`);
      if (h.incompatible & INCOMPAT_DIRTY) throw new DiskError(`'${name}': the image is marked dirty (lazy refcounts not written back); repair it with 'qemu-img check -r all' or open it read-only`);
      if (h.nbSnapshots > 0) throw new DiskError(`'${name}': images with internal snapshots can only be opened read-only`);
    }
    const cs = 2 ** h.clusterBits;
    const fileSize = await f.size();
    const l1 = new DataView(new ArrayBuffer(h.l1Size * 8));
    await readFull(f, new Uint8Array(l1.buffer), h.l1TableOffset);
    const rtBytes = new DataView(new ArrayBuffer(h.refcountTableClusters * cs));
    await readFull(f, new Uint8Array(rtBytes.buffer), h.refcountTableOffset);

    const disk = new Qcow2Disk(f, h, l1, [], fileSize, o);
    const meta = disk.meta;
    const claim = (off: number, clusters: number, what: string): void => {
      for (let i = 0; i < clusters; i++) {
        const c = off / cs + i;
        if (meta.has(c)) throw bad(`${what} at 0x${(off + i * cs).toString(16)} overlaps other metadata`);
        meta.add(c);
      }
    };
    const inFile = (off: number, what: string): void => {
      if (off % cs !== 0) throw bad(`${what} offset 0x${off.toString(16)} is not cluster aligned`);
      if (off + cs > fileSize) throw bad(`${what} at 0x${off.toString(16)} lies beyond the end of the file`);
    };
    meta.add(0);
    claim(h.l1TableOffset, Math.ceil((h.l1Size * 8) / cs), 'L1 table');
    claim(h.refcountTableOffset, h.refcountTableClusters, 'refcount table');
    const rt: number[] = [];
    for (let i = 0; i < rtBytes.byteLength / 8; i++) {
      const off = entryOffsetFull(rtBytes.getUint32(i * 8), rtBytes.getUint32(i * 8 + 4));
      if (off !== 0) { inFile(off, 'refcount block'); claim(off, 1, 'refcount block'); }
      rt.push(off);
    }
    disk.rt = rt;
    for (let i = 0; i < h.l1Size; i++) {
      const off = entryOffset(l1.getUint32(i * 8), l1.getUint32(i * 8 + 4));
      if (off !== 0) { inFile(off, 'L2 table'); claim(off, 1, 'L2 table'); }
    }
    if (!o.readOnly && h.autoclear !== 0) {
      // We do not keep autoclear features (bitmaps) up to date: clear them, as the spec asks.
      await f.pwrite(new Uint8Array(8), 88);
      h.autoclear = 0;
    }
    return disk;
  }

  // --- metadata access -------------------------------------------------------------------

  private async loadTable(off: number, _what: string): Promise<DataView> {
    const t = new Uint8Array(this.cs);
    await readFull(this.f, t, off);
    return new DataView(t.buffer);
  }

  /** The L2 table covering virtual cluster `vc`, or null when its L1 entry is unallocated. */
  private l2For(vc: number): Promise<DataView> | null {
    const l1i = Math.floor(vc / this.l2Entries);
    const off = entryOffset(this.l1.getUint32(l1i * 8), this.l1.getUint32(l1i * 8 + 4));
    return off === 0 ? null : this.l2Cache.get(off);
  }

  /** l2For without waiting: the table, null (no L2 table), or undefined when it must be loaded. */
  private l2Now(vc: number): DataView | null | undefined {
    const l1i = Math.floor(vc / this.l2Entries);
    const off = entryOffset(this.l1.getUint32(l1i * 8), this.l1.getUint32(l1i * 8 + 4));
    return off === 0 ? null : this.l2Cache.peek(off);
  }

  private async refcount(hc: number): Promise<number> {
    const ti = Math.floor(hc / this.rbEntries);
    if (ti >= this.rt.length || this.rt[ti] === 0) return 0;
    const blk = await this.rbCache.get(this.rt[ti]);
    return getRefcount(blk, hc % this.rbEntries, this.order);
  }

  /** Sets the refcount of host cluster `hc` (allocating refcount blocks and growing the table as needed). Holds the mutex. */
  private async setRef(hc: number, v: number): Promise<void> {
    if (v > this.maxRef) throw new DiskError(`'${this.name}': refcount overflow for cluster ${hc}`);
    const ti = Math.floor(hc / this.rbEntries);
    if (ti >= this.rt.length) await this.growRefTable(ti + 1);
    let bo = this.rt[ti];
    if (bo === 0) {
      bo = this.end;
      this.end += this.cs;
      const selfHc = bo / this.cs;
      const blk = new DataView(new ArrayBuffer(this.cs));
      const selfCovered = Math.floor(selfHc / this.rbEntries) === ti;
      if (selfCovered) setRefcount(blk, selfHc % this.rbEntries, this.order, 1);
      await this.f.pwrite(new Uint8Array(blk.buffer), bo);
      this.meta.add(selfHc);
      this.rbCache.pin(bo, blk);
      this.rbCache.unpin(bo);
      this.rt[ti] = bo;
      await this.writeU64(this.rtOff + ti * 8, bo);
      if (!selfCovered) await this.setRef(selfHc, 1);
    }
    const blk = await this.rbCache.get(bo);
    this.rbCache.pin(bo, blk);
    try {
      const [s, e] = setRefcount(blk, hc % this.rbEntries, this.order, v);
      await this.f.pwrite(new Uint8Array(blk.buffer, s, e - s), bo + s);
    } finally { this.rbCache.unpin(bo); }
  }

  private async changeRef(hc: number, delta: number): Promise<void> {
    const r = await this.refcount(hc);
    if (r + delta < 0) throw this.corrupt(`refcount of cluster ${hc} would drop below zero`);
    await this.setRef(hc, r + delta);
    if (r + delta === 0) {
      this.meta.delete(hc);
      if (hc > 0 && this.freed.length < MAX_FREED) this.freed.push(hc);
    }
  }

  /** A new refcount table at the end of the file with room for `minEntries` blocks. Holds the mutex. */
  private async growRefTable(minEntries: number): Promise<void> {
    const perCluster = this.cs / 8;
    let clusters = Math.ceil(minEntries / perCluster);
    for (;;) {
      // Room also for the blocks that will count the new table itself.
      const lastHc = this.end / this.cs + clusters + 2;
      if (clusters * perCluster >= Math.max(minEntries, Math.floor(lastHc / this.rbEntries) + 2)) break;
      clusters++;
    }
    if (clusters * this.cs > 8 << 20) throw new DiskError(`'${this.name}': the image is too large (refcount table would exceed 8 MiB)`);
    const oldOff = this.rtOff, oldClusters = this.rtClusters;
    const newOff = this.end;
    this.end += clusters * this.cs;
    while (this.rt.length < clusters * perCluster) this.rt.push(0);
    this.rtOff = newOff;
    this.rtClusters = clusters;
    for (let i = 0; i < clusters; i++) this.meta.add(newOff / this.cs + i);
    for (let i = 0; i < clusters; i++) await this.setRef(newOff / this.cs + i, 1);
    const t = new DataView(new ArrayBuffer(clusters * this.cs));
    for (let i = 0; i < this.rt.length; i++) setU64(t, i * 8, this.rt[i]);
    await this.f.pwrite(new Uint8Array(t.buffer), newOff);
    const hdr = new DataView(new ArrayBuffer(12));
    setU64(hdr, 0, newOff);
    hdr.setUint32(8, clusters);
    await this.f.pwrite(new Uint8Array(hdr.buffer), 48);
    for (let i = 0; i < oldClusters; i++) await this.changeRef(oldOff / this.cs + i, -1);
  }

  /** A fresh cluster at the end of the file with refcount 1. Holds the mutex. */
  private async allocCluster(): Promise<number> {
    // Clusters freed by discards and rewrites are used again before the file grows.
    while (this.freed.length) {
      const hc = this.freed.pop() as number;
      if ((await this.refcount(hc)) === 0 && !this.meta.has(hc) && !this.inflight.has(hc)) {
        await this.setRef(hc, 1);
        return hc * this.cs;
      }
    }
    for (let skipped = 0; ; skipped++) {
      if (skipped > MAX_SKIP) throw this.corrupt(`refcounts claim clusters far past the end of the file`);
      const off = this.end;
      this.end += this.cs;
      if ((await this.refcount(off / this.cs)) === 0) {
        await this.setRef(off / this.cs, 1);
        return off;
      }
    }
  }

  private async writeU64(at: number, v: number, flagsHi = 0): Promise<void> {
    const b = new DataView(new ArrayBuffer(8));
    setU64(b, 0, v);
    b.setUint32(0, (b.getUint32(0) | flagsHi) >>> 0);
    await this.f.pwrite(new Uint8Array(b.buffer), at);
  }

  /** The L2 table for virtual cluster `vc`, allocated or copied so it may be modified. Holds the mutex. */
  private async l2ForWrite(vc: number): Promise<{ off: number; t: DataView }> {
    const l1i = Math.floor(vc / this.l2Entries);
    const hi = this.l1.getUint32(l1i * 8), lo = this.l1.getUint32(l1i * 8 + 4);
    const old = entryOffset(hi, lo);
    if (old !== 0 && (hi & OFLAG_COPIED_HI)) return { off: old, t: await this.l2Cache.get(old) };
    const off = await this.allocCluster();
    this.meta.add(off / this.cs);
    const t = new DataView(new ArrayBuffer(this.cs));
    if (old !== 0) new Uint8Array(t.buffer).set(new Uint8Array((await this.l2Cache.get(old)).buffer));
    await this.f.pwrite(new Uint8Array(t.buffer), off);
    this.l2Cache.pin(off, t);
    this.l2Cache.unpin(off);
    this.l1.setUint32(l1i * 8, (Math.floor(off / 0x1_0000_0000) | OFLAG_COPIED_HI) >>> 0);
    this.l1.setUint32(l1i * 8 + 4, off >>> 0);
    await this.f.pwrite(new Uint8Array(this.l1.buffer, l1i * 8, 8), this.header.l1TableOffset + l1i * 8);
    if (old !== 0) { this.l2Cache.drop(old); await this.changeRef(old / this.cs, -1); }
    return { off, t };
  }

  private async setL2Entry(l2: { off: number; t: DataView }, vc: number, hi: number, lo: number): Promise<void> {
    const i = vc % this.l2Entries;
    this.l2Cache.pin(l2.off, l2.t);
    try {
      l2.t.setUint32(i * 8, hi >>> 0);
      l2.t.setUint32(i * 8 + 4, lo >>> 0);
      await this.f.pwrite(new Uint8Array(l2.t.buffer, i * 8, 8), l2.off + i * 8);
    } finally { this.l2Cache.unpin(l2.off); }
  }

  /** Drops the reference an L2 entry holds on its host cluster(s). Holds the mutex. */
  private async release(hi: number, lo: number): Promise<void> {
    if (hi & OFLAG_COMPRESSED_HI) {
      const { start, end } = this.compressedRange(hi, lo);
      for (let c = Math.floor(start / this.cs); c * this.cs < end; c++) await this.releaseData(c);
      return;
    }
    const off = entryOffset(hi, lo);
    if (off !== 0) await this.releaseData(Math.floor(off / this.cs));
  }

  private async releaseData(hc: number): Promise<void> {
    // A data entry pointing into metadata is corruption: freeing it would let the table be overwritten.
    if (this.meta.has(hc)) throw this.corrupt(`data cluster ${hc} overlaps metadata`);
    await this.changeRef(hc, -1);
  }

  // --- entries ---------------------------------------------------------------------------

  private dataOffset(hi: number, lo: number): number {
    const off = entryOffset(hi, lo);
    if (off % this.cs !== 0) throw this.corrupt(`data cluster offset 0x${off.toString(16)} is not cluster aligned`);
    if (off >= this.end) throw this.corrupt(`data cluster offset 0x${off.toString(16)} lies beyond the end of the file`);
    return off;
  }

  private compressedRange(hi: number, lo: number): { off: number; start: number; end: number } {
    const r = compressedExtent(hi, lo, this.cb);
    if (r.off === 0 || r.off >= this.end) throw this.corrupt(`compressed cluster offset 0x${r.off.toString(16)} outside the file`);
    return r;
  }

  private async readCompressed(hi: number, lo: number): Promise<Uint8Array> {
    const c = this.lastCompressed;
    if (c.data && c.hi === hi && c.lo === lo) return c.data;
    const { off, end } = this.compressedRange(hi, lo);
    const src = new Uint8Array(end - off);
    await readFull(this.f, src, off);
    const out = this.o.inflate(src, this.cs);
    if (!out || out.length !== this.cs) throw this.corrupt(`compressed cluster at 0x${off.toString(16)} does not decompress`);
    this.lastCompressed = { hi, lo, data: out };
    return out;
  }

  /** Fills `dst` with what virtual offset `vo` holds below this image (backing or zeros). */
  private async readBelow(vo: number, dst: Uint8Array): Promise<void> {
    const b = this.o.backing;
    const inBacking = b ? Math.max(0, Math.min(dst.length, b.sizeBytes - vo)) : 0;
    if (b && inBacking > 0) await b.read(vo, dst.subarray(0, inBacking));
    if (inBacking < dst.length) dst.fill(0, inBacking);
  }

  /** Reads part of virtual cluster vc given its L2 entry. */
  private async readCluster(vc: number, hi: number, lo: number, inOff: number, dst: Uint8Array): Promise<void> {
    if (hi & OFLAG_COMPRESSED_HI) {
      const data = await this.readCompressed(hi, lo);
      dst.set(data.subarray(inOff, inOff + dst.length));
    } else if (this.v3 && (lo & OFLAG_ZERO_LO)) {
      dst.fill(0);
    } else {
      const off = entryOffset(hi, lo);
      if (off === 0) await this.readBelow(vc * this.cs + inOff, dst);
      else await readFull(this.f, dst, this.dataOffset(hi, lo) + inOff);
    }
  }

  // --- BlockBackend ----------------------------------------------------------------------

  async read(offset: number, dst: Uint8Array): Promise<void> {
    checkRange(this.name, this.sizeBytes, offset, dst.length);
    this.checkOpen();
    for (let pos = 0; pos < dst.length;) {
      const vo = offset + pos;
      const vc = Math.floor(vo / this.cs);
      const inOff = vo - vc * this.cs;
      const n = Math.min(this.cs - inOff, dst.length - pos);
      const chunk = dst.subarray(pos, pos + n);
      const now = this.l2Now(vc);
      const t = now !== undefined ? now : await this.l2For(vc);
      if (t === null) { await this.readBelow(vo, chunk); pos += n; continue; }
      const i = (vc % this.l2Entries) * 8;
      const hi = t.getUint32(i), lo = t.getUint32(i + 4);
      if ((hi & OFLAG_COMPRESSED_HI) || (this.v3 && (lo & OFLAG_ZERO_LO)) || entryOffset(hi, lo) === 0) {
        await this.readCluster(vc, hi, lo, inOff, chunk);
        pos += n;
        continue;
      }
      // Plain data: extend over following clusters of this L2 table that are contiguous on the host.
      const host = this.dataOffset(hi, lo);
      let len = n;
      for (let j = i + 8; pos + len < dst.length && j < this.cs; j += 8) {
        const h2 = t.getUint32(j), l2 = t.getUint32(j + 4);
        if ((h2 & OFLAG_COMPRESSED_HI) || (this.v3 && (l2 & OFLAG_ZERO_LO)) || entryOffset(h2, l2) !== host + inOff + len) break;
        this.dataOffset(h2, l2);
        len += Math.min(this.cs, dst.length - pos - len);
      }
      await readFull(this.f, dst.subarray(pos, pos + len), host + inOff);
      pos += len;
    }
  }

  async blockStatus(offset: number, length: number): Promise<{ zero: boolean; length: number }> {
    checkRange(this.name, this.sizeBytes, offset, length);
    this.checkOpen();
    let zero: boolean | null = null;
    let pos = 0;
    while (pos < length) {
      const vo = offset + pos;
      const vc = Math.floor(vo / this.cs);
      const n = Math.min(this.cs - (vo - vc * this.cs), length - pos);
      const l2p = this.l2For(vc);
      const t = l2p === null ? null : await l2p;
      const i = (vc % this.l2Entries) * 8;
      const hi = t ? t.getUint32(i) : 0, lo = t ? t.getUint32(i + 4) : 0;
      let z = false, span = n;
      if (hi & OFLAG_COMPRESSED_HI) z = false;
      else if (this.v3 && (lo & OFLAG_ZERO_LO)) z = true;
      else if (entryOffset(hi, lo) === 0) {
        // Unallocated here: what lies below decides (zeros past the backing file's end).
        const b = this.o.backing;
        if (!b || vo >= b.sizeBytes) {
          z = true;
          // No L2 table: its whole span (512 MiB with 64 KiB clusters) is one answer.
          if (t === null) span = Math.min(length - pos, (Math.floor(vc / this.l2Entries) + 1) * this.l2Entries * this.cs - vo);
        }
        else if (b.blockStatus) {
          const below = await b.blockStatus(vo, Math.min(n, b.sizeBytes - vo));
          z = below.zero;
          span = below.length;
        }
      }
      if (zero === null) zero = z;
      else if (zero !== z) break;
      pos += span;
      if (span < n) break;
    }
    return { zero: zero ?? false, length: pos };
  }

  async write(offset: number, src: Uint8Array): Promise<void> {
    this.writable();
    checkRange(this.name, this.sizeBytes, offset, src.length);
    for (let pos = 0; pos < src.length;) {
      const vo = offset + pos;
      const vc = Math.floor(vo / this.cs);
      const inOff = vo - vc * this.cs;
      const n = Math.min(this.cs - inOff, src.length - pos);
      const now = this.ownedNow(vc);
      const host = now !== undefined ? now : await this.ownedCluster(vc);
      if (host < 0) {
        const k = inOff === 0 ? await this.freshRun(vc, Math.floor((src.length - pos) / this.cs)) : 0;
        if (k >= 2) {
          await this.writeRun(vc, k, src.subarray(pos, pos + k * this.cs));
          pos += k * this.cs;
        } else {
          await this.writeCluster(vc, inOff, src.subarray(pos, pos + n));
          pos += n;
        }
        continue;
      }
      // In place: extend over following owned clusters that are contiguous on the host.
      let len = n, clusters = 1;
      try {
        while (pos + len < src.length) {
          const next = await this.ownedCluster(vc + clusters);
          if (next !== host + clusters * this.cs) { if (next >= 0) this.unregister(next / this.cs, 1); break; }
          clusters++;
          len += Math.min(this.cs, src.length - pos - len);
        }
      } catch (e) { this.unregister(host / this.cs, clusters); throw e; }
      await this.writeInPlace(host, inOff, src.subarray(pos, pos + len), clusters);
      pos += len;
    }
    if (this.o.syncEachWrite) await this.f.sync();
  }

  /** The in-place host offset of virtual cluster vc if it is allocated and owned (COPIED), else -1. */
  private async ownedCluster(vc: number): Promise<number> {
    const l2p = this.l2For(vc);
    if (l2p === null) return -1;
    const l1i = Math.floor(vc / this.l2Entries);
    if (!(this.l1.getUint32(l1i * 8) & OFLAG_COPIED_HI)) return -1;
    return this.ownedIn(vc, await l2p);
  }

  /** ownedCluster without waiting, or undefined when vc's L2 table must be loaded first. */
  private ownedNow(vc: number): number | undefined {
    const t = this.l2Now(vc);
    if (t === null) return -1;
    if (t === undefined) return undefined;
    const l1i = Math.floor(vc / this.l2Entries);
    if (!(this.l1.getUint32(l1i * 8) & OFLAG_COPIED_HI)) return -1;
    return this.ownedIn(vc, t);
  }

  private ownedIn(vc: number, t: DataView): number {
    const i = (vc % this.l2Entries) * 8;
    const hi = t.getUint32(i), lo = t.getUint32(i + 4);
    if (!(hi & OFLAG_COPIED_HI) || (hi & OFLAG_COMPRESSED_HI) || (this.v3 && (lo & OFLAG_ZERO_LO))) return -1;
    if (entryOffset(hi, lo) === 0) return -1;
    const off = this.dataOffset(hi, lo);
    // Registered in the same synchronous step as the lookup: a concurrent discard cannot hand
    // this cluster to new metadata while our write to it is in flight.
    const hc = off / this.cs;
    this.inflight.set(hc, (this.inflight.get(hc) ?? 0) + 1);
    return off;
  }

  private async writeCluster(vc: number, inOff: number, src: Uint8Array): Promise<void> {
    let host = await this.ownedCluster(vc);
    if (host >= 0) return this.writeInPlace(host, inOff, src);
    const release = await this.mutex.lock();
    try {
      host = await this.ownedCluster(vc); // another request may have allocated it meanwhile
      if (host >= 0) return await this.writeInPlace(host, inOff, src);
      const l2p = this.l2For(vc);
      let hi = 0, lo = 0;
      if (l2p !== null) { const t = await l2p, i = (vc % this.l2Entries) * 8; hi = t.getUint32(i); lo = t.getUint32(i + 4); }
      let data = src;
      if (src.length !== this.cs) {
        // Copy-on-write: the rest of the cluster comes from what it held before.
        this.scratch ??= new Uint8Array(this.cs);
        data = this.scratch;
        await this.readCluster(vc, hi, lo, 0, data);
        data.set(src, inOff);
      }
      const l2 = await this.l2ForWrite(vc); // first, so a new table precedes its data in the file
      const off = await this.allocCluster();
      await this.f.pwrite(data, off);
      await this.setL2Entry(l2, vc, Math.floor(off / 0x1_0000_0000) | OFLAG_COPIED_HI, off >>> 0);
      await this.release(hi, lo);
    } finally { release(); }
  }

  /** How many of the `max` clusters from vc (within one L2 table) are unallocated or plain zero: whole-cluster writes there need no copy. */
  private async freshRun(vc: number, max: number): Promise<number> {
    const limit = Math.min(max, this.l2Entries - (vc % this.l2Entries));
    const l2p = this.l2For(vc);
    if (l2p === null) return limit;
    const t = await l2p;
    let k = 0;
    for (let i = (vc % this.l2Entries) * 8; k < limit; k++, i += 8) {
      const hi = t.getUint32(i), lo = t.getUint32(i + 4);
      if (hi !== 0 || (lo !== 0 && !(this.v3 && lo === OFLAG_ZERO_LO))) break;
    }
    return k;
  }

  /** Whole-cluster writes to k fresh clusters: one contiguous allocation, one data write, one L2 write. */
  private async writeRun(vc: number, k: number, src: Uint8Array): Promise<void> {
    const release = await this.mutex.lock();
    let done = false;
    try {
      // Freed clusters are used first (cluster by cluster), so rewrites do not grow the file.
      if (this.freed.length === 0 && (await this.freshRun(vc, k)) === k) {
        const l2 = await this.l2ForWrite(vc);
        const off = this.end, hc0 = off / this.cs;
        let free = true;
        for (let j = 0; j < k && free; j++) free = (await this.refcount(hc0 + j)) === 0;
        if (free) {
          this.end += k * this.cs;
          await this.setRefRange(hc0, k);
          await this.f.pwrite(src, off);
          const i0 = (vc % this.l2Entries) * 8;
          this.l2Cache.pin(l2.off, l2.t);
          try {
            for (let j = 0; j < k; j++) {
              const o = off + j * this.cs;
              l2.t.setUint32(i0 + j * 8, (Math.floor(o / 0x1_0000_0000) | OFLAG_COPIED_HI) >>> 0);
              l2.t.setUint32(i0 + j * 8 + 4, o >>> 0);
            }
            await this.f.pwrite(new Uint8Array(l2.t.buffer, i0, k * 8), l2.off + i0);
          } finally { this.l2Cache.unpin(l2.off); }
          done = true;
        }
      }
    } finally { release(); }
    if (!done) {
      for (let j = 0; j < k; j++) await this.writeCluster(vc + j, 0, src.subarray(j * this.cs, (j + 1) * this.cs));
    }
  }

  /** Refcount 1 for `count` clusters from hc0, one write per refcount block. Holds the mutex. */
  private async setRefRange(hc0: number, count: number): Promise<void> {
    for (let hc = hc0; hc < hc0 + count;) {
      const ti = Math.floor(hc / this.rbEntries);
      if (ti >= this.rt.length || this.rt[ti] === 0) { await this.setRef(hc, 1); hc++; continue; }
      const bo = this.rt[ti];
      const blk = await this.rbCache.get(bo);
      this.rbCache.pin(bo, blk);
      try {
        const last = Math.min(hc0 + count, (ti + 1) * this.rbEntries);
        let s = Infinity, e = 0;
        for (; hc < last; hc++) {
          const [a, b] = setRefcount(blk, hc % this.rbEntries, this.order, 1);
          if (a < s) s = a;
          if (b > e) e = b;
        }
        await this.f.pwrite(new Uint8Array(blk.buffer, s, e - s), bo + s);
      } finally { this.rbCache.unpin(bo); }
    }
  }

  /** Writes to `clusters` owned host clusters from `host`, each registered by ownedCluster. */
  private async writeInPlace(host: number, inOff: number, src: Uint8Array, clusters = 1): Promise<void> {
    const hc = host / this.cs;
    try {
      for (let k = 0; k < clusters; k++) {
        if (this.meta.has(hc + k)) throw this.corrupt(`data cluster 0x${(host + k * this.cs).toString(16)} overlaps metadata`);
      }
      await this.f.pwrite(src, host + inOff);
    } finally { this.unregister(hc, clusters); }
  }

  private unregister(hc: number, clusters: number): void {
    for (let k = hc; k < hc + clusters; k++) {
      const n = (this.inflight.get(k) ?? 1) - 1;
      if (n > 0) this.inflight.set(k, n); else this.inflight.delete(k);
    }
  }

  async flush(): Promise<void> {
    this.checkOpen();
    if (!this.readOnly) await this.f.sync();
  }

  async discard(offset: number, length: number): Promise<void> {
    this.writable();
    checkRange(this.name, this.sizeBytes, offset, length);
    if (this.v3) await this.zeroClusters(offset, length, true, false);
  }

  async writeZeroes(offset: number, length: number, mayUnmap: boolean): Promise<void> {
    this.writable();
    checkRange(this.name, this.sizeBytes, offset, length);
    await this.zeroClusters(offset, length, mayUnmap, true);
    if (this.o.syncEachWrite) await this.f.sync();
  }

  /** Whole clusters become zero clusters (v3); with `partial`, the ragged ends are written as zeros. */
  private async zeroClusters(offset: number, length: number, mayUnmap: boolean, partial: boolean): Promise<void> {
    for (let pos = 0; pos < length;) {
      const vo = offset + pos;
      const vc = Math.floor(vo / this.cs);
      const inOff = vo - vc * this.cs;
      const n = Math.min(this.cs - inOff, length - pos);
      pos += n;
      if (n !== this.cs || !this.v3) {
        if (partial && !(await this.readsZero(vc))) await this.writeCluster(vc, inOff, this.zeroBuf().subarray(0, n));
        continue;
      }
      const release = await this.mutex.lock();
      try {
        const l2p = this.l2For(vc);
        let hi = 0, lo = 0;
        if (l2p !== null) { const t = await l2p, i = (vc % this.l2Entries) * 8; hi = t.getUint32(i); lo = t.getUint32(i + 4); }
        if (hi === 0 && lo === 0 && !this.o.backing) continue; // already reads as zeros
        const plain = !(hi & OFLAG_COMPRESSED_HI) && (hi & OFLAG_COPIED_HI) && entryOffset(hi, lo) !== 0;
        const l2 = await this.l2ForWrite(vc);
        if (plain && !mayUnmap) {
          await this.setL2Entry(l2, vc, hi, lo | OFLAG_ZERO_LO); // keep the allocation
        } else {
          await this.setL2Entry(l2, vc, 0, OFLAG_ZERO_LO);
          await this.release(hi, lo);
        }
      } finally { release(); }
    }
  }

  /** Virtual cluster vc reads as zeros without looking at data: unallocated with no backing, or a zero cluster. */
  private async readsZero(vc: number): Promise<boolean> {
    const l2p = this.l2For(vc);
    if (l2p === null) return !this.o.backing;
    const t = await l2p, i = (vc % this.l2Entries) * 8;
    const hi = t.getUint32(i), lo = t.getUint32(i + 4);
    if (hi & OFLAG_COMPRESSED_HI) return false;
    if (this.v3 && (lo & OFLAG_ZERO_LO)) return true;
    return entryOffset(hi, lo) === 0 && !this.o.backing;
  }

  private zeroBuf(): Uint8Array { return (this.zeros ??= new Uint8Array(this.cs)); }
  private zeros: Uint8Array | null = null;

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const release = await this.mutex.lock();
    try {
      if (!this.readOnly && this.corruptFound && this.v3) {
        const b = new Uint8Array(8);
        await readFull(this.f, b, 72);
        b[7] |= INCOMPAT_CORRUPT;
        await this.f.pwrite(b, 72);
      }
      if (!this.readOnly) await this.f.sync();
    } finally {
      release();
      await this.f.close();
      await this.o.backing?.close();
    }
  }

  /**
   * Metadata found inconsistent at run time: as QEMU does, refuse further writes and set the
   * header's corrupt bit (on close) so nothing writes to the image until it is repaired.
   */
  private corrupt(why: string): DiskError {
    this.corruptFound = true;
    return new DiskError(`'${this.name}': corrupt qcow2 image: ${why}`);
  }

  private checkOpen(): void {
    if (this.closed) throw new DiskError(`'${this.name}': the disk is closed`);
  }
  private writable(): void {
    this.checkOpen();
    if (this.readOnly) throw new DiskError(`'${this.name}': the disk is read-only`);
    if (this.corruptFound) throw new DiskError(`'${this.name}': the image was found corrupt; writes are refused (repair it with 'qemu-img check -r all')`);
  }
}

/** A refcount-table entry's offset (bits 9..63; the low bits are reserved). */
function entryOffsetFull(hi: number, lo: number): number {
  if (hi >= 0x20_0000) return Number.MAX_SAFE_INTEGER; // beyond any file: rejected by the caller
  return hi * 0x1_0000_0000 + ((lo & 0xffff_fe00) >>> 0);
}
