/**
 * CSR reads and writes of one hart, with access checks and WARL legalisation. Privileged
 * spec 1.12: 2.1-2.3 (CSR address space and access), 3.1 (machine-level CSRs: mstatus,
 * mtvec, medeleg/mideleg, mip/mie, mcounteren, mcountinhibit, menvcfg, PMP CSRs), 4.1
 * (supervisor CSRs); unprivileged spec: Zicntr (cycle, time, instret), 11.2 (fcsr);
 * Sstc 1.0 (stimecmp). CSR numbers and field masks are in csr.ts.
 */
import type { Hart } from './hart.js';
import type { Decoded } from './isa/types.js';
import {
  CSR, MSTATUS, MSTATUS_WMASK, SSTATUS_MASK, MEDELEG_MASK, MISA_VALUE, PRIV_U, PRIV_S, PRIV_M,
  S_INTERRUPTS, ALL_INTERRUPTS, MIP_SSIP, MIP_STIP, MIP_SEIP, SATP_BARE, SATP_SV39, SATP_SV57,
} from './csr.js';
import { illegal, setStimecmp, updateIrq, updateTimers, SD64 } from './trap.js';
import { flushPermissions, privChanged, updatePmpActive, updateTranslation } from './mmu.js';

/** mcountinhibit bits (privileged spec 3.1.12). */
export const COUNTINHIBIT_CY = 1, COUNTINHIBIT_IR = 4;

/** Check access to CSR `csr` for read (and write if `write`); raises illegal-instruction. */
function csrCheck(h: Hart, d: Decoded, csr: number, write: boolean): void {
  const minPriv = (csr >>> 8) & 3;
  if (h.privLevel < minPriv) illegal(h, d);
  if (write && (csr >>> 10) === 3) illegal(h, d);
}

function counterAllowed(h: Hart, index: number): boolean {
  const priv = h.privLevel;
  if (priv === PRIV_M) return true;
  if (((h.mcounteren >>> index) & 1) === 0) return false;
  if (priv === PRIV_U && ((h.scounteren >>> index) & 1) === 0) return false;
  return true;
}

function mstatusValue(h: Hart): bigint {
  const ms = h.ms;
  const sd = (ms & MSTATUS.FS) === MSTATUS.FS ? SD64 : 0n;
  return sd | (0xan << 32n) | BigInt(ms >>> 0);
}

function sstatusValue(h: Hart): bigint {
  const ms = h.ms & SSTATUS_MASK;
  const sd = (ms & MSTATUS.FS) === MSTATUS.FS ? SD64 : 0n;
  return sd | (0x2n << 32n) | BigInt(ms >>> 0);
}

function stimecmpCheck(h: Hart, d: Decoded): void {
  if (h.privLevel === PRIV_S && ((h.menvcfg & SD64) === 0n || (h.mcounteren & 2) === 0)) illegal(h, d);
}

/** Read a CSR; raises illegal-instruction for missing CSRs or insufficient privilege. */
export function csrRead(h: Hart, d: Decoded, csr: number): bigint {
  csrCheck(h, d, csr, false);
  switch (csr) {
    case CSR.fflags: h.requireFP(); return BigInt(h.fflags);
    case CSR.frm: h.requireFP(); return BigInt(h.frm);
    case CSR.fcsr: h.requireFP(); return BigInt((h.frm << 5) | h.fflags);
    case CSR.cycle: if (!counterAllowed(h, 0)) illegal(h, d); return BigInt(h.mcycle);
    case CSR.time: if (!counterAllowed(h, 1)) illegal(h, d); return BigInt(Math.floor(h.clock.now()));
    case CSR.instret: if (!counterAllowed(h, 2)) illegal(h, d); return BigInt(h.minstret);
    case CSR.sstatus: return sstatusValue(h);
    case CSR.sie: return BigInt(h.mie & h.mideleg & S_INTERRUPTS);
    case CSR.stvec: return h.stvec;
    case CSR.scounteren: return BigInt(h.scounteren >>> 0);
    case CSR.senvcfg: return h.senvcfg;
    case CSR.sscratch: return h.sscratch;
    case CSR.sepc: return h.sepc;
    case CSR.scause: return h.scause;
    case CSR.stval: return h.stval;
    case CSR.sip: return BigInt(h.mipValue & h.mideleg & S_INTERRUPTS);
    case CSR.stimecmp: stimecmpCheck(h, d); return h.stimecmp;
    case CSR.satp:
      if (h.privLevel === PRIV_S && (h.ms & MSTATUS.TVM) !== 0) illegal(h, d);
      return h.satp;
    case CSR.mstatus: return mstatusValue(h);
    case CSR.misa: return MISA_VALUE;
    case CSR.medeleg: return BigInt(h.medeleg);
    case CSR.mideleg: return BigInt(h.mideleg);
    case CSR.mie: return BigInt(h.mie);
    case CSR.mtvec: return h.mtvec;
    case CSR.mcounteren: return BigInt(h.mcounteren >>> 0);
    case CSR.menvcfg: return h.menvcfg;
    case CSR.mcountinhibit: return BigInt(h.mcountinhibit);
    case CSR.mscratch: return h.mscratch;
    case CSR.mepc: return h.mepc;
    case CSR.mcause: return h.mcause;
    case CSR.mtval: return h.mtval;
    case CSR.mip: return BigInt(h.mipValue);
    case CSR.mcycle: return BigInt(h.mcycle);
    case CSR.minstret: return BigInt(h.minstret);
    case CSR.mvendorid: case CSR.marchid: case CSR.mimpid: case CSR.mconfigptr: return 0n;
    case CSR.mhartid: return BigInt(h.hartId);
  }
  if (csr >= CSR.pmpcfg0 && csr < CSR.pmpcfg0 + 16) {
    if (csr & 1) illegal(h, d); // RV64: odd pmpcfg registers do not exist
    const base = (csr - CSR.pmpcfg0) * 4;
    if (base >= 16) return 0n;
    let v = 0n;
    for (let k = 7; k >= 0; k--) v = (v << 8n) | BigInt(h.pmpcfg[base + k]);
    return v;
  }
  if (csr >= CSR.pmpaddr0 && csr < CSR.pmpaddr0 + 64) {
    const i = csr - CSR.pmpaddr0;
    return i < 16 ? h.pmpaddr[i] : 0n;
  }
  // Zihpm counters and events: present, hardwired to zero.
  if ((csr >= 0xb03 && csr <= 0xb1f) || (csr >= 0x323 && csr <= 0x33f)) return 0n;
  if (csr >= 0xc03 && csr <= 0xc1f) {
    if (!counterAllowed(h, csr - 0xc00)) illegal(h, d);
    return 0n;
  }
  return illegal(h, d);
}

