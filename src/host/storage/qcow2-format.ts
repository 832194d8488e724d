/**
 * The qcow2 on-disk format (QEMU docs/interop/qcow2.txt): header parsing and validation,
 * entry bit layouts, and building fresh images. Every number read from the file is checked
 * before use; problems are DiskErrors naming the file. No Node imports.
 */
import { DiskError, readFull, type HostFile } from './file.js';

export const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"
export const MIN_CLUSTER_BITS = 9;
export const MAX_CLUSTER_BITS = 21;
/** QEMU's limits (QCOW_MAX_L1_SIZE, QCOW_MAX_REFTABLE_SIZE). */
export const MAX_L1_BYTES = 32 << 20;
export const MAX_REFTABLE_BYTES = 8 << 20;
/** Largest virtual disk accepted: 64 TiB (QEMU's default limit for 64 KiB clusters is 256 TiB). */
export const MAX_VIRTUAL_SIZE = 2 ** 46;
const MAX_BACKING_NAME = 1023;

// Incompatible feature bits.
export const INCOMPAT_DIRTY = 1;
export const INCOMPAT_CORRUPT = 2;
export const INCOMPAT_DATA_FILE = 4;
export const INCOMPAT_COMPRESSION = 8;
export const INCOMPAT_EXTL2 = 16;
const KNOWN_INCOMPAT_NAMES = ['dirty bit', 'corrupt bit', 'external data file', 'compression type', 'extended L2 entries'];

// Header extension types.
export const EXT_END = 0;
export const EXT_BACKING_FORMAT = 0xe2792aca;
export const EXT_FEATURE_TABLE = 0x6803f857;
export const EXT_BITMAPS = 0x23852875;
export const EXT_CRYPTO = 0x0537be77;
export const EXT_DATA_FILE = 0x44415441;

// Entry flags, in the high word of a big-endian 64-bit entry.
export const OFLAG_COPIED_HI = 0x8000_0000;
export const OFLAG_COMPRESSED_HI = 0x4000_0000;
/** In the low word: bit 0 of a standard L2 entry = all zeros (v3). */
export const OFLAG_ZERO_LO = 1;

export interface Qcow2Header {
  version: 2 | 3;
  backingFileOffset: number;
  backingFileSize: number;
  clusterBits: number;
  size: number;
  cryptMethod: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  nbSnapshots: number;
  snapshotsOffset: number;
  incompatible: number;
  compatible: number;
  autoclear: number;
  refcountOrder: number;
  headerLength: number;
  compressionType: number;
  backingFile: string | null;
  backingFormat: string | null;
  /** Names from the feature name table, keyed "type:bit" (type 0 incompatible, 1 compatible, 2 autoclear). */
  featureNames: Map<string, string>;
  dataFile: string | null;
  hasBitmaps: boolean;
}

/** The offset field (bits 9..55) of a table entry given as two 32-bit words. */
export function entryOffset(hi: number, lo: number): number {
  return (hi & 0x00ff_ffff) * 0x1_0000_0000 + ((lo & 0xffff_fe00) >>> 0);
}

function u64(dv: DataView, at: number, what: string, name: string): number {
  const hi = dv.getUint32(at), lo = dv.getUint32(at + 4);
  if (hi >= 0x20_0000) throw new DiskError(`'${name}': qcow2 header field ${what} is too large (0x${hi.toString(16)}${lo.toString(16).padStart(8, '0')})`);
  return hi * 0x1_0000_0000 + lo;
}

/** Feature bits as a number: only bits 0..31 are meaningful to us; higher bits are folded into bit 31. */
function bits64(dv: DataView, at: number): number {
  const hi = dv.getUint32(at), lo = dv.getUint32(at + 4);
  return hi !== 0 ? (lo | 0x8000_0000) >>> 0 : lo;
}

/** A compressed L2 entry's host offset and the byte range [start, end) of the sectors it uses. */
export function compressedExtent(hi: number, lo: number, clusterBits: number): { off: number; start: number; end: number } {
  const x = 62 - (clusterBits - 8) - 32; // offset bits in the high word
  const off = (hi & ((1 << x) - 1)) * 0x1_0000_0000 + (lo >>> 0);
  const sectors = ((hi >>> x) & ((1 << (clusterBits - 8)) - 1)) + 1;
  const start = off - (off % 512);
  return { off, start, end: start + sectors * 512 };
}

export async function isQcow2(f: HostFile): Promise<boolean> {
  const b = new Uint8Array(4);
  const n = await f.pread(b, 0);
  return n === 4 && new DataView(b.buffer).getUint32(0) === QCOW2_MAGIC;
}

