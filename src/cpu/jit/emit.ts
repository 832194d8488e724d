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

  // ---- F/D: FP registers stay in the state block (f64 loads and stores) ----
  /** Push f[r] as an f64. */
  fx(r: number): void;
  /** Push f[r]'s 64 bits as an i64. */
  fbits(r: number): void;
  /** f[rd] = the i64 bits that `value` pushes. */
  setFbits(rd: number, value: () => void): void;
  /** A scratch f64 local (valid within one instruction). */
  tmpF(i: number): number;
  /** Locals an fpArith fast path sets: the result (f64) and 1 if it is inexact (i32). */
  readonly fres: number;
  readonly fnx: number;
  /**
   * An F/D instruction run inline only when mstatus.FS is on and, if `rm`, its effective
   * rounding mode is RNE; otherwise (and for every case the inline code declines) its
   * row's exec runs. `dirty` sets FS to Dirty after the inline code.
   */
  fpGuard(d: Decoded, rm: boolean, dirty: boolean, body: () => void): void;
  /**
   * Arithmetic with the exact-flags fast path: `fast` sets fres and fnx and pushes an i32,
   * nonzero when it has the exact result (f[rd] = fres, fflags.NX |= fnx); zero sends
   * the instruction to its row's exec (the softfloat decides). `single`: fres holds a
   * binary32 value, stored NaN-boxed.
   */
  fpArith(d: Decoded, fast: () => void, single?: boolean): void;
  /** Run the row's exec here, for a case the inline code declines (x[rd] follows it). */
  fallback(d: Decoded): void;
  /**
   * An AMO (format 'amo'): inline through the write TLB (an entry there is RAM, writable,
   * aligned and not code), else through the row. `op` combines old (below) and x[rs2] (on
   * top), i32 for size 4, i64 for 8; min/max need both again, so it gets their locals.
   */
  amo(d: Decoded, size: 4 | 8, op: (old: number, v: number) => void): void;
  /** LR (format 'lr'): inline through the read TLB, taking the reservation (state.ts RESV). */
  lr(d: Decoded, size: 4 | 8): void;
  /** SC (format 'amo'): inline through the write TLB; stores iff RESV holds the address, always clears it. */
  sc(d: Decoded, size: 4 | 8): void;
  /** A Zicsr row on sstatus (`op`: 0 write, 1 set, 2 clear; `imm`: the operand is rs1's field). */
  sstatus(d: Decoded, op: 0 | 1 | 2, imm: boolean): void;
  /** fflags |= the i32 `value` pushes; mstatus.FS = Dirty if it is nonzero. */
  orFlags(value: () => void): void;
  /** fld / fsd (8 bytes), flw / fsw (4, NaN-boxed when loaded): to and from f[rd] / f[rs2]. */
  loadF(d: Decoded, size?: 4 | 8): void;
  storeF(d: Decoded, size?: 4 | 8): void;
}

// ---- F/D fast paths (the same arithmetic as fpu/fpu.ts's host-double paths) ----

const MIN_D = 2.2250738585072014e-308; // 2^-1022
const BIG = 2 ** 1020;
const LO_D = 2 ** -968;
const SPLIT_MAX = 2 ** 995;
const DIV_LO = 2 ** -900, DIV_HI = 2 ** 900;
const SPLITTER = 134217729; // 2^27 + 1

/** Push the exact error of p = fl(a*b) (Dekker's product), from f64 locals; uses tmpF(4..7). */
export function emitMulErr(e: Emit, a: number, b: number, p: number): void {
  const f = e.f, t = e.tmpF(4), ah = e.tmpF(5), al = e.tmpF(6), bh = e.tmpF(7);
  const split = (x: number, hi: number, lo: number): void => {
    f.f64(SPLITTER).get(x).op(Op.f64_mul).set(t);
    f.get(t).get(t).get(x).op(Op.f64_sub).op(Op.f64_sub).tee(hi);
    f.get(x).get(hi).op(Op.f64_sub).set(lo);
    f.op(Op.drop);
  };
  split(a, ah, al);
  split(b, bh, t); // t = bl
  // (((ah*bh - p) + ah*bl) + al*bh) + al*bl
  f.get(ah).get(bh).op(Op.f64_mul).get(p).op(Op.f64_sub);
  f.get(ah).get(t).op(Op.f64_mul).op(Op.f64_add);
  f.get(al).get(bh).op(Op.f64_mul).op(Op.f64_add);
  f.get(al).get(t).op(Op.f64_mul).op(Op.f64_add);
}

/** |local| < k (i32). */
const absLt = (e: Emit, l: number, k: number): void => { e.f.get(l).op(Op.f64_abs).f64(k).op(Op.f64_lt); };

