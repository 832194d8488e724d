/**
 * Semantics of the F and D instructions (unprivileged spec chapters 11 "F" and 12 "D"):
 * register access with NaN-boxing (12.2), fast host-double paths where the result and its
 * flags are provably exact, and the exact softfloat (softfloat.ts) for everything else.
 *
 * Fast paths (normal operands and results, well inside the exponent range; no BigInt):
 *  - f64 add/sub: host sum, exact error by TwoSum.
 *  - f64 mul: host product, exact error by Dekker's product (Veltkamp split).
 *  - f64 div/sqrt: host result, sign of the exact remainder a - q*b (resp. a - r*r).
 *  - f64 fma: exact product p + e; RNE by Boldo-Melquiond round-to-odd (2Sum, RO, RN).
 *  - f32: compute in double, round with Math.fround; double rounding is innocuous for
 *    + - * / sqrt since 53 >= 2*24+2; the residual sign comes from an exact check in double.
 * The host result is the RNE one; directed modes (RTZ/RDN/RUP) step to the neighbour when
 * the residual says the host rounded the wrong way; inexact RMM and everything out of range
 * (subnormal, inf, NaN, overflow, underflow) goes to the softfloat.
 * Float-to-integer conversions are exact on doubles for every rounding mode.
 */
import type { Hart } from '../hart.js';
import type { Decoded } from '../isa/types.js';
import { F0, SCRATCH } from '../state.js';
import * as sf from './softfloat.js';

const { F32, F64, NX, NV } = sf;

/** x32 index of f0's low word. */
const FX = F0 * 2;
const CANON_S = 0x7fc00000;
const MIN_D = 2.2250738585072014e-308; // 2^-1022
const MIN_S = 1.1754943508222875e-38; // 2^-126
const BIG = 2 ** 1020;
const LO_D = 2 ** -968;
const SPLIT_MAX = 2 ** 995;
const DIV_LO = 2 ** -900, DIV_HI = 2 ** 900;
const SPLITTER = 134217729; // 2^27 + 1
const SPLIT25 = 268435457; // 2^28 + 1: leaves 25 significant bits
const TWO32 = 4294967296;

const cvtF = new Float32Array(1);
const cvtI = new Int32Array(cvtF.buffer);

// ---- register access ----

/** Bits of a single in f[n]; not properly NaN-boxed reads as the canonical NaN. */
export function sBits(h: Hart, n: number): number {
  const i = FX + 2 * n;
  return h.x32[i + 1] === -1 ? h.x32[i] : CANON_S;
}

/** Value of a single in f[n] as a double (NaN when not boxed). */
function sVal(h: Hart, n: number): number {
  const i = FX + 2 * n;
  return h.x32[i + 1] === -1 ? h.f32[i] : NaN;
}

function setSBits(h: Hart, n: number, bits: number): void {
  const i = FX + 2 * n;
  h.x32[i] = bits;
  h.x32[i + 1] = -1;
}

/** Write a non-NaN single value (already rounded to binary32). */
function setSVal(h: Hart, n: number, v: number): void {
  const i = FX + 2 * n;
  h.f32[i] = v;
  h.x32[i + 1] = -1;
}

function sBig(h: Hart, n: number): bigint { return BigInt(sBits(h, n) >>> 0); }
function dBig(h: Hart, n: number): bigint { return BigInt.asUintN(64, h.x[F0 + n]); }
function setSBig(h: Hart, n: number, b: bigint): void { setSBits(h, n, Number(b) | 0); }
function setDBig(h: Hart, n: number, b: bigint): void { h.x[F0 + n] = BigInt.asIntN(64, b); }

function bitsToS(b: number): number { cvtI[0] = b; return cvtF[0]; }

/** Merge softfloat flags, mark FS dirty. */
function done(h: Hart): void {
  const f = sf.takeFlags();
  if (f !== 0) h.fflags |= f;
  h.markFPDirty();
}

function setW(h: Hart, rd: number, v: number): void {
  h.x32[rd * 2] = v;
  h.x32[rd * 2 + 1] = v >> 31;
}

