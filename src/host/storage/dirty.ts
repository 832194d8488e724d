/**
 * Dirty-block tracking on a disk's write path (QEMU's dirty bitmaps, for drive-mirror):
 * while tracking, every write, discard and write-zeroes marks the 64 KiB granules it
 * touches, once when it is issued and again when it completes, so a copier that takes the
 * marks while a write is in flight still sees that granule again later. A copy made in
 * rounds (copy all, then what was dirtied meanwhile, then a last pass with the guest paused
 * and its requests drained) equals the disk at the pause. No Node imports (the runner is
 * browser-safe); when not tracking, the cost is one test per write.
 */
import type { BlockBackend } from '../../devices/device.js';
import { crc32c } from '../../snapshot/crc32c.js';

/** Tracking granularity (QEMU's default drive-mirror granularity is the cluster size, 64 KiB). */
export const GRANULE = 64 * 1024;

export class DirtyBlock implements BlockBackend {
  private bitmap: Uint8Array | null = null;
  private marked = 0;
  constructor(readonly inner: BlockBackend) {}

  get sizeBytes(): number { return this.inner.sizeBytes; }
  get readOnly(): boolean { return this.inner.readOnly; }
  get serial(): string { return this.inner.serial; }
  get granules(): number { return Math.ceil(this.inner.sizeBytes / GRANULE); }
  get tracking(): boolean { return this.bitmap !== null; }
  /** Granules marked and not yet taken. */
  get dirtyCount(): number { return this.marked; }

  startTracking(): void { this.bitmap ??= new Uint8Array((this.granules + 7) >> 3); }
  stopTracking(): void { this.bitmap = null; this.marked = 0; }

  /** The granules marked since the last call (ascending), and clears them. */
  takeDirty(): number[] {
    const b = this.bitmap;
    const out: number[] = [];
    if (!b || this.marked === 0) return out;
    for (let i = 0; i < b.length; i++) {
      const v = b[i];
      if (v === 0) continue;
      for (let k = 0; k < 8; k++) if (v & (1 << k)) out.push(i * 8 + k);
      b[i] = 0;
    }
    this.marked = 0;
    return out;
  }

  private mark(offset: number, length: number): void {
    const b = this.bitmap;
    if (!b || length <= 0 || offset < 0) return;
    const last = Math.min(this.granules - 1, Math.floor((offset + length - 1) / GRANULE));
    for (let g = Math.floor(offset / GRANULE); g <= last; g++) {
      const bit = 1 << (g & 7);
      if (!(b[g >> 3] & bit)) { b[g >> 3] |= bit; this.marked++; }
    }
  }

  read(offset: number, dst: Uint8Array): Promise<void> { return this.inner.read(offset, dst); }
  async write(offset: number, src: Uint8Array): Promise<void> {
    this.mark(offset, src.length);
    try { await this.inner.write(offset, src); } finally { this.mark(offset, src.length); }
  }
  flush(): Promise<void> { return this.inner.flush(); }
  async discard(offset: number, length: number): Promise<void> {
    this.mark(offset, length);
    try { await this.inner.discard(offset, length); } finally { this.mark(offset, length); }
  }
  async writeZeroes(offset: number, length: number, mayUnmap: boolean): Promise<void> {
    this.mark(offset, length);
    try { await this.inner.writeZeroes(offset, length, mayUnmap); } finally { this.mark(offset, length); }
  }
  close(): Promise<void> { return this.inner.close(); }
}

/** Bytes of granule `g` on a disk of `size` bytes (the last one may be short). */
export function granuleBytes(g: number, size: number): number {
  return Math.min(GRANULE, size - g * GRANULE);
}

function isZero(b: Uint8Array): boolean {
  const w = b.byteOffset % 4 === 0 && b.length % 4 === 0 ? new Int32Array(b.buffer, b.byteOffset, b.length / 4) : b;
  for (let i = 0; i < w.length; i++) if (w[i] !== 0) return false;
  return true;
}

/** Reads of up to this many granules are merged into one request. */
const RUN = 16;

/**
 * Copy granules of `src` to `dst` (same size), reading runs of adjacent granules in one
 * request. All-zero granules are skipped when `fresh` (a new, empty target reads zeros),
 * else written as zeroes. Returns the bytes of data written.
 */
