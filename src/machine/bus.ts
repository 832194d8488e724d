import type { MmioDevice } from '../devices/device.js';

/**
 * A device whose 64-bit registers must be accessed in one piece (CLINT mtime: two 32-bit
 * reads would sample the clock twice and tear when the low word wraps).
 */
export interface Mmio64 {
  read64(offset: number): bigint;
  write64(offset: number, value: bigint): void;
}

/** One mapped MMIO region. */
export interface MmioRegion {
  readonly base: number;
  readonly size: number;
  readonly device: MmioDevice;
  /** Set when the device takes 8-byte accesses whole; otherwise they are split, low word first. */
  readonly wide: Mmio64 | null;
  /** Instructions may be fetched from it (ROM). Fetching from other devices is an access fault with no device read. */
  readonly executable: boolean;
}

/** Saved guest RAM. */
export interface RamState { v: 1; base: number; bytes: Uint8Array }

/** Bytes reserved at the start of the shared memory for hart state, TLBs and the target cache (see cpu/state.ts). */
export const STATE_REGION_BYTES = 0x100000;

/**
 * The physical address space: guest RAM plus MMIO regions.
 *
 * Guest RAM and the hart state live in one WebAssembly.Memory so that translated
 * WebAssembly code can address both. RAM starts at host offset STATE_REGION_BYTES.
 * Physical addresses are plain numbers (exact up to 2^53; the board never maps above).
 */
export class Bus {
  readonly memory: WebAssembly.Memory;
  readonly u8: Uint8Array;
  readonly dv: DataView;
  readonly ramBase: number;
  readonly ramSize: number;
  /** Host byte offset of guest RAM inside `memory`. */
  readonly ramHostOffset = STATE_REGION_BYTES;
  private regions: MmioRegion[] = [];
  /** Called when something other than a hart store writes RAM (DMA, loaders), to drop stale decoded code. */
  private writeHooks: Array<(paddr: number, len: number) => void> = [];

  constructor(ramBase: number, ramSize: number) {
    if (ramSize <= 0 || ramSize % 4096 !== 0) throw new Error(`RAM size must be a positive multiple of 4 KiB, got ${ramSize}`);
    if (ramSize > 0xf000_0000) throw new Error(`RAM size ${ramSize} exceeds the 3.75 GiB maximum`);
    const total = STATE_REGION_BYTES + ramSize;
    const pages = Math.ceil(total / 65536);
    this.memory = new WebAssembly.Memory({ initial: pages, maximum: pages });
    this.u8 = new Uint8Array(this.memory.buffer);
    this.dv = new DataView(this.memory.buffer);
    this.ramBase = ramBase;
    this.ramSize = ramSize;
  }

  /** Map a device; `executable` only for ROM (reads without side effects). */
  map(base: number, size: number, device: MmioDevice, opts: { executable?: boolean } = {}): void {
    for (const r of this.regions) {
      if (base < r.base + r.size && r.base < base + size) throw new Error(`MMIO region ${device.name} overlaps ${r.device.name}`);
    }
    const wide = isMmio64(device) ? device : null;
    this.regions.push({ base, size, device, executable: opts.executable ?? false, wide });
    this.regions.sort((a, b) => a.base - b.base);
  }

  get mmioRegions(): readonly MmioRegion[] { return this.regions; }

  /** Host offset of a RAM range, or -1 if [paddr, paddr+len) is not entirely RAM. */
  ramOffset(paddr: number, len: number): number {
    const off = paddr - this.ramBase;
    if (off < 0 || len < 0 || off + len > this.ramSize) return -1;
    return this.ramHostOffset + off;
  }

  /** The MMIO region containing paddr, or undefined. */
  findRegion(paddr: number): MmioRegion | undefined {
    const rs = this.regions;
    for (let i = 0; i < rs.length; i++) {
      const r = rs[i];
      if (paddr >= r.base && paddr < r.base + r.size) return r;
    }
    return undefined;
  }

  onRamWrite(hook: (paddr: number, len: number) => void): void { this.writeHooks.push(hook); }

  /** Tell code caches that RAM was written from outside a hart (DMA, loaders). */
  notifyRamWrite(paddr: number, len: number): void {
    for (const h of this.writeHooks) h(paddr, len);
  }

  /** Copy bytes into guest RAM (loaders, DMA). Throws with a clear message if out of RAM. */
  writeBytes(paddr: number, data: Uint8Array): void {
    const off = this.ramOffset(paddr, data.length);
    if (off < 0) throw new Error(`cannot place ${data.length} bytes at 0x${paddr.toString(16)}: outside RAM 0x${this.ramBase.toString(16)}..0x${(this.ramBase + this.ramSize).toString(16)}`);
    this.u8.set(data, off);
    this.notifyRamWrite(paddr, data.length);
  }

  /**
   * DMA read for device models: a view (no copy) of guest RAM [paddr, paddr+len), or null if
   * any of it is not RAM. Never throws; the caller copies if it keeps the bytes.
   */
  dmaView(paddr: number, len: number): Uint8Array | null {
    if (!Number.isSafeInteger(paddr) || !Number.isSafeInteger(len)) return null;
    const off = this.ramOffset(paddr, len);
    return off < 0 ? null : this.u8.subarray(off, off + len);
  }

  /**
   * DMA write for device models: copy `src` into guest RAM at paddr and notify the code
   * caches (and, later, dirty tracking). Returns false, writing nothing, if the range is
   * not entirely RAM. Never throws.
   */
  dmaWrite(paddr: number, src: Uint8Array): boolean {
    if (!Number.isSafeInteger(paddr)) return false;
    const off = this.ramOffset(paddr, src.length);
    if (off < 0) return false;
    this.u8.set(src, off);
    if (src.length > 0) this.notifyRamWrite(paddr, src.length);
    return true;
  }

  /** Guest RAM as saved state (a copy). MMIO devices save themselves. */
  saveRam(): RamState { return { v: 1, base: this.ramBase, bytes: this.u8.slice(this.ramHostOffset, this.ramHostOffset + this.ramSize) }; }

  /** Throws unless `s` is RAM saved from a bus of this layout. */
  checkRam(s: RamState): void {
    if (s?.v !== 1 || s.base !== this.ramBase || !(s.bytes instanceof Uint8Array) || s.bytes.length !== this.ramSize) {
      throw new Error(`RAM state: expected ${this.ramSize} bytes at 0x${this.ramBase.toString(16)}`);
    }
  }

  /**
   * Guest RAM itself, for a snapshot reader that decodes straight into it (no second copy);
   * loadRam() of this view then copies nothing.
   */
  get ram(): Uint8Array { return this.u8.subarray(this.ramHostOffset, this.ramHostOffset + this.ramSize); }

  /** Restore RAM saved from a bus of the same layout; code caches are told everything changed. */
  loadRam(s: RamState): void {
    this.checkRam(s);
    if (s.bytes.buffer !== this.u8.buffer || s.bytes.byteOffset !== this.ramHostOffset) this.u8.set(s.bytes, this.ramHostOffset);
    this.notifyRamWrite(this.ramBase, this.ramSize);
  }

  /** Read bytes from guest RAM, or undefined if the range is not RAM. Returns a copy. */
  readBytes(paddr: number, len: number): Uint8Array | undefined {
    const off = this.ramOffset(paddr, len);
    if (off < 0) return undefined;
    return this.u8.slice(off, off + len);
  }
}

function isMmio64(d: MmioDevice): d is MmioDevice & Mmio64 {
  const w = d as Partial<Mmio64>;
  return typeof w.read64 === 'function' && typeof w.write64 === 'function';
}