export async function readQcow2Header(f: HostFile): Promise<Qcow2Header> {
  const name = f.name;
  const bad = (why: string): DiskError => new DiskError(`'${name}': invalid qcow2 image: ${why}`);
  const fileSize = await f.size();
  if (fileSize < 72) throw bad(`file too short for a header (${fileSize} bytes)`);
  const first = new Uint8Array(Math.min(fileSize, 4096));
  await readFull(f, first, 0);
  let dv = new DataView(first.buffer);
  if (dv.getUint32(0) !== QCOW2_MAGIC) throw bad('no QFI\\xfb magic');
  const version = dv.getUint32(4);
  if (version !== 2 && version !== 3) throw new DiskError(`'${name}': unsupported qcow2 version ${version} (2 and 3 are supported)`);
  const clusterBits = dv.getUint32(20);
  if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) throw bad(`cluster_bits ${clusterBits} outside ${MIN_CLUSTER_BITS}..${MAX_CLUSTER_BITS}`);
  const cs = 2 ** clusterBits;
  // The header and its extensions live in cluster 0.
  if (cs > first.length && fileSize > first.length) {
    const whole = new Uint8Array(Math.min(cs, fileSize));
    await readFull(f, whole, 0);
    dv = new DataView(whole.buffer);
  }
  const hdrBytes = dv.byteLength;
  const h: Qcow2Header = {
    version,
    backingFileOffset: u64(dv, 8, 'backing_file_offset', name),
    backingFileSize: dv.getUint32(16),
    clusterBits,
    size: u64(dv, 24, 'size', name),
    cryptMethod: dv.getUint32(32),
    l1Size: dv.getUint32(36),
    l1TableOffset: u64(dv, 40, 'l1_table_offset', name),
    refcountTableOffset: u64(dv, 48, 'refcount_table_offset', name),
    refcountTableClusters: dv.getUint32(56),
    nbSnapshots: dv.getUint32(60),
    snapshotsOffset: u64(dv, 64, 'snapshots_offset', name),
    incompatible: 0, compatible: 0, autoclear: 0,
    refcountOrder: 4, headerLength: 72, compressionType: 0,
    backingFile: null, backingFormat: null, featureNames: new Map(), dataFile: null, hasBitmaps: false,
  };
  if (version === 3) {
    if (hdrBytes < 104) throw bad('file too short for a version 3 header');
    h.incompatible = bits64(dv, 72);
    h.compatible = bits64(dv, 80);
    h.autoclear = bits64(dv, 88);
    h.refcountOrder = dv.getUint32(96);
    h.headerLength = dv.getUint32(100);
    if (h.headerLength < 104 || h.headerLength > hdrBytes || h.headerLength > cs) throw bad(`header_length ${h.headerLength} out of range`);
    if (h.headerLength > 104) h.compressionType = dv.getUint8(104);
  }
  if (h.refcountOrder > 6) throw bad(`refcount_order ${h.refcountOrder} (at most 6)`);
  if (h.cryptMethod !== 0) throw new DiskError(`'${name}': encrypted qcow2 images are not supported (crypt_method ${h.cryptMethod})`);
  if (h.size > MAX_VIRTUAL_SIZE) throw bad(`virtual size ${h.size} exceeds the ${MAX_VIRTUAL_SIZE}-byte limit`);
  const l2Entries = cs / 8;
  const needL1 = Math.ceil(h.size / (cs * l2Entries));
  if (h.l1Size < needL1) throw bad(`L1 table has ${h.l1Size} entries, the virtual size needs ${needL1}`);
  if (h.l1Size * 8 > MAX_L1_BYTES) throw bad(`L1 table too large (${h.l1Size} entries)`);
  const table = (off: number, bytes: number, what: string): void => {
    if (off % cs !== 0) throw bad(`${what} offset 0x${off.toString(16)} is not cluster aligned`);
    if (off === 0 && bytes > 0) throw bad(`${what} overlaps the header`);
    if (off + bytes > fileSize) throw bad(`${what} [0x${off.toString(16)}, +${bytes}) lies beyond the end of the file (${fileSize} bytes)`);
  };
  if (h.l1Size > 0) table(h.l1TableOffset, h.l1Size * 8, 'L1 table');
  if (h.refcountTableClusters === 0) throw bad('refcount table is empty');
  if (h.refcountTableClusters * cs > MAX_REFTABLE_BYTES) throw bad(`refcount table too large (${h.refcountTableClusters} clusters)`);
  table(h.refcountTableOffset, h.refcountTableClusters * cs, 'refcount table');
  if (h.nbSnapshots > 65536) throw bad(`${h.nbSnapshots} snapshots (at most 65536)`);
  if (h.nbSnapshots > 0 && (h.snapshotsOffset % cs !== 0 || h.snapshotsOffset === 0 || h.snapshotsOffset >= fileSize)) throw bad('snapshot table offset invalid');

  // Header extensions (both versions): from header_length up to the backing file name, or the end of cluster 0.
  {
    const end = Math.min(h.backingFileOffset > h.headerLength ? h.backingFileOffset : cs, cs, hdrBytes);
    let at = h.headerLength;
    for (let count = 0; at + 8 <= end; count++) {
      if (count > 1024) throw bad('too many header extensions');
      const type = dv.getUint32(at), len = dv.getUint32(at + 4);
      at += 8;
      if (type === EXT_END) break;
      if (len > end - at) throw bad(`header extension 0x${type.toString(16)} is too large`);
      const data = new Uint8Array(dv.buffer, at, len);
      switch (type) {
        case EXT_BACKING_FORMAT: h.backingFormat = ascii(data); break;
        case EXT_DATA_FILE: h.dataFile = ascii(data); break;
        case EXT_BITMAPS: h.hasBitmaps = true; break;
        case EXT_CRYPTO: throw new DiskError(`'${name}': encrypted qcow2 images are not supported`);
        case EXT_FEATURE_TABLE:
          for (let e = 0; e + 48 <= len; e += 48) {
            h.featureNames.set(`${data[e]}:${data[e + 1]}`, ascii(data.subarray(e + 2, e + 48)));
          }
          break;
        default: break; // unknown extensions are ignored (the spec allows it)
      }
      at += (len + 7) & ~7;
    }
  }
  if (h.backingFileOffset !== 0) {
    if (h.backingFileSize === 0 || h.backingFileSize > MAX_BACKING_NAME) throw bad(`backing file name length ${h.backingFileSize} (1..${MAX_BACKING_NAME})`);
    if (h.backingFileOffset + h.backingFileSize > fileSize) throw bad('backing file name lies beyond the end of the file');
    const nameBytes = new Uint8Array(h.backingFileSize);
    await readFull(f, nameBytes, h.backingFileOffset);
    h.backingFile = new TextDecoder().decode(nameBytes);
    if (h.backingFile.includes('\0')) throw bad('backing file name contains a NUL byte');
  }

  // Incompatible features: refuse what we do not implement.
  const unknown = h.incompatible & ~(INCOMPAT_DIRTY | INCOMPAT_CORRUPT);
  if (unknown !== 0) {
    const names: string[] = [];
    for (let b = 0; b < 32; b++) {
      if (!(unknown & (1 << b))) continue;
      names.push(h.featureNames.get(`0:${b}`) ?? KNOWN_INCOMPAT_NAMES[b] ?? `bit ${b}`);
    }
    throw new DiskError(`'${name}': unsupported qcow2 feature(s): ${names.join(', ')}`);
  }
  if (h.compressionType !== 0) throw new DiskError(`'${name}': unsupported qcow2 compression type ${h.compressionType} (only zlib)`);
  return h;
}

