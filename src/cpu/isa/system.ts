/**
 * SYSTEM instructions: Zicsr (unprivileged spec chapter 9) and the privileged instructions
 * ECALL, EBREAK, MRET, SRET, WFI, SFENCE.VMA (privileged spec 3.3 and 4.2.1).
 */
import type { Hart } from '../hart.js';
import type { Decoded, InsnSpec } from './types.js';
import type { Emit } from '../jit/emit.js';
import { PC, SINK } from '../state.js';
import { CAUSE, CSR, MSTATUS, PRIV_M, PRIV_S, PRIV_U } from '../csr.js';

/** CSR read-modify-write. `src` is the operand; `op`: 0 write, 1 set, 2 clear. */
function csrOp(h: Hart, d: Decoded, src: bigint, op: number, writes: boolean): void {
  const csr = d.imm;
  if (op === 0) {
    // CSRRW with rd=x0 does not read the CSR (no read side effects).
    if (d.rd === SINK) { h.csrWrite(d, csr, src); return; }
    const old = h.csrRead(d, csr);
    h.csrWrite(d, csr, src);
    h.x[d.rd] = old;
    return;
  }
  const old = h.csrRead(d, csr);
  if (writes) {
    const base = h.csrRmwBase(csr, old);
    h.csrWrite(d, csr, op === 1 ? base | src : base & ~src);
  }
  h.x[d.rd] = old;
}

const CSRM = 0x707f;

/** satp, misa and the PMP CSRs change how instructions are fetched or decoded. */
const SATP = 0x180, MISA = 0x301, PMP_FIRST = 0x3a0, PMP_LAST = 0x3ef;
/**
 * A CSR access runs inside a translated block unless it touches satp, misa or PMP: then
 * the block ends before it. (Linux's trap entry and exit are mostly CSR accesses; ending
 * blocks at each one sent every trap through the dispatcher a dozen times.)
 */
function csrInBlock(d: Decoded): boolean {
  const c = d.imm;
  return c !== SATP && c !== MISA && (c < PMP_FIRST || c > PMP_LAST);
}

/**
 * In translated code sstatus accesses run inline (Linux's interrupt enables and disables:
 * ~160,000 per 8 MiB sent over TCP), every other CSR through its row (exec).
 */
function csrEmit(op: 0 | 1 | 2, imm: boolean): (e: Emit, d: Decoded) => void {
  return (e, d) => { if (d.imm === CSR.sstatus) e.sstatus(d, op, imm); else e.fallback(d); };
}

export const SYSTEM: InsnSpec[] = [
  { name: 'csrrw', mask: CSRM, match: 0x1073, format: 'csr', ext: 'Zicsr', ends: true, inBlock: csrInBlock, emit: csrEmit(0, false), exec(h, d) { csrOp(h, d, h.x[d.rs1], 0, true); } },
  { name: 'csrrs', mask: CSRM, match: 0x2073, format: 'csr', ext: 'Zicsr', ends: true, inBlock: csrInBlock, emit: csrEmit(1, false), exec(h, d) { csrOp(h, d, h.x[d.rs1], 1, d.rs1 !== 0); } },
  { name: 'csrrc', mask: CSRM, match: 0x3073, format: 'csr', ext: 'Zicsr', ends: true, inBlock: csrInBlock, emit: csrEmit(2, false), exec(h, d) { csrOp(h, d, h.x[d.rs1], 2, d.rs1 !== 0); } },
  { name: 'csrrwi', mask: CSRM, match: 0x5073, format: 'csri', ext: 'Zicsr', ends: true, inBlock: csrInBlock, emit: csrEmit(0, true), exec(h, d) { csrOp(h, d, BigInt(d.rs1), 0, true); } },
  { name: 'csrrsi', mask: CSRM, match: 0x6073, format: 'csri', ext: 'Zicsr', ends: true, inBlock: csrInBlock, emit: csrEmit(1, true), exec(h, d) { csrOp(h, d, BigInt(d.rs1), 1, d.rs1 !== 0); } },
  { name: 'csrrci', mask: CSRM, match: 0x7073, format: 'csri', ext: 'Zicsr', ends: true, inBlock: csrInBlock, emit: csrEmit(2, true), exec(h, d) { csrOp(h, d, BigInt(d.rs1), 2, d.rs1 !== 0); } },
  {
    name: 'ecall', mask: 0xffffffff, match: 0x00000073, format: 'none', ext: 'I', ends: true,
    exec(h) {
      if (h.priv === PRIV_S && h.sbi !== null) { h.sbi.ecall(h); return; }
      h.trapInPlace(h.priv === PRIV_U ? CAUSE.ECALL_U : h.priv === PRIV_S ? CAUSE.ECALL_S : CAUSE.ECALL_M, 0, 0);
    },
  },
  {
    name: 'ebreak', mask: 0xffffffff, match: 0x00100073, format: 'none', ext: 'I', ends: true,
    exec(h) { h.trapInPlace(CAUSE.BREAKPOINT, h.x32[PC * 2], h.x32[PC * 2 + 1]); },
  },
  {
    name: 'sret', mask: 0xffffffff, match: 0x10200073, format: 'none', ext: 'S', ends: true,
    exec(h, d) {
      if (h.priv < PRIV_S || (h.priv === PRIV_S && (h.mstatus & MSTATUS.TSR) !== 0)) h.illegal(d);
      h.xret(false);
    },
  },
  {
    name: 'mret', mask: 0xffffffff, match: 0x30200073, format: 'none', ext: 'I', ends: true,
    exec(h, d) { if (h.priv < PRIV_M) h.illegal(d); h.xret(true); },
  },
  {
    name: 'wfi', mask: 0xffffffff, match: 0x10500073, format: 'none', ext: 'I', ends: true,
    exec(h, d) {
      if (h.priv === PRIV_U || (h.priv === PRIV_S && (h.mstatus & MSTATUS.TW) !== 0)) h.illegal(d);
      h.wfi();
    },
  },
  {
    name: 'sfence.vma', mask: 0xfe007fff, match: 0x12000073, format: 'R', ext: 'S', ends: true,
    exec(h, d) {
      if (h.priv === PRIV_U || (h.priv === PRIV_S && (h.mstatus & MSTATUS.TVM) !== 0)) h.illegal(d);
      // (rs2 names an address space: its global mappings stay. A page's fence drops the
      // page's translations whatever their ASID and G: more than required, never less.)
      if (d.rs1 === 0) { if (d.rs2 === 0) h.flushTlb(); else h.flushTlbAsid(); } else h.flushTlbPage(h.x32[d.rs1 * 2], h.x32[d.rs1 * 2 + 1]);
    },
  },
];
