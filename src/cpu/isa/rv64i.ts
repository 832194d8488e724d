/**
 * RV64I base integer instructions (unprivileged spec chapters 2 and 5), with Zifencei
 * and the Zihintpause hint (an ordinary FENCE encoding).
 *
 * 64-bit arithmetic uses BigInt64 with BigInt.asIntN(64, …), which V8 lowers to machine
 * ops. Shifts by an amount, unsigned compares and address arithmetic use the Int32 halves
 * (x32[2*i] low, x32[2*i+1] high) because BigInt shifts by a variable and BigInt<->Number
 * conversions are slow.
 */
import type { Hart } from '../hart.js';
import type { Decoded, InsnSpec } from './types.js';
import { PC, NPC, SCRATCH } from '../state.js';
import { Op } from '../jit/wasm.js';
import { bin, imm, cmp, cmpImm, binW, immW, br } from '../jit/emit.js';

const R = 0xfe00707f, I = 0x0000707f, U = 0x0000007f, SH64 = 0xfc00707f;

/** Unsigned 64-bit a < b over register halves. */
export function ltu(x32: Int32Array, a: number, b: number): boolean {
  const ah = x32[a * 2 + 1] >>> 0, bh = x32[b * 2 + 1] >>> 0;
  return ah < bh || (ah === bh && (x32[a * 2] >>> 0) < (x32[b * 2] >>> 0));
}

/** rd = rs << s (0..63) over halves. */
export function shl(x32: Int32Array, rd: number, rs: number, s: number): void {
  const lo = x32[rs * 2], hi = x32[rs * 2 + 1];
  if (s === 0) { x32[rd * 2] = lo; x32[rd * 2 + 1] = hi; } else if (s < 32) {
    x32[rd * 2 + 1] = (hi << s) | (lo >>> (32 - s)); x32[rd * 2] = lo << s;
  } else { x32[rd * 2 + 1] = lo << (s - 32); x32[rd * 2] = 0; }
}

/** rd = rs >>> s (logical) over halves. */
export function shrl(x32: Int32Array, rd: number, rs: number, s: number): void {
  const lo = x32[rs * 2], hi = x32[rs * 2 + 1];
  if (s === 0) { x32[rd * 2] = lo; x32[rd * 2 + 1] = hi; } else if (s < 32) {
    x32[rd * 2] = (lo >>> s) | (hi << (32 - s)); x32[rd * 2 + 1] = hi >>> s;
  } else { x32[rd * 2] = hi >>> (s - 32); x32[rd * 2 + 1] = 0; }
}

/** rd = rs >> s (arithmetic) over halves. */
export function shra(x32: Int32Array, rd: number, rs: number, s: number): void {
  const lo = x32[rs * 2], hi = x32[rs * 2 + 1];
  if (s === 0) { x32[rd * 2] = lo; x32[rd * 2 + 1] = hi; } else if (s < 32) {
    x32[rd * 2] = (lo >>> s) | (hi << (32 - s)); x32[rd * 2 + 1] = hi >> s;
  } else { x32[rd * 2] = hi >> (s - 32); x32[rd * 2 + 1] = hi >> 31; }
}

/** Write a sign-extended 32-bit result. */
function setW(h: Hart, rd: number, v: number): void {
  h.x32[rd * 2] = v;
  h.x32[rd * 2 + 1] = v >> 31;
}

function branch(h: Hart, d: Decoded, taken: boolean): void {
  if (taken) h.x[NPC] = BigInt.asIntN(64, h.x[PC] + d.imm64);
}