function ascii(b: Uint8Array): string {
  let end = b.indexOf(0);
  if (end < 0) end = b.length;
  return new TextDecoder().decode(b.subarray(0, end));
}

// --- refcount entries of 2^order bits -------------------------------------------------

export function getRefcount(blk: DataView, i: number, order: number): number {
  switch (order) {
    case 4: return blk.getUint16(i * 2);
    case 5: return blk.getUint32(i * 4);
    case 6: { const hi = blk.getUint32(i * 8); return hi ? 0xffff_ffff : blk.getUint32(i * 8 + 4); }
    case 3: return blk.getUint8(i);
    default: {
      const w = 1 << order, perByte = 8 / w;
      const byte = blk.getUint8(Math.floor(i / perByte));
      const shift = (i % perByte) * w; // little-endian bit order within a byte (as QEMU)
      return (byte >> shift) & ((1 << w) - 1);
    }
  }
}

/** Sets entry i; returns the byte range [start, end) of the block that changed. */
export function setRefcount(blk: DataView, i: number, order: number, v: number): [number, number] {
  switch (order) {
    case 4: blk.setUint16(i * 2, v); return [i * 2, i * 2 + 2];
    case 5: blk.setUint32(i * 4, v); return [i * 4, i * 4 + 4];
    case 6: blk.setUint32(i * 8, 0); blk.setUint32(i * 8 + 4, v); return [i * 8, i * 8 + 8];
    case 3: blk.setUint8(i, v); return [i, i + 1];
    default: {
      const w = 1 << order, perByte = 8 / w;
      const at = Math.floor(i / perByte), shift = (i % perByte) * w, mask = ((1 << w) - 1) << shift;
      blk.setUint8(at, (blk.getUint8(at) & ~mask) | ((v << shift) & mask));
      return [at, at + 1];
    }
  }
}

