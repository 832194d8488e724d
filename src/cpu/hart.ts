import type { Bus } from '../machine/bus.js';
import type { TimeSource, Stateful } from '../devices/device.js';
import { CAUSE, MSTATUS, PRIV_U, PRIV_S, PRIV_M, S_INTERRUPTS, MIP_STIP, SATP_BARE } from './csr.js';
import {
  PC, NPC, SCRATCH, SINK, HART_STATE_BYTES, F0, MSTATUS_LO, FFLAGS, FRM, JIT_RETIRED, JIT_EXIT, TLB_BYTES, TLB_REGION, HART_MMU_BYTES, IBTC_BYTES, IBTC_WORDS, IBTC_FN_MASK, IBTC_PAGE_MASK, IBC_NO_PAGE, IBC_PAGES, IBC_U_PAGES, JIT_CTX, JIT_HOT, IBTC_SIZE, JIT_DEPTH, JIT_RAS, JIT_RAS_SIZE,
  PRIV, MIE, MIP_SW, MIP_HW, ATTENTION, WAITING, ICOUNT, RESV,
} from './state.js';
import { Translator, HOT_ENTRIES, URGENT_HITS, MAX_BLOCK, type JitMemory, type DecodedPage } from './jit/translator.js';
import { Decoded } from './isa/types.js';
import { decode } from './isa/table.js';
import { TRAP_SIGNAL, raise, illegal, takeTrap, xret, updateIrq, setIrqLine, wfi, serviceAttention, updateTimers, setStimecmp } from './trap.js';
import { Tlb, WriteTlbMap, TLB_MASK, TLB_INVALID, ibcForget, privChanged, updateTranslation, flushTlb, flushNonGlobalTlb, flushTlbPage, flushAllTlbs, translate, pmpCheck, updatePmpActive } from './mmu.js';
import {
  UNCACHED_PAGE, loadSlow, storeSlow, amoHost, checkReservation, fetchSlow, decodeAt, currentRaw, flushCodeCache, externalWrite, takeDirtyPages,
} from './memory.js';
import { csrRead, csrWrite, csrRmwBase, COUNTINHIBIT_CY, COUNTINHIBIT_IR } from './csrs.js';

export { TRAP_SIGNAL };

/** A hart's saved state (Stateful, devices/device.ts): 64-bit CSRs as hex strings so JSON can carry them. */
export interface HartState {
  v: 1;
  /** The register block (x, f, pc; cpu/state.ts). */
  regs: Uint8Array;
  priv: number; mstatus: number; medeleg: number; mideleg: number; mie: number; mipSw: number; mipHw: number;
  mtvec: string; stvec: string; mepc: string; sepc: string; mcause: string; scause: string; mtval: string; stval: string;
  mscratch: string; sscratch: string; satp: string; mcounteren: number; scounteren: number; menvcfg: string; senvcfg: string;
  mcountinhibit: number; stimecmp: string; fflags: number; frm: number; pmpcfg: number[]; pmpaddr: string[];
  icount: number; minstretOffset: number; mcycleOffset: number; minstretFrozen: number; mcycleFrozen: number;
  resvValid: boolean; resvAddr: number; waiting: boolean;
}

/** Built-in firmware hook: when set, `ecall` from S-mode is handled here instead of trapping to M. */
export interface SbiHandler {
  ecall(h: Hart): void;
}

const FS_SHIFT = 13;

/**
 * One RISC-V hart: RV64IMAFDC with Zicsr, Zifencei, Zicntr, Zihintpause, Sstc, and the
 * privileged architecture 1.12 (M/S/U, Sv39/48/57, PMP).
 *
 * This file holds the hart's state, the run loop and the TLB fast paths of loads and
 * stores; the rest is in module functions taking the hart, by concern: trap.ts (traps,
 * interrupts, timer), mmu.ts (TLBs, page walk, PMP), memory.ts (slow loads and stores,
 * AMOs, fetch, decoded-code cache), csrs.ts (CSR access). Fields those modules use are
 * public but internal to src/cpu; other code uses the methods.
 *
 * Register file and pc live in a 4 KiB block of the shared WebAssembly.Memory. Instructions
 * are decoded once per physical page and cached; a store to a page holding decoded code
 * drops that page (writes to code pages never hit the write TLB, so the fast path needs no
 * check).
 */
export class Hart implements Stateful<HartState> {
  readonly bus: Bus;
  readonly hartId: number;
  readonly clock: TimeSource;
  readonly x: BigInt64Array;
  readonly x32: Int32Array;
  readonly f64: Float64Array;
  readonly f32: Float32Array;

  // Memory views over the whole shared memory (RAM at bus.ramHostOffset). Internal.
  readonly m8: Int8Array;
  readonly mu8: Uint8Array;
  readonly m16: Int16Array;
  readonly mu16: Uint16Array;
  readonly m32: Int32Array;
  readonly m64: BigInt64Array;
  readonly ramBase: number;
  readonly ramEnd: number;
  readonly ramHost: number;

  /**
   * Current privilege level (internal), in the state block; changed only by traps, xRET and
   * enterPrivilege(), which keep the TLB selection in step.
   */
  get privLevel(): number { return this.x32[PRIV * 2]; }
  set privLevel(v: number) { this.x32[PRIV * 2] = v; }
  /** Privilege used for loads/stores (differs from priv when mstatus.MPRV is set). Internal. */
  dpriv = PRIV_M;

