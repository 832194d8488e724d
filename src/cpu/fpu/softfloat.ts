/**
 * Exact IEEE 754-2008 binary32/binary64 arithmetic as the RISC-V F and D extensions define it
 * (unprivileged spec chapters 11 and 12): five rounding modes, fflags NV DZ OF UF NX,
 * tininess detected after rounding, canonical NaNs (payloads are never propagated).
 *
 * This is the slow, general path: operands are bit patterns (bigint), significands are
 * BigInts, every result is computed exactly and rounded once by roundPack. The interpreter
 * (fpu.ts) uses host doubles first where they are provably exact and falls back to this.
 */

export const NX = 1, UF = 2, OF = 4, DZ = 8, NV = 16;
export const RNE = 0, RTZ = 1, RDN = 2, RUP = 3, RMM = 4;

/** Operand classes after unpack. */
const ZERO = 0, FINITE = 1, INF = 2, QNAN = 3, SNAN = 4;

export class FpFormat {
  /** Fraction bits. */
  readonly F: number;
  readonly bias: number;
  /** Precision in bits (fraction + hidden bit). */
  readonly p: number;
  readonly emin: number;
  readonly emax: number;
  readonly expMax: number;
  readonly Fb: bigint;
  readonly fracMask: bigint;
  readonly hidden: bigint;
  readonly carry: bigint;
  readonly signBit: bigint;
  readonly inf: bigint;
  readonly maxFinite: bigint;
  readonly qbit: bigint;
  /** The canonical NaN (positive, quiet, zero payload). */
  readonly nan: bigint;
  constructor(E: number, F: number) {
    this.F = F;
    this.bias = (1 << (E - 1)) - 1;
    this.p = F + 1;
    this.emin = 1 - this.bias;
    this.emax = this.bias;
    this.expMax = (1 << E) - 1;
    this.Fb = BigInt(F);
    this.fracMask = (1n << this.Fb) - 1n;
    this.hidden = 1n << this.Fb;
    this.carry = 1n << BigInt(F + 1);
    this.signBit = 1n << BigInt(E + F);
    this.inf = BigInt(this.expMax) << this.Fb;
    this.maxFinite = this.inf - 1n;
    this.qbit = 1n << BigInt(F - 1);
    this.nan = this.inf | this.qbit;
  }
}

export const F32 = new FpFormat(8, 23);
export const F64 = new FpFormat(11, 52);

/** Exception flags raised since the last takeFlags(). */
let fl = 0;
export function takeFlags(): number { const f = fl; fl = 0; return f; }

// Unpacked operand (module temporaries: unpack() writes them, callers copy to locals).
let uSign = false;
let uSig = 0n;
let uExp = 0;

/** Classify `b` and, for zero/finite, set uSign/uSig/uExp with value = (-1)^uSign * uSig * 2^uExp. */
function unpack(fm: FpFormat, b: bigint): number {
  uSign = (b & fm.signBit) !== 0n;
  const e = Number((b >> fm.Fb) & BigInt(fm.expMax));
  const f = b & fm.fracMask;
  if (e === fm.expMax) {
    uSig = 0n; uExp = 0;
    if (f === 0n) return INF;
    return (f & fm.qbit) !== 0n ? QNAN : SNAN;
  }
  if (e === 0) {
    uSig = f; uExp = fm.emin - fm.F;
    return f === 0n ? ZERO : FINITE;
  }
  uSig = f | fm.hidden; uExp = e - fm.bias - fm.F;
  return FINITE;
}

export function bitLen(v: bigint): number {
  let n = 0;
  while (v >= 0x1_0000_0000_0000_0000n) { v >>= 64n; n += 64; }
  const hi = Number(v >> 32n), lo = Number(v & 0xffff_ffffn);
  return n + (hi !== 0 ? 64 - Math.clz32(hi) : 32 - Math.clz32(lo));
}

function roundUp(rm: number, neg: boolean, q: bigint, rem: bigint, half: bigint): boolean {
  switch (rm) {
    case RNE: return rem > half || (rem === half && (q & 1n) !== 0n);
    case RTZ: return false;
    case RDN: return neg;
    case RUP: return !neg;
    default: return rem >= half;
  }
}