export function maxRefcount(order: number): number { return order >= 5 ? 0xffff_ffff : 2 ** (1 << order) - 1; }

// --- creating images ---------------------------------------------------------------------

export interface CreateOptions {
  size: number;
  clusterBits?: number;
  /** Backing file name as stored in the header (relative names are relative to the image). */
  backingFile?: string;
  backingFormat?: string;
}

/** Writes a fresh, empty version 3 qcow2 image (16-bit refcounts, zlib) to an empty file. */
export async function createQcow2(f: HostFile, o: CreateOptions): Promise<void> {
  const cb = o.clusterBits ?? 16;
  if (!Number.isInteger(cb) || cb < MIN_CLUSTER_BITS || cb > MAX_CLUSTER_BITS) throw new DiskError(`'${f.name}': cluster size must be a power of two between 512 and 2M`);
  if (!Number.isSafeInteger(o.size) || o.size < 0 || o.size > MAX_VIRTUAL_SIZE) throw new DiskError(`'${f.name}': invalid virtual size ${o.size}`);
  const cs = 2 ** cb;
  const l1Size = Math.ceil(o.size / (cs * (cs / 8)));
  if (l1Size * 8 > MAX_L1_BYTES) throw new DiskError(`'${f.name}': virtual size too large for cluster size ${cs}`);
  const l1Clusters = Math.max(1, Math.ceil((l1Size * 8) / cs));
  const rbEntries = (cs * 8) / 16;
  // Layout: header, refcount table, refcount blocks, L1 table. Find a fixed point for the counts.
  let rtClusters = 1, rbCount = 1;
  for (;;) {
    const total = 1 + rtClusters + rbCount + l1Clusters;
    const rb = Math.ceil(total / rbEntries), rt = Math.ceil((rb * 8) / cs);
    if (rb === rbCount && rt === rtClusters) break;
    rbCount = rb; rtClusters = rt;
  }
  const rtOff = cs, rbOff = rtOff + rtClusters * cs, l1Off = rbOff + rbCount * cs;
  const total = 1 + rtClusters + rbCount + l1Clusters;

  const hdr = new Uint8Array(cs);
  const dv = new DataView(hdr.buffer);
  dv.setUint32(0, QCOW2_MAGIC);
  dv.setUint32(4, 3);
  dv.setUint32(20, cb);
  setU64(dv, 24, o.size);
  dv.setUint32(36, l1Size);
  setU64(dv, 40, l1Off);
  setU64(dv, 48, rtOff);
  dv.setUint32(56, rtClusters);
  dv.setUint32(96, 4);
  dv.setUint32(100, 112);
  let at = 112;
  const enc = new TextEncoder();
  if (o.backingFile !== undefined) {
    const fmt = enc.encode(o.backingFormat ?? 'raw');
    dv.setUint32(at, EXT_BACKING_FORMAT); dv.setUint32(at + 4, fmt.length);
    hdr.set(fmt, at + 8);
    at += 8 + ((fmt.length + 7) & ~7);
  }
  at += 8; // end-of-extensions marker (type 0, length 0)
  if (o.backingFile !== undefined) {
    const bn = enc.encode(o.backingFile);
    if (bn.length === 0 || bn.length > MAX_BACKING_NAME || at + bn.length > cs) throw new DiskError(`'${f.name}': backing file name too long`);
    hdr.set(bn, at);
    setU64(dv, 8, at);
    dv.setUint32(16, bn.length);
  }
  await f.truncate(0);
  await f.pwrite(hdr, 0);
  const rt = new DataView(new ArrayBuffer(rtClusters * cs));
  for (let i = 0; i < rbCount; i++) setU64(rt, i * 8, rbOff + i * cs);
  await f.pwrite(new Uint8Array(rt.buffer), rtOff);
  const rb = new DataView(new ArrayBuffer(rbCount * cs));
  for (let i = 0; i < total; i++) rb.setUint16(i * 2, 1);
  await f.pwrite(new Uint8Array(rb.buffer), rbOff);
  await f.pwrite(new Uint8Array(l1Clusters * cs), l1Off);
}

export function setU64(dv: DataView, at: number, v: number): void {
  dv.setUint32(at, Math.floor(v / 0x1_0000_0000));
  dv.setUint32(at + 4, v >>> 0);
}
