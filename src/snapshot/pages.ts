/**
 * A set of guest RAM pages on the wire (live migration rounds):
 *   count u32 | page index u32 × count | 4096 bytes × count | CRC-32C u32 of everything before
 * Indices are pages from the start of RAM. Browser-safe.
 */
import { crc32c } from './crc32c.js';

const PAGE = 4096;

export function encodePages(ram: Uint8Array, pages: readonly number[]): Uint8Array {
  const n = pages.length;
  const out = new Uint8Array(4 + 4 * n + PAGE * n + 4);
  const v = new DataView(out.buffer);
  v.setUint32(0, n, true);
  let o = 4 + 4 * n;
  for (let i = 0; i < n; i++) {
    const p = pages[i];
    v.setUint32(4 + 4 * i, p, true);
    out.set(ram.subarray(p * PAGE, (p + 1) * PAGE), o);
    o += PAGE;
  }
  v.setUint32(o, crc32c(out.subarray(0, o)), true);
  return out;
}

/** Check a page set against RAM of `ramBytes` (throws a clear Error) and return its page count. */
export function checkPages(data: Uint8Array, ramBytes: number): number {
  if (data.length < 8) throw new Error('page set: too short');
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const n = v.getUint32(0, true);
  if (data.length !== 4 + 4 * n + PAGE * n + 4) throw new Error(`page set: ${data.length} bytes for ${n} pages`);
  if (crc32c(data.subarray(0, data.length - 4)) !== v.getUint32(data.length - 4, true)) throw new Error('page set: checksum mismatch');
  for (let i = 0; i < n; i++) if (v.getUint32(4 + 4 * i, true) >= ramBytes / PAGE) throw new Error('page set: page outside RAM');
  return n;
}

/** Copy a checked page set into RAM. */
export function applyPages(data: Uint8Array, ram: Uint8Array): number {
  const n = checkPages(data, ram.length);
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let o = 4 + 4 * n;
  for (let i = 0; i < n; i++) {
    const p = v.getUint32(4 + 4 * i, true);
    ram.set(data.subarray(o, o + PAGE), p * PAGE);
    o += PAGE;
  }
  return n;
}