/** Round (-1)^neg * sig * 2^exp (sig > 0) to the format, raising flags. */
export function roundPack(fm: FpFormat, neg: boolean, sig: bigint, exp: number, rm: number): bigint {
  const n = bitLen(sig);
  const eMsb = exp + n - 1;
  const p = fm.p;
  let lsb = (eMsb < fm.emin ? fm.emin : eMsb) - (p - 1);
  const shift = lsb - exp;
  let q: bigint;
  let inexact = false;
  if (shift <= 0) {
    q = sig << BigInt(-shift);
  } else {
    const bs = BigInt(shift);
    q = sig >> bs;
    const rem = sig & ((1n << bs) - 1n);
    if (rem !== 0n) {
      inexact = true;
      if (roundUp(rm, neg, q, rem, 1n << (bs - 1n))) q += 1n;
    }
  }
  if (inexact) {
    fl |= NX;
    if (eMsb < fm.emin) {
      // Tininess after rounding: tiny unless rounding to p bits with unbounded exponent reaches 2^emin.
      let tiny = true;
      if (eMsb === fm.emin - 1) {
        const s2 = BigInt(shift - 1);
        if (s2 > 0n) {
          let q2 = sig >> s2;
          const rem2 = sig & ((1n << s2) - 1n);
          if (rem2 !== 0n && roundUp(rm, neg, q2, rem2, 1n << (s2 - 1n))) q2 += 1n;
          if (q2 === fm.carry) tiny = false;
        }
      }
      if (tiny) fl |= UF;
    }
  }
  if (q === fm.carry) { q >>= 1n; lsb += 1; }
  const sign = neg ? fm.signBit : 0n;
  if (lsb + p - 1 > fm.emax) {
    fl |= OF | NX;
    const toInf = rm === RNE || rm === RMM || (rm === RUP && !neg) || (rm === RDN && neg);
    return sign | (toInf ? fm.inf : fm.maxFinite);
  }
  if (q < fm.hidden) return sign | q;
  return sign | (BigInt(lsb + p - 1 + fm.bias) << fm.Fb) | (q - fm.hidden);
}

function nanResult(fm: FpFormat, ca: number, cb: number, cc: number): bigint {
  if (ca === SNAN || cb === SNAN || cc === SNAN) fl |= NV;
  return fm.nan;
}

/** Exact sum of two finite (or zero) unpacked values, rounded. */
function addFinite(fm: FpFormat, sa: boolean, ma: bigint, ea: number, sb: boolean, mb: bigint, eb: number, rm: number): bigint {
  if (ma === 0n) ea = eb;
  if (mb === 0n) eb = ea;
  const e = ea < eb ? ea : eb;
  let va = ma << BigInt(ea - e);
  let vb = mb << BigInt(eb - e);
  if (sa) va = -va;
  if (sb) vb = -vb;
  const s = va + vb;
  if (s === 0n) {
    const neg = sa === sb ? sa : rm === RDN;
    return neg ? fm.signBit : 0n;
  }
  return s < 0n ? roundPack(fm, true, -s, e, rm) : roundPack(fm, false, s, e, rm);
}

export function add(fm: FpFormat, a: bigint, b: bigint, rm: number): bigint {
  const ca = unpack(fm, a); const sa = uSign, ma = uSig, ea = uExp;
  const cb = unpack(fm, b); const sb = uSign, mb = uSig, eb = uExp;
  if (ca >= QNAN || cb >= QNAN) return nanResult(fm, ca, cb, 0);
  if (ca === INF) {
    if (cb === INF && sa !== sb) { fl |= NV; return fm.nan; }
    return a;
  }
  if (cb === INF) return b;
  return addFinite(fm, sa, ma, ea, sb, mb, eb, rm);
}

export function sub(fm: FpFormat, a: bigint, b: bigint, rm: number): bigint {
  return add(fm, a, b ^ fm.signBit, rm);
}

export function mul(fm: FpFormat, a: bigint, b: bigint, rm: number): bigint {
  const ca = unpack(fm, a); const sa = uSign, ma = uSig, ea = uExp;
  const cb = unpack(fm, b); const sb = uSign, mb = uSig, eb = uExp;
  if (ca >= QNAN || cb >= QNAN) return nanResult(fm, ca, cb, 0);
  const neg = sa !== sb;
  const sign = neg ? fm.signBit : 0n;
  if (ca === INF || cb === INF) {
    if (ca === ZERO || cb === ZERO) { fl |= NV; return fm.nan; }
    return sign | fm.inf;
  }
  if (ca === ZERO || cb === ZERO) return sign;
  return roundPack(fm, neg, ma * mb, ea + eb, rm);
}