/**
 * s = a + b (locals), RNE, exact error by TwoSum: pushes "handled" (s normal and well in
 * range with a and b, or an exact zero). Uses tmpF(3).
 */
function emitAdd(e: Emit, a: number, b: number): void {
  const f = e.f, s = e.fres, bb = e.tmpF(3);
  f.get(a).get(b).op(Op.f64_add).set(s);
  f.get(s).get(a).op(Op.f64_sub).set(bb);
  f.get(a).get(s).get(bb).op(Op.f64_sub).op(Op.f64_sub).get(b).get(bb).op(Op.f64_sub).op(Op.f64_add);
  f.f64(0).op(Op.f64_ne).set(e.fnx);
  f.get(s).op(Op.f64_abs).f64(MIN_D).op(Op.f64_gt);
  absLt(e, s, BIG); f.op(Op.i32_and);
  absLt(e, a, BIG); f.op(Op.i32_and);
  absLt(e, b, BIG); f.op(Op.i32_and);
  f.get(s).f64(0).op(Op.f64_eq).op(Op.i32_or);
}

type EmitFnF = (e: Emit, d: Decoded) => void;

/** fadd.d / fsub.d. */
export const faddD = (neg: boolean): EmitFnF => (e, d) => e.fpArith(d, () => {
  const f = e.f, a = e.tmpF(0), b = e.tmpF(1);
  e.fx(d.rs1); f.set(a);
  e.fx(d.rs2); if (neg) f.op(Op.f64_neg); f.set(b);
  emitAdd(e, a, b);
});

/** fmul.d: Dekker's exact error; an exact zero product (a zero operand) is exact too. */
export const fmulD: EmitFnF = (e, d) => e.fpArith(d, () => {
  const f = e.f, a = e.tmpF(0), b = e.tmpF(1), p = e.fres;
  e.fx(d.rs1); f.set(a);
  e.fx(d.rs2); f.set(b);
  f.get(a).get(b).op(Op.f64_mul).set(p);
  const ok = e.tmp32(0);
  f.get(p).op(Op.f64_abs).f64(LO_D).op(Op.f64_ge);
  absLt(e, p, BIG); f.op(Op.i32_and);
  absLt(e, a, SPLIT_MAX); f.op(Op.i32_and);
  absLt(e, b, SPLIT_MAX); f.op(Op.i32_and).tee(ok);
  f.block(Op.if);
  emitMulErr(e, a, b, p); f.f64(0).op(Op.f64_ne).set(e.fnx);
  f.op(Op.else);
  f.i32(0).set(e.fnx);
  f.op(Op.end);
  f.get(ok);
  f.get(p).f64(0).op(Op.f64_eq).get(a).f64(0).op(Op.f64_eq).get(b).f64(0).op(Op.f64_eq).op(Op.i32_or).op(Op.i32_and);
  f.op(Op.i32_or);
});

/** fdiv.d: the sign of the exact remainder a - q*b says whether q is exact. */
export const fdivD: EmitFnF = (e, d) => e.fpArith(d, () => {
  const f = e.f, a = e.tmpF(0), b = e.tmpF(1), q = e.fres, p = e.tmpF(2);
  const inRange = (l: number): void => {
    f.get(l).op(Op.f64_abs).f64(DIV_LO).op(Op.f64_ge).get(l).op(Op.f64_abs).f64(DIV_HI).op(Op.f64_le).op(Op.i32_and);
  };
  e.fx(d.rs1); f.set(a);
  e.fx(d.rs2); f.set(b);
  f.get(a).get(b).op(Op.f64_div).set(q);
  f.get(q).get(b).op(Op.f64_mul).set(p);
  f.get(a).get(p).op(Op.f64_sub);
  emitMulErr(e, q, b, p);
  f.op(Op.f64_sub).f64(0).op(Op.f64_ne).set(e.fnx);
  inRange(a); inRange(b); f.op(Op.i32_and); inRange(q); f.op(Op.i32_and);
});

/** fsqrt.d: the sign of a - r*r. */
export const fsqrtD: EmitFnF = (e, d) => e.fpArith(d, () => {
  const f = e.f, a = e.tmpF(0), r = e.fres, p = e.tmpF(2);
  e.fx(d.rs1); f.set(a);
  f.get(a).op(Op.f64_sqrt).set(r);
  f.get(r).get(r).op(Op.f64_mul).set(p);
  f.get(a).get(p).op(Op.f64_sub);
  emitMulErr(e, r, r, p);
  f.op(Op.f64_sub).f64(0).op(Op.f64_ne).set(e.fnx);
  f.get(a).f64(DIV_LO).op(Op.f64_ge).get(a).f64(DIV_HI).op(Op.f64_le).op(Op.i32_and);
});