  // ---- CSRs ----
  /**
   * Low word of mstatus (the upper word is fixed UXL=SXL=2, SD derived); written through
   * writeMstatus/traps/xRET, and FS by translated FP code. Kept in the state block. Internal.
   */
  get ms(): number { return this.x32[MSTATUS_LO * 2]; }
  set ms(v: number) { this.x32[MSTATUS_LO * 2] = v; }
  medeleg = 0;
  mideleg = 0;
  /** mie, in the state block. */
  get mie(): number { return this.x32[MIE * 2]; }
  set mie(v: number) { this.x32[MIE * 2] = v; }
  /** Software-writable mip bits (SSIP, STIP, SEIP), in the state block. Internal. */
  get mipSw(): number { return this.x32[MIP_SW * 2]; }
  set mipSw(v: number) { this.x32[MIP_SW * 2] = v; }
  /** Hardware-driven mip bits (interrupt lines, Sstc timer), in the state block. Internal. */
  get mipHw(): number { return this.x32[MIP_HW * 2]; }
  set mipHw(v: number) { this.x32[MIP_HW * 2] = v; }
  mtvec = 0n;
  stvec = 0n;
  mepc = 0n;
  sepc = 0n;
  mcause = 0n;
  scause = 0n;
  mtval = 0n;
  stval = 0n;
  mscratch = 0n;
  sscratch = 0n;
  satp = 0n;
  mcounteren = 0;
  scounteren = 0;
  menvcfg = 0n;
  senvcfg = 0n;
  mcountinhibit = 0;
  stimecmp = -1n;
  /** stimecmp as a Number (internal). */
  stimecmpNum = Infinity;
  /** fflags and frm, in the state block (translated FP code sets fflags). */
  get fflags(): number { return this.x32[FFLAGS * 2]; }
  set fflags(v: number) { this.x32[FFLAGS * 2] = v; }
  get frm(): number { return this.x32[FRM * 2]; }
  set frm(v: number) { this.x32[FRM * 2] = v; }
  readonly pmpcfg = new Uint8Array(16);
  readonly pmpaddr: bigint[] = new Array<bigint>(16).fill(0n);
  /** PMP entry byte ranges [lo, hi) and whether any entry is on (internal, mmu.ts). */
  readonly pmpLo = new Float64Array(16);
  readonly pmpHi = new Float64Array(16);
  pmpActive = false;

  /**
   * Instructions retired (also the cycle count); the virtual clock runs on it. In the state
   * block (a float64), exact there whenever run() is not interpreting: the interpreter counts
   * in a field (a typed-array increment per instruction cost 5 %) and adds it to the slot
   * when it returns, takes a trap or interrupt, or enters translated code.
   */
  get icount(): number { return this.f64[ICOUNT] + this.unflushed; }
  set icount(v: number) { this.f64[ICOUNT] = v; this.unflushed = 0; }
  /** Instructions the interpreter retired that are not yet in the ICOUNT slot. */
  private unflushed = 0;
  private flushIcount(): void {
    this.f64[ICOUNT] += this.unflushed;
    this.unflushed = 0;
  }
  /**
   * Instructions retired, exact even from inside a translated block (which adds its count
   * to icount only when it returns, but publishes it before every helper call).
   */
  get retired(): number { return this.inBlock ? this.icount + this.x32[JIT_RETIRED * 2] : this.icount; }
  /** minstret = retired + offset while counting (CSR reads may run inside translated blocks); the frozen value while mcountinhibit.IR is set. Internal (csrs.ts). */
  minstretOffset = 0;
  mcycleOffset = 0;
  minstretFrozen = 0;
  mcycleFrozen = 0;

  // ---- translation state (internal, mmu.ts and memory.ts) ----
  satpMode = SATP_BARE;
  satpRoot = 0;
  /** TLB sets per privilege level (U, S, -, M), so traps and xRETs need no flush. */
  readonly tlbSets: Tlb[][];
  tlbR: Tlb;
  tlbW: Tlb;
  tlbX: Tlb;
  fetchLo = TLB_INVALID;
  fetchHi = 0;
  fetchPage: (Decoded | undefined)[] = UNCACHED_PAGE;
  fetchPpn = -1;
  readonly codePages = new Map<number, (Decoded | undefined)[]>();
  /** One byte per RAM page: 1 if decoded code is cached for it. */
  readonly codeMark: Uint8Array;
  /**
   * One byte per RAM page: 1 if written since the last takeDirtyPages() (snapshots,
   * migration). A page is marked when it enters a write TLB, so the store fast path needs
   * no check; takeDirtyPages() empties the write TLBs to re-arm the marking.
   */
  readonly dirty: Uint8Array;
  /** RAM page -> write-TLB slots (mmu.ts), so a new code page drops its write entries without a scan. */
  readonly wtlbMap: WriteTlbMap;
  /**
   * Superpage regions (level and region number: virtual page number / the level's span)
   * the U/S TLBs may hold 4 KiB pieces of, since their last full flush; -1: too many to
   * track (mmu.ts: an sfence.vma for one address drops only that page unless it falls in one).
   */
  superCount = 0;
  readonly superLevel = new Uint8Array(32);
  readonly superRegion = new Float64Array(32);

  // ---- LR/SC (internal, memory.ts) ----
  /**
   * The LR reservation lives in the RESV slot as the reserved address's host byte offset
   * (-1: none), so translated LR/SC test and set it inline.
   */
  get resvValid(): boolean { return this.x32[RESV * 2] !== -1; }
  /** The reserved physical address (0 when there is none). */
  get resvAddr(): number { const s = this.x32[RESV * 2]; return s === -1 ? 0 : (s >>> 0) - this.ramHost + this.ramBase; }
  clearReservation(): void { this.x32[RESV * 2] = -1; }
  /** Physical address of the last amoHost(). */
  amoPa = 0;

