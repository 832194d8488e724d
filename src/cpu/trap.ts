/**
 * Traps and interrupts of one hart: exception entry, xRET, interrupt selection, WFI and the
 * Sstc supervisor timer. Privileged spec 1.12: 3.1.6.1 (privilege and global interrupt
 * stack), 3.1.7 (mtvec), 3.1.9 (mip/mie, priority), 3.3.2 (xRET), 3.3.3 (WFI), 4.1.1
 * (sstatus, S-mode traps); Sstc 1.0 (stimecmp).
 *
 * Module functions taking the hart (not methods): the Hart keeps thin public wrappers for
 * the ISA rows and the board, and V8 inlines both.
 */
import type { Hart } from './hart.js';
import type { Decoded } from './isa/types.js';
import { CAUSE, IRQ, IRQ_PRIORITY, MIP_STIP, MSTATUS, PRIV_M, PRIV_S, PRIV_U } from './csr.js';
import { PC, NPC } from './state.js';
import { privChanged } from './mmu.js';

/** Thrown (never allocated per trap) to abandon the current instruction; the run loop takes the trap. */
export const TRAP_SIGNAL = Object.freeze({ trap: true });

/** mcause's interrupt bit (bit 63). */
export const SD64 = -0x8000_0000_0000_0000n;

/** Raise a synchronous exception: abandons the current instruction. */
export function raise(h: Hart, cause: number, tvalLo: number, tvalHi: number): never {
  h.pendingCause = cause;
  h.pendingTvalLo = tvalLo;
  h.pendingTvalHi = tvalHi;
  throw TRAP_SIGNAL;
}

/** Illegal instruction: mtval holds the instruction bits (privileged spec 3.1.16). */
export function illegal(h: Hart, d: Decoded): never {
  return raise(h, CAUSE.ILLEGAL_INSTRUCTION, d.len === 2 ? d.raw & 0xffff : d.raw, 0);
}

/** Trap entry (privileged spec 3.1.6.1, 3.1.7, 4.1.1). The trapping pc is x[PC]. */
export function takeTrap(h: Hart, cause: number, interrupt: boolean, tvalLo: number, tvalHi: number): void {
  const x = h.x;
  const epc = x[PC];
  const tval = (BigInt(tvalHi) << 32n) | BigInt(tvalLo >>> 0);
  const deleg = interrupt ? h.mideleg : h.medeleg;
  const causeBig = interrupt ? (BigInt(cause) | SD64) : BigInt(cause);
  h.clearReservation();
  let ms = h.ms;
  let vec: bigint;
  const from = h.privLevel;
  if (from <= PRIV_S && ((deleg >>> cause) & 1) !== 0) {
    h.scause = causeBig;
    h.sepc = epc;
    h.stval = tval;
    ms = (ms & ~(MSTATUS.SPIE | MSTATUS.SIE | MSTATUS.SPP)) |
      ((ms & MSTATUS.SIE) !== 0 ? MSTATUS.SPIE : 0) | (from === PRIV_S ? MSTATUS.SPP : 0);
    h.privLevel = PRIV_S;
    vec = h.stvec;
  } else {
    h.mcause = causeBig;
    h.mepc = epc;
    h.mtval = tval;
    ms = (ms & ~(MSTATUS.MPIE | MSTATUS.MIE | MSTATUS.MPP)) |
      ((ms & MSTATUS.MIE) !== 0 ? MSTATUS.MPIE : 0) | (from << 11);
    h.privLevel = PRIV_M;
    vec = h.mtvec;
  }
  h.ms = ms;
  let target = vec & ~3n;
  if ((vec & 3n) === 1n && interrupt) target += BigInt(cause * 4);
  x[PC] = BigInt.asIntN(64, target);
  privChanged(h);
  updateIrq(h);
}

