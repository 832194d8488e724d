/**
 * A set of guest RAM pages on the wire (live migration rounds):
 *   count u32 | entry u32 × count | 4096 bytes per non-zero page | CRC-32C u32 of everything before
 * An entry is a page index from the start of RAM; bit 31 set means the page is all zero
 * and no bytes follow for it (round 0 of an idle guest is mostly such pages). Browser-safe.
 */
import { crc32c } from './crc32c.js';

const PAGE = 4096;
const ZERO = 0x8000_0000;

function isZero(ram: Uint8Array, p: number): boolean {
  const w = new Int32Array(ram.buffer, ram.byteOffset + p * PAGE, PAGE / 4);
  for (let i = 0; i < w.length; i++) if (w[i] !== 0) return false;
  return true;
}

export function encodePages(ram: Uint8Array, pages: readonly number[]): Uint8Array {
  const n = pages.length;
  const zero = new Uint8Array(n);
  let data = 0;
  for (let i = 0; i < n; i++) { if (isZero(ram, pages[i])) zero[i] = 1; else data++; }
  const out = new Uint8Array(4 + 4 * n + PAGE * data + 4);
  const v = new DataView(out.buffer);
  v.setUint32(0, n, true);
  let o = 4 + 4 * n;
  for (let i = 0; i < n; i++) {
    const p = pages[i];
    v.setUint32(4 + 4 * i, zero[i] ? (p | ZERO) >>> 0 : p, true);
    if (!zero[i]) { out.set(ram.subarray(p * PAGE, (p + 1) * PAGE), o); o += PAGE; }
  }
  v.setUint32(o, crc32c(out.subarray(0, o)), true);
  return out;
}

/** Check a page set against RAM of `ramBytes` (throws a clear Error) and return its page count. */
export function checkPages(data: Uint8Array, ramBytes: number): number {
  if (data.length < 8) throw new Error('page set: too short');
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const n = v.getUint32(0, true);
  if (4 + 4 * n + 4 > data.length) throw new Error(`page set: ${data.length} bytes for ${n} entries`);
  let withData = 0;
  for (let i = 0; i < n; i++) {
    const e = v.getUint32(4 + 4 * i, true);
    if ((e & ~ZERO) >= ramBytes / PAGE) throw new Error('page set: page outside RAM');
    if (!(e & ZERO)) withData++;
  }
  if (data.length !== 4 + 4 * n + PAGE * withData + 4) throw new Error(`page set: ${data.length} bytes for ${withData} pages of data`);
  if (crc32c(data.subarray(0, data.length - 4)) !== v.getUint32(data.length - 4, true)) throw new Error('page set: checksum mismatch');
  return n;
}

/** Copy a checked page set into RAM (zero pages cleared). */
export function applyPages(data: Uint8Array, ram: Uint8Array): number {
  const n = checkPages(data, ram.length);
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let o = 4 + 4 * n;
  for (let i = 0; i < n; i++) {
    const e = v.getUint32(4 + 4 * i, true);
    const p = e & ~ZERO;
    if (e & ZERO) { if (!isZero(ram, p)) ram.fill(0, p * PAGE, (p + 1) * PAGE); continue; }
    ram.set(data.subarray(o, o + PAGE), p * PAGE);
    o += PAGE;
  }
  return n;
}