/** Exact error of the rounded product p = fl(a*b) (Dekker), valid in the ranges checked by callers. */
function mulErr(a: number, b: number, p: number): number {
  let t = SPLITTER * a;
  const ah = t - (t - a), al = a - ah;
  t = SPLITTER * b;
  const bh = t - (t - b), bl = b - bh;
  return (((ah * bh - p) + ah * bl) + al * bh) + al * bl;
}

// ---- arithmetic, double ----

type BinOp = (fm: sf.FpFormat, a: bigint, b: bigint, rm: number) => bigint;

function slowD(h: Hart, d: Decoded, op: BinOp, rm: number): void {
  setDBig(h, d.rd, op(F64, dBig(h, d.rs1), dBig(h, d.rs2), rm));
  done(h);
}

const roF = new Float64Array(1);
const roI = new Int32Array(roF.buffer);

/** The neighbouring double of nonzero r in direction dir (+1 up, -1 down). */
function stepD(r: number, dir: number): number {
  roF[0] = r;
  const lo = roI[0];
  if ((dir > 0) === (r > 0)) { roI[0] = (lo + 1) | 0; if (lo === -1) roI[1]++; } else { roI[0] = (lo - 1) | 0; if (lo === 0) roI[1]--; }
  return roF[0];
}

/**
 * Finish a fast-path double op: r is the round-to-nearest-even result (normal, well inside
 * the range), rs the sign of (exact - r). Directed modes step to the neighbour when r lies on
 * the wrong side. False (nothing written) when the slow path must decide (inexact RMM).
 */
function finishD(h: Hart, rd: number, r: number, rs: number, rm: number): boolean {
  if (rs !== 0) {
    if (rm !== 0) {
      if (rm === sf.RMM) return false;
      const dir = rm === sf.RUP ? (rs > 0 ? 1 : 0) : rm === sf.RDN ? (rs < 0 ? -1 : 0) : (r > 0) !== (rs > 0) ? rs : 0;
      if (dir !== 0) r = stepD(r, dir);
    }
    h.fflags |= NX;
  }
  h.f64[F0 + rd] = r;
  h.markFPDirty();
  return true;
}

function addD(h: Hart, d: Decoded, a: number, b: number, rm: number): boolean {
  const s = a + b, as = Math.abs(s);
  if (as > MIN_D && as < BIG && Math.abs(a) < BIG && Math.abs(b) < BIG) {
    const bb = s - a;
    return finishD(h, d.rd, s, Math.sign((a - (s - bb)) + (b - bb)), rm);
  }
  // Exact zero: as JS computes it, except in RDN (x + -x = -0 there), left to the slow path.
  if (s === 0 && rm !== sf.RDN) return finishD(h, d.rd, s, 0, rm);
  return false;
}

export function faddD(h: Hart, d: Decoded): void {
  h.requireFP();
  const rm = h.roundingMode(d.rm);
  if (addD(h, d, h.f64[F0 + d.rs1], h.f64[F0 + d.rs2], rm)) return;
  slowD(h, d, sf.add, rm);
}

export function fsubD(h: Hart, d: Decoded): void {
  h.requireFP();
  const rm = h.roundingMode(d.rm);
  if (addD(h, d, h.f64[F0 + d.rs1], -h.f64[F0 + d.rs2], rm)) return;
  slowD(h, d, sf.sub, rm);
}

export function fmulD(h: Hart, d: Decoded): void {
  h.requireFP();
  const rm = h.roundingMode(d.rm);
  const a = h.f64[F0 + d.rs1], b = h.f64[F0 + d.rs2];
  const p = a * b, ap = Math.abs(p);
  if (ap >= LO_D && ap < BIG && Math.abs(a) < SPLIT_MAX && Math.abs(b) < SPLIT_MAX) {
    if (finishD(h, d.rd, p, Math.sign(mulErr(a, b, p)), rm)) return;
  } else if (p === 0 && (a === 0 || b === 0)) { h.f64[F0 + d.rd] = p; h.markFPDirty(); return; }
  slowD(h, d, sf.mul, rm);
}