/** mret / sret (privileged spec 3.3.2). */
export function xret(h: Hart, fromM: boolean): void {
  let ms = h.ms;
  let target: bigint;
  if (fromM) {
    const mpp = (ms & MSTATUS.MPP) >>> 11;
    ms = (ms & ~(MSTATUS.MIE | MSTATUS.MPP)) | ((ms & MSTATUS.MPIE) !== 0 ? MSTATUS.MIE : 0) | MSTATUS.MPIE;
    if (mpp !== PRIV_M) ms &= ~MSTATUS.MPRV;
    h.privLevel = mpp;
    target = h.mepc;
  } else {
    const spp = (ms & MSTATUS.SPP) !== 0 ? PRIV_S : PRIV_U;
    ms = (ms & ~(MSTATUS.SIE | MSTATUS.SPP)) | ((ms & MSTATUS.SPIE) !== 0 ? MSTATUS.SIE : 0) | MSTATUS.SPIE;
    ms &= ~MSTATUS.MPRV;
    h.privLevel = spp;
    target = h.sepc;
  }
  h.ms = ms;
  h.x[NPC] = target;
  privChanged(h);
  updateIrq(h);
}

/** Highest-priority interrupt that can be taken now, or -1 (privileged spec 3.1.9). */
export function pendingInterrupt(h: Hart): number {
  const pend = (h.mipSw | h.mipHw) & h.mie;
  if (pend === 0) return -1;
  const priv = h.privLevel, ms = h.ms;
  const mEnabled = priv < PRIV_M || (ms & MSTATUS.MIE) !== 0;
  const sEnabled = priv < PRIV_S || (priv === PRIV_S && (ms & MSTATUS.SIE) !== 0);
  const toM = mEnabled ? pend & ~h.mideleg : 0;
  const toS = sEnabled ? pend & h.mideleg : 0;
  const m = toM !== 0 ? toM : toS;
  if (m === 0) return -1;
  for (let i = 0; i < IRQ_PRIORITY.length; i++) {
    const c = IRQ_PRIORITY[i];
    if ((m >>> c) & 1) return c;
  }
  return -1;
}

/** Recompute whether the run loop must look at interrupts; wakes WFI. */
export function updateIrq(h: Hart): void {
  if (((h.mipSw | h.mipHw) & h.mie) !== 0) {
    h.waiting = false;
    if (pendingInterrupt(h) >= 0) h.attention = true;
  }
}

/** Hardware interrupt inputs (CLINT MSIP/MTIP, PLIC MEIP/SEIP). */
export function setIrqLine(h: Hart, bit: number, level: boolean): void {
  const m = 1 << bit;
  const old = h.mipHw;
  const v = level ? old | m : old & ~m;
  if (v === old) return;
  h.mipHw = v;
  updateIrq(h);
}

/** WFI (privileged spec 3.3.3): sleep unless an interrupt is pending. */
export function wfi(h: Hart): void {
  if (((h.mipSw | h.mipHw) & h.mie) !== 0) return;
  h.waiting = true;
  h.attention = true;
}

/** Run-loop check before an instruction; returns true if the run loop must return now. */
export function serviceAttention(h: Hart): boolean {
  h.attention = false;
  const cause = pendingInterrupt(h);
  if (cause >= 0) {
    h.waiting = false;
    takeTrap(h, cause, true, 0, 0);
  }
  if (h.stopRequested) {
    h.stopRequested = false;
    h.attention = pendingInterrupt(h) >= 0;
    return true;
  }
  return h.waiting;
}

/** Re-evaluate the Sstc supervisor timer against the clock. Returns the tick it fires at (or Infinity). */
export function updateTimers(h: Hart, now: number): number {
  const stce = (h.menvcfg & SD64) !== 0n;
  const fire = stce || h.sbi !== null;
  const level = fire && now >= h.stimecmpNum;
  const cur = (h.mipHw & MIP_STIP) !== 0;
  if (level !== cur) setIrqLine(h, IRQ.STI, level);
  return fire && !level ? h.stimecmpNum : Infinity;
}

/** Program stimecmp (the CSR, or the built-in SBI's set_timer). */
export function setStimecmp(h: Hart, v: bigint): void {
  h.stimecmp = v;
  h.stimecmpNum = Number(BigInt.asUintN(64, v));
  updateTimers(h, h.clock.now());
  // The machine's next deadline moved: let the run loop recompute it (exact virtual-clock timers).
  h.requestStop();
}
