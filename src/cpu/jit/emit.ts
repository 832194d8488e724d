/**
 * What an instruction row's `emit` sees: the translator's view of one instruction inside
 * a block being compiled to WebAssembly. Rows describe their semantics through these few
 * operations (the same way `exec` uses the hart's load/store helpers), so the ISA stays
 * in one place: src/cpu/isa/*.ts.
 *
 * Registers live in the shared memory's state block (cpu/state.ts); the block reads and
 * writes them with i64 loads and stores at fixed offsets.
 */
import { Op, ValType, type FunctionBody } from './wasm.js';
import type { Decoded } from '../isa/types.js';

export interface Emit {
  /** The function being written (for plain stack code: e.f.op(Op.i64_add) etc.). */
  readonly f: FunctionBody;
  /** Push x[r] (i64); x0 reads as 0. */
  x(r: number): void;
  /** Push the low 32 bits of x[r] (i32). */
  x32(r: number): void;
  /** x[rd] = the i64 that `value` pushes (nothing is written for x0). */
  setX(rd: number, value: () => void): void;
  /** x[rd] = sign-extended i32 that `value` pushes (the W forms). */
  setXw(rd: number, value: () => void): void;
  /** Push this instruction's address plus `k` (i64). */
  pcPlus(k: number): void;
  /** Control transfer (ends the block): link = pc + len (if rd != x0), next pc = target. */
  jump(d: Decoded, target: () => void): void;
  /** Conditional branch (ends the block): `cond` pushes an i32 truth value. */
  branch(d: Decoded, cond: () => void): void;
  /** x[rd] = load of `size` bytes at x[rs1] + imm, sign- or zero-extended. */
  load(d: Decoded, size: 1 | 2 | 4 | 8, signed: boolean): void;
  /** Store the low `size` bytes of x[rs2] at x[rs1] + imm. */
  store(d: Decoded, size: 1 | 2 | 4 | 8): void;
  /** A scratch i64 local (valid within one instruction). */
  tmp64(i: 0 | 1 | 2 | 3): number;
  /** A scratch i32 local (valid within one instruction). */
  tmp32(i: 0 | 1): number;
}

/**
 * Push mulhu(a, b), the high 64 bits of the unsigned 128-bit product of two i64 locals,
 * from 32-bit limbs (WebAssembly has no 64x64->128 multiply).
 */
export function emitMulhu(e: Emit, a: number, b: number): void {
  const f = e.f;
  const lo32 = (l: number): void => { f.get(l).i64(0xffffffffn).op(Op.i64_and); };
  const hi32 = (l: number): void => { f.get(l).i64(32n).op(Op.i64_shr_u); };
  const p1 = e.tmp64(2), p2 = e.tmp64(3);
  // p1 = al*bh, p2 = ah*bl (each < 2^64).
  lo32(a); hi32(b); f.op(Op.i64_mul).set(p1);
  hi32(a); lo32(b); f.op(Op.i64_mul).set(p2);
  // hi = ah*bh + (p1 >> 32) + (p2 >> 32) + ((al*bl >> 32) + (p1 & m) + (p2 & m)) >> 32
  hi32(a); hi32(b); f.op(Op.i64_mul);
  hi32(p1); f.op(Op.i64_add);
  hi32(p2); f.op(Op.i64_add);
  lo32(a); lo32(b); f.op(Op.i64_mul).i64(32n).op(Op.i64_shr_u);
  lo32(p1); f.op(Op.i64_add);
  lo32(p2); f.op(Op.i64_add);
  f.i64(32n).op(Op.i64_shr_u).op(Op.i64_add);
}

type EmitFn = (e: Emit, d: Decoded) => void;

