/**
 * Memory access of one hart beyond the TLB fast paths (which stay in hart.ts): slow loads
 * and stores (TLB miss, misaligned, page-crossing, MMIO), AMO/LR/SC addressing and
 * reservations, instruction fetch, and the decoded-code cache with dirty-page tracking.
 * Unprivileged spec 20191213: 2.6 (loads and stores, misaligned access), 8.2-8.4 (LR/SC,
 * AMOs); privileged spec 1.12: 3.6 (physical memory attributes: only RAM and ROM are
 * executable, AMOs only on RAM), 3.7 (PMP on every access).
 */
import type { Hart } from './hart.js';
import type { Decoded } from './isa/types.js';
import { decode } from './isa/table.js';
import { CAUSE, PRIV_M, PRIV_S } from './csr.js';
import { PC, SCRATCH } from './state.js';
import { raise } from './trap.js';
import { ACC_R, ACC_W, ACC_X, TLB_INVALID, TLB_MASK, dropWriteTlbFor, ibcForget, ibcInvalidate, pmpCheck, tlbFill, translate } from './mmu.js';

/** Decoded-page sentinel for code fetched from MMIO (boot ROM): never cached. */
export const UNCACHED_PAGE: (Decoded | undefined)[] = [];

// ---------------------------------------------------------------------
// Loads and stores
// ---------------------------------------------------------------------

/** Slow load: TLB miss, misaligned, page-crossing or MMIO. size 8 writes SCRATCH. */
export function loadSlow(h: Hart, lo: number, hi: number, size: number): number {
  const off = lo & 0xfff;
  if ((lo & (size - 1)) === 0 || off + size <= 4096) {
    // Within one page.
    const pa = tlbFill(h, h.tlbR, lo, hi, ACC_R);
    if (size > 1 && !pmpCheck(h, pa, size, ACC_R, h.dpriv) && (h.pmpActive || h.dpriv !== PRIV_M)) {
      raise(h, CAUSE.LOAD_ACCESS, lo, hi);
    }
    return physRead(h, pa, size, lo, hi);
  }
  // Misaligned across a page boundary: translate both pages before reading.
  const n1 = 4096 - off;
  const pa1 = translate(h, lo, hi, ACC_R, h.dpriv);
  const lo2 = (lo + n1) | 0;
  const hi2 = lo2 === 0 ? (hi + 1) | 0 : hi;
  const pa2 = translate(h, lo2, hi2, ACC_R, h.dpriv);
  let vlo = 0, vhi = 0;
  for (let k = 0; k < size; k++) {
    const b = k < n1 ? physRead(h, pa1 + k, 1, lo, hi) : physRead(h, pa2 + k - n1, 1, lo2, hi2);
    if (k < 4) vlo |= b << (8 * k); else vhi |= b << (8 * (k - 4));
  }
  if (size === 8) { h.x32[SCRATCH * 2] = vlo; h.x32[SCRATCH * 2 + 1] = vhi; }
  return vlo;
}

/** Read physical memory (RAM or MMIO) of one page-contained access. */
function physRead(h: Hart, pa: number, size: number, lo: number, hi: number): number {
  if (pa >= h.ramBase && pa + size <= h.ramEnd) {
    const mu8 = h.mu8;
    const p = h.ramHost + (pa - h.ramBase);
    let vlo = 0, vhi = 0;
    if (size === 8) {
      for (let k = 0; k < 4; k++) vlo |= mu8[p + k] << (8 * k);
      for (let k = 0; k < 4; k++) vhi |= mu8[p + 4 + k] << (8 * k);
      h.x32[SCRATCH * 2] = vlo; h.x32[SCRATCH * 2 + 1] = vhi;
      return vlo;
    }
    for (let k = 0; k < size; k++) vlo |= mu8[p + k] << (8 * k);
    return vlo;
  }
  const r = h.bus.findRegion(pa);
  if (!r || (pa & (size - 1)) !== 0 || pa + size > r.base + r.size) return raise(h, CAUSE.LOAD_ACCESS, lo, hi);
  const o = pa - r.base;
  if (size === 8) {
    let vlo: number, vhi: number;
    if (r.wide) {
      const v = r.wide.read64(o);
      vlo = Number(BigInt.asIntN(32, v)); vhi = Number(BigInt.asIntN(32, v >> 32n));
    } else {
      vlo = r.device.read(o, 4) | 0;
      vhi = r.device.read(o + 4, 4) | 0;
    }
    h.x32[SCRATCH * 2] = vlo; h.x32[SCRATCH * 2 + 1] = vhi;
    return vlo;
  }
  const v = r.device.read(o, size as 1 | 2 | 4);
  return size === 1 ? v & 0xff : size === 2 ? v & 0xffff : v | 0;
}