  // ---- run state (internal, trap.ts) ----
  /** Set when the run loop must look at interrupts, WFI or a stop request before the next instruction. In the state block. */
  get attention(): boolean { return this.x32[ATTENTION * 2] !== 0; }
  set attention(v: boolean) { this.x32[ATTENTION * 2] = v ? 1 : 0; }
  /** In WFI, waiting for an interrupt. In the state block. */
  get waiting(): boolean { return this.x32[WAITING * 2] !== 0; }
  set waiting(v: boolean) { this.x32[WAITING * 2] = v ? 1 : 0; }
  stopRequested = false;
  pendingCause = 0;
  pendingTvalLo = 0;
  pendingTvalHi = 0;
  sbi: SbiHandler | null = null;
  /** The WebAssembly translator, when enabled (enableJit). */
  jit: Translator | null = null;
  /** True while a translated block runs (a trap then adds the block's retired count). */
  private inBlock = false;
  /** Bumped whenever decoded code is dropped: a translated block that stored into code must stop. Internal. */
  codeEpoch = 0;
  /**
   * The indirect-branch target cache (state.ts IBTC_SIZE) and its epochs (JIT_CTX): U-mode
   * entries carry their own, so an address-space switch forgets them alone. Internal.
   */
  readonly ibc: Int32Array;
  ibcEpoch = 1;
  ibcEpochU = 1;
  /**
   * Which virtual page the cache holds entries for, by ibcPageSlot (state.ts; U-mode entries'
   * pages from IBC_U_PAGES on, forgotten with their epoch), since the cache was last emptied: that page's number, IBC_NO_PAGE, or IBC_PAGES if
   * several share the slot. An sfence.vma of any other page leaves the cache alone (Linux
   * fences user data pages after every page fault; their slots mostly hold kernel code
   * pages). Internal (mmu.ts).
   */
  readonly ibcPages = new Float64Array(2 * IBC_U_PAGES).fill(IBC_NO_PAGE);
  /** sfence.vma of one page that had to scan the target cache for that page's entries (tests, profiles). */
  ibcPageScans = 0;
  /** The last translate() used only global mappings (PTE G, or no translation). Internal (mmu.ts). */
  walkGlobal = true;
  /** Page-table walks so far (TLB and victim misses). */
  walks = 0;
  /** S-mode code was fetched through a non-global mapping since the cache was last emptied. Internal (mmu.ts). */
  sCodeNonGlobal = false;
  /** Effective address of the last load/store, as two halves (set by ea()). */
  eaLoV = 0;
  eaHiV = 0;

  constructor(bus: Bus, hartId: number, clock: TimeSource) {
    this.bus = bus;
    this.hartId = hartId;
    this.clock = clock;
    const buf = bus.memory.buffer;
    const base = hartId * HART_STATE_BYTES;
    if (base + HART_STATE_BYTES > bus.ramHostOffset) throw new Error(`too many harts for the state region`);
    this.x = new BigInt64Array(buf, base, HART_STATE_BYTES / 8);
    this.x32 = new Int32Array(buf, base, HART_STATE_BYTES / 4);
    this.f64 = new Float64Array(buf, base, HART_STATE_BYTES / 8);
    this.f32 = new Float32Array(buf, base, HART_STATE_BYTES / 4);
    this.m8 = new Int8Array(buf);
    this.mu8 = new Uint8Array(buf);
    this.m16 = new Int16Array(buf);
    this.mu16 = new Uint16Array(buf);
    this.m32 = new Int32Array(buf);
    this.m64 = new BigInt64Array(buf);
    this.ramBase = bus.ramBase;
    this.ramEnd = bus.ramBase + bus.ramSize;
    this.ramHost = bus.ramHostOffset;
    this.codeMark = new Uint8Array(bus.ramSize / 4096);
    // 4 privilege levels x (R, W, X), after the hart state blocks.
    const tlbBase = TLB_REGION + hartId * HART_MMU_BYTES;
    if (tlbBase + HART_MMU_BYTES > bus.ramHostOffset) throw new Error(`too many harts for the state region`);
    this.tlbSets = [0, 1, 2, 3].map((p) => [0, 1, 2].map((a) => new Tlb(buf, tlbBase + (p * 3 + a) * TLB_BYTES, p)));
    this.dirty = new Uint8Array(bus.ramSize / 4096).fill(1);
    this.wtlbMap = new WriteTlbMap(bus.ramSize / 4096);
    this.tlbR = this.tlbSets[3][0];
    this.tlbW = this.tlbSets[3][1];
    this.tlbX = this.tlbSets[3][2];
    const ibcBase = tlbBase + 12 * TLB_BYTES;
    this.ibc = new Int32Array(buf, ibcBase, IBTC_BYTES / 4);
    bus.onRamWrite((paddr, len) => externalWrite(this, paddr, len));
    this.reset(0x1000);
  }

  /** Reset to M-mode at `pc` (privileged spec 3.4: reset state). */
  reset(pc: number): void {
    // Interrupt lines, the retired count and a pending attention survive a reset.
    const hw = this.mipHw, icount = this.icount, attention = this.attention;
    this.x.fill(0n, 0, 128);
    this.mipHw = hw; this.icount = icount; this.attention = attention;
    this.x[PC] = BigInt(pc);
    this.privLevel = PRIV_M;
    this.ms = 0;
    this.medeleg = 0; this.mideleg = 0; this.mie = 0; this.mipSw = 0;
    this.mtvec = 0n; this.stvec = 0n; this.mepc = 0n; this.sepc = 0n;
    this.mcause = 0n; this.scause = 0n; this.mtval = 0n; this.stval = 0n;
    this.mscratch = 0n; this.sscratch = 0n; this.satp = 0n;
    this.mcounteren = 0; this.scounteren = 0; this.menvcfg = 0n; this.senvcfg = 0n;
    this.mcountinhibit = 0; this.stimecmp = -1n; this.stimecmpNum = Infinity;
    this.fflags = 0; this.frm = 0;
    this.pmpcfg.fill(0); this.pmpaddr.fill(0n); updatePmpActive(this);
    this.clearReservation();
    this.waiting = false;
    this.mipHw &= ~MIP_STIP;
    updateTranslation(this);
    flushAllTlbs(this);
    flushCodeCache(this);
    updateIrq(this);
  }

  // =====================================================================
  // State (snapshots): architectural state only; TLBs, decoded pages, PMP ranges and the
  // translation mode are derived and rebuilt by load().
  // =====================================================================