export const RV64I: InsnSpec[] = [
  { name: 'lui', mask: U, match: 0x37, format: 'U', ext: 'I', emit(e, d) { e.setX(d.rd, () => e.f.i64(d.imm64)); }, exec(h, d) { h.x[d.rd] = d.imm64; } },
  { name: 'auipc', mask: U, match: 0x17, format: 'U', ext: 'I', emit(e, d) { e.setX(d.rd, () => e.pcPlus(d.imm)); }, exec(h, d) { h.x[d.rd] = BigInt.asIntN(64, h.x[PC] + d.imm64); } },
  {
    name: 'jal', mask: U, match: 0x6f, format: 'J', ext: 'I', ends: true,
    emit(e, d) { e.jump(d, () => e.pcPlus(d.imm)); }, exec(h, d) { const x = h.x; const t = BigInt.asIntN(64, x[PC] + d.imm64); x[d.rd] = x[NPC]; x[NPC] = t; },
  },
  {
    name: 'jalr', mask: I, match: 0x67, format: 'I', ext: 'I', ends: true,
    emit(e, d) { e.jump(d, () => { e.x(d.rs1); e.f.i64(d.imm64).op(Op.i64_add).i64(-2n).op(Op.i64_and); }); }, exec(h, d) { const x = h.x; const t = BigInt.asIntN(64, x[d.rs1] + d.imm64) & ~1n; x[d.rd] = x[NPC]; x[NPC] = t; },
  },
  { name: 'beq', mask: I, match: 0x0063, format: 'B', ext: 'I', ends: true, emit: br(Op.i64_eq), exec(h, d) { branch(h, d, h.x[d.rs1] === h.x[d.rs2]); } },
  { name: 'bne', mask: I, match: 0x1063, format: 'B', ext: 'I', ends: true, emit: br(Op.i64_ne), exec(h, d) { branch(h, d, h.x[d.rs1] !== h.x[d.rs2]); } },
  { name: 'blt', mask: I, match: 0x4063, format: 'B', ext: 'I', ends: true, emit: br(Op.i64_lt_s), exec(h, d) { branch(h, d, h.x[d.rs1] < h.x[d.rs2]); } },
  { name: 'bge', mask: I, match: 0x5063, format: 'B', ext: 'I', ends: true, emit: br(Op.i64_ge_s), exec(h, d) { branch(h, d, h.x[d.rs1] >= h.x[d.rs2]); } },
  { name: 'bltu', mask: I, match: 0x6063, format: 'B', ext: 'I', ends: true, emit: br(Op.i64_lt_u), exec(h, d) { branch(h, d, ltu(h.x32, d.rs1, d.rs2)); } },
  { name: 'bgeu', mask: I, match: 0x7063, format: 'B', ext: 'I', ends: true, emit: br(Op.i64_ge_u), exec(h, d) { branch(h, d, !ltu(h.x32, d.rs1, d.rs2)); } },

  { name: 'lb', mask: I, match: 0x0003, format: 'load', ext: 'I', emit(e, d) { e.load(d, 1, true); }, exec(h, d) { const lo = h.eaLo(d); setW(h, d.rd, h.load8(lo, h.eaHiV)); } },
  { name: 'lh', mask: I, match: 0x1003, format: 'load', ext: 'I', emit(e, d) { e.load(d, 2, true); }, exec(h, d) { const lo = h.eaLo(d); setW(h, d.rd, h.load16(lo, h.eaHiV)); } },
  { name: 'lw', mask: I, match: 0x2003, format: 'load', ext: 'I', emit(e, d) { e.load(d, 4, true); }, exec(h, d) { const lo = h.eaLo(d); setW(h, d.rd, h.load32(lo, h.eaHiV)); } },
  {
    name: 'ld', mask: I, match: 0x3003, format: 'load', ext: 'I',
    emit(e, d) { e.load(d, 8, true); }, exec(h, d) { const lo = h.eaLo(d); h.load64(lo, h.eaHiV); h.x[d.rd] = h.x[SCRATCH]; },
  },
  { name: 'lbu', mask: I, match: 0x4003, format: 'load', ext: 'I', emit(e, d) { e.load(d, 1, false); }, exec(h, d) { const lo = h.eaLo(d); const v = h.load8u(lo, h.eaHiV); h.x32[d.rd * 2] = v; h.x32[d.rd * 2 + 1] = 0; } },
  { name: 'lhu', mask: I, match: 0x5003, format: 'load', ext: 'I', emit(e, d) { e.load(d, 2, false); }, exec(h, d) { const lo = h.eaLo(d); const v = h.load16u(lo, h.eaHiV); h.x32[d.rd * 2] = v; h.x32[d.rd * 2 + 1] = 0; } },
  { name: 'lwu', mask: I, match: 0x6003, format: 'load', ext: 'I', emit(e, d) { e.load(d, 4, false); }, exec(h, d) { const lo = h.eaLo(d); const v = h.load32(lo, h.eaHiV); h.x32[d.rd * 2] = v; h.x32[d.rd * 2 + 1] = 0; } },

  { name: 'sb', mask: I, match: 0x0023, format: 'store', ext: 'I', emit(e, d) { e.store(d, 1); }, exec(h, d) { const lo = h.eaLo(d); h.store8(lo, h.eaHiV, h.x32[d.rs2 * 2]); } },
  { name: 'sh', mask: I, match: 0x1023, format: 'store', ext: 'I', emit(e, d) { e.store(d, 2); }, exec(h, d) { const lo = h.eaLo(d); h.store16(lo, h.eaHiV, h.x32[d.rs2 * 2]); } },
  { name: 'sw', mask: I, match: 0x2023, format: 'store', ext: 'I', emit(e, d) { e.store(d, 4); }, exec(h, d) { const lo = h.eaLo(d); h.store32(lo, h.eaHiV, h.x32[d.rs2 * 2]); } },
  {
    name: 'sd', mask: I, match: 0x3023, format: 'store', ext: 'I',
    emit(e, d) { e.store(d, 8); }, exec(h, d) { const lo = h.eaLo(d); h.store64(lo, h.eaHiV, h.x32[d.rs2 * 2], h.x32[d.rs2 * 2 + 1]); },
  },

  { name: 'addi', mask: I, match: 0x0013, format: 'I', ext: 'I', emit: imm(Op.i64_add), exec(h, d) { h.x[d.rd] = BigInt.asIntN(64, h.x[d.rs1] + d.imm64); } },
  { name: 'slti', mask: I, match: 0x2013, format: 'I', ext: 'I', emit: cmpImm(Op.i64_lt_s), exec(h, d) { h.x[d.rd] = h.x[d.rs1] < d.imm64 ? 1n : 0n; } },
  {
    name: 'sltiu', mask: I, match: 0x3013, format: 'I', ext: 'I',
    emit: cmpImm(Op.i64_lt_u), exec(h, d) {
      const x32 = h.x32;
      const ah = x32[d.rs1 * 2 + 1] >>> 0, bh = (d.imm >> 31) >>> 0;
      const lt = ah < bh || (ah === bh && (x32[d.rs1 * 2] >>> 0) < (d.imm >>> 0));
      h.x[d.rd] = lt ? 1n : 0n;
    },
  },
  { name: 'xori', mask: I, match: 0x4013, format: 'I', ext: 'I', emit: imm(Op.i64_xor), exec(h, d) { h.x[d.rd] = h.x[d.rs1] ^ d.imm64; } },
  { name: 'ori', mask: I, match: 0x6013, format: 'I', ext: 'I', emit: imm(Op.i64_or), exec(h, d) { h.x[d.rd] = h.x[d.rs1] | d.imm64; } },
  { name: 'andi', mask: I, match: 0x7013, format: 'I', ext: 'I', emit: imm(Op.i64_and), exec(h, d) { h.x[d.rd] = h.x[d.rs1] & d.imm64; } },
  { name: 'slli', mask: SH64, match: 0x00001013, format: 'shift', ext: 'I', emit: imm(Op.i64_shl), exec(h, d) { shl(h.x32, d.rd, d.rs1, d.imm); } },
  { name: 'srli', mask: SH64, match: 0x00005013, format: 'shift', ext: 'I', emit: imm(Op.i64_shr_u), exec(h, d) { shrl(h.x32, d.rd, d.rs1, d.imm); } },
  { name: 'srai', mask: SH64, match: 0x40005013, format: 'shift', ext: 'I', emit: imm(Op.i64_shr_s), exec(h, d) { shra(h.x32, d.rd, d.rs1, d.imm); } },

  { name: 'add', mask: R, match: 0x00000033, format: 'R', ext: 'I', emit: bin(Op.i64_add), exec(h, d) { h.x[d.rd] = BigInt.asIntN(64, h.x[d.rs1] + h.x[d.rs2]); } },
  { name: 'sub', mask: R, match: 0x40000033, format: 'R', ext: 'I', emit: bin(Op.i64_sub), exec(h, d) { h.x[d.rd] = BigInt.asIntN(64, h.x[d.rs1] - h.x[d.rs2]); } },
  { name: 'sll', mask: R, match: 0x00001033, format: 'R', ext: 'I', emit: bin(Op.i64_shl), exec(h, d) { shl(h.x32, d.rd, d.rs1, h.x32[d.rs2 * 2] & 63); } },
  { name: 'slt', mask: R, match: 0x00002033, format: 'R', ext: 'I', emit: cmp(Op.i64_lt_s), exec(h, d) { h.x[d.rd] = h.x[d.rs1] < h.x[d.rs2] ? 1n : 0n; } },
  { name: 'sltu', mask: R, match: 0x00003033, format: 'R', ext: 'I', emit: cmp(Op.i64_lt_u), exec(h, d) { h.x[d.rd] = ltu(h.x32, d.rs1, d.rs2) ? 1n : 0n; } },
  { name: 'xor', mask: R, match: 0x00004033, format: 'R', ext: 'I', emit: bin(Op.i64_xor), exec(h, d) { h.x[d.rd] = h.x[d.rs1] ^ h.x[d.rs2]; } },
  { name: 'srl', mask: R, match: 0x00005033, format: 'R', ext: 'I', emit: bin(Op.i64_shr_u), exec(h, d) { shrl(h.x32, d.rd, d.rs1, h.x32[d.rs2 * 2] & 63); } },
  { name: 'sra', mask: R, match: 0x40005033, format: 'R', ext: 'I', emit: bin(Op.i64_shr_s), exec(h, d) { shra(h.x32, d.rd, d.rs1, h.x32[d.rs2 * 2] & 63); } },
  { name: 'or', mask: R, match: 0x00006033, format: 'R', ext: 'I', emit: bin(Op.i64_or), exec(h, d) { h.x[d.rd] = h.x[d.rs1] | h.x[d.rs2]; } },
  { name: 'and', mask: R, match: 0x00007033, format: 'R', ext: 'I', emit: bin(Op.i64_and), exec(h, d) { h.x[d.rd] = h.x[d.rs1] & h.x[d.rs2]; } },

  { name: 'addiw', mask: I, match: 0x001b, format: 'I', ext: 'I', emit: immW(Op.i32_add), exec(h, d) { setW(h, d.rd, (h.x32[d.rs1 * 2] + d.imm) | 0); } },
  { name: 'slliw', mask: R, match: 0x0000101b, format: 'shiftw', ext: 'I', emit: immW(Op.i32_shl), exec(h, d) { setW(h, d.rd, h.x32[d.rs1 * 2] << d.imm); } },
  { name: 'srliw', mask: R, match: 0x0000501b, format: 'shiftw', ext: 'I', emit: immW(Op.i32_shr_u), exec(h, d) { setW(h, d.rd, (h.x32[d.rs1 * 2] >>> d.imm) | 0); } },
  { name: 'sraiw', mask: R, match: 0x4000501b, format: 'shiftw', ext: 'I', emit: immW(Op.i32_shr_s), exec(h, d) { setW(h, d.rd, h.x32[d.rs1 * 2] >> d.imm); } },
  { name: 'addw', mask: R, match: 0x0000003b, format: 'R', ext: 'I', emit: binW(Op.i32_add), exec(h, d) { setW(h, d.rd, (h.x32[d.rs1 * 2] + h.x32[d.rs2 * 2]) | 0); } },
  { name: 'subw', mask: R, match: 0x4000003b, format: 'R', ext: 'I', emit: binW(Op.i32_sub), exec(h, d) { setW(h, d.rd, (h.x32[d.rs1 * 2] - h.x32[d.rs2 * 2]) | 0); } },
  { name: 'sllw', mask: R, match: 0x0000103b, format: 'R', ext: 'I', emit: binW(Op.i32_shl), exec(h, d) { setW(h, d.rd, h.x32[d.rs1 * 2] << (h.x32[d.rs2 * 2] & 31)); } },
  { name: 'srlw', mask: R, match: 0x0000503b, format: 'R', ext: 'I', emit: binW(Op.i32_shr_u), exec(h, d) { setW(h, d.rd, (h.x32[d.rs1 * 2] >>> (h.x32[d.rs2 * 2] & 31)) | 0); } },
  { name: 'sraw', mask: R, match: 0x4000503b, format: 'R', ext: 'I', emit: binW(Op.i32_shr_s), exec(h, d) { setW(h, d.rd, h.x32[d.rs1 * 2] >> (h.x32[d.rs2 * 2] & 31)); } },

  // FENCE (incl. PAUSE and fence.tso): a single hart with coherent memory needs no action.
  { name: 'fence', mask: 0x707f, match: 0x000f, format: 'fence', ext: 'I', emit() { /* ordering is already total */ }, exec() { /* ordering is already total */ } },
  // FENCE.I: stores already drop stale decoded code, so the instruction stream is always coherent.
  { name: 'fence.i', mask: 0x707f, match: 0x100f, format: 'none', ext: 'Zifencei', ends: true, exec() { /* coherent */ } },
];
