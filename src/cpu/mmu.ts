/**
 * Address translation and physical memory protection of one hart: the software TLBs, the
 * Sv39/Sv48/Sv57 page walk with hardware A/D updates, and PMP. Privileged spec 1.12: 3.1.6.3
 * (MPRV, SUM, MXR), 3.7 (PMP), 4.1.11 (satp), 4.2 (sfence.vma), 4.3-4.6 (Sv39/48/57).
 *
 * Module functions taking the hart; the TLB arrays live in the shared memory (state.ts).
 */
import type { Hart } from './hart.js';
import { CAUSE, MSTATUS, PRIV_M, PRIV_S, PRIV_U, SATP_BARE, SATP_SV39 } from './csr.js';
import { TLB_SIZE, TLB_BYTES, TLB_R_PTR, TLB_W_PTR, JIT_CTX, IBTC_WORDS, IBTC_FN_MASK, IBC_NO_PAGE, IBC_PAGES, IBC_U_PAGES, ibcIndex, ibcPageSlot } from './state.js';
import { raise } from './trap.js';
import { invalidateCodePage, ramWritten } from './memory.js';

/** Access types. */
export const ACC_R = 0, ACC_W = 1, ACC_X = 2;
export const TLB_MASK = TLB_SIZE - 1;
/** log2(TLB_SIZE): a reverse-map slot number's level. */
const TLB_LEVEL_SHIFT = Math.log2(TLB_SIZE);
/**
 * A tag low word that never matches: not page-aligned, and with a bit (11) that translated
 * code's masked address (page bits and the access's alignment bits) never has.
 */
export const TLB_INVALID = 0x801;

/** Page-table entry bits (privileged spec 4.3.1, Figure 4.18). */
const PTE_V = 0x01, PTE_R = 0x02, PTE_W = 0x04, PTE_X = 0x08, PTE_U = 0x10, PTE_G = 0x20, PTE_A = 0x40, PTE_D = 0x80;
/** 4 KiB pages per superpage at each page-table level. */
const SUPERPAGE_SPAN = [1, 512, 512 * 512, 512 ** 3, 512 ** 4];

/**
 * One software TLB (direct-mapped by virtual page number) for one access type. Its three
 * arrays live in the shared memory (state.ts TLB layout) so translated code probes the
 * same entries inline.
 */
export class Tlb {
  /** First slot number of this TLB in the write-TLB reverse map (level * TLB_SIZE). */
  readonly slotBase: number;
  /**
   * The entries, TLB_ENTRY_BYTES each: at word 4i the tag's low word (a page-aligned
   * virtual address, or TLB_INVALID), at 4i + 1 its high word (translated code compares
   * the two as one i64), in `host` at 4i + 2 the page's host byte offset in the shared memory
   * and at 4i + 3 that offset minus the tag's low word (mod 2^32: translated code adds the
   * address's low word to it, one add where the offset needs a mask and an add).
   */
  readonly tag: Int32Array;
  readonly host: Uint32Array;
  /** 1 where the entry came from a global mapping (PTE G on its walk): it survives address-space switches. */
  readonly global = new Uint8Array(TLB_SIZE);
  /** Fills of non-global entries since the last flush (none: an address-space switch has nothing to drop here). */
  private nonGlobal = 0;
  constructor(buf: ArrayBuffer, readonly byteOffset: number, level: number) {
    this.slotBase = level * TLB_SIZE;
    this.tag = new Int32Array(buf, byteOffset, TLB_BYTES / 4);
    this.host = new Uint32Array(buf, byteOffset, TLB_BYTES / 4);
    this.flush();
  }
  /**
   * Victim entries (as QEMU's victim TLB): the last VICTIMS entries that fills pushed out,
   * searched before a page walk. Two hot pages on one direct-mapped slot (a task's stack
   * and the idle task's, 4 MiB apart) otherwise walk the page tables at every alternation:
   * ~30 five-level walks per 4 KiB disk read. JavaScript only; translated code sees the
   * direct-mapped entries.
   */
  private readonly vTag = new Int32Array(2 * VICTIMS);
  private readonly vHost = new Uint32Array(VICTIMS);
  private readonly vGlobal = new Uint8Array(VICTIMS);
  private vNext = 0;