/**
 * The value CSRRS/CSRRC modify: the CSR as read, except that for mip only the
 * software-writable SEIP bit takes part (privileged spec 3.1.9), so a PLIC-driven SEIP is
 * never latched into the software bit.
 */
export function csrRmwBase(h: Hart, csr: number, old: bigint): bigint {
  if (csr !== CSR.mip) return old;
  return (old & ~BigInt(MIP_SEIP)) | BigInt(h.mipSw & MIP_SEIP);
}

/** Write a CSR with WARL legalisation. Assumes csrRead() was already done for access checks. */
export function csrWrite(h: Hart, d: Decoded, csr: number, v: bigint): void {
  csrCheck(h, d, csr, true);
  const lo = Number(BigInt.asUintN(32, v));
  switch (csr) {
    case CSR.fflags: h.requireFP(); h.fflags = lo & 0x1f; h.markFPDirty(); return;
    case CSR.frm: h.requireFP(); h.frm = lo & 7; h.markFPDirty(); return;
    case CSR.fcsr: h.requireFP(); h.fflags = lo & 0x1f; h.frm = (lo >>> 5) & 7; h.markFPDirty(); return;
    case CSR.sstatus: writeMstatus(h, (h.ms & ~SSTATUS_MASK) | (lo & SSTATUS_MASK)); return;
    case CSR.sie: {
      const m = h.mideleg & S_INTERRUPTS;
      h.mie = (h.mie & ~m) | (lo & m);
      updateIrq(h);
      return;
    }
    case CSR.stvec: h.stvec = legalTvec(v, h.stvec); return;
    case CSR.scounteren: h.scounteren = lo; return;
    case CSR.senvcfg: h.senvcfg = v & 1n; return;
    case CSR.sscratch: h.sscratch = v; return;
    case CSR.sepc: h.sepc = v & ~1n; return;
    case CSR.scause: h.scause = v; return;
    case CSR.stval: h.stval = v; return;
    case CSR.sip: {
      // Only SSIP is writable through sip (and only when delegated).
      const m = h.mideleg & MIP_SSIP;
      h.mipSw = (h.mipSw & ~m) | (lo & m);
      updateIrq(h);
      return;
    }
    case CSR.stimecmp: stimecmpCheck(h, d); setStimecmp(h, v); return;
    case CSR.satp: {
      if (h.privLevel === PRIV_S && (h.ms & MSTATUS.TVM) !== 0) illegal(h, d);
      const mode = Number(BigInt.asUintN(64, v) >> 60n);
      if (mode !== SATP_BARE && (mode < SATP_SV39 || mode > SATP_SV57)) return; // unsupported mode: no effect
      // ASIDLEN = 16; PPN = 44 bits.
      h.satp = v;
      updateTranslation(h);
      return;
    }
    case CSR.mstatus: writeMstatus(h, lo); return;
    case CSR.misa: return; // WARL: extensions cannot be disabled
    case CSR.medeleg: h.medeleg = lo & MEDELEG_MASK; return;
    case CSR.mideleg: h.mideleg = lo & S_INTERRUPTS; updateIrq(h); return;
    case CSR.mie: h.mie = lo & ALL_INTERRUPTS; updateIrq(h); return;
    case CSR.mtvec: h.mtvec = legalTvec(v, h.mtvec); return;
    case CSR.mcounteren: h.mcounteren = lo; return;
    case CSR.menvcfg:
      h.menvcfg = v & (SD64 | 1n);
      updateTimers(h, h.clock.now());
      return;
    case CSR.mcountinhibit: writeMcountinhibit(h, lo & (COUNTINHIBIT_CY | COUNTINHIBIT_IR)); return;
    case CSR.mscratch: h.mscratch = v; return;
    case CSR.mepc: h.mepc = v & ~1n; return;
    case CSR.mcause: h.mcause = v; return;
    case CSR.mtval: h.mtval = v; return;
    case CSR.mip: {
      // SSIP, STIP (unless Sstc drives it) and SEIP are writable by M-mode.
      const wm = MIP_SSIP | MIP_SEIP | ((h.menvcfg & SD64) !== 0n ? 0 : MIP_STIP);
      h.mipSw = (h.mipSw & ~wm) | (lo & wm);
      updateIrq(h);
      return;
    }
    case CSR.mcycle:
      // The writing instruction itself is not counted (it retires after the write).
      h.mcycleOffset = Number(BigInt.asUintN(64, v)) - h.retired - 1;
      h.mcycleFrozen = Number(BigInt.asUintN(64, v));
      return;
    case CSR.minstret:
      h.minstretOffset = Number(BigInt.asUintN(64, v)) - h.retired - 1;
      h.minstretFrozen = Number(BigInt.asUintN(64, v));
      return;
  }
  if (csr >= CSR.pmpcfg0 && csr < CSR.pmpcfg0 + 16) {
    if (csr & 1) illegal(h, d);
    const base = (csr - CSR.pmpcfg0) * 4;
    if (base >= 16) return;
    for (let k = 0; k < 8; k++) {
      const i = base + k;
      if (h.pmpcfg[i] & 0x80) continue; // locked
      let c = Number((v >> BigInt(8 * k)) & 0xffn) & 0x9f;
      if ((c & 3) === 2) c &= ~3; // W without R is reserved: clear both (WARL)
      h.pmpcfg[i] = c;
    }
    updatePmpActive(h);
    return;
  }
  if (csr >= CSR.pmpaddr0 && csr < CSR.pmpaddr0 + 64) {
    const i = csr - CSR.pmpaddr0;
    if (i >= 16) return;
    if (h.pmpcfg[i] & 0x80) return;
    if (i + 1 < 16 && (h.pmpcfg[i + 1] & 0x80) && ((h.pmpcfg[i + 1] >>> 3) & 3) === 1) return; // locked TOR top
    h.pmpaddr[i] = v & 0x3f_ffff_ffff_ffffn;
    updatePmpActive(h);
    return;
  }
  if ((csr >= 0xb03 && csr <= 0xb1f) || (csr >= 0x323 && csr <= 0x33f)) return;
  illegal(h, d);
}

