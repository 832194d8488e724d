/**
 * qcow2 consistency check, as `qemu-img check` does it: count the references to every host
 * cluster (header, L1, refcount table and blocks, L2 tables, data and compressed clusters)
 * and compare them with the stored refcounts. Leaks waste space; errors mean corruption.
 * No Node imports.
 */
import { DiskError, readFull, type HostFile } from './file.js';
import {
  readQcow2Header, entryOffset, compressedExtent, getRefcount, setRefcount, OFLAG_COPIED_HI, OFLAG_COMPRESSED_HI, type Qcow2Header,
} from './qcow2-format.js';

export interface CheckReport {
  header: Qcow2Header;
  errors: number;
  leaks: number;
  /** One line per problem, in qemu-img's words. */
  messages: string[];
  allocatedClusters: number;
  totalClusters: number;
  compressedClusters: number;
  fragmentedClusters: number;
  imageEndOffset: number;
}

/** Clusters checked at most (a 64 TiB image of 64 KiB clusters has 2^30; we stop at 2^26). */
const MAX_CHECK_CLUSTERS = 1 << 26;

/** With `repairLeaks`, the refcounts of leaked clusters are set to 0 (qemu-img check -r leaks). */
export async function checkQcow2(f: HostFile, opts: { repairLeaks?: boolean } = {}): Promise<CheckReport> {
  const h = await readQcow2Header(f);
  const name = f.name;
  if (h.nbSnapshots > 0) throw new DiskError(`'${name}': checking images with internal snapshots is not supported`);
  const cs = 2 ** h.clusterBits;
  const fileSize = await f.size();
  const nClusters = Math.ceil(fileSize / cs);
  if (nClusters > MAX_CHECK_CLUSTERS) throw new DiskError(`'${name}': image too large to check (${nClusters} clusters)`);
  const refs = new Uint32Array(nClusters);
  const messages: string[] = [];
  let errors = 0;
  const ref = (off: number, what: string): void => {
    const c = Math.floor(off / cs);
    if (c >= nClusters) { errors++; messages.push(`ERROR ${what} at 0x${off.toString(16)} lies beyond the end of the image`); return; }
    refs[c]++;
  };
  ref(0, 'header');
  const l1Bytes = h.l1Size * 8;
  for (let o = 0; o < l1Bytes; o += cs) ref(h.l1TableOffset + o, 'L1 table');
  for (let i = 0; i < h.refcountTableClusters; i++) ref(h.refcountTableOffset + i * cs, 'refcount table');

  const rtBuf = new DataView(new ArrayBuffer(h.refcountTableClusters * cs));
  await readFull(f, new Uint8Array(rtBuf.buffer), h.refcountTableOffset);
  const blocks: number[] = [];
  for (let i = 0; i < rtBuf.byteLength / 8; i++) {
    const hi = rtBuf.getUint32(i * 8), off = entryOffset(hi, rtBuf.getUint32(i * 8 + 4));
    if (off % cs !== 0 || hi >= 0x100_0000) { errors++; messages.push(`ERROR refcount block ${i} is not cluster aligned; refcount table entry corrupted`); blocks.push(0); continue; }
    if (off !== 0) ref(off, `refcount block ${i}`);
    blocks.push(off);
  }

  const l1 = new DataView(new ArrayBuffer(l1Bytes));
  await readFull(f, new Uint8Array(l1.buffer), h.l1TableOffset);
  const l2 = new DataView(new ArrayBuffer(cs));
  const copiedChecks: Array<{ c: number; copied: boolean; what: string }> = [];
  let allocated = 0, compressed = 0, fragmented = 0, prevData = -1;
  for (let i = 0; i < h.l1Size; i++) {
    const l1hi = l1.getUint32(i * 8), l1off = entryOffset(l1hi, l1.getUint32(i * 8 + 4));
    if (l1off === 0) continue;
    if (l1off % cs !== 0) { errors++; messages.push(`ERROR l2_offset=${l1off.toString(16)}: Table is not cluster aligned; L1 entry corrupted`); continue; }
    ref(l1off, 'L2 table');
    if (l1off >= fileSize) continue;
    copiedChecks.push({ c: l1off / cs, copied: (l1hi & OFLAG_COPIED_HI) !== 0, what: `L2 cluster: l1_index=${i} l1_entry=${l1off.toString(16)}` });
    await readFull(f, new Uint8Array(l2.buffer), l1off);
    for (let j = 0; j < cs / 8; j++) {
      const hi = l2.getUint32(j * 8), lo = l2.getUint32(j * 8 + 4);
      if (hi === 0 && lo === 0) continue;
      if (hi & OFLAG_COMPRESSED_HI) {
        const { off, start, end } = compressedExtent(hi, lo, h.clusterBits);
        for (let c = Math.floor(start / cs); c * cs < end; c++) ref(c * cs, 'compressed cluster');
        if (hi & OFLAG_COPIED_HI) { errors++; messages.push(`ERROR: coffset=0x${off.toString(16)}: copied flag must never be set for compressed clusters`); }
        allocated++; compressed++;
        continue;
      }
      const off = entryOffset(hi, lo);
      if (off === 0) continue; // unallocated or a plain zero cluster
      if (off % cs !== 0) { errors++; messages.push(`ERROR offset=${off.toString(16)}: Cluster is not properly aligned; L2 entry corrupted.`); continue; }
      ref(off, 'data cluster');
      allocated++;
      if (prevData >= 0 && off !== prevData + cs) fragmented++;
      prevData = off;
      copiedChecks.push({ c: off / cs, copied: (hi & OFLAG_COPIED_HI) !== 0, what: `data cluster: l2_entry=${(hi >>> 0).toString(16)}${(lo >>> 0).toString(16).padStart(8, '0')}` });
    }
  }

  // Stored refcounts, block by block.
  const rbEntries = (cs * 8) / (1 << h.refcountOrder);
  const blk = new DataView(new ArrayBuffer(cs));
  const stored = new Uint32Array(nClusters);
  let leaks = 0;
  for (let b = 0; b < blocks.length; b++) {
    if (blocks[b] === 0 || blocks[b] + cs > fileSize) continue;
    await readFull(f, new Uint8Array(blk.buffer), blocks[b]);
    for (let k = 0; k < rbEntries; k++) {
      const c = b * rbEntries + k;
      const r = getRefcount(blk, k, h.refcountOrder);
      if (c < nClusters) stored[c] = r; // past the end of the file: ignored, as qemu-img does
    }
  }
  const zeroRefcount = async (c: number): Promise<void> => {
    const b = Math.floor(c / rbEntries), off = blocks[b];
    if (off === 0 || off + cs > fileSize || refs[off / cs] === 0) return;
    await readFull(f, new Uint8Array(blk.buffer), off);
    const [s, e] = setRefcount(blk, c % rbEntries, h.refcountOrder, 0);
    await f.pwrite(new Uint8Array(blk.buffer, s, e - s), off + s);
  };
  for (let c = 0; c < nClusters; c++) {
    if (stored[c] === refs[c]) continue;
    if (refs[c] === 0) {
      leaks++;
      messages.push(`${opts.repairLeaks ? 'Repairing cluster' : 'Leaked cluster'} ${c} refcount=${stored[c]} reference=0`);
      if (opts.repairLeaks) await zeroRefcount(c);
    }
    else { errors++; messages.push(`ERROR cluster ${c} refcount=${stored[c]} reference=${refs[c]}`); }
  }
  for (const k of copiedChecks) {
    if (k.c >= nClusters) continue;
    if ((stored[k.c] === 1) !== k.copied) { errors++; messages.push(`ERROR OFLAG_COPIED ${k.what} refcount=${stored[k.c]}`); }
  }
  let end = 0;
  for (let c = nClusters - 1; c >= 0; c--) if (refs[c] || stored[c]) { end = (c + 1) * cs; break; }
  return {
    header: h, errors, leaks, messages,
    allocatedClusters: allocated, totalClusters: Math.ceil(h.size / cs),
    compressedClusters: compressed, fragmentedClusters: fragmented, imageEndOffset: end,
  };
}