/**
 * fmadd.d family: RN(±a*b ± c). A zero product (exact) is one rounded sum. Otherwise the
 * result is guessed as s = RN(p + c) with p = fl(a*b), and checked off the critical path
 * (guest FMA chains, like Mandelbrot's, then wait only for the guess): with a*b = p + err
 * exactly (Dekker) and p + c = s + t exactly (2Sum), a*b + c = s + (t + err); if
 * u = RN(t + err) is below half an ulp of s in magnitude, so is t + err (u's own error
 * cannot reach that power of two), and s is the correctly rounded result, exact iff u = 0.
 * When the guess fails (cancellation, a power-of-two s): an exact product is one rounded
 * sum, else Boldo-Melquiond's round-to-odd gives RN(c + p + err):
 * (th, tl) = 2Sum(c, p); v = RO(tl + err); result = RN(th + v).
 */
export const fmaD = (negProd: boolean, negC: boolean): EmitFnF => (e, d) => e.fpArith(d, () => {
  const f = e.f, a = e.tmpF(0), b = e.tmpF(1), c = e.tmpF(2);
  const p = e.tmpF(8), err = e.tmpF(9), th = e.tmpF(10), v = e.tmpF(11), r = e.tmpF(12), u = e.tmpF(13);
  const ok = e.tmp32(0);
  const bits = e.tmp64(0);
  e.fx(d.rs1); f.set(a);
  e.fx(d.rs2); f.set(b);
  e.fx(d.rs3); if (negC) f.op(Op.f64_neg); f.set(c);
  f.get(a).get(b).op(Op.f64_mul).set(p);
  // Product zero from a zero operand (times a finite one): exact.
  f.get(p).f64(0).op(Op.f64_eq);
  f.get(a).f64(0).op(Op.f64_eq); absLt(e, b, Infinity); f.op(Op.i32_and);
  f.get(b).f64(0).op(Op.f64_eq); absLt(e, a, Infinity); f.op(Op.i32_and);
  f.op(Op.i32_or).op(Op.i32_and);
  f.block(Op.if, ValType.I32);
  {
    if (negProd) f.get(p).op(Op.f64_neg).set(p);
    emitAdd(e, p, c);
  }
  f.op(Op.else);
  {
    // The guess first: nothing below delays it.
    f.get(p);
    if (negProd) f.op(Op.f64_neg);
    f.get(c).op(Op.f64_add).set(e.fres);
    f.get(p).op(Op.f64_abs).f64(LO_D).op(Op.f64_ge);
    absLt(e, p, BIG); f.op(Op.i32_and);
    absLt(e, a, SPLIT_MAX); f.op(Op.i32_and);
    absLt(e, b, SPLIT_MAX); f.op(Op.i32_and);
    absLt(e, c, BIG); f.op(Op.i32_and);
    f.block(Op.if, ValType.I32);
    {
      emitMulErr(e, a, b, p); f.set(err);
      if (negProd) { f.get(p).op(Op.f64_neg).set(p); f.get(err).op(Op.f64_neg).set(err); }
      const s = e.fres, bb = e.tmpF(3);
      // u = t + err, t = (p - (s - bb)) + (c - bb), bb = s - p.
      f.get(s).get(p).op(Op.f64_sub).set(bb);
      f.get(p).get(s).get(bb).op(Op.f64_sub).op(Op.f64_sub).get(c).get(bb).op(Op.f64_sub).op(Op.f64_add);
      f.get(err).op(Op.f64_add).set(u);
      // s normal, in range, not a power of two; |u| < half an ulp of s = 2^(exponent(s) - 53).
      f.get(s).op(Op.f64_abs).f64(LO_D).op(Op.f64_ge);
      absLt(e, s, BIG); f.op(Op.i32_and);
      f.get(s).op(Op.i64_reinterpret_f64).tee(bits).i64(0xf_ffff_ffff_ffffn).op(Op.i64_and).i64(0n).op(Op.i64_ne).op(Op.i32_and);
      f.get(u).op(Op.f64_abs);
      f.get(bits).i64(0x7ff0_0000_0000_0000n).op(Op.i64_and).i64(53n << 52n).op(Op.i64_sub).op(Op.f64_reinterpret_i64);
      f.op(Op.f64_lt).op(Op.i32_and);
      f.block(Op.if, ValType.I32);
      f.get(u).f64(0).op(Op.f64_ne).set(e.fnx);
      f.i32(1);
      f.op(Op.else);
      f.get(err).f64(0).op(Op.f64_eq);
      f.block(Op.if, ValType.I32);
      emitAdd(e, p, c);
      f.op(Op.else);
      {
        // th + tl = c + p exactly.
        f.get(c).get(p).op(Op.f64_add).set(th);
        f.get(th).get(c).op(Op.f64_sub).set(bb);
        f.get(c).get(th).get(bb).op(Op.f64_sub).op(Op.f64_sub).get(p).get(bb).op(Op.f64_sub).op(Op.f64_add).set(a); // a = tl
        // v = tl + err, r = its exact error.
        f.get(a).get(err).op(Op.f64_add).set(v);
        f.get(v).get(a).op(Op.f64_sub).set(bb);
        f.get(a).get(v).get(bb).op(Op.f64_sub).op(Op.f64_sub).get(err).get(bb).op(Op.f64_sub).op(Op.f64_add).set(r);
        f.i32(1).set(ok);
        f.get(r).f64(0).op(Op.f64_ne);
        f.block(Op.if);
        {
          // v must be normal; round to odd: an even v steps to the odd neighbour on r's side.
          f.get(v).op(Op.f64_abs).f64(MIN_D).op(Op.f64_ge).set(ok);
          f.get(v).op(Op.i64_reinterpret_f64).tee(bits).i64(1n).op(Op.i64_and).op(Op.i64_eqz);
          f.block(Op.if);
          f.get(v).f64(0).op(Op.f64_gt).get(r).f64(0).op(Op.f64_gt).op(Op.i32_eq);
          f.block(Op.if, ValType.I64);
          f.get(bits).i64(1n).op(Op.i64_or);
          f.op(Op.else);
          f.get(bits).i64(1n).op(Op.i64_sub);
          f.op(Op.end);
          f.op(Op.f64_reinterpret_i64).set(v);
          f.op(Op.end);
        }
        f.op(Op.end);
        // res = th + v; inexact if r != 0 or th + v is inexact.
        f.get(th).get(v).op(Op.f64_add).set(e.fres);
        f.get(e.fres).get(th).op(Op.f64_sub).set(bb);
        f.get(th).get(e.fres).get(bb).op(Op.f64_sub).op(Op.f64_sub).get(v).get(bb).op(Op.f64_sub).op(Op.f64_add);
        f.f64(0).op(Op.f64_ne).get(r).f64(0).op(Op.f64_ne).op(Op.i32_or).set(e.fnx);
        f.get(ok);
        f.get(e.fres).op(Op.f64_abs).f64(MIN_D).op(Op.f64_gt).op(Op.i32_and);
        absLt(e, e.fres, BIG); f.op(Op.i32_and);
      }
      f.op(Op.end);
      f.op(Op.end);
    }
    f.op(Op.else);
    f.i32(0);
    f.op(Op.end);
  }
  f.op(Op.end);
});

