import type { Bus } from '../machine/bus.js';
import type { TimeSource, Stateful } from '../devices/device.js';
import {
  CSR, MSTATUS, MSTATUS_WMASK, SSTATUS_MASK, IRQ_PRIORITY, CAUSE, MEDELEG_MASK, MISA_VALUE,
  IRQ, PRIV_U, PRIV_S, PRIV_M, S_INTERRUPTS, ALL_INTERRUPTS, MIP_SSIP, MIP_STIP, MIP_SEIP,
  SATP_BARE, SATP_SV39, SATP_SV57,
} from './csr.js';
import {
  PC, NPC, SCRATCH, HART_STATE_BYTES, F0, MSTATUS_LO, FFLAGS, FRM, JIT_RETIRED, JIT_EXIT, TLB_SIZE, TLB_TAG_HI, TLB_HOST, TLB_BYTES, TLB_REGION, TLB_R_PTR, TLB_W_PTR,
} from './state.js';
import { Translator, type JitMemory } from './jit/translator.js';
import { Decoded } from './isa/types.js';
import { decode } from './isa/table.js';

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

/** Thrown (never allocated per trap) to abandon the current instruction; the run loop takes the trap. */
export const TRAP_SIGNAL = Object.freeze({ trap: true });

/** Built-in firmware hook: when set, `ecall` from S-mode is handled here instead of trapping to M. */
export interface SbiHandler {
  ecall(h: Hart): void;
}

const ACC_R = 0, ACC_W = 1, ACC_X = 2;
const TLB_MASK = TLB_SIZE - 1;
/** A tag that never matches a page-aligned low word. */
const TLB_INVALID = 1;
/** Decoded-page sentinel for code fetched from MMIO (boot ROM): never cached. */
const UNCACHED_PAGE: (Decoded | undefined)[] = [];

const FS_SHIFT = 13;
/** Page-table entry bits (privileged spec 4.3.1, Figure 4.18). */
const PTE_V = 0x01, PTE_R = 0x02, PTE_W = 0x04, PTE_X = 0x08, PTE_U = 0x10, PTE_A = 0x40, PTE_D = 0x80;
/** mcountinhibit bits (privileged spec 3.1.12). */
const COUNTINHIBIT_CY = 1, COUNTINHIBIT_IR = 4;
/** 4 KiB pages per superpage at each page-table level. */
const SUPERPAGE_SPAN = [1, 512, 512 * 512, 512 ** 3, 512 ** 4];
const SD64 = -0x8000_0000_0000_0000n;

/**
 * One software TLB (direct-mapped by virtual page number) for one access type. Its three
 * arrays live in the shared memory (state.ts TLB layout) so translated code probes the
 * same entries inline.
 */
class Tlb {
  readonly tagLo: Int32Array;
  readonly tagHi: Int32Array;
  /** Host byte offset of the page in the shared memory. */
  readonly host: Uint32Array;
  constructor(buf: ArrayBuffer, readonly byteOffset: number) {
    this.tagLo = new Int32Array(buf, byteOffset, TLB_SIZE);
    this.tagHi = new Int32Array(buf, byteOffset + TLB_TAG_HI, TLB_SIZE);
    this.host = new Uint32Array(buf, byteOffset + TLB_HOST, TLB_SIZE);
    this.flush();
  }
  flush(): void { this.tagLo.fill(TLB_INVALID); }
}