  flush(): void {
    const tag = this.tag;
    for (let e = 0; e < tag.length; e += 4) tag[e] = TLB_INVALID;
    this.vTag.fill(TLB_INVALID);
    this.nonGlobal = 0;
  }
  /**
   * Entry i now maps the page at virtual `tagLo`/`hi` to host offset `host`; `global`: from
   * a global mapping. The entry it replaces becomes a victim.
   */
  fill(i: number, tagLo: number, hi: number, host: number, global: boolean): void {
    const old = this.tag[i << 2];
    if (old !== TLB_INVALID && (old !== tagLo || this.tag[(i << 2) + 1] !== hi)) {
      const v = this.vNext;
      this.vNext = (v + 1) & (VICTIMS - 1);
      this.toVictim(i, v);
    }
    this.set(i, tagLo, hi, host, global ? 1 : 0);
    if (!global) this.nonGlobal++;
  }
  /**
   * The host offset of the page at `tagLo`/`hi` if entry i or a victim maps it (a victim
   * trades places with entry i), else -1.
   */
  lookup(i: number, tagLo: number, hi: number): number {
    const e = i << 2, tag = this.tag;
    if (tag[e] === tagLo && tag[e + 1] === hi) return this.host[e + 2];
    const vt = this.vTag;
    for (let v = 0; v < VICTIMS; v++) {
      if (vt[2 * v] !== tagLo || vt[2 * v + 1] !== hi) continue;
      const host = this.vHost[v], global = this.vGlobal[v];
      if (tag[e] === TLB_INVALID) vt[2 * v] = TLB_INVALID; else this.toVictim(i, v);
      this.set(i, tagLo, hi, host, global);
      return host;
    }
    return -1;
  }
  private set(i: number, tagLo: number, hi: number, host: number, global: number): void {
    const e = i << 2;
    this.tag[e] = tagLo;
    this.tag[e + 1] = hi;
    this.host[e + 2] = host;
    this.host[e + 3] = host - tagLo;
    this.global[i] = global;
  }
  private toVictim(i: number, v: number): void {
    const e = i << 2;
    this.vTag[2 * v] = this.tag[e];
    this.vTag[2 * v + 1] = this.tag[e + 1];
    this.vHost[v] = this.host[e + 2];
    this.vGlobal[v] = this.global[i];
  }
  /** Drop entry i if it maps the page at `tagLo`/`hi`, and such a victim. */
  flushPage(i: number, tagLo: number, hi: number): void {
    const e = i << 2, tag = this.tag, vt = this.vTag;
    if (tag[e] === tagLo && tag[e + 1] === hi) tag[e] = TLB_INVALID;
    for (let v = 0; v < VICTIMS; v++) if (vt[2 * v] === tagLo && vt[2 * v + 1] === hi) vt[2 * v] = TLB_INVALID;
  }
  /** Drop the entries of non-global mappings. */
  flushNonGlobal(): void {
    if (this.nonGlobal === 0) return;
    this.nonGlobal = 0;
    const g = this.global, tag = this.tag;
    for (let i = 0; i < TLB_SIZE; i++) if (g[i] === 0) tag[i << 2] = TLB_INVALID;
    const vt = this.vTag;
    for (let v = 0; v < VICTIMS; v++) if (this.vGlobal[v] === 0) vt[2 * v] = TLB_INVALID;
  }
}

/** Victim entries per TLB (a power of two). */
const VICTIMS = 8;

/**
 * Reverse map of the write TLBs: for each RAM page, the write-TLB slots (level * TLB_SIZE +
 * index, 4 levels) filled with it, as intrusive doubly-linked lists in typed arrays (no
 * allocation). A slot stays on its page's list until it is refilled with another page or
 * the page's entries are dropped. Flushes leave the lists alone, so sfence.vma stays a plain
 * fill: a flushed slot on a list only costs a no-op invalidation when its page is dropped.
 */