/** rd = rs1 OP rs2 (i64). */
export const bin = (op: number): EmitFn => (e, d) => e.setX(d.rd, () => { e.x(d.rs1); e.x(d.rs2); e.f.op(op); });
/** rd = rs1 OP imm (i64). */
export const imm = (op: number): EmitFn => (e, d) => e.setX(d.rd, () => { e.x(d.rs1); e.f.i64(BigInt(d.imm)).op(op); });
/** rd = (rs1 CMP rs2) ? 1 : 0. */
export const cmp = (op: number): EmitFn => (e, d) => e.setX(d.rd, () => { e.x(d.rs1); e.x(d.rs2); e.f.op(op).op(Op.i64_extend_i32_u); });
/** rd = (rs1 CMP imm) ? 1 : 0. */
export const cmpImm = (op: number): EmitFn => (e, d) => e.setX(d.rd, () => { e.x(d.rs1); e.f.i64(BigInt(d.imm)).op(op).op(Op.i64_extend_i32_u); });
/** rd = sext32(rs1 OP rs2), in i32. */
export const binW = (op: number): EmitFn => (e, d) => e.setXw(d.rd, () => { e.x32(d.rs1); e.x32(d.rs2); e.f.op(op); });
/** rd = sext32(rs1 OP imm), in i32. */
export const immW = (op: number): EmitFn => (e, d) => e.setXw(d.rd, () => { e.x32(d.rs1); e.f.i32(d.imm).op(op); });
/** Conditional branch on rs1 CMP rs2 (i64 compare). */
export const br = (op: number): EmitFn => (e, d) => e.branch(d, () => { e.x(d.rs1); e.x(d.rs2); e.f.op(op); });

/**
 * RISC-V division and remainder (unprivileged spec table 7.1) never trap: x/0 gives all
 * ones (div) or the dividend (rem), and MIN/-1 overflows to MIN (div) or 0 (rem). Wasm's
 * div traps on both, so they are tested first. `w` selects the 32-bit forms.
 */
export const div = (w: boolean, op: number, byZero: 'ones' | 'dividend', checkOverflow: boolean): EmitFn => (e, d) => {
  const f = e.f;
  const T = w ? ValType.I32 : ValType.I64;
  const a = w ? e.tmp32(0) : e.tmp64(0), b = w ? e.tmp32(1) : e.tmp64(1);
  const konst = (v: number): void => { if (w) f.i32(v); else f.i64(v === -1 ? -1n : -0x8000_0000_0000_0000n); };
  const value = (): void => {
    if (w) { e.x32(d.rs1); f.set(a); e.x32(d.rs2); f.set(b); } else { e.x(d.rs1); f.set(a); e.x(d.rs2); f.set(b); }
    f.get(b).op(w ? Op.i32_eqz : Op.i64_eqz).block(Op.if, T);
    if (byZero === 'ones') konst(-1); else f.get(a);
    f.op(Op.else);
    if (checkOverflow) {
      f.get(a); konst(-0x80000000); f.op(w ? Op.i32_eq : Op.i64_eq);
      f.get(b); konst(-1); f.op(w ? Op.i32_eq : Op.i64_eq).op(Op.i32_and).block(Op.if, T);
      f.get(a).op(Op.else).get(a).get(b).op(op).op(Op.end);
    } else {
      f.get(a).get(b).op(op);
    }
    f.op(Op.end);
  };
  if (w) e.setXw(d.rd, value); else e.setX(d.rd, value);
};

/** mulh, mulhsu, mulhu: the high half, from mulhu with signed corrections. */
export const mulh = (aSigned: boolean, bSigned: boolean): EmitFn => (e, d) => {
  const f = e.f;
  const a = e.tmp64(0), b = e.tmp64(1);
  e.setX(d.rd, () => {
    e.x(d.rs1); f.set(a); e.x(d.rs2); f.set(b);
    emitMulhu(e, a, b);
    // A negative signed operand contributes -2^64 * other: subtract the other from the high half.
    if (aSigned) f.get(a).i64(63n).op(Op.i64_shr_s).get(b).op(Op.i64_and).op(Op.i64_sub);
    if (bSigned) f.get(b).i64(63n).op(Op.i64_shr_s).get(a).op(Op.i64_and).op(Op.i64_sub);
  });
};