export function div(fm: FpFormat, a: bigint, b: bigint, rm: number): bigint {
  const ca = unpack(fm, a); const sa = uSign, ma = uSig, ea = uExp;
  const cb = unpack(fm, b); const sb = uSign, mb = uSig, eb = uExp;
  if (ca >= QNAN || cb >= QNAN) return nanResult(fm, ca, cb, 0);
  const neg = sa !== sb;
  const sign = neg ? fm.signBit : 0n;
  if (ca === INF) {
    if (cb === INF) { fl |= NV; return fm.nan; }
    return sign | fm.inf;
  }
  if (cb === INF) return sign;
  if (cb === ZERO) {
    if (ca === ZERO) { fl |= NV; return fm.nan; }
    fl |= DZ;
    return sign | fm.inf;
  }
  if (ca === ZERO) return sign;
  // Enough quotient bits that the truncated remainder only acts as a sticky bit.
  const k = fm.p + 3 + bitLen(mb);
  const num = ma << BigInt(k);
  let q = num / mb;
  if (q * mb !== num) q |= 1n;
  return roundPack(fm, neg, q, ea - eb - k, rm);
}

/** Integer square root (floor). */
function isqrt(n: bigint): bigint {
  if (n < 2n) return n;
  let x = 1n << BigInt((bitLen(n) >> 1) + 1);
  for (;;) {
    const y = (x + n / x) >> 1n;
    if (y >= x) return x;
    x = y;
  }
}

export function sqrt(fm: FpFormat, a: bigint, rm: number): bigint {
  const ca = unpack(fm, a); const sa = uSign; let ma = uSig, ea = uExp;
  if (ca >= QNAN) return nanResult(fm, ca, 0, 0);
  if (ca === ZERO) return a;
  if (sa) { fl |= NV; return fm.nan; }
  if (ca === INF) return a;
  if ((ea & 1) !== 0) { ma <<= 1n; ea -= 1; }
  const k = fm.p + 3;
  const s = ma << BigInt(2 * k);
  let r = isqrt(s);
  if (r * r !== s) r |= 1n;
  return roundPack(fm, false, r, (ea - 2 * k) / 2, rm);
}

/** (-1)^negProd * a * b + (-1)^negC * c with a single rounding. */
export function fma(fm: FpFormat, a: bigint, b: bigint, c: bigint, negProd: boolean, negC: boolean, rm: number): bigint {
  const ca = unpack(fm, a); const sa = uSign, ma = uSig, ea = uExp;
  const cb = unpack(fm, b); const sb = uSign, mb = uSig, eb = uExp;
  const cc = unpack(fm, c); const sc = uSign !== negC, mc = uSig, ec = uExp;
  // inf * 0 is invalid even when the addend is a quiet NaN.
  if ((ca === INF && cb === ZERO) || (ca === ZERO && cb === INF)) { fl |= NV; return fm.nan; }
  if (ca >= QNAN || cb >= QNAN || cc >= QNAN) return nanResult(fm, ca, cb, cc);
  const sp = (sa !== sb) !== negProd;
  if (ca === INF || cb === INF) {
    if (cc === INF && sc !== sp) { fl |= NV; return fm.nan; }
    return (sp ? fm.signBit : 0n) | fm.inf;
  }
  if (cc === INF) return (sc ? fm.signBit : 0n) | fm.inf;
  return addFinite(fm, sp, ma * mb, ea + eb, sc, mc, ec, rm);
}

/** Convert between formats (f32 <-> f64). */
export function convert(from: FpFormat, to: FpFormat, a: bigint, rm: number): bigint {
  const ca = unpack(from, a);
  const sign = uSign ? to.signBit : 0n;
  if (ca >= QNAN) return nanResult(to, ca, 0, 0);
  if (ca === INF) return sign | to.inf;
  if (ca === ZERO) return sign;
  return roundPack(to, uSign, uSig, uExp, rm);
}

/** Integer (any size, as a mathematical value) to float. */
export function fromInt(fm: FpFormat, v: bigint, rm: number): bigint {
  if (v === 0n) return 0n;
  return v < 0n ? roundPack(fm, true, -v, 0, rm) : roundPack(fm, false, v, 0, rm);
}