/** fsgnj.d, fsgnjn.d, fsgnjx.d: sign bit from rs2 (plain, negated, xor with rs1's). */
export const fsgnjD = (mode: 0 | 1 | 2): EmitFnF => (e, d) => e.fpGuard(d, false, true, () => {
  const f = e.f;
  const SIGN = -0x8000_0000_0000_0000n;
  e.setFbits(d.rd, () => {
    e.fbits(d.rs1); f.i64(~SIGN).op(Op.i64_and);
    if (mode === 2) { e.fbits(d.rs1); e.fbits(d.rs2); f.op(Op.i64_xor); } else e.fbits(d.rs2);
    if (mode === 1) f.i64(-1n).op(Op.i64_xor);
    f.i64(SIGN).op(Op.i64_and).op(Op.i64_or);
  });
});

/** fle.d / flt.d / feq.d (op: f64 le, lt, eq): inline when neither operand is a NaN (no flags then). */
export const fcmpD = (op: number): EmitFnF => (e, d) => e.fpGuard(d, false, false, () => {
  const f = e.f, a = e.tmpF(0), b = e.tmpF(1);
  e.fx(d.rs1); f.tee(a).get(a).op(Op.f64_ne);
  e.fx(d.rs2); f.tee(b).get(b).op(Op.f64_ne).op(Op.i32_or);
  f.block(Op.if);
  e.fallback(d);
  f.op(Op.else);
  e.setX(d.rd, () => { f.get(a).get(b).op(op).op(Op.i64_extend_i32_u); });
  f.op(Op.end);
});

/**
 * fcvt.d.w / .wu / .l / .lu (kind 0..3): a 32-bit integer is always exact, a 64-bit one
 * below 2^53 in magnitude too; larger ones may round (the row's exec).
 */