/**
 * One RISC-V hart: RV64IMAFDC with Zicsr, Zifencei, Zicntr, Zihintpause, Sstc, and the
 * privileged architecture 1.12 (M/S/U, Sv39/48/57, PMP).
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

  // Memory views over the whole shared memory (RAM at bus.ramHostOffset).
  private readonly m8: Int8Array;
  private readonly mu8: Uint8Array;
  private readonly m16: Int16Array;
  private readonly mu16: Uint16Array;
  private readonly m32: Int32Array;
  private readonly m64: BigInt64Array;
  private readonly ramBase: number;
  private readonly ramEnd: number;
  private readonly ramHost: number;

  /** Current privilege level; changed only by traps, xRET and enterPrivilege(), which keep the TLB selection in step. */
  private privLevel = PRIV_M;
  /** Privilege used for loads/stores (differs from priv when mstatus.MPRV is set). */
  private dpriv = PRIV_M;

  // ---- CSRs ----
  /**
   * Low word of mstatus (the upper word is fixed UXL=SXL=2, SD derived); written through
   * writeMstatus/traps/xRET, and FS by translated FP code. Kept in the state block.
   */
  private get ms(): number { return this.x32[MSTATUS_LO * 2]; }
  private set ms(v: number) { this.x32[MSTATUS_LO * 2] = v; }
  medeleg = 0;
  mideleg = 0;
  mie = 0;
  /** Software-writable mip bits (SSIP, STIP, SEIP). */
  private mipSw = 0;
  /** Hardware-driven mip bits (interrupt lines, Sstc timer). */
  private mipHw = 0;
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
  private stimecmpNum = Infinity;
  /** fflags and frm, in the state block (translated FP code sets fflags). */
  get fflags(): number { return this.x32[FFLAGS * 2]; }
  set fflags(v: number) { this.x32[FFLAGS * 2] = v; }
  get frm(): number { return this.x32[FRM * 2]; }
  set frm(v: number) { this.x32[FRM * 2] = v; }
  readonly pmpcfg = new Uint8Array(16);
  readonly pmpaddr: bigint[] = new Array<bigint>(16).fill(0n);
  private readonly pmpLo = new Float64Array(16);
  private readonly pmpHi = new Float64Array(16);
  private pmpActive = false;

  /** Instructions retired (also the cycle count); the virtual clock runs on it. */
  icount = 0;
  /**
   * Instructions retired, exact even from inside a translated block (which adds its count
   * to icount only when it returns, but publishes it before every helper call).
   */
  get retired(): number { return this.inBlock ? this.icount + this.x32[JIT_RETIRED * 2] : this.icount; }
  /** minstret = icount + offset while counting; the frozen value while mcountinhibit.IR is set. */
  private minstretOffset = 0;
  private mcycleOffset = 0;
  private minstretFrozen = 0;
  private mcycleFrozen = 0;

  // ---- translation state ----
  private satpMode = SATP_BARE;
  private satpRoot = 0;
  /** TLB sets per privilege level (U, S, -, M), so traps and xRETs need no flush. */
  private readonly tlbSets: Tlb[][];
  private tlbR: Tlb;
  private tlbW: Tlb;
  private tlbX: Tlb;
  private fetchLo = TLB_INVALID;
  private fetchHi = 0;
  private fetchPage: (Decoded | undefined)[] = UNCACHED_PAGE;
  private fetchPpn = -1;
  private readonly codePages = new Map<number, (Decoded | undefined)[]>();
  /** One byte per RAM page: 1 if decoded code is cached for it. */
  private readonly codeMark: Uint8Array;
  /**
   * One byte per RAM page: 1 if written since the last takeDirtyPages() (snapshots,
   * migration). A page is marked when it enters a write TLB, so the store fast path needs
   * no check; takeDirtyPages() empties the write TLBs to re-arm the marking.
   */
  private readonly dirty: Uint8Array;

  // ---- LR/SC ----
  private resvValid = false;
  private resvAddr = 0;

  // ---- run state ----
  /** Set when the run loop must look at interrupts, WFI or a stop request before the next instruction. */
  private attention = false;
  /** In WFI, waiting for an interrupt. */
  waiting = false;
  private stopRequested = false;
  private pendingCause = 0;
  private pendingTvalLo = 0;
  private pendingTvalHi = 0;
  sbi: SbiHandler | null = null;
  /** The WebAssembly translator, when enabled (enableJit). */
  jit: Translator | null = null;
  /** True while a translated block runs (a trap then adds the block's retired count). */
  private inBlock = false;
  /** Bumped whenever decoded code is dropped: a translated block that stored into code must stop. */
  private codeEpoch = 0;
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
    const tlbBase = TLB_REGION + hartId * 12 * TLB_BYTES;
    if (tlbBase + 12 * TLB_BYTES > bus.ramHostOffset) throw new Error(`too many harts for the state region`);
    this.tlbSets = [0, 1, 2, 3].map((p) => [0, 1, 2].map((a) => new Tlb(buf, tlbBase + (p * 3 + a) * TLB_BYTES)));
    this.dirty = new Uint8Array(bus.ramSize / 4096).fill(1);
    this.tlbR = this.tlbSets[3][0];
    this.tlbW = this.tlbSets[3][1];
    this.tlbX = this.tlbSets[3][2];
    bus.onRamWrite((paddr, len) => this.externalWrite(paddr, len));
    this.reset(0x1000);
  }

  /** Reset to M-mode at `pc` (privileged spec 3.4: reset state). */
  reset(pc: number): void {
    this.x.fill(0n, 0, 128);
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
    this.pmpcfg.fill(0); this.pmpaddr.fill(0n); this.updatePmpActive();
    this.resvValid = false;
    this.waiting = false;
    this.mipHw &= ~MIP_STIP;
    this.updateTranslation();
    this.flushAllTlbs();
    this.flushCodeCache();
    this.updateIrq();
  }

  // =====================================================================
  // State (snapshots): architectural state only; TLBs, decoded pages, PMP ranges and the
  // translation mode are derived and rebuilt by load().
  // =====================================================================

  save(): HartState {
    const h = (v: bigint): string => BigInt.asUintN(64, v).toString(16);
    return {
      v: 1,
      regs: new Uint8Array(this.x.buffer, this.x.byteOffset, HART_STATE_BYTES).slice(),
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
    this.resvValid = st.resvValid === true; this.resvAddr = st.resvAddr; this.waiting = st.waiting === true;
    this.stopRequested = false;
    // Derived state.
    this.updatePmpActive();
    this.updateTranslation();
    this.flushAllTlbs();
    this.flushCodeCache();
    this.attention = true;
  }

  get priv(): number { return this.privLevel; }
  get mstatus(): number { return this.ms; }
  /** mip as M-mode reads it (tests, debugger). */
  get mipValue(): number { return this.mip; }

  /**
   * Leave M-mode firmware for `priv` at `pc` as an MRET would (MPP becomes U, MPRV is
   * cleared below M): the built-in SBI's hand-off to the kernel, test runners.
   */
  enterPrivilege(priv: number, pc: bigint): void {
    let ms = this.ms & ~MSTATUS.MPP;
    if (priv !== PRIV_M) ms &= ~MSTATUS.MPRV;
    this.ms = ms;
    this.privLevel = priv;
    this.privChanged();
    this.updateIrq();
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
    const jit = this.jit;
    let n = 0;
    // At a block start (after a control transfer, a trap or entry) translated code may run.
    let start = true;
    if (this.waiting && !this.attention) return 0;
    while (n < budget) {
      try {
        while (n < budget) {
          if (this.attention) {
            if (this.serviceAttention()) return n;
            start = true;
          }
          const lo = x32[PC * 2];
          const hi = x32[PC * 2 + 1];
          let page = this.fetchPage;
          if ((lo & ~0xfff) !== this.fetchLo || hi !== this.fetchHi) page = this.fetchSlow(lo, hi);
          const idx = (lo & 0xfff) >>> 1;
          let d = page[idx];
          if (d === undefined) d = this.decodeAt(page, idx, lo, hi);
          if (start && jit !== null) {
            const b = d.block;
            if (b !== null) {
              if (n + d.blockLen <= budget) {
                this.inBlock = true;
                const k = b(budget - n, 0, lo & 0xfff);
                this.inBlock = false;
                jit.stats.entries++;
                jit.stats.executed += k;
                n += k;
                this.icount += k;
                if (k !== 0) continue;
              }
            } else if (++d.hits >= jit.threshold && page[idx] === d) {
              // (An uncached instruction, e.g. one crossing a page, is never a block head.)
              this.planBlock(d, page, lo);
              if (d.block !== null) continue;
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
          this.icount++;
          start = d.ends;
        }
      } catch (e) {
        if (e !== TRAP_SIGNAL) throw e;
        if (this.inBlock) {
          this.inBlock = false;
          const k = x32[JIT_RETIRED * 2];
          n += k;
          this.icount += k;
        }
        n++;
        this.takeTrap(this.pendingCause, false, this.pendingTvalLo, this.pendingTvalHi);
        start = true;
      }
    }
    if (jit !== null) jit.endSlice();
    return n;
  }

  /**
   * Translate code: block starts entered `threshold` times are compiled to WebAssembly
   * (0: on first entry). Infinity turns the translator off.
   */
  enableJit(threshold: number, background = true): void {
    if (threshold === Infinity) { this.jit = null; return; }
    if (this.jit) { this.jit.threshold = threshold; this.jit.background = background; return; }
    this.jit = new Translator(this.bus.memory, this.hartId * HART_STATE_BYTES, this.jitMemory(), threshold);
    this.jit.background = background;
    this.jit.onFull = () => this.flushCodeCache();
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
    });
  }

  /** The memory helpers translated code calls; they flag JIT_EXIT when the block must stop. */
  private jitMemory(): JitMemory {
    const x32 = this.x32;
    const EXIT = JIT_EXIT * 2;
    const afterLoad = (v: number): number => { if (this.attention) x32[EXIT] = 1; return v; };
    const afterStore = (epoch: number): void => { if (this.attention || this.codeEpoch !== epoch) x32[EXIT] = 1; };
    return {
      load8: (lo, hi) => afterLoad(this.load8(lo, hi)),
      load8u: (lo, hi) => afterLoad(this.load8u(lo, hi)),
      load16: (lo, hi) => afterLoad(this.load16(lo, hi)),
      load16u: (lo, hi) => afterLoad(this.load16u(lo, hi)),
      load32: (lo, hi) => afterLoad(this.load32(lo, hi)),
      load64: (lo, hi) => { this.load64(lo, hi); afterLoad(0); },
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

  /** Ask the run loop to return before the next instruction. */
  requestStop(): void {
    this.stopRequested = true;
    this.attention = true;
  }

  /** Returns true if the run loop must return now. */
  private serviceAttention(): boolean {
    this.attention = false;
    const cause = this.pendingInterrupt();
    if (cause >= 0) {
      this.waiting = false;
      this.takeTrap(cause, true, 0, 0);
    }
    if (this.stopRequested) {
      this.stopRequested = false;
      this.attention = this.pendingInterrupt() >= 0;
      return true;
    }
    if (this.waiting) return true;
    return false;
  }

  // =====================================================================
  // Fetch and decode
  // =====================================================================

  private fetchSlow(lo: number, hi: number): (Decoded | undefined)[] {
    // Translate the exact pc so a fault's tval is the faulting address, then work per page.
    const pa = this.translate(lo, hi, ACC_X, this.privLevel) - (lo & 0xfff);
    if (pa >= this.ramBase && pa < this.ramEnd) {
      this.fetchLo = lo & ~0xfff;
      this.fetchHi = hi;
      // Cache the page only if PMP treats all of it alike (as tlbFill does for data);
      // otherwise every parcel goes through translate() and its PMP check (fetchParcel).
      const uniform = (!this.pmpActive && this.privLevel === PRIV_M) || this.pmpCheck(pa, 4096, ACC_X, this.privLevel);
      if (!uniform) {
        this.fetchPage = UNCACHED_PAGE;
        this.fetchPpn = -1;
        return UNCACHED_PAGE;
      }
      const ppn = (pa - this.ramBase) / 4096;
      let page = this.codePages.get(ppn);
      if (page === undefined) {
        page = new Array<Decoded | undefined>(2048);
        this.codePages.set(ppn, page);
        this.codeMark[ppn] = 1;
        this.dropWriteTlbFor(this.ramHost + ppn * 4096);
      }
      this.fetchPage = page;
      this.fetchPpn = ppn;
      return page;
    }
    const r = this.bus.findRegion(pa);
    if (!r || !r.executable) this.raise(CAUSE.FETCH_ACCESS, lo, hi);
    // ROM: never cached; each parcel is read through fetchParcel.
    this.fetchLo = lo & ~0xfff;
    this.fetchHi = hi;
    this.fetchPage = UNCACHED_PAGE;
    this.fetchPpn = -1;
    return UNCACHED_PAGE;
  }

  /** Fetch one 16-bit parcel through translation (slow path, for ROM code, PMP-split pages and page-crossing). */
  private fetchParcel(lo: number, hi: number): number {
    const pa = this.translate(lo, hi, ACC_X, this.privLevel);
    if (pa >= this.ramBase && pa < this.ramEnd) return this.mu16[(this.ramHost + pa - this.ramBase) >>> 1];
    const r = this.bus.findRegion(pa);
    if (!r || !r.executable) this.raise(CAUSE.FETCH_ACCESS, lo, hi);
    return r.device.read(pa - r.base, 2) & 0xffff;
  }

  private decodeAt(page: (Decoded | undefined)[], idx: number, lo: number, hi: number): Decoded {
    let raw: number;
    let cacheable = page !== UNCACHED_PAGE;
    const off = lo & 0xfff;
    if (cacheable) {
      const host = this.ramHost + this.fetchPpn * 4096 + off;
      raw = this.mu16[host >>> 1];
      if ((raw & 3) === 3) {
        if (off === 0xffe) {
          // Crosses into the next page, which may map elsewhere: never cache it.
          cacheable = false;
          const nlo = (lo + 2) | 0;
          raw |= this.fetchParcel(nlo, nlo === 0 ? (hi + 1) | 0 : hi) << 16;
        } else {
          raw |= this.mu16[(host >>> 1) + 1] << 16;
        }
      }
    } else {
      raw = this.fetchParcel(lo, hi);
      if ((raw & 3) === 3) {
        const nlo = (lo + 2) | 0;
        raw |= this.fetchParcel(nlo, nlo === 0 ? (hi + 1) | 0 : hi) << 16;
      }
    }
    const d = decode(raw | 0);
    if (cacheable) page[idx] = d;
    return d;
  }

  /**
   * RAM pages (indices from the start of RAM) written by the hart, page-table A/D updates,
   * DMA or loaders since the last call; clears the record. Everything counts as written
   * before the first call.
   */
  takeDirtyPages(): number[] {
    const out: number[] = [];
    const d = this.dirty;
    for (let p = 0; p < d.length; p++) if (d[p]) out.push(p);
    d.fill(0);
    for (const set of this.tlbSets) set[1].flush();
    return out;
  }

  /** fence.i and remote fences: drop every decoded page. */
  flushCodeCache(): void {
    this.codeEpoch++;
    this.jit?.reset();
    this.codePages.clear();
    this.codeMark.fill(0);
    this.fetchLo = TLB_INVALID;
    this.fetchPage = UNCACHED_PAGE;
    this.fetchPpn = -1;
  }

  private invalidateCodePage(ppn: number): void {
    this.codeEpoch++;
    this.codePages.delete(ppn);
    this.codeMark[ppn] = 0;
    if (this.fetchPpn === ppn) {
      this.fetchLo = TLB_INVALID;
      this.fetchPage = UNCACHED_PAGE;
      this.fetchPpn = -1;
    }
  }

  private dropWriteTlbFor(hostPage: number): void {
    for (const set of this.tlbSets) {
      const t = set[1];
      for (let i = 0; i < TLB_SIZE; i++) if (t.host[i] === hostPage) t.tagLo[i] = TLB_INVALID;
    }
  }

  /** The hart wrote RAM outside the store path (page-table A/D updates): drop decoded code there. */
  private ramWritten(pa: number): void {
    const ppn = (pa - this.ramBase) >>> 12;
    if (this.codeMark[ppn]) this.invalidateCodePage(ppn);
    this.dirty[ppn] = 1;
  }

  /** RAM written by a device or loader: drop decoded code and a matching LR reservation. */
  private externalWrite(paddr: number, len: number): void {
    const first = Math.max(0, Math.floor((paddr - this.ramBase) / 4096));
    const last = Math.min(this.codeMark.length - 1, Math.floor((paddr + len - 1 - this.ramBase) / 4096));
    for (let p = first; p <= last; p++) {
      if (this.codeMark[p]) this.invalidateCodePage(p);
      this.dirty[p] = 1;
    }
    if (this.resvValid && this.resvAddr + 8 > paddr && this.resvAddr < paddr + len) this.resvValid = false;
  }

  // =====================================================================
  // Traps and interrupts
  // =====================================================================

  /** Raise a synchronous exception: abandons the current instruction. */
  raise(cause: number, tvalLo: number, tvalHi: number): never {
    this.pendingCause = cause;
    this.pendingTvalLo = tvalLo;
    this.pendingTvalHi = tvalHi;
    throw TRAP_SIGNAL;
  }

  /** Illegal instruction: mtval holds the instruction bits (privileged spec 3.1.16). */
  illegal(d: Decoded): never {
    return this.raise(CAUSE.ILLEGAL_INSTRUCTION, d.len === 2 ? d.raw & 0xffff : d.raw, 0);
  }

  /** Trap entry (privileged spec 3.1.6.1, 3.1.7, 4.1.1). The trapping pc is x[PC]. */
  takeTrap(cause: number, interrupt: boolean, tvalLo: number, tvalHi: number): void {
    const x = this.x;
    const epc = x[PC];
    const tval = (BigInt(tvalHi) << 32n) | BigInt(tvalLo >>> 0);
    const deleg = interrupt ? this.mideleg : this.medeleg;
    const causeBig = interrupt ? (BigInt(cause) | SD64) : BigInt(cause);
    this.resvValid = false;
    let ms = this.ms;
    let vec: bigint;
    if (this.privLevel <= PRIV_S && ((deleg >>> cause) & 1) !== 0) {
      this.scause = causeBig;
      this.sepc = epc;
      this.stval = tval;
      ms = (ms & ~(MSTATUS.SPIE | MSTATUS.SIE | MSTATUS.SPP)) |
        ((ms & MSTATUS.SIE) !== 0 ? MSTATUS.SPIE : 0) | (this.privLevel === PRIV_S ? MSTATUS.SPP : 0);
      this.privLevel = PRIV_S;
      vec = this.stvec;
    } else {
      this.mcause = causeBig;
      this.mepc = epc;
      this.mtval = tval;
      ms = (ms & ~(MSTATUS.MPIE | MSTATUS.MIE | MSTATUS.MPP)) |
        ((ms & MSTATUS.MIE) !== 0 ? MSTATUS.MPIE : 0) | (this.privLevel << 11);
      this.privLevel = PRIV_M;
      vec = this.mtvec;
    }
    this.ms = ms;
    let target = vec & ~3n;
    if ((vec & 3n) === 1n && interrupt) target += BigInt(cause * 4);
    x[PC] = BigInt.asIntN(64, target);
    this.privChanged();
    this.updateIrq();
  }

  /** mret / sret (privileged spec 3.3.2). */
  xret(fromM: boolean): void {
    let ms = this.ms;
    let target: bigint;
    if (fromM) {
      const mpp = (ms & MSTATUS.MPP) >>> 11;
      ms = (ms & ~(MSTATUS.MIE | MSTATUS.MPP)) | ((ms & MSTATUS.MPIE) !== 0 ? MSTATUS.MIE : 0) | MSTATUS.MPIE;
      if (mpp !== PRIV_M) ms &= ~MSTATUS.MPRV;
      this.privLevel = mpp;
      target = this.mepc;
    } else {
      const spp = (ms & MSTATUS.SPP) !== 0 ? PRIV_S : PRIV_U;
      ms = (ms & ~(MSTATUS.SIE | MSTATUS.SPP)) | ((ms & MSTATUS.SPIE) !== 0 ? MSTATUS.SIE : 0) | MSTATUS.SPIE;
      ms &= ~MSTATUS.MPRV;
      this.privLevel = spp;
      target = this.sepc;
    }
    this.ms = ms;
    this.x[NPC] = target;
    this.privChanged();
    this.updateIrq();
  }

  private get mip(): number {
    return this.mipSw | this.mipHw;
  }

  /** Highest-priority interrupt that can be taken now, or -1 (privileged spec 3.1.9). */
  private pendingInterrupt(): number {
    const pend = this.mip & this.mie;
    if (pend === 0) return -1;
    const mEnabled = this.privLevel < PRIV_M || (this.ms & MSTATUS.MIE) !== 0;
    const sEnabled = this.privLevel < PRIV_S || (this.privLevel === PRIV_S && (this.ms & MSTATUS.SIE) !== 0);
    const toM = mEnabled ? pend & ~this.mideleg : 0;
    const toS = sEnabled ? pend & this.mideleg : 0;
    const m = toM !== 0 ? toM : toS;
    if (m === 0) return -1;
    for (let i = 0; i < IRQ_PRIORITY.length; i++) {
      const c = IRQ_PRIORITY[i];
      if ((m >>> c) & 1) return c;
    }
    return -1;
  }

  /** Recompute whether the run loop must look at interrupts; wakes WFI. */
  updateIrq(): void {
    if ((this.mip & this.mie) !== 0) {
      this.waiting = false;
      if (this.pendingInterrupt() >= 0) this.attention = true;
    }
  }

  /** Hardware interrupt inputs (CLINT MSIP/MTIP, PLIC MEIP/SEIP). */
  setIrqLine(bit: number, level: boolean): void {
    const m = 1 << bit;
    const v = level ? this.mipHw | m : this.mipHw & ~m;
    if (v === this.mipHw) return;
    this.mipHw = v;
    this.updateIrq();
  }

  /** Firmware-side writes of software-writable mip bits (the built-in SBI's IPIs). */
  setSoftwareInterrupt(mask: number): void { this.mipSw |= mask & S_INTERRUPTS; this.updateIrq(); }
  clearSoftwareInterrupt(mask: number): void { this.mipSw &= ~mask; }

  /** True when an enabled interrupt is pending (ignoring global enables): WFI must not sleep. */
  get interruptPending(): boolean { return (this.mip & this.mie) !== 0; }

  /** WFI (privileged spec 3.3.3): sleep unless an interrupt is pending. */
  wfi(): void {
    if ((this.mip & this.mie) !== 0) return;
    this.waiting = true;
    this.attention = true;
  }

  /** Re-evaluate the Sstc supervisor timer against the clock. Returns the tick it fires at (or Infinity). */
  updateTimers(now: number): number {
    const stce = (this.menvcfg & SD64) !== 0n;
    const fire = stce || this.sbi !== null;
    const level = fire && now >= this.stimecmpNum;
    const cur = (this.mipHw & MIP_STIP) !== 0;
    if (level !== cur) this.setIrqLine(IRQ.STI, level);
    return fire && !level ? this.stimecmpNum : Infinity;
  }

  /** The built-in SBI's set_timer: program the supervisor timer compare. */
  setSupervisorTimer(lo: number, hi: number): void {
    this.setStimecmp(BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo >>> 0)));
  }

  private setStimecmp(v: bigint): void {
    this.stimecmp = v;
    this.stimecmpNum = Number(BigInt.asUintN(64, v));
    this.updateTimers(this.clock.now());
    // The machine's next deadline moved: let the run loop recompute it (exact virtual-clock timers).
    this.requestStop();
  }

  // =====================================================================
  // Address translation and PMP (privileged spec 3.7, 4.3-4.6)
  // =====================================================================

  /** Select the TLB sets for the current privilege (and MPRV data privilege). */
  private privChanged(): void {
    const ms = this.ms;
    this.dpriv = this.privLevel === PRIV_M && (ms & MSTATUS.MPRV) !== 0 ? (ms & MSTATUS.MPP) >>> 11 : this.privLevel;
    const d = this.tlbSets[this.dpriv];
    this.tlbR = d[0];
    this.tlbW = d[1];
    this.tlbX = this.tlbSets[this.privLevel][2];
    this.fetchLo = TLB_INVALID;
    // Translated code finds the data TLBs through these slots.
    this.x32[TLB_R_PTR * 2] = this.tlbR.byteOffset;
    this.x32[TLB_W_PTR * 2] = this.tlbW.byteOffset;
  }

  /** satp, SUM/MXR changes: recompute the translation mode and drop translations. */
  private updateTranslation(): void {
    this.satpMode = Number(BigInt.asUintN(64, this.satp) >> 60n);
    this.satpRoot = Number(this.satp & 0xfff_ffff_ffffn) * 4096;
    this.privChanged();
    this.flushTlb();
  }

  /** sfence.vma, satp writes: drop all cached virtual translations (U and S sets). */
  flushTlb(): void {
    for (let p = 0; p <= 1; p++) for (const t of this.tlbSets[p]) t.flush();
    this.fetchLo = TLB_INVALID;
  }

  /** PMP changes: drop every cached translation, M-mode included. */
  private flushAllTlbs(): void {
    for (const set of this.tlbSets) for (const t of set) t.flush();
    this.fetchLo = TLB_INVALID;
  }

  private pageFaultCause(acc: number): number {
    return acc === ACC_R ? CAUSE.LOAD_PAGE_FAULT : acc === ACC_W ? CAUSE.STORE_PAGE_FAULT : CAUSE.FETCH_PAGE_FAULT;
  }

  private accessFaultCause(acc: number): number {
    return acc === ACC_R ? CAUSE.LOAD_ACCESS : acc === ACC_W ? CAUSE.STORE_ACCESS : CAUSE.FETCH_ACCESS;
  }

  /**
   * Translate a virtual address to physical (a Number), checking permissions and PMP for
   * the byte at va. Raises the architectural fault with tval = va.
   */
  translate(lo: number, hi: number, acc: number, priv: number): number {
    let pa: number;
    if (priv === PRIV_M || this.satpMode === SATP_BARE) {
      pa = (hi >>> 0) * 4294967296 + (lo >>> 0);
      if (hi >>> 24 !== 0) this.raise(this.accessFaultCause(acc), lo, hi);
    } else {
      pa = this.walk(lo, hi, acc, priv);
    }
    if (this.pmpActive || priv !== PRIV_M) {
      if (!this.pmpCheck(pa, 1, acc, priv)) this.raise(this.accessFaultCause(acc), lo, hi);
    }
    return pa;
  }

  /** Sv39/Sv48/Sv57 page-table walk (privileged spec 4.3.2) with hardware A/D update. */
  private walk(lo: number, hi: number, acc: number, priv: number): number {
    const levels = this.satpMode - SATP_SV39 + 3;
    const vaBits = 12 + 9 * levels;
    // Bits 63..vaBits-1 must all equal bit vaBits-1.
    const topShift = vaBits - 1 - 32;
    const top = hi >> topShift;
    if (top !== 0 && top !== -1) this.raise(this.pageFaultCause(acc), lo, hi);
    let a = this.satpRoot;
    const ms = this.ms;
    for (let i = levels - 1; i >= 0; i--) {
      const sh = 12 + 9 * i;
      const vpn = (sh < 32 ? (lo >>> sh) | (sh > 23 ? hi << (32 - sh) : 0) : hi >>> (sh - 32)) & 511;
      const pteAddr = a + vpn * 8;
      const off = this.ptePhys(pteAddr, lo, hi, acc);
      const plo = this.m32[off >>> 2];
      const phi = this.m32[(off >>> 2) + 1];
      // Reserved bits 63:54 (no Svnapot/Svpbmt) must be zero; W without R is reserved.
      if ((plo & PTE_V) === 0 || (plo & (PTE_R | PTE_W)) === PTE_W || (phi >>> 22) !== 0) this.raise(this.pageFaultCause(acc), lo, hi);
      const ppn = (phi & 0x3fffff) * 4194304 + (plo >>> 10);
      if ((plo & (PTE_R | PTE_X)) === 0) {
        if ((plo & (PTE_D | PTE_A | PTE_U)) !== 0) this.raise(this.pageFaultCause(acc), lo, hi); // reserved on non-leaf
        a = ppn * 4096;
        continue;
      }
      // Leaf: permission checks (4.3.1, 3.1.6.3).
      if (priv === PRIV_U) {
        if ((plo & PTE_U) === 0) this.raise(this.pageFaultCause(acc), lo, hi);
      } else if ((plo & PTE_U) !== 0) {
        if (acc === ACC_X || (ms & MSTATUS.SUM) === 0) this.raise(this.pageFaultCause(acc), lo, hi);
      }
      const ok = acc === ACC_R ? (plo & PTE_R) !== 0 || ((ms & MSTATUS.MXR) !== 0 && (plo & PTE_X) !== 0)
        : acc === ACC_W ? (plo & PTE_W) !== 0 : (plo & PTE_X) !== 0;
      if (!ok) this.raise(this.pageFaultCause(acc), lo, hi);
      if (i > 0 && ppn % SUPERPAGE_SPAN[i] !== 0) this.raise(this.pageFaultCause(acc), lo, hi); // misaligned superpage
      // A/D update: hardware-managed (the spec permits either scheme; QEMU does the same).
      const need = PTE_A | (acc === ACC_W ? PTE_D : 0);
      if ((plo & need) !== need) {
        if (!this.pmpCheck(pteAddr, 8, ACC_W, PRIV_S)) this.raise(this.accessFaultCause(acc), lo, hi);
        this.m32[off >>> 2] = plo | need;
        this.ramWritten(pteAddr);
      }
      // Offset within the (super)page comes from the virtual address.
      const inPage = i === 0 ? lo & 0xfff : i === 1 ? lo & 0x1fffff : i === 2 ? lo & 0x3fffffff
        : (hi & (i === 3 ? 0x7f : 0xffff)) * 4294967296 + (lo >>> 0);
      return ppn * 4096 + inPage;
    }
    return this.raise(this.pageFaultCause(acc), lo, hi);
  }

  /** Host offset of a PTE; PTEs must be in RAM and pass PMP as S-mode reads. */
  private ptePhys(pa: number, lo: number, hi: number, acc: number): number {
    if (pa < this.ramBase || pa + 8 > this.ramEnd || !this.pmpCheck(pa, 8, ACC_R, PRIV_S)) {
      this.raise(this.accessFaultCause(acc), lo, hi);
    }
    return this.ramHost + (pa - this.ramBase);
  }

  /** PMP check (privileged spec 3.7.1): lowest-numbered matching entry decides. */
  pmpCheck(pa: number, size: number, acc: number, priv: number): boolean {
    if (!this.pmpActive) return priv === PRIV_M;
    const bit = acc === ACC_R ? 1 : acc === ACC_W ? 2 : 4;
    for (let i = 0; i < 16; i++) {
      const lo = this.pmpLo[i], hiEx = this.pmpHi[i];
      if (hiEx <= lo || pa + size <= lo || pa >= hiEx) continue;
      if (pa < lo || pa + size > hiEx) return false; // partial match fails
      const cfg = this.pmpcfg[i];
      if (priv === PRIV_M && (cfg & 0x80) === 0) return true;
      return (cfg & bit) !== 0;
    }
    return priv === PRIV_M;
  }

  /** Recompute the byte ranges of the PMP entries (exactly, from the 54-bit pmpaddr values). */
  private updatePmpActive(): void {
    let any = false;
    let prevTop = 0n;
    for (let i = 0; i < 16; i++) {
      const cfg = this.pmpcfg[i];
      const a = (cfg >>> 3) & 3;
      const addr = this.pmpaddr[i];
      let lo = 0n, hi = 0n;
      if (a === 1) { lo = prevTop; hi = addr << 2n; } else if (a === 2) { lo = addr << 2n; hi = lo + 4n; } else if (a === 3) {
        // NAPOT: trailing ones of pmpaddr give the size 2^(t+3).
        let t = 0n;
        while (t < 54n && ((addr >> t) & 1n) === 1n) t++;
        lo = (addr & ~((1n << t) - 1n)) << 2n;
        hi = lo + (1n << (t + 3n));
      }
      prevTop = addr << 2n;
      this.pmpLo[i] = Number(lo);
      this.pmpHi[i] = a === 0 ? 0 : Number(hi);
      if (a !== 0) any = true;
    }
    this.pmpActive = any;
    this.flushAllTlbs();
  }

  /**
   * Translate and fill the TLB when the whole page may be cached: RAM, not a code page for
   * writes, and PMP uniform over the page. Returns the physical address.
   */
  private tlbFill(t: Tlb, lo: number, hi: number, acc: number): number {
    const pa = this.translate(lo, hi, acc, this.dpriv);
    if (pa >= this.ramBase && pa < this.ramEnd) {
      const pagePa = pa - (pa % 4096);
      const ppn = (pagePa - this.ramBase) / 4096;
      if (acc === ACC_W) {
        if (this.codeMark[ppn]) this.invalidateCodePage(ppn);
        this.dirty[ppn] = 1; // the write this fill serves, and every fast-path write after it
      }
      const uniform = (!this.pmpActive && this.dpriv === PRIV_M) || this.pmpCheck(pagePa, 4096, acc, this.dpriv);
      if (uniform) {
        const i = (lo >>> 12) & TLB_MASK;
        t.tagLo[i] = lo & ~0xfff;
        t.tagHi[i] = hi;
        t.host[i] = this.ramHost + (pagePa - this.ramBase);
      }
    }
    return pa;
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
    const t = this.tlbR, i = (lo >>> 12) & TLB_MASK;
    if (t.tagLo[i] === (lo & ~0xfff) && t.tagHi[i] === hi) return this.m8[t.host[i] + (lo & 0xfff)];
    return (this.loadSlow(lo, hi, 1) << 24) >> 24;
  }

  load8u(lo: number, hi: number): number {
    const t = this.tlbR, i = (lo >>> 12) & TLB_MASK;
    if (t.tagLo[i] === (lo & ~0xfff) && t.tagHi[i] === hi) return this.mu8[t.host[i] + (lo & 0xfff)];
    return this.loadSlow(lo, hi, 1) & 0xff;
  }

  load16(lo: number, hi: number): number {
    const t = this.tlbR, i = (lo >>> 12) & TLB_MASK;
    if (t.tagLo[i] === (lo & ~0xfff) && t.tagHi[i] === hi && (lo & 1) === 0) return this.m16[(t.host[i] + (lo & 0xfff)) >>> 1];
    return (this.loadSlow(lo, hi, 2) << 16) >> 16;
  }

  load16u(lo: number, hi: number): number {
    const t = this.tlbR, i = (lo >>> 12) & TLB_MASK;
    if (t.tagLo[i] === (lo & ~0xfff) && t.tagHi[i] === hi && (lo & 1) === 0) return this.mu16[(t.host[i] + (lo & 0xfff)) >>> 1];
    return this.loadSlow(lo, hi, 2) & 0xffff;
  }

  load32(lo: number, hi: number): number {
    const t = this.tlbR, i = (lo >>> 12) & TLB_MASK;
    if (t.tagLo[i] === (lo & ~0xfff) && t.tagHi[i] === hi && (lo & 3) === 0) return this.m32[(t.host[i] + (lo & 0xfff)) >>> 2];
    return this.loadSlow(lo, hi, 4) | 0;
  }

  load32u(lo: number, hi: number): number {
    return this.load32(lo, hi) >>> 0;
  }

  /** 64-bit load into x32[2*SCRATCH], x32[2*SCRATCH+1]. */
  load64(lo: number, hi: number): void {
    const t = this.tlbR, i = (lo >>> 12) & TLB_MASK;
    if (t.tagLo[i] === (lo & ~0xfff) && t.tagHi[i] === hi && (lo & 7) === 0) {
      const o = (t.host[i] + (lo & 0xfff)) >>> 2;
      this.x32[SCRATCH * 2] = this.m32[o];
      this.x32[SCRATCH * 2 + 1] = this.m32[o + 1];
      return;
    }
    this.loadSlow(lo, hi, 8);
  }

  store8(lo: number, hi: number, v: number): void {
    const t = this.tlbW, i = (lo >>> 12) & TLB_MASK;
    if (t.tagLo[i] === (lo & ~0xfff) && t.tagHi[i] === hi) { this.m8[t.host[i] + (lo & 0xfff)] = v; return; }
    this.storeSlow(lo, hi, 1, v, 0);
  }

  store16(lo: number, hi: number, v: number): void {
    const t = this.tlbW, i = (lo >>> 12) & TLB_MASK;
    if (t.tagLo[i] === (lo & ~0xfff) && t.tagHi[i] === hi && (lo & 1) === 0) { this.m16[(t.host[i] + (lo & 0xfff)) >>> 1] = v; return; }
    this.storeSlow(lo, hi, 2, v, 0);
  }

  store32(lo: number, hi: number, v: number): void {
    const t = this.tlbW, i = (lo >>> 12) & TLB_MASK;
    if (t.tagLo[i] === (lo & ~0xfff) && t.tagHi[i] === hi && (lo & 3) === 0) { this.m32[(t.host[i] + (lo & 0xfff)) >>> 2] = v; return; }
    this.storeSlow(lo, hi, 4, v, 0);
  }

  store64(lo: number, hi: number, vlo: number, vhi: number): void {
    const t = this.tlbW, i = (lo >>> 12) & TLB_MASK;
    if (t.tagLo[i] === (lo & ~0xfff) && t.tagHi[i] === hi && (lo & 7) === 0) {
      const o = (t.host[i] + (lo & 0xfff)) >>> 2;
      this.m32[o] = vlo;
      this.m32[o + 1] = vhi;
      return;
    }
    this.storeSlow(lo, hi, 8, vlo, vhi);
  }

  /** Slow load: TLB miss, misaligned, page-crossing or MMIO. size 8 writes SCRATCH. */
  private loadSlow(lo: number, hi: number, size: number): number {
    const off = lo & 0xfff;
    if ((lo & (size - 1)) === 0 || off + size <= 4096) {
      // Within one page.
      const pa = this.tlbFill(this.tlbR, lo, hi, ACC_R);
      if (size > 1 && !this.pmpCheck(pa, size, ACC_R, this.dpriv) && (this.pmpActive || this.dpriv !== PRIV_M)) {
        this.raise(CAUSE.LOAD_ACCESS, lo, hi);
      }
      return this.physRead(pa, size, lo, hi);
    }
    // Misaligned across a page boundary: translate both pages before reading.
    const n1 = 4096 - off;
    const pa1 = this.translate(lo, hi, ACC_R, this.dpriv);
    const lo2 = (lo + n1) | 0;
    const hi2 = lo2 === 0 ? (hi + 1) | 0 : hi;
    const pa2 = this.translate(lo2, hi2, ACC_R, this.dpriv);
    let vlo = 0, vhi = 0;
    for (let k = 0; k < size; k++) {
      const b = k < n1 ? this.physRead(pa1 + k, 1, lo, hi) : this.physRead(pa2 + k - n1, 1, lo2, hi2);
      if (k < 4) vlo |= b << (8 * k); else vhi |= b << (8 * (k - 4));
    }
    if (size === 8) { this.x32[SCRATCH * 2] = vlo; this.x32[SCRATCH * 2 + 1] = vhi; }
    return vlo;
  }

  /** Read physical memory (RAM or MMIO) of one page-contained access. */
  private physRead(pa: number, size: number, lo: number, hi: number): number {
    if (pa >= this.ramBase && pa + size <= this.ramEnd) {
      const h = this.ramHost + (pa - this.ramBase);
      let vlo = 0, vhi = 0;
      if (size === 8) {
        for (let k = 0; k < 4; k++) vlo |= this.mu8[h + k] << (8 * k);
        for (let k = 0; k < 4; k++) vhi |= this.mu8[h + 4 + k] << (8 * k);
        this.x32[SCRATCH * 2] = vlo; this.x32[SCRATCH * 2 + 1] = vhi;
        return vlo;
      }
      for (let k = 0; k < size; k++) vlo |= this.mu8[h + k] << (8 * k);
      return vlo;
    }
    const r = this.bus.findRegion(pa);
    if (!r || (pa & (size - 1)) !== 0 || pa + size > r.base + r.size) return this.raise(CAUSE.LOAD_ACCESS, lo, hi);
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
      this.x32[SCRATCH * 2] = vlo; this.x32[SCRATCH * 2 + 1] = vhi;
      return vlo;
    }
    const v = r.device.read(o, size as 1 | 2 | 4);
    return size === 1 ? v & 0xff : size === 2 ? v & 0xffff : v | 0;
  }

  private storeSlow(lo: number, hi: number, size: number, vlo: number, vhi: number): void {
    const off = lo & 0xfff;
    if ((lo & (size - 1)) === 0 || off + size <= 4096) {
      const pa = this.tlbFill(this.tlbW, lo, hi, ACC_W);
      if (size > 1 && !this.pmpCheck(pa, size, ACC_W, this.dpriv) && (this.pmpActive || this.dpriv !== PRIV_M)) {
        this.raise(CAUSE.STORE_ACCESS, lo, hi);
      }
      this.physWrite(pa, size, vlo, vhi, lo, hi);
      return;
    }
    const n1 = 4096 - off;
    const pa1 = this.translate(lo, hi, ACC_W, this.dpriv);
    const lo2 = (lo + n1) | 0;
    const hi2 = lo2 === 0 ? (hi + 1) | 0 : hi;
    const pa2 = this.translate(lo2, hi2, ACC_W, this.dpriv);
    const r1 = this.isRam(pa1, n1), r2 = this.isRam(pa2, size - n1);
    if (!r1) this.raise(CAUSE.STORE_ACCESS, lo, hi);
    if (!r2) this.raise(CAUSE.STORE_ACCESS, lo2, hi2);
    for (let k = 0; k < size; k++) {
      const b = (k < 4 ? vlo >>> (8 * k) : vhi >>> (8 * (k - 4))) & 0xff;
      if (k < n1) this.physWrite(pa1 + k, 1, b, 0, lo, hi); else this.physWrite(pa2 + k - n1, 1, b, 0, lo2, hi2);
    }
  }

  private isRam(pa: number, len: number): boolean {
    return pa >= this.ramBase && pa + len <= this.ramEnd;
  }

  private physWrite(pa: number, size: number, vlo: number, vhi: number, lo: number, hi: number): void {
    if (pa >= this.ramBase && pa + size <= this.ramEnd) {
      const h = this.ramHost + (pa - this.ramBase);
      const ppn = (pa - this.ramBase) >>> 12;
      if (this.codeMark[ppn]) this.invalidateCodePage(ppn);
      this.dirty[ppn] = 1;
      for (let k = 0; k < size; k++) this.mu8[h + k] = k < 4 ? vlo >>> (8 * k) : vhi >>> (8 * (k - 4));
      return;
    }
    const r = this.bus.findRegion(pa);
    if (!r || (pa & (size - 1)) !== 0 || pa + size > r.base + r.size) { this.raise(CAUSE.STORE_ACCESS, lo, hi); }
    const o = pa - r.base;
    if (size === 8) {
      if (r.wide) r.wide.write64(o, (BigInt(vhi >>> 0) << 32n) | BigInt(vlo >>> 0));
      else { r.device.write(o, 4, vlo); r.device.write(o + 4, 4, vhi); }
    } else {
      r.device.write(o, size as 1 | 2 | 4, size === 1 ? vlo & 0xff : size === 2 ? vlo & 0xffff : vlo);
    }
  }

  // =====================================================================
  // Atomics (A extension)
  // =====================================================================

  /**
   * Translate an AMO/LR/SC address: must be naturally aligned (else misaligned exception) and in
   * RAM (else access fault). Checks write permission for AMO/SC (store/AMO causes), read for LR.
   * Returns the host byte offset.
   */
  amoHost(lo: number, hi: number, size: number, forWrite: boolean): number {
    if ((lo & (size - 1)) !== 0) this.raise(forWrite ? CAUSE.MISALIGNED_STORE : CAUSE.MISALIGNED_LOAD, lo, hi);
    const pa = forWrite ? this.tlbFill(this.tlbW, lo, hi, ACC_W) : this.tlbFill(this.tlbR, lo, hi, ACC_R);
    if (forWrite && (this.pmpActive || this.dpriv !== PRIV_M) && !this.pmpCheck(pa, size, ACC_R, this.dpriv)) {
      this.raise(CAUSE.STORE_ACCESS, lo, hi);
    }
    if (!this.isRam(pa, size)) this.raise(forWrite ? CAUSE.STORE_ACCESS : CAUSE.LOAD_ACCESS, lo, hi);
    if (forWrite) {
      const ppn = (pa - this.ramBase) >>> 12;
      if (this.codeMark[ppn]) this.invalidateCodePage(ppn);
      this.dirty[ppn] = 1;
    }
    this.amoPa = pa;
    return this.ramHost + (pa - this.ramBase);
  }

  /** Physical address of the last amoHost(). */
  amoPa = 0;

  /** m32 access for AMO handlers. */
  get mem32(): Int32Array { return this.m32; }
  /** 64-bit view for AMO handlers (offsets from amoHost are 8-aligned there). */
  get mem64(): BigInt64Array { return this.m64; }

  setReservation(pa: number): void { this.resvValid = true; this.resvAddr = pa; }

  /** SC: succeeds only with a valid reservation on the same address; always clears it. */
  checkReservation(pa: number): boolean {
    const ok = this.resvValid && this.resvAddr === pa;
    this.resvValid = false;
    return ok;
  }

  // =====================================================================
  // CSRs (privileged spec chapters 2-4; Zicntr; Sstc)
  // =====================================================================

  /** Check access to CSR `csr` for read (and write if `write`); raises illegal-instruction. */
  private csrCheck(d: Decoded, csr: number, write: boolean): void {
    const minPriv = (csr >>> 8) & 3;
    if (this.privLevel < minPriv) this.illegal(d);
    if (write && (csr >>> 10) === 3) this.illegal(d);
  }

  private counterAllowed(index: number): boolean {
    if (this.privLevel === PRIV_M) return true;
    if (((this.mcounteren >>> index) & 1) === 0) return false;
    if (this.privLevel === PRIV_U && ((this.scounteren >>> index) & 1) === 0) return false;
    return true;
  }

  private mstatusValue(): bigint {
    const ms = this.ms;
    const sd = (ms & MSTATUS.FS) === MSTATUS.FS ? SD64 : 0n;
    return sd | (0xan << 32n) | BigInt(ms >>> 0);
  }

  private sstatusValue(): bigint {
    const ms = this.ms & SSTATUS_MASK;
    const sd = (ms & MSTATUS.FS) === MSTATUS.FS ? SD64 : 0n;
    return sd | (0x2n << 32n) | BigInt(ms >>> 0);
  }

  /** Read a CSR; raises illegal-instruction for missing CSRs or insufficient privilege. */
  csrRead(d: Decoded, csr: number): bigint {
    this.csrCheck(d, csr, false);
    switch (csr) {
      case CSR.fflags: this.requireFP(); return BigInt(this.fflags);
      case CSR.frm: this.requireFP(); return BigInt(this.frm);
      case CSR.fcsr: this.requireFP(); return BigInt((this.frm << 5) | this.fflags);
      case CSR.cycle: if (!this.counterAllowed(0)) this.illegal(d); return BigInt(this.mcycle);
      case CSR.time: if (!this.counterAllowed(1)) this.illegal(d); return BigInt(Math.floor(this.clock.now()));
      case CSR.instret: if (!this.counterAllowed(2)) this.illegal(d); return BigInt(this.minstret);
      case CSR.sstatus: return this.sstatusValue();
      case CSR.sie: return BigInt(this.mie & this.mideleg & S_INTERRUPTS);
      case CSR.stvec: return this.stvec;
      case CSR.scounteren: return BigInt(this.scounteren >>> 0);
      case CSR.senvcfg: return this.senvcfg;
      case CSR.sscratch: return this.sscratch;
      case CSR.sepc: return this.sepc;
      case CSR.scause: return this.scause;
      case CSR.stval: return this.stval;
      case CSR.sip: return BigInt(this.mip & this.mideleg & S_INTERRUPTS);
      case CSR.stimecmp: this.stimecmpCheck(d); return this.stimecmp;
      case CSR.satp:
        if (this.privLevel === PRIV_S && (this.ms & MSTATUS.TVM) !== 0) this.illegal(d);
        return this.satp;
      case CSR.mstatus: return this.mstatusValue();
      case CSR.misa: return MISA_VALUE;
      case CSR.medeleg: return BigInt(this.medeleg);
      case CSR.mideleg: return BigInt(this.mideleg);
      case CSR.mie: return BigInt(this.mie);
      case CSR.mtvec: return this.mtvec;
      case CSR.mcounteren: return BigInt(this.mcounteren >>> 0);
      case CSR.menvcfg: return this.menvcfg;
      case CSR.mcountinhibit: return BigInt(this.mcountinhibit);
      case CSR.mscratch: return this.mscratch;
      case CSR.mepc: return this.mepc;
      case CSR.mcause: return this.mcause;
      case CSR.mtval: return this.mtval;
      case CSR.mip: return BigInt(this.mip);
      case CSR.mcycle: return BigInt(this.mcycle);
      case CSR.minstret: return BigInt(this.minstret);
      case CSR.mvendorid: case CSR.marchid: case CSR.mimpid: case CSR.mconfigptr: return 0n;
      case CSR.mhartid: return BigInt(this.hartId);
    }
    if (csr >= CSR.pmpcfg0 && csr < CSR.pmpcfg0 + 16) {
      if (csr & 1) this.illegal(d); // RV64: odd pmpcfg registers do not exist
      const base = (csr - CSR.pmpcfg0) * 4;
      if (base >= 16) return 0n;
      let v = 0n;
      for (let k = 7; k >= 0; k--) v = (v << 8n) | BigInt(this.pmpcfg[base + k]);
      return v;
    }
    if (csr >= CSR.pmpaddr0 && csr < CSR.pmpaddr0 + 64) {
      const i = csr - CSR.pmpaddr0;
      return i < 16 ? this.pmpaddr[i] : 0n;
    }
    // Zihpm counters and events: present, hardwired to zero.
    if ((csr >= 0xb03 && csr <= 0xb1f) || (csr >= 0x323 && csr <= 0x33f)) return 0n;
    if (csr >= 0xc03 && csr <= 0xc1f) {
      if (!this.counterAllowed(csr - 0xc00)) this.illegal(d);
      return 0n;
    }
    return this.illegal(d);
  }

  /**
   * The value CSRRS/CSRRC modify: the CSR as read, except that for mip only the
   * software-writable SEIP bit takes part (privileged spec 3.1.9), so a PLIC-driven SEIP is
   * never latched into the software bit.
   */
  csrRmwBase(csr: number, old: bigint): bigint {
    if (csr !== CSR.mip) return old;
    return (old & ~BigInt(MIP_SEIP)) | BigInt(this.mipSw & MIP_SEIP);
  }

  private stimecmpCheck(d: Decoded): void {
    if (this.privLevel === PRIV_S && ((this.menvcfg & SD64) === 0n || (this.mcounteren & 2) === 0)) this.illegal(d);
  }

  /** Write a CSR with WARL legalisation. Assumes csrRead() was already done for access checks. */
  csrWrite(d: Decoded, csr: number, v: bigint): void {
    this.csrCheck(d, csr, true);
    const lo = Number(BigInt.asUintN(32, v));
    switch (csr) {
      case CSR.fflags: this.requireFP(); this.fflags = lo & 0x1f; this.markFPDirty(); return;
      case CSR.frm: this.requireFP(); this.frm = lo & 7; this.markFPDirty(); return;
      case CSR.fcsr: this.requireFP(); this.fflags = lo & 0x1f; this.frm = (lo >>> 5) & 7; this.markFPDirty(); return;
      case CSR.sstatus: this.writeMstatus((this.ms & ~SSTATUS_MASK) | (lo & SSTATUS_MASK)); return;
      case CSR.sie: {
        const m = this.mideleg & S_INTERRUPTS;
        this.mie = (this.mie & ~m) | (lo & m);
        this.updateIrq();
        return;
      }
      case CSR.stvec: this.stvec = legalTvec(v, this.stvec); return;
      case CSR.scounteren: this.scounteren = lo; return;
      case CSR.senvcfg: this.senvcfg = v & 1n; return;
      case CSR.sscratch: this.sscratch = v; return;
      case CSR.sepc: this.sepc = v & ~1n; return;
      case CSR.scause: this.scause = v; return;
      case CSR.stval: this.stval = v; return;
      case CSR.sip: {
        // Only SSIP is writable through sip (and only when delegated).
        const m = this.mideleg & MIP_SSIP;
        this.mipSw = (this.mipSw & ~m) | (lo & m);
        this.updateIrq();
        return;
      }
      case CSR.stimecmp: this.stimecmpCheck(d); this.setStimecmp(v); return;
      case CSR.satp: {
        if (this.privLevel === PRIV_S && (this.ms & MSTATUS.TVM) !== 0) this.illegal(d);
        const mode = Number(BigInt.asUintN(64, v) >> 60n);
        if (mode !== SATP_BARE && (mode < SATP_SV39 || mode > SATP_SV57)) return; // unsupported mode: no effect
        // ASIDLEN = 16; PPN = 44 bits.
        this.satp = v;
        this.updateTranslation();
        return;
      }
      case CSR.mstatus: this.writeMstatus(lo); return;
      case CSR.misa: return; // WARL: extensions cannot be disabled
      case CSR.medeleg: this.medeleg = lo & MEDELEG_MASK; return;
      case CSR.mideleg: this.mideleg = lo & S_INTERRUPTS; this.updateIrq(); return;
      case CSR.mie: this.mie = lo & ALL_INTERRUPTS; this.updateIrq(); return;
      case CSR.mtvec: this.mtvec = legalTvec(v, this.mtvec); return;
      case CSR.mcounteren: this.mcounteren = lo; return;
      case CSR.menvcfg:
        this.menvcfg = v & (SD64 | 1n);
        this.updateTimers(this.clock.now());
        return;
      case CSR.mcountinhibit: this.writeMcountinhibit(lo & (COUNTINHIBIT_CY | COUNTINHIBIT_IR)); return;
      case CSR.mscratch: this.mscratch = v; return;
      case CSR.mepc: this.mepc = v & ~1n; return;
      case CSR.mcause: this.mcause = v; return;
      case CSR.mtval: this.mtval = v; return;
      case CSR.mip: {
        // SSIP, STIP (unless Sstc drives it) and SEIP are writable by M-mode.
        const wm = MIP_SSIP | MIP_SEIP | ((this.menvcfg & SD64) !== 0n ? 0 : MIP_STIP);
        this.mipSw = (this.mipSw & ~wm) | (lo & wm);
        this.updateIrq();
        return;
      }
      case CSR.mcycle:
        // The writing instruction itself is not counted (it retires after the write).
        this.mcycleOffset = Number(BigInt.asUintN(64, v)) - this.icount - 1;
        this.mcycleFrozen = Number(BigInt.asUintN(64, v));
        return;
      case CSR.minstret:
        this.minstretOffset = Number(BigInt.asUintN(64, v)) - this.icount - 1;
        this.minstretFrozen = Number(BigInt.asUintN(64, v));
        return;
    }
    if (csr >= CSR.pmpcfg0 && csr < CSR.pmpcfg0 + 16) {
      if (csr & 1) this.illegal(d);
      const base = (csr - CSR.pmpcfg0) * 4;
      if (base >= 16) return;
      for (let k = 0; k < 8; k++) {
        const i = base + k;
        if (this.pmpcfg[i] & 0x80) continue; // locked
        let c = Number((v >> BigInt(8 * k)) & 0xffn) & 0x9f;
        if ((c & 3) === 2) c &= ~3; // W without R is reserved: clear both (WARL)
        this.pmpcfg[i] = c;
      }
      this.updatePmpActive();
      return;
    }
    if (csr >= CSR.pmpaddr0 && csr < CSR.pmpaddr0 + 64) {
      const i = csr - CSR.pmpaddr0;
      if (i >= 16) return;
      if (this.pmpcfg[i] & 0x80) return;
      if (i + 1 < 16 && (this.pmpcfg[i + 1] & 0x80) && ((this.pmpcfg[i + 1] >>> 3) & 3) === 1) return; // locked TOR top
      this.pmpaddr[i] = v & 0x3f_ffff_ffff_ffffn;
      this.updatePmpActive();
      return;
    }
    if ((csr >= 0xb03 && csr <= 0xb1f) || (csr >= 0x323 && csr <= 0x33f)) return;
    this.illegal(d);
  }

  /** mcycle as the guest sees it (Zicntr; frozen while mcountinhibit.CY). */
  get mcycle(): number {
    return (this.mcountinhibit & COUNTINHIBIT_CY) !== 0 ? this.mcycleFrozen : this.icount + this.mcycleOffset;
  }

  get minstret(): number {
    return (this.mcountinhibit & COUNTINHIBIT_IR) !== 0 ? this.minstretFrozen : this.icount + this.minstretOffset;
  }

  /** Inhibiting freezes a counter at its current value; resuming continues from there (privileged spec 3.1.12). */
  private writeMcountinhibit(v: number): void {
    const on = v & ~this.mcountinhibit, off = this.mcountinhibit & ~v;
    if (on & COUNTINHIBIT_CY) this.mcycleFrozen = this.mcycle;
    if (on & COUNTINHIBIT_IR) this.minstretFrozen = this.minstret;
    // Counting resumes with the next instruction.
    if (off & COUNTINHIBIT_CY) this.mcycleOffset = this.mcycleFrozen - this.icount - 1;
    if (off & COUNTINHIBIT_IR) this.minstretOffset = this.minstretFrozen - this.icount - 1;
    this.mcountinhibit = v;
  }

  private writeMstatus(lo: number): void {
    let ms = (this.ms & ~MSTATUS_WMASK) | (lo & MSTATUS_WMASK);
    if ((ms & MSTATUS.MPP) === 2 << 11) ms = (ms & ~MSTATUS.MPP) | (this.ms & MSTATUS.MPP); // MPP=2 reserved
    const changed = ms ^ this.ms;
    this.ms = ms;
    if (changed & (MSTATUS.SUM | MSTATUS.MXR)) this.flushTlb();
    if (changed & (MSTATUS.MPRV | MSTATUS.MPP)) this.privChanged();
    this.updateIrq();
  }

  // ---- FP support (used by the F/D table rows) ----

  /** Illegal-instruction when mstatus.FS is Off (privileged spec 3.1.6.6). */
  requireFP(): void {
    if ((this.ms & MSTATUS.FS) === 0) this.raise(CAUSE.ILLEGAL_INSTRUCTION, this.currentRaw(), 0);
  }

  markFPDirty(): void { this.ms |= MSTATUS.FS; }

  /** Resolve an rm field: 7 = dynamic (frm). Reserved modes raise illegal-instruction. */
  roundingMode(rm: number): number {
    const r = rm === 7 ? this.frm : rm;
    if (r >= 5) this.raise(CAUSE.ILLEGAL_INSTRUCTION, this.currentRaw(), 0);
    return r;
  }

  /** Bits of the instruction at pc (for tval of illegal-instruction raised deep in helpers). */
  private currentRaw(): number {
    const lo = this.x32[PC * 2], hi = this.x32[PC * 2 + 1];
    try {
      const p0 = this.fetchParcel(lo, hi);
      if ((p0 & 3) !== 3) return p0;
      const nlo = (lo + 2) | 0;
      return (p0 | (this.fetchParcel(nlo, nlo === 0 ? (hi + 1) | 0 : hi) << 16)) | 0;
    } catch {
      return 0;
    }
  }

  /** FS field value (0 Off, 1 Initial, 2 Clean, 3 Dirty). */
  get fs(): number { return (this.ms >>> FS_SHIFT) & 3; }

  // ---- debug helpers ----

  /** Read an integer register as an unsigned bigint (tests, debugger). */
  reg(i: number): bigint { return BigInt.asUintN(64, this.x[i]); }
  freg(i: number): bigint { return BigInt.asUintN(64, this.x[F0 + i]); }
}

/** mtvec/stvec WARL: modes 0 (direct) and 1 (vectored); other modes leave the register unchanged. */
function legalTvec(v: bigint, old: bigint): bigint {
  const mode = v & 3n;
  if (mode >= 2n) return old;
  return v;
}