export function fdivD(h: Hart, d: Decoded): void {
  h.requireFP();
  const rm = h.roundingMode(d.rm);
  const a = h.f64[F0 + d.rs1], b = h.f64[F0 + d.rs2];
  const q = a / b;
  const aa = Math.abs(a), ab = Math.abs(b), aq = Math.abs(q);
  if (aa >= DIV_LO && aa <= DIV_HI && ab >= DIV_LO && ab <= DIV_HI && aq >= DIV_LO && aq <= DIV_HI) {
    const p = q * b;
    // a - q*b = (a - p) - err(p), with a - p exact (Sterbenz); its sign times b's is (a/b - q)'s.
    const rs = Math.sign((a - p) - mulErr(q, b, p)) * Math.sign(b);
    if (finishD(h, d.rd, q, rs, rm)) return;
  }
  slowD(h, d, sf.div, rm);
}

export function fsqrtD(h: Hart, d: Decoded): void {
  h.requireFP();
  const rm = h.roundingMode(d.rm);
  const a = h.f64[F0 + d.rs1];
  if (a >= DIV_LO && a <= DIV_HI) {
    const r = Math.sqrt(a);
    const p = r * r;
    if (finishD(h, d.rd, r, Math.sign((a - p) - mulErr(r, r, p)), rm)) return;
  }
  setDBig(h, d.rd, sf.sqrt(F64, dBig(h, d.rs1), rm));
  done(h);
}

/**
 * RN(c + p + e) for the exact product p + e, by Boldo and Melquiond's round-to-odd
 * emulation: (th, tl) = 2Sum(c, p); v = RO(tl + e); result = RN(th + v). False when a range
 * condition (normal v and result) does not hold.
 */
function fma3(h: Hart, d: Decoded, p: number, e: number, c: number): boolean {
  const th = c + p;
  let bb = th - c;
  const tl = (c - (th - bb)) + (p - bb);
  let v = tl + e;
  bb = v - tl;
  const r = (tl - (v - bb)) + (e - bb);
  if (r !== 0) {
    if (!(Math.abs(v) >= MIN_D)) return false;
    roF[0] = v;
    if ((roI[0] & 1) === 0) { // round to odd: step to the odd neighbour on r's side
      if ((v > 0) === (r > 0)) roI[0] |= 1;
      else { if (roI[0] === 0) roI[1]--; roI[0] = (roI[0] - 1) | 0; }
      v = roF[0];
    }
  }
  const res = th + v, ar = Math.abs(res);
  if (!(ar > MIN_D && ar < BIG)) return false;
  bb = res - th;
  h.f64[F0 + d.rd] = res;
  if (r !== 0 || (th - (res - bb)) + (v - bb) !== 0) h.fflags |= NX;
  h.markFPDirty();
  return true;
}

function fmaD(h: Hart, d: Decoded, negProd: boolean, negC: boolean): void {
  h.requireFP();
  const rm = h.roundingMode(d.rm);
  const a = h.f64[F0 + d.rs1], b = h.f64[F0 + d.rs2];
  let c = h.f64[F0 + d.rs3];
  let p = a * b;
  // A zero times a finite number is an exact (signed) zero: the result is one rounded sum.
  if (p === 0 && ((a === 0 && Math.abs(b) < Infinity) || (b === 0 && Math.abs(a) < Infinity))) {
    if (addD(h, d, negProd ? -p : p, negC ? -c : c, rm)) return;
  }
  const ap = Math.abs(p);
  if (ap >= LO_D && ap < BIG && Math.abs(a) < SPLIT_MAX && Math.abs(b) < SPLIT_MAX && Math.abs(c) < BIG) {
    let e = mulErr(a, b, p); // p + e = a*b exactly
    if (negProd) { p = -p; e = -e; }
    if (negC) c = -c;
    // Exact product: one correctly rounded sum (any mode). Otherwise RNE via round-to-odd.
    if (e === 0 ? addD(h, d, p, c, rm) : rm === 0 && fma3(h, d, p, e, c)) return;
  }
  setDBig(h, d.rd, sf.fma(F64, dBig(h, d.rs1), dBig(h, d.rs2), dBig(h, d.rs3), negProd, negC, rm));
  done(h);
}