export const fcvtDInt = (kind: 0 | 1 | 2 | 3): EmitFnF => (e, d) => e.fpGuard(d, true, true, () => {
  const f = e.f;
  if (kind < 2) {
    e.setFbits(d.rd, () => { e.x32(d.rs1); f.op(kind === 0 ? Op.f64_convert_i32_s : Op.f64_convert_i32_u).op(Op.i64_reinterpret_f64); });
    return;
  }
  const v = e.tmp64(0);
  e.x(d.rs1); f.set(v);
  if (kind === 2) f.get(v).i64(1n << 53n).op(Op.i64_add).i64(1n << 54n).op(Op.i64_le_u);
  else f.get(v).i64(1n << 53n).op(Op.i64_le_u);
  f.block(Op.if);
  e.setFbits(d.rd, () => { f.get(v).op(kind === 2 ? Op.f64_convert_i64_s : Op.f64_convert_i64_u).op(Op.i64_reinterpret_f64); });
  f.op(Op.else);
  e.fallback(d);
  f.op(Op.end);
});

/**
 * fcvt.w.d / .wu / .l / .lu (kind 0..3), and the same of a single (`single`: a NaN-boxed
 * operand, exact in double), in the modes Wasm rounds in (RNE, RTZ, RDN, RUP; RMM and
 * reserved modes go to the row's exec): inline when the rounded value fits the integer
 * type (no NV then), NX if it differs from the operand.
 */
const fcvtInt = (kind: 0 | 1 | 2 | 3, single: boolean): EmitFnF => (e, d) => {
  const dyn = d.rm === 0 || d.rm === 7;
  const round = dyn ? Op.f64_nearest : d.rm === 1 ? Op.f64_trunc : d.rm === 2 ? Op.f64_floor : d.rm === 3 ? Op.f64_ceil : -1;
  if (round < 0) { e.fpGuard(d, true, false, () => e.fallback(d)); return; } // (always the row's exec)
  e.fpGuard(d, dyn, false, () => {
    const f = e.f, a = e.tmpF(0), t = e.tmpF(1);
    if (single) loadS(e, d.rs1, a); else { e.fx(d.rs1); f.set(a); }
    f.get(a).op(round).tee(t);
    const [lo, hi] = kind === 0 ? [-(2 ** 31), 2 ** 31 - 1] : kind === 1 ? [0, 2 ** 32 - 1] : kind === 2 ? [-(2 ** 63), 2 ** 63] : [0, 2 ** 64];
    f.f64(lo).op(Op.f64_ge).get(t).f64(hi).op(kind < 2 ? Op.f64_le : Op.f64_lt).op(Op.i32_and);
    if (single) f.op(Op.i32_and);
    f.block(Op.if);
    e.setX(d.rd, () => {
      f.get(t);
      if (kind < 2) f.op(kind === 0 ? Op.i32_trunc_f64_s : Op.i32_trunc_f64_u).op(Op.i64_extend_i32_s);
      else f.op(kind === 2 ? Op.i64_trunc_f64_s : Op.i64_trunc_f64_u);
    });
    e.orFlags(() => { f.get(a).get(t).op(Op.f64_ne); }); // NX = 1
    f.op(Op.else);
    e.fallback(d);
    f.op(Op.end);
  });
};

export const fcvtIntD = (kind: 0 | 1 | 2 | 3): EmitFnF => fcvtInt(kind, false);

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

/** Ops with 0 as an identity on both sides (x0 as an operand leaves the other: `mv`, `li`). */
const ZERO_IDENTITY: ReadonlySet<number> = new Set([Op.i64_add, Op.i64_or, Op.i64_xor]);
/** Ops with 0 as a right identity (an immediate 0: `addi rd, rs, 0` is `mv`, shifts by 0). */
const ZERO_RIGHT_IDENTITY: ReadonlySet<number> = new Set([Op.i64_add, Op.i64_or, Op.i64_xor, Op.i64_sub, Op.i64_shl, Op.i64_shr_u, Op.i64_shr_s]);

/**
 * rd = rs1 OP rs2 (i64). (With x0 as an operand of an op it is the identity of, the other
 * operand alone: V8's baseline compiler folds no constants, so `0 + x` cost a register
 * zeroing and an add.)
 */
export const bin = (op: number): EmitFn => (e, d) => e.setX(d.rd, () => {
  if (d.rs1 === 0 && ZERO_IDENTITY.has(op)) { e.x(d.rs2); return; }
  if (d.rs2 === 0 && ZERO_RIGHT_IDENTITY.has(op)) { e.x(d.rs1); return; }
  e.x(d.rs1); e.x(d.rs2); e.f.op(op);
});
/** rd = rs1 OP imm (i64); `li` (x0 + imm) is the constant, an identity immediate leaves rs1. */
export const imm = (op: number): EmitFn => (e, d) => e.setX(d.rd, () => {
  if (d.rs1 === 0 && ZERO_IDENTITY.has(op)) { e.f.i64(d.imm); return; }
  if (d.imm === 0 && ZERO_RIGHT_IDENTITY.has(op)) { e.x(d.rs1); return; }
  e.x(d.rs1); e.f.i64(d.imm).op(op);
});
/** rd = (rs1 CMP rs2) ? 1 : 0. */
export const cmp = (op: number): EmitFn => (e, d) => e.setX(d.rd, () => { e.x(d.rs1); e.x(d.rs2); e.f.op(op).op(Op.i64_extend_i32_u); });
/** rd = (rs1 CMP imm) ? 1 : 0. */
export const cmpImm = (op: number): EmitFn => (e, d) => e.setX(d.rd, () => { e.x(d.rs1); e.f.i64(d.imm).op(op).op(Op.i64_extend_i32_u); });
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