  save(): HartState {
    const h = (v: bigint): string => BigInt.asUintN(64, v).toString(16);
    return {
      v: 1,
      regs: this.savedRegs(),
      priv: this.privLevel, mstatus: this.ms, medeleg: this.medeleg, mideleg: this.mideleg, mie: this.mie,
      mipSw: this.mipSw, mipHw: this.mipHw,
      mtvec: h(this.mtvec), stvec: h(this.stvec), mepc: h(this.mepc), sepc: h(this.sepc),
      mcause: h(this.mcause), scause: h(this.scause), mtval: h(this.mtval), stval: h(this.stval),
      mscratch: h(this.mscratch), sscratch: h(this.sscratch), satp: h(this.satp),
      mcounteren: this.mcounteren, scounteren: this.scounteren, menvcfg: h(this.menvcfg), senvcfg: h(this.senvcfg),
      mcountinhibit: this.mcountinhibit, stimecmp: h(this.stimecmp), fflags: this.fflags, frm: this.frm,
      pmpcfg: [...this.pmpcfg], pmpaddr: this.pmpaddr.map(h),
      icount: this.icount, minstretOffset: this.minstretOffset, mcycleOffset: this.mcycleOffset,
      minstretFrozen: this.minstretFrozen, mcycleFrozen: this.mcycleFrozen,
      resvValid: this.resvValid, resvAddr: this.resvAddr, waiting: this.waiting,
    };
  }

  /** The register block as saved: the run loop's attention flag is not state (load() sets it). */
  private savedRegs(): Uint8Array {
    const regs = new Uint8Array(this.x.buffer, this.x.byteOffset, HART_STATE_BYTES).slice();
    regs.fill(0, ATTENTION * 8, ATTENTION * 8 + 8);
    // Scratch slots are dead between instructions, and what they last held depends on
    // which code ran translated (x0 writes, 64-bit load temporaries): not state.
    regs.fill(0, SINK * 8, SINK * 8 + 8);
    regs.fill(0, SCRATCH * 8, JIT_RETIRED * 8 + 8);
    regs.fill(0, JIT_DEPTH * 8, JIT_DEPTH * 8 + 8);
    regs.fill(0, JIT_RAS * 8, (JIT_RAS + JIT_RAS_SIZE) * 8);
    regs.fill(0, JIT_CTX * 8, JIT_HOT * 8 + 8); // (derived: the target cache's epoch and hits)
    return regs;
  }