export function fmaddD(h: Hart, d: Decoded): void { fmaD(h, d, false, false); }
export function fmsubD(h: Hart, d: Decoded): void { fmaD(h, d, false, true); }
export function fnmsubD(h: Hart, d: Decoded): void { fmaD(h, d, true, false); }
export function fnmaddD(h: Hart, d: Decoded): void { fmaD(h, d, true, true); }

// ---- arithmetic, single ----

function slowS(h: Hart, d: Decoded, op: BinOp, rm: number): void {
  setSBig(h, d.rd, op(F32, sBig(h, d.rs1), sBig(h, d.rs2), rm));
  done(h);
}

/**
 * Finish a fast-path single op: r = the binary32 rounding to nearest of a double close to the
 * exact value (within one ulp), rs the sign of (exact - r). Stores only normal results, so no
 * UF/OF is possible; false (nothing written) otherwise or for inexact RMM.
 */
function finishS(h: Hart, rd: number, r: number, rs: number, rm: number): boolean {
  const ar = Math.abs(r);
  if (!(ar > MIN_S && ar < Infinity)) return false;
  if (rs !== 0) {
    if (rm !== 0) {
      if (rm === sf.RMM) return false;
      const dir = rm === sf.RUP ? (rs > 0 ? 1 : 0) : rm === sf.RDN ? (rs < 0 ? -1 : 0) : (r > 0) !== (rs > 0) ? rs : 0;
      if (dir !== 0) {
        cvtF[0] = r;
        cvtI[0] += (dir > 0) === (r > 0) ? 1 : -1;
        r = cvtF[0];
        if (r === Infinity || r === -Infinity) return false;
      }
    }
    h.fflags |= NX;
  }
  setSVal(h, rd, r);
  h.markFPDirty();
  return true;
}

function addS(h: Hart, d: Decoded, a: number, b: number, rm: number): boolean {
  const s = a + b;
  const r = Math.fround(s);
  if (r === 0) {
    if (s === 0 && rm !== sf.RDN) { setSVal(h, d.rd, s); h.markFPDirty(); return true; }
    return false;
  }
  const bb = s - a;
  const err = (a - (s - bb)) + (b - bb);
  return finishS(h, d.rd, r, Math.sign((s - r) + err), rm);
}

export function faddS(h: Hart, d: Decoded): void {
  h.requireFP();
  const rm = h.roundingMode(d.rm);
  if (addS(h, d, sVal(h, d.rs1), sVal(h, d.rs2), rm)) return;
  slowS(h, d, sf.add, rm);
}

export function fsubS(h: Hart, d: Decoded): void {
  h.requireFP();
  const rm = h.roundingMode(d.rm);
  if (addS(h, d, sVal(h, d.rs1), -sVal(h, d.rs2), rm)) return;
  slowS(h, d, sf.sub, rm);
}

export function fmulS(h: Hart, d: Decoded): void {
  h.requireFP();
  const rm = h.roundingMode(d.rm);
  const a = sVal(h, d.rs1), b = sVal(h, d.rs2);
  const p = a * b; // exact in double
  const r = Math.fround(p);
  if (finishS(h, d.rd, r, Math.sign(p - r), rm)) return;
  if (p === 0 && (a === 0 || b === 0)) { setSVal(h, d.rd, p); h.markFPDirty(); return; }
  slowS(h, d, sf.mul, rm);
}

export function fdivS(h: Hart, d: Decoded): void {
  h.requireFP();
  const rm = h.roundingMode(d.rm);
  const a = sVal(h, d.rs1), b = sVal(h, d.rs2);
  const r = Math.fround(a / b);
  // r*b is exact in double; (a - r*b)/b has the sign of (a/b - r).
  if (finishS(h, d.rd, r, Math.sign(a - r * b) * Math.sign(b), rm)) return;
  slowS(h, d, sf.div, rm);
}

export function fsqrtS(h: Hart, d: Decoded): void {
  h.requireFP();
  const rm = h.roundingMode(d.rm);
  const a = sVal(h, d.rs1);
  if (a > 0) {
    const r = Math.fround(Math.sqrt(a));
    if (finishS(h, d.rd, r, Math.sign(a - r * r), rm)) return;
  }
  setSBig(h, d.rd, sf.sqrt(F32, sBig(h, d.rs1), rm));
  done(h);
}