// ---- F: single precision computed in double ----
// binary64 carries more than 2 × 24 + 2 significand bits, so rounding the double result of
// +, -, ×, ÷ or √ on singles to single gives the correctly rounded single (the double
// rounding is innocuous); the fused multiply-adds round to odd in double first. Results
// must be normal singles (or exact zeros): tininess, overflow, NaNs and infinities go to
// the row's exec.

const MIN_S = 2 ** -126;
const SIGN_S = -0x8000_0000;

/** Push "f[r] is a NaN-boxed single" (i32) and set the f64 local `dst` to its value. Uses tmp64(0). */
function loadS(e: Emit, r: number, dst: number): void {
  const f = e.f, bits = e.tmp64(0);
  e.fbits(r); f.tee(bits).i64(32n).op(Op.i64_shr_u).op(Op.i32_wrap_i64).i32(-1).op(Op.i32_eq);
  f.get(bits).op(Op.i32_wrap_i64).op(Op.f32_reinterpret_i32).op(Op.f64_promote_f32).set(dst);
}

/** Push the i32 "the f64 local is finite". */
const finite = (e: Emit, l: number): void => absLt(e, l, Infinity);

/** fres = the single nearest the f64 local `s` (as an f64). */
function roundS(e: Emit, s: number): void {
  e.f.get(s).op(Op.f32_demote_f64).op(Op.f64_promote_f32).set(e.fres);
}

/** Push "fres is a normal single above the smallest (no tininess to decide), and finite". */
/** Push `ok` and-ed with "every operand is finite" (the fast paths' common guard). */
function okFinite(e: Emit, ok: number, ...xs: number[]): void {
  e.f.get(ok);
  for (const x of xs) { finite(e, x); e.f.op(Op.i32_and); }
}

function normalS(e: Emit): void {
  const f = e.f;
  f.get(e.fres).op(Op.f64_abs).f64(MIN_S).op(Op.f64_gt);
  finite(e, e.fres); f.op(Op.i32_and);
}

/** fadd.s / fsub.s: the double sum, its exact error by TwoSum, then one rounding to single. */
export const faddS = (neg: boolean): EmitFnF => (e, d) => e.fpArith(d, () => {
  const f = e.f, a = e.tmpF(0), b = e.tmpF(1), s = e.tmpF(2), bb = e.tmpF(3), ok = e.tmp32(1);
  loadS(e, d.rs1, a); loadS(e, d.rs2, b); f.op(Op.i32_and).set(ok);
  if (neg) f.get(b).op(Op.f64_neg).set(b);
  f.get(a).get(b).op(Op.f64_add).set(s);
  f.get(s).get(a).op(Op.f64_sub).set(bb);
  f.get(a).get(s).get(bb).op(Op.f64_sub).op(Op.f64_sub).get(b).get(bb).op(Op.f64_sub).op(Op.f64_add);
  f.f64(0).op(Op.f64_ne);
  roundS(e, s);
  f.get(e.fres).get(s).op(Op.f64_ne).op(Op.i32_or).set(e.fnx);
  okFinite(e, ok, a, b);
  normalS(e);
  f.get(e.fres).f64(0).op(Op.f64_eq).get(e.fnx).op(Op.i32_eqz).op(Op.i32_and).op(Op.i32_or);
  f.op(Op.i32_and);
}, true);

/** fmul.s: the double product of two singles is exact. */
export const fmulS: EmitFnF = (e, d) => e.fpArith(d, () => {
  const f = e.f, a = e.tmpF(0), b = e.tmpF(1), p = e.tmpF(2), ok = e.tmp32(1);
  loadS(e, d.rs1, a); loadS(e, d.rs2, b); f.op(Op.i32_and).set(ok);
  f.get(a).get(b).op(Op.f64_mul).set(p);
  roundS(e, p);
  f.get(e.fres).get(p).op(Op.f64_ne).set(e.fnx);
  okFinite(e, ok, a, b);
  normalS(e);
  f.get(p).f64(0).op(Op.f64_eq).op(Op.i32_or);
  f.op(Op.i32_and);
}, true);