export class WriteTlbMap {
  /** Per RAM page: the first slot on its list, or -1. */
  readonly head: Int32Array;
  /** Per slot: the next and previous slot on its list (-1 at the ends), and its page (-1: on no list). */
  readonly next = new Int32Array(4 * TLB_SIZE);
  readonly prev = new Int32Array(4 * TLB_SIZE);
  readonly page = new Int32Array(4 * TLB_SIZE).fill(-1);

  constructor(ramPages: number) {
    this.head = new Int32Array(ramPages).fill(-1);
  }

  /** Slot `s` now maps RAM page `ppn`. */
  link(s: number, ppn: number): void {
    const old = this.page[s];
    if (old === ppn) return;
    if (old >= 0) {
      const n = this.next[s], p = this.prev[s];
      if (p >= 0) this.next[p] = n; else this.head[old] = n;
      if (n >= 0) this.prev[n] = p;
    }
    const first = this.head[ppn];
    this.next[s] = first;
    this.prev[s] = -1;
    if (first >= 0) this.prev[first] = s;
    this.head[ppn] = s;
    this.page[s] = ppn;
  }
}

/**
 * The data TLBs of S-mode accesses while mstatus.SUM is set: the set of level 2 (reserved
 * for H-mode, which this hart lacks). Linux sets and clears SUM around every copy from or
 * to user memory; switching sets keeps both warm, where a flush at each change cost
 * 10,000 flushes (and their page walks) per second of a syscall-heavy guest.
 */
const SET_S_SUM = 2;
/** Sets whose entries hold virtual translations (sfence.vma, satp): U, S, S with SUM. */
const VIRTUAL_SETS = 3;

/** Select the TLB sets for the current privilege (and MPRV data privilege, and SUM). */
export function privChanged(h: Hart): void {
  const ms = h.ms, priv = h.privLevel;
  h.dpriv = priv === PRIV_M && (ms & MSTATUS.MPRV) !== 0 ? (ms & MSTATUS.MPP) >>> 11 : priv;
  const d = h.tlbSets[h.dpriv === PRIV_S && (ms & MSTATUS.SUM) !== 0 ? SET_S_SUM : h.dpriv];
  h.tlbR = d[0];
  h.tlbW = d[1];
  h.tlbX = h.tlbSets[priv][2];
  h.fetchLo = TLB_INVALID;
  h.x32[JIT_CTX * 2] = ((priv === PRIV_U ? h.ibcEpochU : h.ibcEpoch) << 2) | priv;
  // Translated code finds the data TLBs through these slots.
  h.x32[TLB_R_PTR * 2] = h.tlbR.byteOffset;
  h.x32[TLB_W_PTR * 2] = h.tlbW.byteOffset;
}

/** A JIT_CTX no target-cache entry is filled with (bit 31: beyond any epoch << 2). */
const IBTC_NO_CTX = -1;

/**
 * The mapping from virtual pcs to translated code may have changed (TLB flushes, code
 * dropped or compiled again): entries of the indirect-branch target cache stop matching.
 */
export function ibcInvalidate(h: Hart): void {
  h.sCodeNonGlobal = false;
  h.ibcPages.fill(IBC_NO_PAGE);
  ibcBump(h, true);
}

/**
 * Page functions `fns` were dropped (their page was written) or replaced (compiled again):
 * forget the target-cache entries that name them, and only those. Emptying the whole cache
 * instead sent every hot transfer back through the dispatcher once: ~850 returns after each
 * of the ~40 such events in a Linux boot, where this scan of the cache costs ~0.1 ms.
 */
export function ibcForget(h: Hart, fns: ReadonlySet<number>): void {
  if (fns.size === 0) return;
  let min = IBTC_FN_MASK, max = 0;
  for (const f of fns) { if (f < min) min = f; if (f > max) max = f; }
  const ibc = h.ibc;
  for (let e = 0; e < ibc.length; e += IBTC_WORDS) {
    const f = ibc[e + 3] & IBTC_FN_MASK;
    if (f >= min && f <= max && ibc[e + 2] !== IBTC_NO_CTX && fns.has(f)) ibc[e + 2] = IBTC_NO_CTX;
  }
}