/** True when the double s has at most 25 significant bits (a binary32 midpoint candidate). */
function fits25(s: number): boolean {
  const t = SPLIT25 * s;
  return t - (t - s) === s;
}

function fmaS(h: Hart, d: Decoded, negProd: boolean, negC: boolean): void {
  h.requireFP();
  const rm = h.roundingMode(d.rm);
  let p = sVal(h, d.rs1) * sVal(h, d.rs2); // exact in double
  let c = sVal(h, d.rs3);
  if (negProd) p = -p;
  if (negC) c = -c;
  const s = p + c;
  const r = Math.fround(s);
  if (r !== 0) {
    const bb = s - p;
    const err = (p - (s - bb)) + (c - bb); // s + err = p + c exactly
    // In RNE, fround(s) is the correct rounding unless s is a binary32 midpoint and err != 0.
    if ((rm !== 0 || err === 0 || r === s || !fits25(s)) && finishS(h, d.rd, r, Math.sign((s - r) + err), rm)) return;
  }
  setSBig(h, d.rd, sf.fma(F32, sBig(h, d.rs1), sBig(h, d.rs2), sBig(h, d.rs3), negProd, negC, rm));
  done(h);
}

export function fmaddS(h: Hart, d: Decoded): void { fmaS(h, d, false, false); }
export function fmsubS(h: Hart, d: Decoded): void { fmaS(h, d, false, true); }
export function fnmsubS(h: Hart, d: Decoded): void { fmaS(h, d, true, false); }
export function fnmaddS(h: Hart, d: Decoded): void { fmaS(h, d, true, true); }

// ---- sign injection, min/max, compare, classify ----

export function fsgnjS(h: Hart, d: Decoded, mode: number): void {
  h.requireFP();
  const a = sBits(h, d.rs1), b = sBits(h, d.rs2);
  const s = mode === 0 ? b : mode === 1 ? ~b : a ^ b;
  setSBits(h, d.rd, (a & 0x7fffffff) | (s & 0x80000000));
  h.markFPDirty();
}

export function fsgnjD(h: Hart, d: Decoded, mode: number): void {
  h.requireFP();
  const x32 = h.x32;
  const ah = x32[FX + 2 * d.rs1 + 1], bh = x32[FX + 2 * d.rs2 + 1];
  const s = mode === 0 ? bh : mode === 1 ? ~bh : ah ^ bh;
  x32[FX + 2 * d.rd] = x32[FX + 2 * d.rs1];
  x32[FX + 2 * d.rd + 1] = (ah & 0x7fffffff) | (s & 0x80000000);
  h.markFPDirty();
}

function isNaNS(b: number): boolean { return (b & 0x7fffffff) > 0x7f800000; }
function isSNaNS(b: number): boolean { return isNaNS(b) && (b & 0x00400000) === 0; }
function isNaND(h: Hart, n: number): boolean {
  const hi = h.x32[FX + 2 * n + 1] & 0x7fffffff;
  return hi > 0x7ff00000 || (hi === 0x7ff00000 && h.x32[FX + 2 * n] !== 0);
}
function isSNaND(h: Hart, n: number): boolean {
  return isNaND(h, n) && (h.x32[FX + 2 * n + 1] & 0x00080000) === 0;
}

/** fmin/fmax (2.2 semantics: -0 < +0, one NaN returns the other operand, sNaN signals NV). */
export function fminmaxS(h: Hart, d: Decoded, max: boolean): void {
  h.requireFP();
  const a = sBits(h, d.rs1), b = sBits(h, d.rs2);
  const na = isNaNS(a), nb = isNaNS(b);
  if (isSNaNS(a) || isSNaNS(b)) h.fflags |= NV;
  let r: number;
  if (na || nb) r = na && nb ? CANON_S : na ? b : a;
  else {
    const va = bitsToS(a), vb = bitsToS(b);
    if (va === vb) r = max ? a & b : a | b; // differs only for +-0: sign bit AND / OR
    else r = (va < vb) !== max ? a : b;
  }
  setSBits(h, d.rd, r);
  h.markFPDirty();
}