/** fdiv.s: the single quotient q is exact iff q × b (exact in double) equals a. */
export const fdivS: EmitFnF = (e, d) => e.fpArith(d, () => {
  const f = e.f, a = e.tmpF(0), b = e.tmpF(1), q = e.tmpF(2), ok = e.tmp32(1);
  loadS(e, d.rs1, a); loadS(e, d.rs2, b); f.op(Op.i32_and).set(ok);
  f.get(a).get(b).op(Op.f64_div).set(q);
  roundS(e, q);
  f.get(e.fres).get(b).op(Op.f64_mul).get(a).op(Op.f64_ne).set(e.fnx);
  okFinite(e, ok, a, b);
  f.get(b).f64(0).op(Op.f64_ne).op(Op.i32_and);
  normalS(e);
  f.get(a).f64(0).op(Op.f64_eq).op(Op.i32_or);
  f.op(Op.i32_and);
}, true);

/** fsqrt.s: the single root r is exact iff r × r (exact in double) equals a. */
export const fsqrtS: EmitFnF = (e, d) => e.fpArith(d, () => {
  const f = e.f, a = e.tmpF(0), ok = e.tmp32(1);
  loadS(e, d.rs1, a); f.set(ok);
  f.get(a).op(Op.f64_sqrt).set(e.tmpF(2));
  roundS(e, e.tmpF(2));
  f.get(e.fres).get(e.fres).op(Op.f64_mul).get(a).op(Op.f64_ne).set(e.fnx);
  f.get(ok);
  f.get(a).f64(0).op(Op.f64_gt); finite(e, a); f.op(Op.i32_and);
  f.get(a).f64(0).op(Op.f64_eq).op(Op.i32_or);
  f.op(Op.i32_and);
}, true);

/**
 * fmadd.s family: p = ±a×b is exact in double; s = RN(p ± c) with its exact error t
 * (TwoSum); an inexact s is made odd (a step toward t when its last bit is 0: round to
 * odd), and round-to-odd at 53 bits then to nearest at 24 is the correctly rounded single.
 */
export const fmaS = (negProd: boolean, negC: boolean): EmitFnF => (e, d) => e.fpArith(d, () => {
  const f = e.f, a = e.tmpF(0), b = e.tmpF(1), c = e.tmpF(2), bb = e.tmpF(3), p = e.tmpF(4), s = e.tmpF(5), t = e.tmpF(6);
  const ok = e.tmp32(1), bits = e.tmp64(1);
  loadS(e, d.rs1, a); loadS(e, d.rs2, b); f.op(Op.i32_and); loadS(e, d.rs3, c); f.op(Op.i32_and).set(ok);
  f.get(a).get(b).op(Op.f64_mul);
  if (negProd) f.op(Op.f64_neg);
  f.set(p);
  if (negC) f.get(c).op(Op.f64_neg).set(c);
  f.get(p).get(c).op(Op.f64_add).set(s);
  f.get(s).get(p).op(Op.f64_sub).set(bb);
  f.get(p).get(s).get(bb).op(Op.f64_sub).op(Op.f64_sub).get(c).get(bb).op(Op.f64_sub).op(Op.f64_add).set(t);
  // Exact unless t != 0 or the single rounding of s is inexact.
  roundS(e, s);
  f.get(t).f64(0).op(Op.f64_ne).get(e.fres).get(s).op(Op.f64_ne).op(Op.i32_or).set(e.fnx);
  f.get(t).f64(0).op(Op.f64_ne);
  f.get(s).op(Op.i64_reinterpret_f64).tee(bits).i64(1n).op(Op.i64_and).op(Op.i64_eqz).op(Op.i32_and);
  f.block(Op.if);
  f.get(bits);
  f.get(s).f64(0).op(Op.f64_gt).get(t).f64(0).op(Op.f64_gt).op(Op.i32_eq);
  f.block(Op.if, ValType.I64);
  f.i64(1n);
  f.op(Op.else);
  f.i64(-1n);
  f.op(Op.end);
  f.op(Op.i64_add).op(Op.f64_reinterpret_i64).set(s);
  roundS(e, s);
  f.op(Op.end);
  okFinite(e, ok, a, b, c);
  normalS(e);
  f.get(s).f64(0).op(Op.f64_eq).get(e.fnx).op(Op.i32_eqz).op(Op.i32_and).op(Op.i32_or);
  f.op(Op.i32_and);
}, true);

/** fcvt.s.d: one rounding of the double to single. */
export const fcvtSD: EmitFnF = (e, d) => e.fpArith(d, () => {
  const f = e.f, a = e.tmpF(0);
  e.fx(d.rs1); f.set(a);
  roundS(e, a);
  f.get(e.fres).get(a).op(Op.f64_ne).set(e.fnx);
  finite(e, a);
  normalS(e);
  f.get(a).f64(0).op(Op.f64_eq).op(Op.i32_or);
  f.op(Op.i32_and);
}, true);