/** Slow store: TLB miss, misaligned, page-crossing or MMIO. */
export function storeSlow(h: Hart, lo: number, hi: number, size: number, vlo: number, vhi: number): void {
  const off = lo & 0xfff;
  if ((lo & (size - 1)) === 0 || off + size <= 4096) {
    const pa = tlbFill(h, h.tlbW, lo, hi, ACC_W);
    if (size > 1 && !pmpCheck(h, pa, size, ACC_W, h.dpriv) && (h.pmpActive || h.dpriv !== PRIV_M)) {
      raise(h, CAUSE.STORE_ACCESS, lo, hi);
    }
    physWrite(h, pa, size, vlo, vhi, lo, hi);
    return;
  }
  const n1 = 4096 - off;
  const pa1 = translate(h, lo, hi, ACC_W, h.dpriv);
  const lo2 = (lo + n1) | 0;
  const hi2 = lo2 === 0 ? (hi + 1) | 0 : hi;
  const pa2 = translate(h, lo2, hi2, ACC_W, h.dpriv);
  const r1 = isRam(h, pa1, n1), r2 = isRam(h, pa2, size - n1);
  if (!r1) raise(h, CAUSE.STORE_ACCESS, lo, hi);
  if (!r2) raise(h, CAUSE.STORE_ACCESS, lo2, hi2);
  for (let k = 0; k < size; k++) {
    const b = (k < 4 ? vlo >>> (8 * k) : vhi >>> (8 * (k - 4))) & 0xff;
    if (k < n1) physWrite(h, pa1 + k, 1, b, 0, lo, hi); else physWrite(h, pa2 + k - n1, 1, b, 0, lo2, hi2);
  }
}

function isRam(h: Hart, pa: number, len: number): boolean {
  return pa >= h.ramBase && pa + len <= h.ramEnd;
}

function physWrite(h: Hart, pa: number, size: number, vlo: number, vhi: number, lo: number, hi: number): void {
  if (pa >= h.ramBase && pa + size <= h.ramEnd) {
    const p = h.ramHost + (pa - h.ramBase);
    const ppn = (pa - h.ramBase) >>> 12;
    if (h.codeMark[ppn]) invalidateCodePage(h, ppn);
    h.dirty[ppn] = 1;
    for (let k = 0; k < size; k++) h.mu8[p + k] = k < 4 ? vlo >>> (8 * k) : vhi >>> (8 * (k - 4));
    return;
  }
  const r = h.bus.findRegion(pa);
  if (!r || (pa & (size - 1)) !== 0 || pa + size > r.base + r.size) { raise(h, CAUSE.STORE_ACCESS, lo, hi); }
  const o = pa - r.base;
  if (size === 8) {
    if (r.wide) r.wide.write64(o, (BigInt(vhi >>> 0) << 32n) | BigInt(vlo >>> 0));
    else { r.device.write(o, 4, vlo); r.device.write(o + 4, 4, vhi); }
  } else {
    r.device.write(o, size as 1 | 2 | 4, size === 1 ? vlo & 0xff : size === 2 ? vlo & 0xffff : vlo);
  }
}

// ---------------------------------------------------------------------
// Atomics (A extension)
// ---------------------------------------------------------------------

/**
 * Translate an AMO/LR/SC address: must be naturally aligned (else misaligned exception) and in
 * RAM (else access fault). Checks write permission for AMO/SC (store/AMO causes), read for LR.
 * Returns the host byte offset; h.amoPa gets the physical address.
 */
export function amoHost(h: Hart, lo: number, hi: number, size: number, forWrite: boolean): number {
  if ((lo & (size - 1)) !== 0) raise(h, forWrite ? CAUSE.MISALIGNED_STORE : CAUSE.MISALIGNED_LOAD, lo, hi);
  const pa = forWrite ? tlbFill(h, h.tlbW, lo, hi, ACC_W) : tlbFill(h, h.tlbR, lo, hi, ACC_R);
  if (forWrite && (h.pmpActive || h.dpriv !== PRIV_M) && !pmpCheck(h, pa, size, ACC_R, h.dpriv)) {
    raise(h, CAUSE.STORE_ACCESS, lo, hi);
  }
  if (!isRam(h, pa, size)) raise(h, forWrite ? CAUSE.STORE_ACCESS : CAUSE.LOAD_ACCESS, lo, hi);
  if (forWrite) {
    const ppn = (pa - h.ramBase) >>> 12;
    if (h.codeMark[ppn]) invalidateCodePage(h, ppn);
    h.dirty[ppn] = 1;
  }
  h.amoPa = pa;
  return h.ramHost + (pa - h.ramBase);
}