/** New epochs (U-mode's alone, or both); a wrapped counter empties the cache (old epochs would match again). */
function ibcBump(h: Hart, all: boolean): void {
  let u = (h.ibcEpochU + 1) & 0x0fff_ffff, s = all ? (h.ibcEpoch + 1) & 0x0fff_ffff : h.ibcEpoch;
  if (u === 0 || s === 0) { h.ibc.fill(0); u = 1; s = 1; }
  h.ibcEpochU = u;
  h.ibcEpoch = s;
  h.ibcPages.fill(IBC_NO_PAGE, IBC_U_PAGES); // (U-mode entries all died)
  const priv = h.privLevel;
  h.x32[JIT_CTX * 2] = ((priv === PRIV_U ? u : s) << 2) | priv;
}

/**
 * satp writes: recompute the translation mode. A new address space in the same mode keeps
 * the translations of global mappings (PTE G: the same in every address space, so Linux
 * switches ASIDs without a fence), and the target cache's S-mode entries unless S-mode
 * code ran from a non-global mapping; a mode change drops everything.
 */
export function updateTranslation(h: Hart): void {
  const mode = Number(BigInt.asUintN(64, h.satp) >> 60n);
  const same = mode === h.satpMode && mode !== SATP_BARE;
  h.satpMode = mode;
  h.satpRoot = Number(h.satp & 0xfff_ffff_ffffn) * 4096;
  privChanged(h);
  if (!same) { flushTlb(h); return; }
  flushNonGlobalTlb(h);
}

/**
 * Drop the translations of non-global mappings (an address-space switch, or sfence.vma
 * x0, rs2: privileged spec 4.2.1, "global mappings ... need not be flushed"). The TLBs hold
 * only the current address space's non-global translations (a switch drops the rest), so
 * this serves any ASID. Linux fences by ASID at each process exit: as a full flush, each
 * dropped every kernel translation and emptied the target cache.
 */
export function flushNonGlobalTlb(h: Hart): void {
  for (let p = 0; p < VIRTUAL_SETS; p++) for (const t of h.tlbSets[p]) t.flushNonGlobal();
  h.fetchLo = TLB_INVALID;
  if (h.sCodeNonGlobal) ibcInvalidate(h); else ibcBump(h, false);
}

/** sfence.vma, satp writes, MXR changes: drop all cached virtual translations (U and S sets). */
export function flushTlb(h: Hart): void {
  for (let p = 0; p < VIRTUAL_SETS; p++) for (const t of h.tlbSets[p]) t.flush();
  h.fetchLo = TLB_INVALID;
  h.superCount = 0;
  ibcInvalidate(h);
}

/** Target-cache sets holding one page's pcs (its halfword offsets). */
const PAGE_SETS = 2048;

/**
 * sfence.vma with rs1 = a virtual address (privileged spec 4.2.1): only translations that
 * used the leaf PTE of that address must go. Those are its own 4 KiB page's entries, or
 * every piece of a superpage holding it, so an address inside a superpage region the TLBs
 * may have cached drops everything. (Linux issues these by the thousand while booting,
 * for user pages: dropping the whole TLB each time cost millions of page walks.)
 */