export function fminmaxD(h: Hart, d: Decoded, max: boolean): void {
  h.requireFP();
  const na = isNaND(h, d.rs1), nb = isNaND(h, d.rs2);
  if (isSNaND(h, d.rs1) || isSNaND(h, d.rs2)) h.fflags |= NV;
  const x32 = h.x32, o = FX + 2 * d.rd, ia = FX + 2 * d.rs1, ib = FX + 2 * d.rs2;
  if (na || nb) {
    if (na && nb) { x32[o] = 0; x32[o + 1] = 0x7ff80000; } else {
      const src = na ? ib : ia;
      x32[o] = x32[src]; x32[o + 1] = x32[src + 1];
    }
  } else {
    const va = h.f64[F0 + d.rs1], vb = h.f64[F0 + d.rs2];
    if (va === vb) {
      const lo = x32[ia], hi = max ? x32[ia + 1] & x32[ib + 1] : x32[ia + 1] | x32[ib + 1];
      x32[o] = lo; x32[o + 1] = hi;
    } else {
      const src = (va < vb) !== max ? ia : ib;
      x32[o] = x32[src]; x32[o + 1] = x32[src + 1];
    }
  }
  h.markFPDirty();
}

/** Compare: op 0 = fle, 1 = flt, 2 = feq. */
export function fcmpS(h: Hart, d: Decoded, op: number): void {
  h.requireFP();
  const a = sBits(h, d.rs1), b = sBits(h, d.rs2);
  if (isNaNS(a) || isNaNS(b)) {
    if (op !== 2 || isSNaNS(a) || isSNaNS(b)) { h.fflags |= NV; h.markFPDirty(); }
    setW(h, d.rd, 0);
    return;
  }
  const va = bitsToS(a), vb = bitsToS(b);
  setW(h, d.rd, (op === 0 ? va <= vb : op === 1 ? va < vb : va === vb) ? 1 : 0);
}

export function fcmpD(h: Hart, d: Decoded, op: number): void {
  h.requireFP();
  if (isNaND(h, d.rs1) || isNaND(h, d.rs2)) {
    if (op !== 2 || isSNaND(h, d.rs1) || isSNaND(h, d.rs2)) { h.fflags |= NV; h.markFPDirty(); }
    setW(h, d.rd, 0);
    return;
  }
  const va = h.f64[F0 + d.rs1], vb = h.f64[F0 + d.rs2];
  setW(h, d.rd, (op === 0 ? va <= vb : op === 1 ? va < vb : va === vb) ? 1 : 0);
}

function classify(neg: boolean, expAllOnes: boolean, expZero: boolean, fracZero: boolean, quiet: boolean): number {
  if (expAllOnes) {
    if (fracZero) return neg ? 1 : 1 << 7;
    return quiet ? 1 << 9 : 1 << 8;
  }
  if (expZero) {
    if (fracZero) return neg ? 1 << 3 : 1 << 4;
    return neg ? 1 << 2 : 1 << 5;
  }
  return neg ? 1 << 1 : 1 << 6;
}

export function fclassS(h: Hart, d: Decoded): void {
  h.requireFP();
  const b = sBits(h, d.rs1);
  const e = (b >>> 23) & 0xff;
  setW(h, d.rd, classify(b < 0, e === 0xff, e === 0, (b & 0x7fffff) === 0, (b & 0x400000) !== 0));
}

export function fclassD(h: Hart, d: Decoded): void {
  h.requireFP();
  const hi = h.x32[FX + 2 * d.rs1 + 1], lo = h.x32[FX + 2 * d.rs1];
  const e = (hi >>> 20) & 0x7ff;
  setW(h, d.rd, classify(hi < 0, e === 0x7ff, e === 0, (hi & 0xfffff) === 0 && lo === 0, (hi & 0x80000) !== 0));
}

// ---- conversions ----