export async function copyGranules(src: BlockBackend, dst: BlockBackend, granules: readonly number[], fresh: boolean): Promise<number> {
  const size = src.sizeBytes;
  const buf = new Uint8Array(RUN * GRANULE);
  let bytes = 0;
  for (let i = 0; i < granules.length;) {
    let j = i + 1;
    while (j < granules.length && j - i < RUN && granules[j] === granules[j - 1] + 1) j++;
    const off = granules[i] * GRANULE;
    const len = Math.min(size, granules[j - 1] * GRANULE + GRANULE) - off;
    const run = buf.subarray(0, len);
    await src.read(off, run);
    // Adjacent non-zero granules go out as one write.
    let start = -1;
    for (let o = 0; o < len; o += GRANULE) {
      const end = Math.min(len, o + GRANULE);
      if (!isZero(run.subarray(o, end))) { if (start < 0) start = o; continue; }
      if (start >= 0) { await dst.write(off + start, run.subarray(start, o)); bytes += o - start; start = -1; }
      if (!fresh) await dst.writeZeroes(off + o, end - o, true);
    }
    if (start >= 0) { await dst.write(off + start, run.subarray(start, len)); bytes += len - start; }
    i = j;
  }
  return bytes;
}

/** All granules of a disk, in order. */
export function allGranules(d: { sizeBytes: number }): number[] {
  return Array.from({ length: Math.ceil(d.sizeBytes / GRANULE) }, (_, i) => i);
}

// ---- block sets on the wire (live migration with --copy-storage) ----
//
//   disk u32 | count u32 | entry u32 × count | the data of each non-zero granule | CRC-32C u32 of everything before
// An entry is a granule index; bit 31 set means the granule is all zero and no bytes follow.

const ZERO = 0x8000_0000;

/** Read `granules` of `src` (disk number `disk`) into a block set. */
export async function encodeBlocks(src: BlockBackend, disk: number, granules: readonly number[]): Promise<Uint8Array> {
  const size = src.sizeBytes;
  let max = 0;
  for (const g of granules) max += granuleBytes(g, size);
  const n = granules.length;
  const out = new Uint8Array(8 + 4 * n + max + 4);
  const v = new DataView(out.buffer);
  v.setUint32(0, disk, true);
  v.setUint32(4, n, true);
  let o = 8 + 4 * n;
  for (let i = 0; i < n;) {
    let j = i + 1;
    while (j < n && j - i < RUN && granules[j] === granules[j - 1] + 1) j++;
    const off = granules[i] * GRANULE;
    const len = Math.min(size, granules[j - 1] * GRANULE + GRANULE) - off;
    const run = out.subarray(o, o + len);
    await src.read(off, run);
    // Zero granules are dropped: the data after them moves down.
    let w = o;
    for (let k = i; k < j; k++) {
      const p = (granules[k] - granules[i]) * GRANULE;
      const part = run.subarray(p, p + granuleBytes(granules[k], size));
      if (isZero(part)) { v.setUint32(8 + 4 * k, (granules[k] | ZERO) >>> 0, true); continue; }
      v.setUint32(8 + 4 * k, granules[k], true);
      if (w !== o + p) out.copyWithin(w, o + p, o + p + part.length);
      w += part.length;
    }
    o = w;
    i = j;
  }
  v.setUint32(o, crc32c(out.subarray(0, o)), true);
  return out.slice(0, o + 4);
}

/** Check a block set against disks of these sizes (throws a clear Error); its disk and granule count. */
export function checkBlocks(data: Uint8Array, sizes: readonly number[]): { disk: number; count: number } {
  if (data.length < 12) throw new Error('block set: too short');
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const disk = v.getUint32(0, true), n = v.getUint32(4, true);
  if (disk >= sizes.length) throw new Error(`block set: disk ${disk}, the machine has ${sizes.length}`);
  if (8 + 4 * n + 4 > data.length) throw new Error(`block set: ${data.length} bytes for ${n} entries`);
  const size = sizes[disk];
  let want = 8 + 4 * n + 4;
  for (let i = 0; i < n; i++) {
    const e = v.getUint32(8 + 4 * i, true);
    const g = (e & ~ZERO) >>> 0;
    if (g * GRANULE >= size) throw new Error(`block set: granule ${g} outside disk ${disk} (${size} bytes)`);
    if (!(e & ZERO)) want += granuleBytes(g, size);
  }
  if (data.length !== want) throw new Error(`block set: ${data.length} bytes, the entries need ${want}`);
  if (crc32c(data.subarray(0, data.length - 4)) !== v.getUint32(data.length - 4, true)) throw new Error('block set: checksum mismatch');
  return { disk, count: n };
}

/** Write a checked block set to its disk; returns the granule count. */
export async function applyBlocks(data: Uint8Array, disks: readonly BlockBackend[]): Promise<number> {
  const { disk, count } = checkBlocks(data, disks.map((d) => d.sizeBytes));
  const dst = disks[disk];
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let o = 8 + 4 * count;
  for (let i = 0; i < count; i++) {
    const e = v.getUint32(8 + 4 * i, true);
    const g = (e & ~ZERO) >>> 0;
    const len = granuleBytes(g, dst.sizeBytes);
    if (e & ZERO) { await dst.writeZeroes(g * GRANULE, len, true); continue; }
    await dst.write(g * GRANULE, data.subarray(o, o + len));
    o += len;
  }
  return count;
}