export function flushTlbPage(h: Hart, lo: number, hi: number): void {
  const n = h.superCount;
  if (n < 0) { flushTlb(h); return; }
  const vpn = hi * 1048576 + (lo >>> 12);
  for (let k = 0; k < n; k++) {
    if (Math.floor(vpn / SUPERPAGE_SPAN[h.superLevel[k]]) === h.superRegion[k]) { flushTlb(h); return; }
  }
  const i = (lo >>> 12) & TLB_MASK, tag = lo & ~0xfff;
  for (let p = 0; p < VIRTUAL_SETS; p++) for (const t of h.tlbSets[p]) t.flushPage(i, tag, hi);
  h.fetchLo = TLB_INVALID;
  // Only target-cache entries for pcs in this page can name stale code. (Linux fences one
  // page after each page fault: bumping the epoch there emptied the whole cache each time.)
  const pi = ibcPageSlot(lo, hi), had = h.ibcPages[pi], hadU = h.ibcPages[pi + IBC_U_PAGES];
  if (had !== vpn && had !== IBC_PAGES && hadU !== vpn && hadU !== IBC_PAGES) return; // (no live entries there)
  // (ibcIndex XORs a pc's halfword offset into the low 11 bits of its set: a page's 2,048
  // halfword pcs have one run of 2,048 sets, 4,096 entries, scanned in order.)
  const ibc = h.ibc;
  h.ibcPageScans++;
  for (let e = (ibcIndex(tag) & ~(2 * PAGE_SETS - 1)) * IBTC_WORDS, end = e + 2 * PAGE_SETS * IBTC_WORDS; e < end; e += IBTC_WORDS) {
    if (ibc[e + 1] === hi && (ibc[e] & ~0xfff) === tag) ibc[e + 2] = IBTC_NO_CTX;
  }
  if (had === vpn) h.ibcPages[pi] = IBC_NO_PAGE;
  if (hadU === vpn) h.ibcPages[pi + IBC_U_PAGES] = IBC_NO_PAGE;
}

/** A walk found a superpage leaf at `level` for (lo, hi): remember its region (flushTlbPage). */
function noteSuperpage(h: Hart, lo: number, hi: number, level: number): void {
  const n = h.superCount;
  if (n < 0) return;
  const region = Math.floor((hi * 1048576 + (lo >>> 12)) / SUPERPAGE_SPAN[level]);
  for (let k = 0; k < n; k++) if (h.superLevel[k] === level && h.superRegion[k] === region) return;
  if (n === h.superLevel.length) { h.superCount = -1; return; }
  h.superLevel[n] = level;
  h.superRegion[n] = region;
  h.superCount = n + 1;
}

/** PMP changes: drop every cached translation, M-mode included. */
export function flushAllTlbs(h: Hart): void {
  for (const set of h.tlbSets) for (const t of set) t.flush();
  h.fetchLo = TLB_INVALID;
  h.superCount = 0;
  ibcInvalidate(h);
}

/** Drop every write-TLB entry that maps RAM page `ppn` (it became a code page), through the reverse map. */
export function dropWriteTlbFor(h: Hart, ppn: number): void {
  const m = h.wtlbMap;
  let s = m.head[ppn];
  while (s >= 0) {
    h.tlbSets[s >>> TLB_LEVEL_SHIFT][1].tag[(s & TLB_MASK) << 2] = TLB_INVALID;
    const n = m.next[s];
    m.page[s] = -1;
    s = n;
  }
  m.head[ppn] = -1;
  // (Victims may map the page: tlbFill, the only way back into an entry, drops its code first.)
}

function pageFaultCause(acc: number): number {
  return acc === ACC_R ? CAUSE.LOAD_PAGE_FAULT : acc === ACC_W ? CAUSE.STORE_PAGE_FAULT : CAUSE.FETCH_PAGE_FAULT;
}

function accessFaultCause(acc: number): number {
  return acc === ACC_R ? CAUSE.LOAD_ACCESS : acc === ACC_W ? CAUSE.STORE_ACCESS : CAUSE.FETCH_ACCESS;
}

/**
 * Translate a virtual address to physical (a Number), checking permissions and PMP for
 * the byte at va. Raises the architectural fault with tval = va.
 */
export function translate(h: Hart, lo: number, hi: number, acc: number, priv: number): number {
  let pa: number;
  h.walkGlobal = true;
  if (priv === PRIV_M || h.satpMode === SATP_BARE) {
    pa = (hi >>> 0) * 4294967296 + (lo >>> 0);
    if (hi >>> 24 !== 0) raise(h, accessFaultCause(acc), lo, hi);
  } else {
    pa = walk(h, lo, hi, acc, priv);
  }
  if (h.pmpActive || priv !== PRIV_M) {
    if (!pmpCheck(h, pa, 1, acc, priv)) raise(h, accessFaultCause(acc), lo, hi);
  }
  return pa;
}