/** Float value (as an exact double, NaN for NaN) to integer: kind 0 w, 1 wu, 2 l, 3 lu. */
export function cvtToInt(h: Hart, rd: number, v: number, rm: number, kind: number): void {
  const x32 = h.x32;
  let t = Math.trunc(v);
  const frac = v - t;
  if (frac !== 0 && frac === frac) {
    switch (rm) {
      case 0: { const af = Math.abs(frac); if (af > 0.5 || (af === 0.5 && t % 2 !== 0)) t += frac < 0 ? -1 : 1; break; }
      case 2: if (frac < 0) t -= 1; break;
      case 3: if (frac > 0) t += 1; break;
      case 4: if (Math.abs(frac) >= 0.5) t += frac < 0 ? -1 : 1; break;
      default: break;
    }
  }
  let lo: number, hi: number, bad = false;
  const isNan = v !== v;
  switch (kind) {
    case 0:
      if (isNan || t > 2147483647) { bad = true; lo = 0x7fffffff; } else if (t < -2147483648) { bad = true; lo = -0x80000000; } else lo = t | 0;
      hi = lo >> 31;
      break;
    case 1:
      if (isNan || t > 4294967295) { bad = true; lo = -1; } else if (t < 0) { bad = true; lo = 0; } else lo = t | 0;
      hi = lo >> 31;
      break;
    case 2:
      if (isNan || t >= 9223372036854775808) { bad = true; lo = -1; hi = 0x7fffffff; } else if (t < -9223372036854775808) { bad = true; lo = 0; hi = -0x80000000; } else {
        hi = Math.floor(t / TWO32); lo = (t - hi * TWO32) | 0; hi |= 0;
      }
      break;
    default:
      if (isNan || t >= 18446744073709551616) { bad = true; lo = -1; hi = -1; } else if (t < 0) { bad = true; lo = 0; hi = 0; } else {
        hi = Math.floor(t / TWO32); lo = (t - hi * TWO32) | 0; hi |= 0;
      }
  }
  x32[rd * 2] = lo; x32[rd * 2 + 1] = hi;
  if (bad) { h.fflags |= NV; h.markFPDirty(); } else if (frac !== 0) { h.fflags |= NX; h.markFPDirty(); }
}

export function fcvtIntS(h: Hart, d: Decoded, kind: number): void {
  h.requireFP();
  const rm = h.roundingMode(d.rm);
  cvtToInt(h, d.rd, sVal(h, d.rs1), rm, kind);
}

export function fcvtIntD(h: Hart, d: Decoded, kind: number): void {
  h.requireFP();
  const rm = h.roundingMode(d.rm);
  cvtToInt(h, d.rd, h.f64[F0 + d.rs1], rm, kind);
}

/**
 * Integer source of kind (0 w, 1 wu, 2 l, 3 lu) as an unevaluated sum intHi + intLo of two
 * doubles, exactly; intHi is the nearest double to the integer.
 */
let intHi = 0, intLo = 0;
function intPair(h: Hart, rs: number, kind: number): void {
  const lo = h.x32[rs * 2];
  if (kind < 2) { intHi = kind === 0 ? lo : lo >>> 0; intLo = 0; return; }
  const hi = kind === 2 ? h.x32[rs * 2 + 1] * TWO32 : (h.x32[rs * 2 + 1] >>> 0) * TWO32;
  const l = lo >>> 0;
  const s = hi + l, bb = s - hi;
  intHi = s;
  intLo = (hi - (s - bb)) + (l - bb);
}

function intBig(h: Hart, rs: number, kind: number): bigint {
  switch (kind) {
    case 0: return BigInt(h.x32[rs * 2]);
    case 1: return BigInt(h.x32[rs * 2] >>> 0);
    case 2: return h.x[rs];
    default: return BigInt.asUintN(64, h.x[rs]);
  }
}

export function fcvtSInt(h: Hart, d: Decoded, kind: number): void {
  h.requireFP();
  const rm = h.roundingMode(d.rm);
  intPair(h, d.rs1, kind);
  const v = intHi, e = intLo;
  const r = Math.fround(v);
  if (e === 0 && r === v) { setSVal(h, d.rd, r); h.markFPDirty(); return; } // exact (incl. 0)
  // RNE: fround(v) is right unless v is a binary32 midpoint with a nonzero tail.
  if ((rm !== 0 || e === 0 || r === v || !fits25(v)) && finishS(h, d.rd, r, Math.sign((v - r) + e), rm)) return;
  setSBig(h, d.rd, sf.fromInt(F32, intBig(h, d.rs1, kind), rm));
  done(h);
}