/** Inhibiting freezes a counter at its current value; resuming continues from there (privileged spec 3.1.12). */
function writeMcountinhibit(h: Hart, v: number): void {
  const on = v & ~h.mcountinhibit, off = h.mcountinhibit & ~v;
  if (on & COUNTINHIBIT_CY) h.mcycleFrozen = h.mcycle;
  if (on & COUNTINHIBIT_IR) h.minstretFrozen = h.minstret;
  // Counting resumes with the next instruction.
  if (off & COUNTINHIBIT_CY) h.mcycleOffset = h.mcycleFrozen - h.retired - 1;
  if (off & COUNTINHIBIT_IR) h.minstretOffset = h.minstretFrozen - h.retired - 1;
  h.mcountinhibit = v;
}

/** mstatus/sstatus writes (privileged spec 3.1.6): MPP=2 is reserved; SUM/MXR/MPRV changes retarget the TLBs. */
function writeMstatus(h: Hart, lo: number): void {
  const old = h.ms;
  let ms = (old & ~MSTATUS_WMASK) | (lo & MSTATUS_WMASK);
  if ((ms & MSTATUS.MPP) === 2 << 11) ms = (ms & ~MSTATUS.MPP) | (old & MSTATUS.MPP); // MPP=2 reserved
  const changed = ms ^ old;
  h.ms = ms;
  if (changed & (MSTATUS.SUM | MSTATUS.MXR)) flushPermissions(h);
  if (changed & (MSTATUS.MPRV | MSTATUS.MPP)) privChanged(h);
  updateIrq(h);
}

/** mtvec/stvec WARL: modes 0 (direct) and 1 (vectored); other modes leave the register unchanged. */
function legalTvec(v: bigint, old: bigint): bigint {
  const mode = v & 3n;
  if (mode >= 2n) return old;
  return v;
}