/** Sv39/Sv48/Sv57 page-table walk (privileged spec 4.3.2) with hardware A/D update. */
function walk(h: Hart, lo: number, hi: number, acc: number, priv: number): number {
  h.walks++;
  const levels = h.satpMode - SATP_SV39 + 3;
  const vaBits = 12 + 9 * levels;
  // Bits 63..vaBits-1 must all equal bit vaBits-1.
  const topShift = vaBits - 1 - 32;
  const top = hi >> topShift;
  if (top !== 0 && top !== -1) raise(h, pageFaultCause(acc), lo, hi);
  let a = h.satpRoot;
  const ms = h.ms;
  const m32 = h.m32;
  // G on any PTE of the walk makes the mapping global (privileged spec 4.3.1).
  let global = 0;
  for (let i = levels - 1; i >= 0; i--) {
    const sh = 12 + 9 * i;
    const vpn = (sh < 32 ? (lo >>> sh) | (sh > 23 ? hi << (32 - sh) : 0) : hi >>> (sh - 32)) & 511;
    const pteAddr = a + vpn * 8;
    const off = ptePhys(h, pteAddr, lo, hi, acc);
    const plo = m32[off >>> 2];
    const phi = m32[(off >>> 2) + 1];
    // Reserved bits 63:54 (no Svnapot/Svpbmt) must be zero; W without R is reserved.
    if ((plo & PTE_V) === 0 || (plo & (PTE_R | PTE_W)) === PTE_W || (phi >>> 22) !== 0) raise(h, pageFaultCause(acc), lo, hi);
    const ppn = (phi & 0x3fffff) * 4194304 + (plo >>> 10);
    global |= plo & PTE_G;
    if ((plo & (PTE_R | PTE_X)) === 0) {
      if ((plo & (PTE_D | PTE_A | PTE_U)) !== 0) raise(h, pageFaultCause(acc), lo, hi); // reserved on non-leaf
      a = ppn * 4096;
      continue;
    }
    // Leaf: permission checks (4.3.1, 3.1.6.3).
    if (priv === PRIV_U) {
      if ((plo & PTE_U) === 0) raise(h, pageFaultCause(acc), lo, hi);
    } else if ((plo & PTE_U) !== 0) {
      if (acc === ACC_X || (ms & MSTATUS.SUM) === 0) raise(h, pageFaultCause(acc), lo, hi);
    }
    const ok = acc === ACC_R ? (plo & PTE_R) !== 0 || ((ms & MSTATUS.MXR) !== 0 && (plo & PTE_X) !== 0)
      : acc === ACC_W ? (plo & PTE_W) !== 0 : (plo & PTE_X) !== 0;
    if (!ok) raise(h, pageFaultCause(acc), lo, hi);
    if (i > 0) {
      if (ppn % SUPERPAGE_SPAN[i] !== 0) raise(h, pageFaultCause(acc), lo, hi); // misaligned superpage
      noteSuperpage(h, lo, hi, i);
    }
    // A/D update: hardware-managed (the spec permits either scheme; QEMU does the same).
    const need = PTE_A | (acc === ACC_W ? PTE_D : 0);
    if ((plo & need) !== need) {
      if (!pmpCheck(h, pteAddr, 8, ACC_W, PRIV_S)) raise(h, accessFaultCause(acc), lo, hi);
      m32[off >>> 2] = plo | need;
      ramWritten(h, pteAddr);
    }
    h.walkGlobal = global !== 0;
    // Offset within the (super)page comes from the virtual address.
    const inPage = i === 0 ? lo & 0xfff : i === 1 ? lo & 0x1fffff : i === 2 ? lo & 0x3fffffff
      : (hi & (i === 3 ? 0x7f : 0xffff)) * 4294967296 + (lo >>> 0);
    return ppn * 4096 + inPage;
  }
  return raise(h, pageFaultCause(acc), lo, hi);
}

/** Host offset of a PTE; PTEs must be in RAM and pass PMP as S-mode reads. */
function ptePhys(h: Hart, pa: number, lo: number, hi: number, acc: number): number {
  if (pa < h.ramBase || pa + 8 > h.ramEnd || !pmpCheck(h, pa, 8, ACC_R, PRIV_S)) {
    raise(h, accessFaultCause(acc), lo, hi);
  }
  return h.ramHost + (pa - h.ramBase);
}