/** fcvt.d.s: exact for every boxed single but a NaN. */
export const fcvtDS: EmitFnF = (e, d) => e.fpArith(d, () => {
  const f = e.f, a = e.tmpF(0);
  loadS(e, d.rs1, a);
  f.get(a).get(a).op(Op.f64_eq).op(Op.i32_and);
  f.get(a).set(e.fres);
  f.i32(0).set(e.fnx);
});

/** fsgnj.s, fsgnjn.s, fsgnjx.s on boxed singles (an unboxed operand is the canonical NaN: exec). */
export const fsgnjS = (mode: 0 | 1 | 2): EmitFnF => (e, d) => e.fpGuard(d, false, true, () => {
  const f = e.f, x = e.tmp32(0), y = e.tmp32(1), a = e.tmpF(0);
  loadS(e, d.rs1, a); e.fbits(d.rs1); f.op(Op.i32_wrap_i64).set(x);
  loadS(e, d.rs2, a); e.fbits(d.rs2); f.op(Op.i32_wrap_i64).set(y);
  f.op(Op.i32_and);
  f.block(Op.if);
  e.setFbits(d.rd, () => {
    f.get(x).i32(~SIGN_S).op(Op.i32_and);
    if (mode === 2) f.get(x).get(y).op(Op.i32_xor); else f.get(y);
    if (mode === 1) f.i32(-1).op(Op.i32_xor);
    f.i32(SIGN_S).op(Op.i32_and).op(Op.i32_or);
    f.op(Op.i64_extend_i32_u).i64(-0x1_0000_0000n).op(Op.i64_or);
  });
  f.op(Op.else);
  e.fallback(d);
  f.op(Op.end);
});

/** fle.s / flt.s / feq.s: inline on boxed, non-NaN operands (no flags then). */
export const fcmpS = (op: number): EmitFnF => (e, d) => e.fpGuard(d, false, false, () => {
  const f = e.f, a = e.tmpF(0), b = e.tmpF(1);
  loadS(e, d.rs1, a); loadS(e, d.rs2, b); f.op(Op.i32_and);
  f.get(a).get(a).op(Op.f64_eq).op(Op.i32_and).get(b).get(b).op(Op.f64_eq).op(Op.i32_and);
  f.block(Op.if);
  e.setX(d.rd, () => { f.get(a).get(b).op(op).op(Op.i64_extend_i32_u); });
  f.op(Op.else);
  e.fallback(d);
  f.op(Op.end);
});

/** fmv.x.w: x[rd] = the sign-extended low 32 bits of f[rs1] (boxed or not). */
export const fmvXW: EmitFnF = (e, d) => e.fpGuard(d, false, false, () => {
  e.setXw(d.rd, () => { e.fbits(d.rs1); e.f.op(Op.i32_wrap_i64); });
});

/** fmv.w.x: f[rd] = the low 32 bits of x[rs1], NaN-boxed. */
export const fmvWX: EmitFnF = (e, d) => e.fpGuard(d, false, true, () => {
  e.setFbits(d.rd, () => { e.x32(d.rs1); e.f.op(Op.i64_extend_i32_u).i64(-0x1_0000_0000n).op(Op.i64_or); });
});

/**
 * fcvt.s.w / .wu / .l / .lu (kind 0..3): the integer is exact in double (64-bit ones below
 * 2^53 in magnitude; larger ones go to the row's exec), then one rounding to single.
 */
export const fcvtSInt = (kind: 0 | 1 | 2 | 3): EmitFnF => (e, d) => e.fpArith(d, () => {
  const f = e.f, v = e.tmp64(1), a = e.tmpF(0);
  if (kind < 2) {
    e.x32(d.rs1); f.op(kind === 0 ? Op.f64_convert_i32_s : Op.f64_convert_i32_u).set(a);
    f.i32(1);
  } else {
    e.x(d.rs1); f.tee(v).op(kind === 2 ? Op.f64_convert_i64_s : Op.f64_convert_i64_u).set(a);
    if (kind === 2) f.get(v).i64(1n << 53n).op(Op.i64_add).i64(1n << 54n).op(Op.i64_le_u);
    else f.get(v).i64(1n << 53n).op(Op.i64_le_u);
  }
  roundS(e, a);
  f.get(e.fres).get(a).op(Op.f64_ne).set(e.fnx);
}, true);

/** fcvt.w.s / .wu / .l / .lu (kind 0..3): as fcvtIntD, of a single. */
export const fcvtIntS = (kind: 0 | 1 | 2 | 3): EmitFnF => fcvtInt(kind, true);