/** SC: succeeds only with a valid reservation on the same address; always clears it. */
export function checkReservation(h: Hart, pa: number): boolean {
  const ok = h.resvValid && h.resvAddr === pa;
  h.clearReservation();
  return ok;
}

// ---------------------------------------------------------------------
// Instruction fetch and the decoded-code cache
// ---------------------------------------------------------------------

/** Fetch-TLB miss: translate pc's page and find (or create) its decoded page. */
export function fetchSlow(h: Hart, lo: number, hi: number): (Decoded | undefined)[] {
  // The instruction TLB holds RAM pages PMP treats alike (a page walk per change of code
  // page cost millions of walks in a Linux boot).
  const t = h.tlbX, i = (lo >>> 12) & TLB_MASK;
  const cached = t.lookup(i, lo & ~0xfff, hi);
  if (cached >= 0) return fetchRam(h, lo, hi, (cached - h.ramHost) / 4096);
  // Translate the exact pc so a fault's tval is the faulting address, then work per page.
  const priv = h.privLevel;
  const pa = translate(h, lo, hi, ACC_X, priv) - (lo & 0xfff);
  if (pa >= h.ramBase && pa < h.ramEnd) {
    // Cache the page only if PMP treats all of it alike (as tlbFill does for data);
    // otherwise every parcel goes through translate() and its PMP check (fetchParcel).
    const uniform = (!h.pmpActive && priv === PRIV_M) || pmpCheck(h, pa, 4096, ACC_X, priv);
    if (!uniform) {
      h.fetchLo = lo & ~0xfff;
      h.fetchHi = hi;
      h.fetchPage = UNCACHED_PAGE;
      h.fetchPpn = -1;
      return UNCACHED_PAGE;
    }
    const ppn = (pa - h.ramBase) / 4096;
    t.fill(i, lo & ~0xfff, hi, h.ramHost + ppn * 4096, h.walkGlobal);
    // (The privilege first: it is tested at every fill, so V8 has seen the compare run.)
    if (priv === PRIV_S && !h.walkGlobal) h.sCodeNonGlobal = true; // (mmu.ts updateTranslation)
    return fetchRam(h, lo, hi, ppn);
  }
  const r = h.bus.findRegion(pa);
  if (!r || !r.executable) raise(h, CAUSE.FETCH_ACCESS, lo, hi);
  // ROM: never cached; each parcel is read through fetchParcel.
  h.fetchLo = lo & ~0xfff;
  h.fetchHi = hi;
  h.fetchPage = UNCACHED_PAGE;
  h.fetchPpn = -1;
  return UNCACHED_PAGE;
}

/** The fetch page is RAM page `ppn`: its decoded-instruction array (made on first use). */
function fetchRam(h: Hart, lo: number, hi: number, ppn: number): (Decoded | undefined)[] {
  h.fetchLo = lo & ~0xfff;
  h.fetchHi = hi;
  let page = h.codePages.get(ppn);
  if (page === undefined) {
    page = new Array<Decoded | undefined>(2048);
    h.codePages.set(ppn, page);
    h.codeMark[ppn] = 1;
    dropWriteTlbFor(h, ppn);
  }
  h.fetchPage = page;
  h.fetchPpn = ppn;
  return page;
}

/** Fetch one 16-bit parcel through translation (slow path, for ROM code, PMP-split pages and page-crossing). */
export function fetchParcel(h: Hart, lo: number, hi: number): number {
  const pa = translate(h, lo, hi, ACC_X, h.privLevel);
  if (pa >= h.ramBase && pa < h.ramEnd) return h.mu16[(h.ramHost + pa - h.ramBase) >>> 1];
  const r = h.bus.findRegion(pa);
  if (!r || !r.executable) raise(h, CAUSE.FETCH_ACCESS, lo, hi);
  return r.device.read(pa - r.base, 2) & 0xffff;
}