/** PMP check (privileged spec 3.7.1): lowest-numbered matching entry decides. */
export function pmpCheck(h: Hart, pa: number, size: number, acc: number, priv: number): boolean {
  if (!h.pmpActive) return priv === PRIV_M;
  const bit = acc === ACC_R ? 1 : acc === ACC_W ? 2 : 4;
  const pmpLo = h.pmpLo, pmpHi = h.pmpHi;
  for (let i = 0; i < 16; i++) {
    const lo = pmpLo[i], hiEx = pmpHi[i];
    if (hiEx <= lo || pa + size <= lo || pa >= hiEx) continue;
    if (pa < lo || pa + size > hiEx) return false; // partial match fails
    const cfg = h.pmpcfg[i];
    if (priv === PRIV_M && (cfg & 0x80) === 0) return true;
    return (cfg & bit) !== 0;
  }
  return priv === PRIV_M;
}

/** Recompute the byte ranges of the PMP entries (exactly, from the 54-bit pmpaddr values). */
export function updatePmpActive(h: Hart): void {
  let any = false;
  let prevTop = 0n;
  for (let i = 0; i < 16; i++) {
    const cfg = h.pmpcfg[i];
    const a = (cfg >>> 3) & 3;
    const addr = h.pmpaddr[i];
    let lo = 0n, hi = 0n;
    if (a === 1) { lo = prevTop; hi = addr << 2n; } else if (a === 2) { lo = addr << 2n; hi = lo + 4n; } else if (a === 3) {
      // NAPOT: trailing ones of pmpaddr give the size 2^(t+3).
      let t = 0n;
      while (t < 54n && ((addr >> t) & 1n) === 1n) t++;
      lo = (addr & ~((1n << t) - 1n)) << 2n;
      hi = lo + (1n << (t + 3n));
    }
    prevTop = addr << 2n;
    h.pmpLo[i] = Number(lo);
    h.pmpHi[i] = a === 0 ? 0 : Number(hi);
    if (a !== 0) any = true;
  }
  h.pmpActive = any;
  flushAllTlbs(h);
}

/**
 * Translate and fill the TLB when the whole page may be cached: RAM, not a code page for
 * writes, and PMP uniform over the page. Returns the physical address.
 */
export function tlbFill(h: Hart, t: Tlb, lo: number, hi: number, acc: number): number {
  const i = (lo >>> 12) & TLB_MASK;
  // (An entry or victim is a page walk's result under this set's privilege and access type.)
  const cached = t.lookup(i, lo & ~0xfff, hi);
  if (cached >= 0) {
    const ppn = (cached - h.ramHost) / 4096;
    if (acc === ACC_W) {
      // As a fill: no write entry maps a code page, and writes through it count as dirty.
      if (h.codeMark[ppn]) invalidateCodePage(h, ppn);
      h.dirty[ppn] = 1;
      h.wtlbMap.link(t.slotBase + i, ppn);
    }
    return h.ramBase + ppn * 4096 + (lo & 0xfff);
  }
  const dpriv = h.dpriv;
  const pa = translate(h, lo, hi, acc, dpriv);
  if (pa >= h.ramBase && pa < h.ramEnd) {
    const pagePa = pa - (pa % 4096);
    const ppn = (pagePa - h.ramBase) / 4096;
    if (acc === ACC_W) {
      if (h.codeMark[ppn]) invalidateCodePage(h, ppn);
      h.dirty[ppn] = 1; // the write this fill serves, and every fast-path write after it
    }
    const uniform = (!h.pmpActive && dpriv === PRIV_M) || pmpCheck(h, pagePa, 4096, acc, dpriv);
    if (uniform) {
      t.fill(i, lo & ~0xfff, hi, h.ramHost + (pagePa - h.ramBase), h.walkGlobal);
      if (acc === ACC_W) h.wtlbMap.link(t.slotBase + i, ppn);
    }
  }
  return pa;
}