export function fcvtDInt(h: Hart, d: Decoded, kind: number): void {
  h.requireFP();
  const rm = h.roundingMode(d.rm);
  intPair(h, d.rs1, kind);
  if (intLo === 0) { h.f64[F0 + d.rd] = intHi; h.markFPDirty(); return; }
  if (finishD(h, d.rd, intHi, Math.sign(intLo), rm)) return;
  setDBig(h, d.rd, sf.fromInt(F64, intBig(h, d.rs1, kind), rm));
  done(h);
}

export function fcvtSD(h: Hart, d: Decoded): void {
  h.requireFP();
  const rm = h.roundingMode(d.rm);
  const v = h.f64[F0 + d.rs1];
  const r = Math.fround(v);
  if (r === v) { setSVal(h, d.rd, r); h.markFPDirty(); return; } // exact (incl. +-0, +-inf)
  if (finishS(h, d.rd, r, Math.sign(v - r), rm)) return;
  setSBig(h, d.rd, sf.convert(F64, F32, dBig(h, d.rs1), rm));
  done(h);
}

export function fcvtDS(h: Hart, d: Decoded): void {
  h.requireFP();
  h.roundingMode(d.rm);
  const b = sBits(h, d.rs1);
  if (isNaNS(b)) {
    if (isSNaNS(b)) h.fflags |= NV;
    h.x32[FX + 2 * d.rd] = 0; h.x32[FX + 2 * d.rd + 1] = 0x7ff80000;
  } else {
    h.f64[F0 + d.rd] = bitsToS(b);
  }
  h.markFPDirty();
}

// ---- loads, stores, moves (transfers ignore NaN-boxing on the way out, 12.2) ----

export function flw(h: Hart, d: Decoded): void {
  h.requireFP();
  const lo = h.eaLo(d);
  const v = h.load32(lo, h.eaHiV);
  setSBits(h, d.rd, v);
  h.markFPDirty();
}

export function fld(h: Hart, d: Decoded): void {
  h.requireFP();
  const lo = h.eaLo(d);
  h.load64(lo, h.eaHiV);
  const x32 = h.x32, s = SCRATCH * 2;
  x32[FX + 2 * d.rd] = x32[s];
  x32[FX + 2 * d.rd + 1] = x32[s + 1];
  h.markFPDirty();
}

export function fsw(h: Hart, d: Decoded): void {
  h.requireFP();
  const lo = h.eaLo(d);
  h.store32(lo, h.eaHiV, h.x32[FX + 2 * d.rs2]);
}

export function fsd(h: Hart, d: Decoded): void {
  h.requireFP();
  const lo = h.eaLo(d);
  h.store64(lo, h.eaHiV, h.x32[FX + 2 * d.rs2], h.x32[FX + 2 * d.rs2 + 1]);
}

export function fmvXW(h: Hart, d: Decoded): void {
  h.requireFP();
  setW(h, d.rd, h.x32[FX + 2 * d.rs1]);
}

export function fmvWX(h: Hart, d: Decoded): void {
  h.requireFP();
  setSBits(h, d.rd, h.x32[d.rs1 * 2]);
  h.markFPDirty();
}

export function fmvXD(h: Hart, d: Decoded): void {
  h.requireFP();
  h.x32[d.rd * 2] = h.x32[FX + 2 * d.rs1];
  h.x32[d.rd * 2 + 1] = h.x32[FX + 2 * d.rs1 + 1];
}

export function fmvDX(h: Hart, d: Decoded): void {
  h.requireFP();
  h.x32[FX + 2 * d.rd] = h.x32[d.rs1 * 2];
  h.x32[FX + 2 * d.rd + 1] = h.x32[d.rs1 * 2 + 1];
  h.markFPDirty();
}