/** Decode the instruction at pc (lo, hi) into slot idx of its decoded page (if cacheable). */
export function decodeAt(h: Hart, page: (Decoded | undefined)[], idx: number, lo: number, hi: number): Decoded {
  let raw: number;
  let cacheable = page !== UNCACHED_PAGE;
  const off = lo & 0xfff;
  if (cacheable) {
    const p = h.ramHost + h.fetchPpn * 4096 + off;
    raw = h.mu16[p >>> 1];
    if ((raw & 3) === 3) {
      if (off === 0xffe) {
        // Crosses into the next page, which may map elsewhere: never cache it.
        cacheable = false;
        const nlo = (lo + 2) | 0;
        raw |= fetchParcel(h, nlo, nlo === 0 ? (hi + 1) | 0 : hi) << 16;
      } else {
        raw |= h.mu16[(p >>> 1) + 1] << 16;
      }
    }
  } else {
    raw = fetchParcel(h, lo, hi);
    if ((raw & 3) === 3) {
      const nlo = (lo + 2) | 0;
      raw |= fetchParcel(h, nlo, nlo === 0 ? (hi + 1) | 0 : hi) << 16;
    }
  }
  const d = decode(raw | 0);
  if (cacheable) page[idx] = d;
  return d;
}

/** Bits of the instruction at pc (for tval of illegal-instruction raised deep in helpers). */
export function currentRaw(h: Hart): number {
  const lo = h.x32[PC * 2], hi = h.x32[PC * 2 + 1];
  try {
    const p0 = fetchParcel(h, lo, hi);
    if ((p0 & 3) !== 3) return p0;
    const nlo = (lo + 2) | 0;
    return (p0 | (fetchParcel(h, nlo, nlo === 0 ? (hi + 1) | 0 : hi) << 16)) | 0;
  } catch {
    return 0;
  }
}

/** fence.i and remote fences: drop every decoded page. */
export function flushCodeCache(h: Hart): void {
  h.codeEpoch++;
  ibcInvalidate(h);
  h.jit?.reset();
  h.codePages.clear();
  h.codeMark.fill(0);
  h.fetchLo = TLB_INVALID;
  h.fetchPage = UNCACHED_PAGE;
  h.fetchPpn = -1;
}

/** The page functions that blocks of a decoded page start in (Decoded.blockIdx). */
function pageFunctions(page: (Decoded | undefined)[]): Set<number> {
  const fns = new Set<number>();
  for (let i = 0; i < page.length; i++) {
    const d = page[i];
    if (d !== undefined && d.blockIdx >= 0) fns.add(d.blockIdx);
  }
  return fns;
}

/** A store reached a page holding decoded code: drop that page's decoded instructions. */
export function invalidateCodePage(h: Hart, ppn: number): void {
  h.codeEpoch++;
  // The target cache names translated code only: entries naming this page's functions go
  // (a page only ever interpreted, half of a boot's cases, has none).
  const page = h.codePages.get(ppn);
  if (page !== undefined && h.jit !== null && h.jit.hasPage(page)) ibcForget(h, pageFunctions(page));
  h.codePages.delete(ppn);
  h.codeMark[ppn] = 0;
  if (h.fetchPpn === ppn) {
    h.fetchLo = TLB_INVALID;
    h.fetchPage = UNCACHED_PAGE;
    h.fetchPpn = -1;
  }
}

/** The hart wrote RAM outside the store path (page-table A/D updates): drop decoded code there. */
export function ramWritten(h: Hart, pa: number): void {
  const ppn = (pa - h.ramBase) >>> 12;
  if (h.codeMark[ppn]) invalidateCodePage(h, ppn);
  h.dirty[ppn] = 1;
}

/** RAM written by a device or loader: drop decoded code and a matching LR reservation. */
export function externalWrite(h: Hart, paddr: number, len: number): void {
  const first = Math.max(0, Math.floor((paddr - h.ramBase) / 4096));
  const last = Math.min(h.codeMark.length - 1, Math.floor((paddr + len - 1 - h.ramBase) / 4096));
  for (let p = first; p <= last; p++) {
    if (h.codeMark[p]) invalidateCodePage(h, p);
    h.dirty[p] = 1;
  }
  if (h.resvValid && h.resvAddr + 8 > paddr && h.resvAddr < paddr + len) h.clearReservation();
}

/**
 * RAM pages (indices from the start of RAM) written by the hart, page-table A/D updates,
 * DMA or loaders since the last call; clears the record. Everything counts as written
 * before the first call.
 */
export function takeDirtyPages(h: Hart): number[] {
  const out: number[] = [];
  const d = h.dirty;
  for (let p = 0; p < d.length; p++) if (d[p]) out.push(p);
  d.fill(0);
  for (const set of h.tlbSets) set[1].flush();
  return out;
}