  load(st: HartState): void {
    if (st?.v !== 1) throw new Error(`hart state: unsupported version ${String(st?.v)}`);
    const regs = st.regs;
    if (!(regs instanceof Uint8Array) || regs.length !== HART_STATE_BYTES) throw new Error('hart state: malformed register block');
    const b = (name: string, v: string): bigint => {
      if (typeof v !== 'string' || !/^[0-9a-f]{1,16}$/.test(v)) throw new Error(`hart state: malformed ${name}`);
      return BigInt.asIntN(64, BigInt('0x' + v));
    };
    const n = (name: string, v: number): number => {
      if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`hart state: malformed ${name}`);
      return v;
    };
    if (!Array.isArray(st.pmpcfg) || st.pmpcfg.length !== 16 || !Array.isArray(st.pmpaddr) || st.pmpaddr.length !== 16) throw new Error('hart state: malformed PMP');
    // Validate everything before changing anything (never half-load).
    const big = {
      mtvec: b('mtvec', st.mtvec), stvec: b('stvec', st.stvec), mepc: b('mepc', st.mepc), sepc: b('sepc', st.sepc),
      mcause: b('mcause', st.mcause), scause: b('scause', st.scause), mtval: b('mtval', st.mtval), stval: b('stval', st.stval),
      mscratch: b('mscratch', st.mscratch), sscratch: b('sscratch', st.sscratch), satp: b('satp', st.satp),
      menvcfg: b('menvcfg', st.menvcfg), senvcfg: b('senvcfg', st.senvcfg), stimecmp: b('stimecmp', st.stimecmp),
    };
    const pmpaddr = st.pmpaddr.map((v, i) => b(`pmpaddr${i}`, v));
    const priv = n('priv', st.priv);
    if (priv !== PRIV_U && priv !== PRIV_S && priv !== PRIV_M) throw new Error('hart state: bad privilege');
    for (const k of ['mstatus', 'medeleg', 'mideleg', 'mie', 'mipSw', 'mipHw', 'mcounteren', 'scounteren', 'mcountinhibit', 'fflags', 'frm',
      'icount', 'minstretOffset', 'mcycleOffset', 'minstretFrozen', 'mcycleFrozen', 'resvAddr'] as const) n(k, st[k]);
    new Uint8Array(this.x.buffer, this.x.byteOffset, HART_STATE_BYTES).set(regs);
    this.privLevel = priv; this.ms = st.mstatus; this.medeleg = st.medeleg; this.mideleg = st.mideleg; this.mie = st.mie;
    this.mipSw = st.mipSw; this.mipHw = st.mipHw;
    this.mtvec = big.mtvec; this.stvec = big.stvec; this.mepc = big.mepc; this.sepc = big.sepc;
    this.mcause = big.mcause; this.scause = big.scause; this.mtval = big.mtval; this.stval = big.stval;
    this.mscratch = big.mscratch; this.sscratch = big.sscratch; this.satp = big.satp;
    this.mcounteren = st.mcounteren; this.scounteren = st.scounteren; this.menvcfg = big.menvcfg; this.senvcfg = big.senvcfg;
    this.mcountinhibit = st.mcountinhibit; this.fflags = st.fflags; this.frm = st.frm;
    this.stimecmp = big.stimecmp; this.stimecmpNum = Number(BigInt.asUintN(64, big.stimecmp));
    for (let i = 0; i < 16; i++) { this.pmpcfg[i] = st.pmpcfg[i]; this.pmpaddr[i] = BigInt.asUintN(64, pmpaddr[i]); }
    this.icount = st.icount; this.minstretOffset = st.minstretOffset; this.mcycleOffset = st.mcycleOffset;
    this.minstretFrozen = st.minstretFrozen; this.mcycleFrozen = st.mcycleFrozen;
    if (st.resvValid === true) this.setReservation(st.resvAddr); else this.clearReservation();
    this.waiting = st.waiting === true;
    this.stopRequested = false;
    // Derived state.
    updatePmpActive(this);
    updateTranslation(this);
    flushAllTlbs(this);
    flushCodeCache(this);
    this.attention = true;
  }

  get priv(): number { return this.privLevel; }
  get mstatus(): number { return this.ms; }
  /** mip as M-mode reads it (CSR reads, tests, debugger). */
  get mipValue(): number { return this.mipSw | this.mipHw; }

  /**
   * Leave M-mode firmware for `priv` at `pc` as an MRET would (MPP becomes U, MPRV is
   * cleared below M): the built-in SBI's hand-off to the kernel, test runners.
   */
  enterPrivilege(priv: number, pc: bigint): void {
    let ms = this.ms & ~MSTATUS.MPP;
    if (priv !== PRIV_M) ms &= ~MSTATUS.MPRV;
    this.ms = ms;
    this.privLevel = priv;
    privChanged(this);
    updateIrq(this);
    this.x[PC] = pc;
  }

  get pc(): bigint { return this.x[PC]; }
  set pc(v: bigint) { this.x[PC] = v; }

  // =====================================================================
  // Run loop
  // =====================================================================

  /**
   * Execute up to `budget` instructions. Returns the number executed (traps count as one).
   * Stops early on WFI (`waiting`), or on requestStop().
   */
  run(budget: number): number {
    const x32 = this.x32;
    const f64 = this.f64;
    const jit = this.jit;
    const enter = jit !== null ? jit.enter : null;
    const ibc = this.ibc;
    let n = 0;
    // At a block start (after a control transfer, a trap or entry) translated code may run.
    let start = true;
    if (x32[WAITING * 2] !== 0 && x32[ATTENTION * 2] === 0) return 0;
    // Rare paths of this loop run early in every slice, or branch-free: V8 optimizes the
    // loop long before a boot's first interrupt, translated entry or trap from translated
    // code, and a path its optimized code never saw run throws that code away (five times
    // in a boot, each ~20-40 ms unoptimized until V8 compiled it again). So attention is
    // served on entry too (nothing to do then: ATTENTION is set whenever an interrupt is
    // pending and enabled, or a stop was requested).
    let serve = true;
    let hotPage: DecodedPage | null = null;
    while (n < budget) {
      try {
        while (n < budget) {
          if (serve || x32[ATTENTION * 2] !== 0) {
            serve = false;
            this.flushIcount();
            if (serviceAttention(this)) return n;
            start = true;
          }
          const lo = x32[PC * 2];
          const hi = x32[PC * 2 + 1];
          let page = this.fetchPage;
          if ((lo & ~0xfff) !== this.fetchLo || hi !== this.fetchHi) page = fetchSlow(this, lo, hi);
          const idx = (lo & 0xfff) >>> 1;
          let d = page[idx];
          if (d === undefined) d = decodeAt(this, page, idx, lo, hi);
          if (start && jit !== null) {
            if (d.blockIdx >= 0) {
              // (Entries the target cache took since it sent this one here count too.)
              const was = d.hits;
              d.hits = was + 1 + x32[JIT_HOT * 2];
              x32[JIT_HOT * 2] = 0;
              if (((was ^ d.hits) & -HOT_ENTRIES) !== 0) hotPage = page; // (for endSlice)
              // With less than a block's worth left, translated code would stop after this
              // one block and come back here, over and over until the slice ended: end it
              // now (unless nothing ran yet: a short slice up to a virtual-clock deadline).
              const room = budget - n;
              if (d.blockLen <= room && (room >= MAX_BLOCK || n === 0)) {
                // Remember pc -> function for translated indirect transfers (state.ts IBTC_SIZE).
                // (ibcIndex by hand: V8 inlined the function before it had run enough to
                // keep type feedback, and dropped this loop's code at the first entry.)
                // In the set's second way: refresh it there; else the first way's entry moves to
                // the second. (Every operation runs at every entry: one first run late, in a
                // short-circuit, threw the loop's optimized code away.)
                let e = (((lo >>> 1) ^ (lo >>> 12)) & (IBTC_SIZE / 2 - 1)) * (2 * IBTC_WORDS);
                const p = e ^ IBTC_WORDS, w0lo = ibc[e], w0hi = ibc[e + 1];
                if (((ibc[p] ^ lo) | (ibc[p + 1] ^ hi)) === 0) e = p;
                else if (((w0lo ^ lo) | (w0hi ^ hi)) !== 0) { ibc[p] = w0lo; ibc[p + 1] = w0hi; ibc[p + 2] = ibc[e + 2]; ibc[p + 3] = ibc[e + 3]; }
                ibc[e] = lo; ibc[e + 1] = hi; ibc[e + 2] = x32[JIT_CTX * 2];
                ibc[e + 3] = (ibc[e + 3] & ~IBTC_FN_MASK) | d.blockIdx; // (the slot's hit count goes on)
                // (ibcPageSlot, in the U half for a U-mode entry: JIT_CTX's privilege bits 0.)
                const ctx = x32[JIT_CTX * 2];
                const vpn = hi * 1048576 + (lo >>> 12), pi = (((lo >>> 12) ^ (hi >>> 20)) & IBTC_PAGE_MASK) + (((ctx & 3) - 1) >>> 31) * IBC_U_PAGES;
                const had = this.ibcPages[pi];
                if (had !== vpn) this.ibcPages[pi] = had === IBC_NO_PAGE ? vpn : IBC_PAGES;
                this.flushIcount();
                this.inBlock = true;
                x32[JIT_DEPTH * 2] = 0; // (no host calls wait: translated code starts its stack afresh)
                const k = enter!(budget - n, 0, lo & 0xfff, d.blockIdx);
                this.inBlock = false;
                jit.stats.entries++;
                jit.stats.executed += k;
                n += k;
                f64[ICOUNT] += k;
                if (k !== 0) continue;
              } else if (n > 0) {
                // Too little budget left: end the slice here, at the block's head, so the
                // next slice enters it translated. (Interpreted from here, the run went on to
                // the next control transfer: hundreds of instructions of unrolled code per
                // slice.)
                budget = n;
                continue;
              }
            } else if (++d.hits >= jit.threshold && page[idx] === d) {
              // (An uncached instruction, e.g. one crossing a page, is never a block head.)
              this.planBlock(d, page, lo);
              if (d.blockIdx >= 0) continue;
            } else if (d.hits === URGENT_HITS && jit.hasPending) {
              jit.flush();
              if (d.blockIdx >= 0) continue;
            }
          }
          // pc + len in 32-bit halves (BigInt<->Number round trips are slow); carry into hi.
          const nlo = (lo + d.len) | 0;
          x32[NPC * 2] = nlo;
          x32[NPC * 2 + 1] = (nlo >>> 0) < (lo >>> 0) ? (hi + 1) | 0 : hi;
          d.exec(this, d);
          x32[PC * 2] = x32[NPC * 2];
          x32[PC * 2 + 1] = x32[NPC * 2 + 1];
          n++;
          this.unflushed++;
          // The next instruction starts a block after a control transfer, and after one the
          // decoded page does not hold (it crossed into the next page: never translated), or
          // the straight-line code after it would stay interpreted up to its next transfer
          // (in an unrolled function: thousands of instructions).
          start = d.ends || page[idx] !== d;
        }
      } catch (e) {
        this.flushIcount();
        if (e !== TRAP_SIGNAL) throw e;
        // A trap inside a translated block: the instructions it retired before count too
        // (branch-free, as above: interpreted code traps long before translated code does).
        const retired = x32[JIT_RETIRED * 2], k = this.inBlock ? retired : 0;
        this.inBlock = false;
        n += k + 1;
        f64[ICOUNT] += k;
        takeTrap(this, this.pendingCause, false, this.pendingTvalLo, this.pendingTvalHi);
        start = true;
      }
    }
    this.flushIcount();
    if (jit !== null) jit.endSlice(hotPage);
    return n;
  }

  /**
   * Translate code: block starts entered `threshold` times are compiled to WebAssembly
   * (0: on first entry). Infinity turns the translator off. `batch`: gather a few run
   * slices' blocks into one module (off: compile at the end of each slice).
   */
  enableJit(threshold: number, batch = true): void {
    if (threshold === Infinity) { this.jit = null; return; }
    if (this.jit) { this.jit.threshold = threshold; this.jit.batch = batch; return; }
    this.jit = new Translator(this.bus.memory, this.hartId * HART_STATE_BYTES, this.jitMemory(), threshold, this.ibc.byteOffset);
    this.jit.batch = batch;
    this.jit.onFull = () => flushCodeCache(this);
    this.jit.onReplace = (old) => ibcForget(this, old);
  }

  /**
   * Plan a block at `head` (in the current fetch page, which is RAM). The translator may
   * look at other instructions of the same page now or when it compiles the page again, so
   * `at` decodes straight from the page's RAM into its decoded-page array.
   */
  private planBlock(head: Decoded, page: (Decoded | undefined)[], lo: number): void {
    const host = this.ramHost + this.fetchPpn * 4096;
    const mu16 = this.mu16;
    this.jit!.plan(head, lo & 0xfff, page, (o) => {
      if (o < 0 || o >= 4096 || (o & 1) !== 0) return null;
      const i = o >>> 1;
      const known = page[i];
      if (known !== undefined) return known;
      let raw = mu16[(host + o) >>> 1];
      if ((raw & 3) === 3) {
        // A 32-bit instruction in the page's last parcel crosses into another page: not here.
        if (o === 4094) return null;
        raw |= mu16[((host + o) >>> 1) + 1] << 16;
      }
      const d = decode(raw | 0);
      page[i] = d;
      return d;
    }, lo);
  }

  /**
   * The memory helpers translated code calls. The code itself leaves the block when
   * ATTENTION is set after a call; these flag JIT_EXIT when a store dropped decoded code.
   */
  private jitMemory(): JitMemory {
    const x32 = this.x32;
    const EXIT = JIT_EXIT * 2;
    const afterStore = (epoch: number): void => { if (this.codeEpoch !== epoch) x32[EXIT] = 1; };
    return {
      load8: (lo, hi) => this.load8(lo, hi),
      load8u: (lo, hi) => this.load8u(lo, hi),
      load16: (lo, hi) => this.load16(lo, hi),
      load16u: (lo, hi) => this.load16u(lo, hi),
      load32: (lo, hi) => this.load32(lo, hi),
      load64: (lo, hi) => { this.load64(lo, hi); },
      store8: (lo, hi, v) => { const e = this.codeEpoch; this.store8(lo, hi, v); afterStore(e); },
      store16: (lo, hi, v) => { const e = this.codeEpoch; this.store16(lo, hi, v); afterStore(e); },
      store32: (lo, hi, v) => { const e = this.codeEpoch; this.store32(lo, hi, v); afterStore(e); },
      store64: (lo, hi, vlo, vhi) => { const e = this.codeEpoch; this.store64(lo, hi, vlo, vhi); afterStore(e); },
      exec: (d) => {
        const e = this.codeEpoch;
        // As the interpreter does: NPC = pc + len (rows that take this path never jump).
        const lo = x32[PC * 2], nlo = (lo + d.len) | 0;
        x32[NPC * 2] = nlo;
        x32[NPC * 2 + 1] = (nlo >>> 0) < (lo >>> 0) ? (x32[PC * 2 + 1] + 1) | 0 : x32[PC * 2 + 1];
        d.exec(this, d);
        afterStore(e);
      },
    };
  }


  // =====================================================================
  // Loads and stores
  // =====================================================================

  /** rs1 + imm, low half (sets eaHiV too). */
  eaLo(d: Decoded): number {
    const x32 = this.x32;
    const b = x32[d.rs1 * 2];
    const s = (b >>> 0) + d.imm;
    this.eaHiV = (x32[d.rs1 * 2 + 1] + (s > 0xffffffff ? 1 : s < 0 ? -1 : 0)) | 0;
    return (this.eaLoV = s | 0);
  }

  /** High half of the last eaLo(). */
  eaHi(_d: Decoded): number { return this.eaHiV; }

  load8(lo: number, hi: number): number {
    const t = this.tlbR, e = ((lo >>> 12) & TLB_MASK) << 2;
    if (t.tag[e] === (lo & ~0xfff) && t.tag[e + 1] === hi) return this.m8[t.host[e + 2] + (lo & 0xfff)];
    return (loadSlow(this, lo, hi, 1) << 24) >> 24;
  }

  load8u(lo: number, hi: number): number {
    const t = this.tlbR, e = ((lo >>> 12) & TLB_MASK) << 2;
    if (t.tag[e] === (lo & ~0xfff) && t.tag[e + 1] === hi) return this.mu8[t.host[e + 2] + (lo & 0xfff)];
    return loadSlow(this, lo, hi, 1) & 0xff;
  }

  load16(lo: number, hi: number): number {
    const t = this.tlbR, e = ((lo >>> 12) & TLB_MASK) << 2;
    if (t.tag[e] === (lo & ~0xfff) && t.tag[e + 1] === hi && (lo & 1) === 0) return this.m16[(t.host[e + 2] + (lo & 0xfff)) >>> 1];
    return (loadSlow(this, lo, hi, 2) << 16) >> 16;
  }

  load16u(lo: number, hi: number): number {
    const t = this.tlbR, e = ((lo >>> 12) & TLB_MASK) << 2;
    if (t.tag[e] === (lo & ~0xfff) && t.tag[e + 1] === hi && (lo & 1) === 0) return this.mu16[(t.host[e + 2] + (lo & 0xfff)) >>> 1];
    return loadSlow(this, lo, hi, 2) & 0xffff;
  }

  load32(lo: number, hi: number): number {
    const t = this.tlbR, e = ((lo >>> 12) & TLB_MASK) << 2;
    if (t.tag[e] === (lo & ~0xfff) && t.tag[e + 1] === hi && (lo & 3) === 0) return this.m32[(t.host[e + 2] + (lo & 0xfff)) >>> 2];
    return loadSlow(this, lo, hi, 4) | 0;
  }

  load32u(lo: number, hi: number): number {
    return this.load32(lo, hi) >>> 0;
  }

  /** 64-bit load into x32[2*SCRATCH], x32[2*SCRATCH+1]. */
  load64(lo: number, hi: number): void {
    const t = this.tlbR, e = ((lo >>> 12) & TLB_MASK) << 2;
    if (t.tag[e] === (lo & ~0xfff) && t.tag[e + 1] === hi && (lo & 7) === 0) {
      const o = (t.host[e + 2] + (lo & 0xfff)) >>> 2;
      this.x32[SCRATCH * 2] = this.m32[o];
      this.x32[SCRATCH * 2 + 1] = this.m32[o + 1];
      return;
    }
    loadSlow(this, lo, hi, 8);
  }

  store8(lo: number, hi: number, v: number): void {
    const t = this.tlbW, e = ((lo >>> 12) & TLB_MASK) << 2;
    if (t.tag[e] === (lo & ~0xfff) && t.tag[e + 1] === hi) { this.m8[t.host[e + 2] + (lo & 0xfff)] = v; return; }
    storeSlow(this, lo, hi, 1, v, 0);
  }

  store16(lo: number, hi: number, v: number): void {
    const t = this.tlbW, e = ((lo >>> 12) & TLB_MASK) << 2;
    if (t.tag[e] === (lo & ~0xfff) && t.tag[e + 1] === hi && (lo & 1) === 0) { this.m16[(t.host[e + 2] + (lo & 0xfff)) >>> 1] = v; return; }
    storeSlow(this, lo, hi, 2, v, 0);
  }

  store32(lo: number, hi: number, v: number): void {
    const t = this.tlbW, e = ((lo >>> 12) & TLB_MASK) << 2;
    if (t.tag[e] === (lo & ~0xfff) && t.tag[e + 1] === hi && (lo & 3) === 0) { this.m32[(t.host[e + 2] + (lo & 0xfff)) >>> 2] = v; return; }
    storeSlow(this, lo, hi, 4, v, 0);
  }

  store64(lo: number, hi: number, vlo: number, vhi: number): void {
    const t = this.tlbW, e = ((lo >>> 12) & TLB_MASK) << 2;
    if (t.tag[e] === (lo & ~0xfff) && t.tag[e + 1] === hi && (lo & 7) === 0) {
      const o = (t.host[e + 2] + (lo & 0xfff)) >>> 2;
      this.m32[o] = vlo;
      this.m32[o + 1] = vhi;
      return;
    }
    storeSlow(this, lo, hi, 8, vlo, vhi);
  }

  /** Ask the run loop to return before the next instruction. */
  requestStop(): void {
    this.stopRequested = true;
    this.attention = true;
  }

  // =====================================================================
  // The other modules' entry points, as methods for the ISA rows, firmware and board
  // =====================================================================

  /** Raise a synchronous exception: abandons the current instruction (trap.ts). */
  raise(cause: number, tvalLo: number, tvalHi: number): never { return raise(this, cause, tvalLo, tvalHi); }
  /**
   * An exception raised by an instruction the run loop interprets (never from a translated
   * block: ecall ends its block and has no emitter), taken in place: the loop then goes on
   * at the trap vector. Throwing costs ~4 µs a trap (V8's unwinder), twice a system call.
   * The loop counts the instruction as retired; an exception does not retire (unflushed -1).
   */
  trapInPlace(cause: number, tvalLo: number, tvalHi: number): void {
    if (this.inBlock) raise(this, cause, tvalLo, tvalHi);
    this.flushIcount();
    takeTrap(this, cause, false, tvalLo, tvalHi);
    const x32 = this.x32;
    x32[NPC * 2] = x32[PC * 2];
    x32[NPC * 2 + 1] = x32[PC * 2 + 1];
    this.unflushed = -1;
  }
  /** Illegal instruction: mtval holds the instruction bits. */
  illegal(d: Decoded): never { return illegal(this, d); }
  /** Trap entry; the trapping pc is x[PC]. */
  takeTrap(cause: number, interrupt: boolean, tvalLo: number, tvalHi: number): void { takeTrap(this, cause, interrupt, tvalLo, tvalHi); }
  /** mret / sret. */
  xret(fromM: boolean): void { xret(this, fromM); }
  /** Recompute whether the run loop must look at interrupts; wakes WFI. */
  updateIrq(): void { updateIrq(this); }
  /** Hardware interrupt inputs (CLINT MSIP/MTIP, PLIC MEIP/SEIP). */
  setIrqLine(bit: number, level: boolean): void { setIrqLine(this, bit, level); }
  /** Firmware-side writes of software-writable mip bits (the built-in SBI's IPIs). */
  setSoftwareInterrupt(mask: number): void { this.mipSw |= mask & S_INTERRUPTS; updateIrq(this); }
  clearSoftwareInterrupt(mask: number): void { this.mipSw &= ~mask; }
  /** True when an enabled interrupt is pending (ignoring global enables): WFI must not sleep. */
  get interruptPending(): boolean { return ((this.mipSw | this.mipHw) & this.mie) !== 0; }
  /** WFI: sleep unless an interrupt is pending. */
  wfi(): void { wfi(this); }
  /** Re-evaluate the Sstc supervisor timer against the clock. Returns the tick it fires at (or Infinity). */
  updateTimers(now: number): number { return updateTimers(this, now); }
  /** The built-in SBI's set_timer: program the supervisor timer compare. */
  setSupervisorTimer(lo: number, hi: number): void {
    setStimecmp(this, BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo >>> 0)));
  }

  /** Translate a virtual address (mmu.ts); acc 0 read, 1 write, 2 execute. */
  translate(lo: number, hi: number, acc: number, priv: number): number { return translate(this, lo, hi, acc, priv); }
  /** PMP check for [pa, pa+size). */
  pmpCheck(pa: number, size: number, acc: number, priv: number): boolean { return pmpCheck(this, pa, size, acc, priv); }
  /** sfence.vma, satp writes: drop all cached virtual translations (U and S sets). */
  flushTlb(): void { flushTlb(this); }
  /** sfence.vma x0, rs2 (one address space): non-global translations only. */
  flushTlbAsid(): void { flushNonGlobalTlb(this); }
  /** sfence.vma for one virtual address: drop the translations that used its leaf PTE. */
  flushTlbPage(lo: number, hi: number): void { flushTlbPage(this, lo, hi); }

  /** AMO/LR/SC address check and translation; returns the host byte offset (memory.ts). */
  amoHost(lo: number, hi: number, size: number, forWrite: boolean): number { return amoHost(this, lo, hi, size, forWrite); }
  /** m32 access for AMO handlers. */
  get mem32(): Int32Array { return this.m32; }
  /** 64-bit view for AMO handlers (offsets from amoHost are 8-aligned there). */
  get mem64(): BigInt64Array { return this.m64; }
  setReservation(pa: number): void { this.x32[RESV * 2] = this.ramHost + (pa - this.ramBase); }
  /** SC: succeeds only with a valid reservation on the same address; always clears it. */
  checkReservation(pa: number): boolean { return checkReservation(this, pa); }
  /** RAM pages written since the last call (snapshots, migration). */
  takeDirtyPages(): number[] { return takeDirtyPages(this); }
  /** fence.i and remote fences: drop every decoded page. */
  flushCodeCache(): void { flushCodeCache(this); }

  /** Read a CSR (csrs.ts). */
  csrRead(d: Decoded, csr: number): bigint { return csrRead(this, d, csr); }
  /** The value CSRRS/CSRRC modify (mip: only the software SEIP). */
  csrRmwBase(csr: number, old: bigint): bigint { return csrRmwBase(this, csr, old); }
  /** Write a CSR with WARL legalisation. */
  csrWrite(d: Decoded, csr: number, v: bigint): void { csrWrite(this, d, csr, v); }

  /** mcycle as the guest sees it (Zicntr; frozen while mcountinhibit.CY). */
  get mcycle(): number {
    // (retired: exact also for a CSR instruction a translated block runs through its exec)
    return (this.mcountinhibit & COUNTINHIBIT_CY) !== 0 ? this.mcycleFrozen : this.retired + this.mcycleOffset;
  }

  get minstret(): number {
    return (this.mcountinhibit & COUNTINHIBIT_IR) !== 0 ? this.minstretFrozen : this.retired + this.minstretOffset;
  }

  // ---- FP support (used by the F/D table rows; hot, so here) ----

  /** Illegal-instruction when mstatus.FS is Off (privileged spec 3.1.6.6). */
  requireFP(): void {
    if ((this.ms & MSTATUS.FS) === 0) raise(this, CAUSE.ILLEGAL_INSTRUCTION, currentRaw(this), 0);
  }

  markFPDirty(): void { this.ms |= MSTATUS.FS; }

  /** Resolve an rm field: 7 = dynamic (frm). Reserved modes raise illegal-instruction. */
  roundingMode(rm: number): number {
    const r = rm === 7 ? this.frm : rm;
    if (r >= 5) raise(this, CAUSE.ILLEGAL_INSTRUCTION, currentRaw(this), 0);
    return r;
  }

  /** FS field value (0 Off, 1 Initial, 2 Clean, 3 Dirty). */
  get fs(): number { return (this.ms >>> FS_SHIFT) & 3; }

  // ---- debug helpers ----

  /** Read an integer register as an unsigned bigint (tests, debugger). */
  reg(i: number): bigint { return BigInt.asUintN(64, this.x[i]); }
  freg(i: number): bigint { return BigInt.asUintN(64, this.x[F0 + i]); }
}
