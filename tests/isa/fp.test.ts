/**
 * Targeted F/D tests: small assembly programs assembled at test time, run on typevisor
 * (runUser) and compared with known IEEE 754 results (and with qemu-riscv64 for the same ELF).
 * Also: FS=Off and reserved rounding modes trap, FS becomes Dirty, NaN-boxing, compressed
 * FP loads/stores, disassembly of FP rows.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { buildElf, runQemuUser } from '../lib/toolchain.js';
import { runUser } from '../lib/user.js';
import { disassemble } from '../../src/cpu/isa/disasm.js';

const NX = 1, UF = 2, OF = 4, DZ = 8, NV = 16;
const RNE = 0, RTZ = 1, RDN = 2, RUP = 3, RMM = 4;

const dv = new DataView(new ArrayBuffer(8));
/** f64 bits of a number. */
const D = (x: number): bigint => { dv.setFloat64(0, x, true); return dv.getBigUint64(0, true); };
/** NaN-boxed f32 bits of a number. */
const S = (x: number): bigint => { dv.setFloat32(0, x, true); return 0xffff_ffff_0000_0000n | BigInt(dv.getUint32(0, true)); };
const SB = (bits: number): bigint => 0xffff_ffff_0000_0000n | BigInt(bits >>> 0);
const I = (x: bigint): bigint => BigInt.asUintN(64, x);

const MAXD = D(Number.MAX_VALUE), MIN_NORMAL_D = 0x0010_0000_0000_0000n, MAX_SUB_D = 0x000f_ffff_ffff_ffffn;
const CANON_D = 0x7ff8_0000_0000_0000n, CANON_S = SB(0x7fc00000);
const SNAN_D = 0x7ff0_0000_0000_0001n, QNAN_PAYLOAD_D = 0xfff8_0000_dead_beefn, SNAN_S = SB(0x7f800001);
const NEG = 0x8000_0000_0000_0000n;

interface Case {
  /** Instruction text: destination fa3 (FP) or a1 (integer); sources fa0, fa1, fa2 or a0. */
  insn: string;
  /** Values for fa0/a0, fa1, fa2 (64-bit register images). */
  src: bigint[];
  frm?: number;
  expect: bigint;
  flags: number;
}

const c = (insn: string, src: bigint[], expect: bigint, flags: number, frm = 0): Case => ({ insn, src, expect, flags, frm });

const CASES: Case[] = [
  // Rounding of a sum: 1 + 2^-53 is a tie.
  c('fadd.d fa3, fa0, fa1, rne', [D(1), D(2 ** -53)], D(1), NX),
  c('fadd.d fa3, fa0, fa1, rup', [D(1), D(2 ** -53)], D(1 + 2 ** -52), NX),
  c('fadd.d fa3, fa0, fa1, rmm', [D(1), D(2 ** -53)], D(1 + 2 ** -52), NX),
  c('fadd.d fa3, fa0, fa1, rdn', [D(-1), D(-(2 ** -53))], D(-1 - 2 ** -52), NX),
  c('fadd.d fa3, fa0, fa1, rtz', [D(-1), D(-(2 ** -53))], D(-1), NX),
  c('fadd.d fa3, fa0, fa1, dyn', [D(1), D(2 ** -53)], D(1 + 2 ** -52), NX, RUP),
  c('fadd.d fa3, fa0, fa1', [D(1.5), D(2.25)], D(3.75), 0),
  c('fcvt.w.d a1, fa0, dyn', [D(-2.5)], I(-3n), NX, RMM),
  c('fcvt.w.d a1, fa0, dyn', [D(-2.5)], I(-2n), NX, RNE),
  c('fcvt.w.d a1, fa0, dyn', [D(-2.5)], I(-2n), NX, RTZ),
  c('fcvt.w.d a1, fa0, dyn', [D(-2.5)], I(-3n), NX, RDN),
  c('fcvt.w.d a1, fa0, dyn', [D(-2.5)], I(-2n), NX, RUP),
  c('fcvt.w.d a1, fa0', [D(-2.5)], I(-3n), NX, RDN), // the assembler's default rm is dyn
  // Exact zero: +0 except in RDN.
  c('fadd.d fa3, fa0, fa1, rne', [D(1), D(-1)], D(0), 0),
  c('fadd.d fa3, fa0, fa1, rdn', [D(1), D(-1)], D(-0), 0),
  c('fsub.d fa3, fa0, fa1, rne', [D(-0), D(0)], D(-0), 0),
  c('fadd.s fa3, fa0, fa1, rdn', [S(2), S(-2)], S(-0), 0),
  c('fadd.d fa3, fa0, fa1, rdn', [D(0), D(-0)], D(-0), 0),
  c('fadd.d fa3, fa0, fa1, rne', [D(0), D(-0)], D(0), 0),
  c('fsub.d fa3, fa0, fa1, rdn', [D(0), D(0)], D(-0), 0),
  c('fsub.s fa3, fa0, fa1, rdn', [S(0), S(0)], S(-0), 0),
  c('fadd.d fa3, fa0, fa1, rup', [D(-0), D(-0)], D(-0), 0),
  c('fmul.d fa3, fa0, fa1, rup', [D(-0), D(5)], D(-0), 0),
  c('fmadd.d fa3, fa0, fa1, fa2, rdn', [D(0), D(5), D(0)], D(0), 0),
  c('fmadd.d fa3, fa0, fa1, fa2, rdn', [D(-0), D(5), D(0)], D(-0), 0),
  // Directed rounding on the fast paths (normal operands and results).
  c('fmul.d fa3, fa0, fa1, rdn', [D(1 / 3), D(-3)], D(-1), NX),
  c('fmul.d fa3, fa0, fa1, rtz', [D(1 / 3), D(-3)], D(-1 + 2 ** -53), NX),
  c('fsqrt.s fa3, fa0, rup', [S(2)], S(Math.SQRT2) + 1n, NX),
  c('fsqrt.s fa3, fa0, rtz', [S(2)], S(Math.SQRT2), NX),
  c('fmadd.s fa3, fa0, fa1, fa2, rtz', [S(1 + 2 ** -12), S(1 + 2 ** -12), S(-(2 ** -80))], S(1 + 2 ** -11), NX),
  c('fcvt.s.l fa3, a0, rtz', [0x7fff_ffff_ffff_ffffn], S(2 ** 63) - 1n, NX),
  c('fcvt.s.l fa3, a0, rne', [(1n << 60n) + (1n << 36n) + 1n], S(2 ** 60 + 2 ** 37), NX), // midpoint + tail: up
  c('fcvt.s.l fa3, a0, rne', [(1n << 60n) + (1n << 36n)], S(2 ** 60), NX), // exact midpoint: even
  c('fadd.s fa3, fa0, fa1, rne', [S(1), S(2 ** -24)], S(1), NX),
  c('fadd.s fa3, fa0, fa1, rup', [S(1), S(2 ** -24)], S(1 + 2 ** -23), NX),
  // Overflow: +-inf or +-max depending on the rounding mode.
  c('fmul.d fa3, fa0, fa1, rne', [MAXD, D(2)], D(Infinity), OF | NX),
  c('fmul.d fa3, fa0, fa1, rtz', [MAXD, D(2)], MAXD, OF | NX),
  c('fmul.d fa3, fa0, fa1, rdn', [MAXD, D(2)], MAXD, OF | NX),
  c('fmul.d fa3, fa0, fa1, rup', [MAXD, D(2)], D(Infinity), OF | NX),
  c('fmul.d fa3, fa0, fa1, rmm', [MAXD, D(2)], D(Infinity), OF | NX),
  c('fmul.d fa3, fa0, fa1, rdn', [MAXD, D(-2)], D(-Infinity), OF | NX),
  c('fmul.d fa3, fa0, fa1, rup', [MAXD, D(-2)], MAXD | NEG, OF | NX),
  c('fmul.d fa3, fa0, fa1, rtz', [MAXD, D(-2)], MAXD | NEG, OF | NX),
  c('fmul.s fa3, fa0, fa1, rtz', [S(3e38), S(2)], SB(0x7f7fffff), OF | NX),
  c('fmul.s fa3, fa0, fa1, rne', [S(3e38), S(2)], SB(0x7f800000), OF | NX),
  c('fadd.d fa3, fa0, fa1, rne', [MAXD, D(2 ** 970)], D(Infinity), OF | NX), // exactly half an ulp above max: ties to inf
  c('fadd.d fa3, fa0, fa1, rne', [MAXD, D(2 ** 969)], MAXD, NX),
  // Underflow, subnormals, tininess after rounding.
  c('fmul.d fa3, fa0, fa1, rne', [MIN_NORMAL_D, D(0.5)], D(2 ** -1023), 0), // exact subnormal: no flags
  c('fmul.d fa3, fa0, fa1, rne', [1n, D(0.5)], D(0), UF | NX),
  c('fmul.d fa3, fa0, fa1, rup', [1n, D(0.5)], 1n, UF | NX),
  c('fmul.d fa3, fa0, fa1, rne', [1n, D(0.75)], 1n, UF | NX),
  c('fmul.d fa3, fa0, fa1, rne', [D(1 - 2 ** -53), MIN_NORMAL_D], MIN_NORMAL_D, UF | NX), // tiny: exact at 53 bits
  c('fmul.d fa3, fa0, fa1, rne', [D(1 - 2 ** -52), MIN_NORMAL_D + 1n], MIN_NORMAL_D, NX), // not tiny after rounding
  c('fmul.d fa3, fa0, fa1, rtz', [D(1 - 2 ** -52), MIN_NORMAL_D + 1n], MAX_SUB_D, UF | NX),
  c('fmul.s fa3, fa0, fa1, rne', [S(2 ** -126), S(0.5)], S(2 ** -127), 0),
  c('fmul.s fa3, fa0, fa1, rne', [S(2 ** -149), S(0.5)], S(0), UF | NX),
  c('fdiv.d fa3, fa0, fa1, rne', [D(2 ** -1000), D(2 ** 60)], D(2 ** -1060), 0),
  c('fsub.d fa3, fa0, fa1, rne', [MIN_NORMAL_D + 1n, MIN_NORMAL_D], 1n, 0), // subnormal difference is exact
  // Division, square root.
  c('fdiv.d fa3, fa0, fa1, rne', [D(1), D(3)], D(1 / 3), NX),
  c('fdiv.d fa3, fa0, fa1, rup', [D(1), D(3)], D(1 / 3) + 1n, NX),
  c('fdiv.d fa3, fa0, fa1, rne', [D(1), D(0)], D(Infinity), DZ),
  c('fdiv.d fa3, fa0, fa1, rne', [D(-1), D(0)], D(-Infinity), DZ),
  c('fdiv.d fa3, fa0, fa1, rne', [D(0), D(0)], CANON_D, NV),
  c('fdiv.d fa3, fa0, fa1, rne', [D(Infinity), D(Infinity)], CANON_D, NV),
  c('fdiv.s fa3, fa0, fa1, rne', [S(1), S(3)], S(1 / 3), NX),
  c('fdiv.s fa3, fa0, fa1, rtz', [S(1), S(3)], S(1 / 3) - 1n, NX), // RNE rounds 1/3 up
  c('fdiv.s fa3, fa0, fa1, rdn', [S(2), S(3)], S(2 / 3) - 1n, NX),
  c('fsqrt.d fa3, fa0, rne', [D(4)], D(2), 0),
  c('fsqrt.d fa3, fa0, rne', [D(2)], D(Math.SQRT2), NX),
  c('fsqrt.d fa3, fa0, rdn', [D(2)], D(Math.SQRT2) - 1n, NX), // RNE rounds sqrt(2) up
  c('fsqrt.d fa3, fa0, rne', [D(-1)], CANON_D, NV),
  c('fsqrt.d fa3, fa0, rne', [D(-0)], D(-0), 0),
  c('fsqrt.d fa3, fa0, rne', [1n], D(2 ** -537), 0),
  c('fsqrt.s fa3, fa0, rne', [S(2)], S(Math.SQRT2), NX),
  c('fsqrt.s fa3, fa0, rne', [S(-Infinity)], CANON_S, NV),
  // Fused multiply-add: a single rounding.
  c('fmadd.d fa3, fa0, fa1, fa2, rne', [D(1 + 2 ** -30), D(1 - 2 ** -30), D(-1)], D(-(2 ** -60)), 0),
  c('fmadd.d fa3, fa0, fa1, fa2, rup', [D(1 + 2 ** -52), D(1 + 2 ** -52), D(-1)], D(2 ** -51 + 2 ** -103), NX), // unfused: 2^-51+2^-52
  c('fmsub.d fa3, fa0, fa1, fa2, rne', [D(3), D(5), D(1)], D(14), 0),
  // Product is a midpoint plus a sticky tail far below: needs round-to-odd in the fast path.
  c('fmadd.d fa3, fa0, fa1, fa2, rne', [D(1 + 2 ** -26), D(1 + 2 ** -27), D(2 ** -120)], D(1 + 2 ** -26 + 2 ** -27 + 2 ** -52), NX),
  c('fmadd.d fa3, fa0, fa1, fa2, rne', [D(1 + 2 ** -26), D(1 + 2 ** -27), D(-(2 ** -120))], D(1 + 2 ** -26 + 2 ** -27), NX),
  c('fnmsub.d fa3, fa0, fa1, fa2, rne', [D(1 + 2 ** -26), D(1 + 2 ** -27), D(-(2 ** -120))], D(-1 - 2 ** -26 - 2 ** -27 - 2 ** -52), NX),
  c('fnmadd.d fa3, fa0, fa1, fa2, rne', [D(3), D(5), D(1)], D(-16), 0),
  c('fnmsub.d fa3, fa0, fa1, fa2, rne', [D(3), D(5), D(1)], D(-14), 0),
  c('fmadd.d fa3, fa0, fa1, fa2, rne', [D(Infinity), D(0), CANON_D], CANON_D, NV), // inf*0 + qNaN is invalid
  c('fmadd.d fa3, fa0, fa1, fa2, rne', [D(Infinity), D(1), D(-Infinity)], CANON_D, NV),
  c('fmadd.d fa3, fa0, fa1, fa2, rne', [D(2), D(3), QNAN_PAYLOAD_D], CANON_D, 0),
  c('fmadd.d fa3, fa0, fa1, fa2, rdn', [D(2), D(-3), D(6)], D(-0), 0),
  c('fmadd.s fa3, fa0, fa1, fa2, rne', [S(1 + 2 ** -12), S(1 + 2 ** -12), S(2 ** -80)], S(1 + 2 ** -11 + 2 ** -23), NX), // midpoint + sticky
  c('fmadd.s fa3, fa0, fa1, fa2, rne', [S(1 + 2 ** -12), S(1 + 2 ** -12), S(-(2 ** -80))], S(1 + 2 ** -11), NX),
  c('fmadd.s fa3, fa0, fa1, fa2, rne', [S(2 ** -100), S(2 ** -100), S(1)], S(1), NX),
  // NaNs: canonical results, sNaN signals.
  c('fadd.d fa3, fa0, fa1, rne', [SNAN_D, D(1)], CANON_D, NV),
  c('fadd.d fa3, fa0, fa1, rne', [QNAN_PAYLOAD_D, D(1)], CANON_D, 0),
  c('fadd.d fa3, fa0, fa1, rne', [D(Infinity), D(-Infinity)], CANON_D, NV),
  c('fmul.d fa3, fa0, fa1, rne', [D(Infinity), D(0)], CANON_D, NV),
  c('fadd.s fa3, fa0, fa1, rne', [SNAN_S, S(1)], CANON_S, NV),
  // Min/max (2.2): -0 < +0, one NaN returns the other, both NaN give the canonical NaN.
  c('fmin.d fa3, fa0, fa1', [D(0), D(-0)], D(-0), 0),
  c('fmax.d fa3, fa0, fa1', [D(-0), D(0)], D(0), 0),
  c('fmin.d fa3, fa0, fa1', [QNAN_PAYLOAD_D, D(1)], D(1), 0),
  c('fmin.d fa3, fa0, fa1', [SNAN_D, D(1)], D(1), NV),
  c('fmax.d fa3, fa0, fa1', [SNAN_D, QNAN_PAYLOAD_D], CANON_D, NV),
  c('fmax.d fa3, fa0, fa1', [D(-5), D(3)], D(3), 0),
  c('fmin.s fa3, fa0, fa1', [S(-0), S(0)], S(-0), 0),
  c('fmax.s fa3, fa0, fa1', [CANON_S, S(7)], S(7), 0),
  c('fmax.s fa3, fa0, fa1', [SNAN_S, S(7)], S(7), NV),
  // Compares: feq signals only on sNaN, flt/fle on any NaN.
  c('feq.d a1, fa0, fa1', [D(0), D(-0)], 1n, 0),
  c('feq.d a1, fa0, fa1', [CANON_D, D(1)], 0n, 0),
  c('feq.d a1, fa0, fa1', [SNAN_D, D(1)], 0n, NV),
  c('flt.d a1, fa0, fa1', [CANON_D, D(1)], 0n, NV),
  c('fle.d a1, fa0, fa1', [D(1), D(1)], 1n, 0),
  c('flt.d a1, fa0, fa1', [D(-0), D(0)], 0n, 0),
  c('flt.s a1, fa0, fa1', [S(1), S(2)], 1n, 0),
  c('fle.s a1, fa0, fa1', [CANON_S, S(2)], 0n, NV),
  c('feq.s a1, fa0, fa1', [CANON_S, S(2)], 0n, 0),
  // Classify: all ten classes.
  c('fclass.d a1, fa0', [D(-Infinity)], 1n << 0n, 0),
  c('fclass.d a1, fa0', [D(-1)], 1n << 1n, 0),
  c('fclass.d a1, fa0', [NEG | 1n], 1n << 2n, 0),
  c('fclass.d a1, fa0', [D(-0)], 1n << 3n, 0),
  c('fclass.d a1, fa0', [D(0)], 1n << 4n, 0),
  c('fclass.d a1, fa0', [1n], 1n << 5n, 0),
  c('fclass.d a1, fa0', [D(1)], 1n << 6n, 0),
  c('fclass.d a1, fa0', [D(Infinity)], 1n << 7n, 0),
  c('fclass.d a1, fa0', [SNAN_D], 1n << 8n, 0),
  c('fclass.d a1, fa0', [CANON_D], 1n << 9n, 0),
  c('fclass.s a1, fa0', [SB(0x80000001)], 1n << 2n, 0),
  c('fclass.s a1, fa0', [SNAN_S], 1n << 8n, 0),
  c('fclass.s a1, fa0', [0x0000_0000_3f80_0000n], 1n << 9n, 0), // not NaN-boxed: canonical NaN
  // Sign injection.
  c('fsgnj.d fa3, fa0, fa1', [D(3), D(-1)], D(-3), 0),
  c('fsgnjn.d fa3, fa0, fa1', [D(3), D(-1)], D(3), 0),
  c('fsgnjx.d fa3, fa0, fa1', [D(-3), D(-1)], D(3), 0),
  c('fsgnjx.d fa3, fa0, fa1', [SNAN_D, D(-1)], SNAN_D | NEG, 0),
  c('fsgnj.s fa3, fa0, fa1', [S(3), S(-1)], S(-3), 0),
  c('fsgnjn.s fa3, fa0, fa1', [0x1234_5678_4040_0000n, S(1)], SB(0xffc00000), 0), // unboxed input reads as canonical NaN
  // Float -> integer: rounding, saturation, NV instead of NX when out of range.
  c('fcvt.w.d a1, fa0, rne', [D(2.5)], 2n, NX),
  c('fcvt.w.d a1, fa0, rne', [D(3.5)], 4n, NX),
  c('fcvt.w.d a1, fa0, rne', [D(-2.5)], I(-2n), NX),
  c('fcvt.w.d a1, fa0, rmm', [D(-2.5)], I(-3n), NX),
  c('fcvt.w.d a1, fa0, rdn', [D(-2.1)], I(-3n), NX),
  c('fcvt.w.d a1, fa0, rup', [D(2.1)], 3n, NX),
  c('fcvt.w.d a1, fa0, rtz', [D(-2.9)], I(-2n), NX),
  c('fcvt.w.d a1, fa0, rtz', [D(2 ** 31)], 0x7fff_ffffn, NV),
  c('fcvt.w.d a1, fa0, rtz', [D(2 ** 31 - 0.5)], 0x7fff_ffffn, NX),
  c('fcvt.w.d a1, fa0, rne', [D(2 ** 31 - 0.5)], 0x7fff_ffffn, NV), // rounds to 2^31
  c('fcvt.w.d a1, fa0, rtz', [D(-(2 ** 31) - 0.5)], I(-(2n ** 31n)), NX),
  c('fcvt.w.d a1, fa0, rtz', [D(-(2 ** 31) - 1)], I(-(2n ** 31n)), NV),
  c('fcvt.w.d a1, fa0, rtz', [CANON_D], 0x7fff_ffffn, NV),
  c('fcvt.w.d a1, fa0, rtz', [D(-Infinity)], I(-(2n ** 31n)), NV),
  c('fcvt.wu.d a1, fa0, rtz', [D(-1)], 0n, NV),
  c('fcvt.wu.d a1, fa0, rtz', [D(-0.5)], 0n, NX),
  c('fcvt.wu.d a1, fa0, rtz', [D(2 ** 32 - 1)], I(-1n), 0), // 32-bit results are sign-extended
  c('fcvt.wu.d a1, fa0, rtz', [CANON_D], I(-1n), NV),
  c('fcvt.l.d a1, fa0, rtz', [D(2 ** 63)], 0x7fff_ffff_ffff_ffffn, NV),
  c('fcvt.l.d a1, fa0, rtz', [D(-(2 ** 63))], 0x8000_0000_0000_0000n, 0),
  c('fcvt.l.d a1, fa0, rtz', [D(2 ** 63 - 1024)], 0x7fff_ffff_ffff_fc00n, 0),
  c('fcvt.lu.d a1, fa0, rtz', [D(2 ** 64)], I(-1n), NV),
  c('fcvt.lu.d a1, fa0, rtz', [D(2 ** 64 - 2048)], 0xffff_ffff_ffff_f800n, 0),
  c('fcvt.lu.d a1, fa0, rtz', [CANON_D], I(-1n), NV),
  c('fcvt.l.s a1, fa0, rtz', [S(-(2 ** 63))], 0x8000_0000_0000_0000n, 0),
  c('fcvt.l.s a1, fa0, rup', [S(-1.5)], I(-1n), NX),
  c('fcvt.w.s a1, fa0, rtz', [SNAN_S], 0x7fff_ffffn, NV),
  // Integer -> float.
  c('fcvt.d.l fa3, a0, rne', [2n ** 53n + 1n], D(2 ** 53), NX),
  c('fcvt.d.l fa3, a0, rup', [2n ** 53n + 1n], D(2 ** 53 + 2), NX),
  c('fcvt.d.l fa3, a0, rne', [I(-1n)], D(-1), 0),
  c('fcvt.d.lu fa3, a0, rne', [I(-1n)], D(2 ** 64), NX),
  c('fcvt.d.lu fa3, a0, rtz', [I(-1n)], D(2 ** 64 - 2048), NX),
  c('fcvt.s.l fa3, a0, rne', [0x7fff_ffff_ffff_ffffn], S(2 ** 63), NX),
  c('fcvt.s.w fa3, a0, rtz', [0x7fff_ffffn], S(2 ** 31 - 128), NX),
  c('fcvt.s.wu fa3, a0, rne', [I(-1n)], S(2 ** 32), NX), // uses the low 32 bits
  c('fcvt.d.w fa3, a0', [0xffff_ffff_8000_0000n], D(-(2 ** 31)), 0),
  // Between formats.
  c('fcvt.s.d fa3, fa0, rne', [D(1e300)], S(Infinity), OF | NX),
  c('fcvt.s.d fa3, fa0, rtz', [D(1e300)], SB(0x7f7fffff), OF | NX),
  c('fcvt.s.d fa3, fa0, rne', [D(1 + 2 ** -24)], S(1), NX),
  c('fcvt.s.d fa3, fa0, rne', [D(2 ** -150)], S(0), UF | NX),
  c('fcvt.s.d fa3, fa0, rne', [D(2 ** -149)], SB(1), 0),
  c('fcvt.s.d fa3, fa0, rne', [QNAN_PAYLOAD_D], CANON_S, 0),
  c('fcvt.d.s fa3, fa0', [SNAN_S], CANON_D, NV),
  c('fcvt.d.s fa3, fa0', [S(-0.1)], D(Math.fround(-0.1)), 0),
  c('fcvt.d.s fa3, fa0', [0x0000_0001_3f80_0000n], CANON_D, 0), // not NaN-boxed
  // Moves: transfers ignore NaN-boxing, singles written are boxed.
  c('fmv.x.w a1, fa0', [0x1234_5678_8000_0001n], 0xffff_ffff_8000_0001n, 0),
  c('fmv.x.d a1, fa0', [SNAN_D], SNAN_D, 0),
  c('fmv.w.x fa3, a0', [0x1234_5678_7f80_0001n], SB(0x7f800001), 0),
  c('fmv.d.x fa3, a0', [0x1234_5678_9abc_def0n], 0x1234_5678_9abc_def0n, 0),
];

function caseProgram(cases: Case[]): string {
  const body = cases.map((k, i) => {
    const dst = /^f(eq|lt|le|class|cvt\.[wl]u?\.|mv\.x\.)/.test(k.insn) ? 'x' : 'f';
    const loads = k.src.map((_, j) => (/(fcvt\.[sd]\.[wl]u?|fmv\.[wd]\.x) /.test(k.insn) ? `  ld a0, ${8 * j}(t3)` : `  fld fa${j}, ${8 * j}(t3)`)).join('\n');
    return `
  la t3, d${i}
${loads}
  li t0, ${k.frm ?? 0}
  fsrm t0
  fsflags zero
  ${k.insn}
  ${dst === 'x' ? 'sd a1, 0(s2)' : 'fsd fa3, 0(s2)'}
  frflags t2
  sd t2, 8(s2)
  addi s2, s2, 16`;
  }).join('\n');
  const data = cases.map((k, i) => `d${i}: .dword ${k.src.map((v) => `0x${v.toString(16)}`).join(', ')}`).join('\n');
  return `
  .section .text.init
  .globl _start
_start:
  la s2, outbuf
${body}
  li a0, 1
  la a1, outbuf
  sub a2, s2, a1
  li a7, 64
  ecall
  li a0, 0
  li a7, 93
  ecall
  .section .rodata
  .balign 8
${data}
  .section .bss
  .balign 8
outbuf: .space ${cases.length * 16}
`;
}

test('F/D targeted cases: known results and flags, identical to qemu', async () => {
  const elfPath = await buildElf({ name: 'fp-cases', sources: { 'cases.S': caseProgram(CASES) } });
  const ours = runUser(readFileSync(elfPath));
  const ref = await runQemuUser(elfPath);
  assert.equal(ours.code, 0);
  assert.equal(ref.code, 0, ref.stderr);
  const a = new DataView(ours.stdout.buffer, ours.stdout.byteOffset, ours.stdout.length);
  const b = new DataView(ref.stdout.buffer, ref.stdout.byteOffset, ref.stdout.length);
  assert.equal(ours.stdout.length, CASES.length * 16);
  const errors: string[] = [];
  CASES.forEach((k, i) => {
    const r = a.getBigUint64(16 * i, true), f = Number(a.getBigUint64(16 * i + 8, true));
    const qr = b.getBigUint64(16 * i, true), qf = Number(b.getBigUint64(16 * i + 8, true));
    const hex = (v: bigint): string => `0x${v.toString(16)}`;
    if (r !== k.expect || f !== k.flags) {
      errors.push(`${k.insn} [${k.src.map(hex).join(', ')}]: got ${hex(r)} flags ${f}, expected ${hex(k.expect)} flags ${k.flags}`);
    }
    if (r !== qr || f !== qf) errors.push(`${k.insn}: typevisor ${hex(r)}/${f} != qemu ${hex(qr)}/${qf}`);
  });
  assert.deepEqual(errors, []);
});

/** Run an S-mode-only program (not runnable under qemu-user); returns the trap message or stdout. */
async function runS(name: string, body: string): Promise<{ out: bigint[]; error?: string }> {
  const src = `
  .section .text.init
  .globl _start
_start:
  la s2, outbuf
${body}
  li a0, 1
  la a1, outbuf
  sub a2, s2, a1
  li a7, 64
  ecall
  li a0, 0
  li a7, 93
  ecall
  .section .bss
  .balign 8
outbuf: .space 256
`;
  const elfPath = await buildElf({ name, sources: { 'p.S': src } });
  try {
    const r = runUser(readFileSync(elfPath));
    const v = new DataView(r.stdout.buffer, r.stdout.byteOffset, r.stdout.length);
    const out: bigint[] = [];
    for (let i = 0; i + 8 <= r.stdout.length; i += 8) out.push(v.getBigUint64(i, true));
    return { out };
  } catch (e) {
    return { out: [], error: (e as Error).message };
  }
}

const FS_MASK = 3n << 13n;

test('FS=Off makes FP instructions and FP CSRs illegal', async () => {
  for (const insn of ['fadd.d fa0, fa1, fa2', 'fld fa0, 0(sp)', 'fsw fa0, 0(sp)', 'fmv.x.d a0, fa0', 'fmv.w.x fa0, a0',
    'fcvt.d.w fa0, a0', 'feq.s a0, fa0, fa1', 'fclass.d a0, fa0', 'fmadd.s fa0, fa1, fa2, fa3', 'frflags a0', 'c.fld fa0, 8(a1)']) {
    const r = await runS('fp-fsoff', `
  la a1, outbuf
  li t0, ${FS_MASK}
  csrc sstatus, t0
  ${insn}
`);
    assert.match(r.error ?? 'no trap', /mcause=2 /, insn);
  }
  // Control: with FS on, the same instruction runs.
  const ok = await runS('fp-fson', '  fadd.d fa0, fa1, fa2\n  sd zero, 0(s2)\n  addi s2, s2, 8');
  assert.equal(ok.error, undefined);
});

test('reserved rounding modes raise illegal-instruction', async () => {
  // fadd.d fa0, fa1, fa2 with rm=5 and rm=6
  for (const word of [0x02c5d553, 0x02c5e553]) {
    const r = await runS('fp-rm', `  .word 0x${word.toString(16)}`);
    assert.match(r.error ?? 'no trap', /mcause=2 .*mtval=0x[0-9a-f]+$/);
    assert.match(r.error ?? '', new RegExp(`mtval=0x${word.toString(16)}$`));
  }
  // dynamic rm with frm=5: illegal; frm=4 is fine
  const bad = await runS('fp-frm5', '  csrwi frm, 5\n  fadd.d fa0, fa1, fa2, dyn');
  assert.match(bad.error ?? 'no trap', /mcause=2 /);
  const good = await runS('fp-frm4', '  csrwi frm, 4\n  fadd.d fa0, fa1, fa2, dyn\n  sd zero, 0(s2)\n  addi s2, s2, 8');
  assert.equal(good.error, undefined);
  // rm is not checked by instructions without an rm field (fsgnj: funct3 selects the op)
  const sg = await runS('fp-frm5-sgnj', '  csrwi frm, 5\n  fsgnj.d fa0, fa1, fa2\n  sd zero, 0(s2)\n  addi s2, s2, 8');
  assert.equal(sg.error, undefined);
});

test('FP writes set FS Dirty (and SD); compares and moves to x registers do not', async () => {
  const r = await runS('fp-dirty', `
  li t0, ${FS_MASK}
  csrc sstatus, t0
  li t0, ${1n << 13n}
  csrs sstatus, t0          # FS = Initial
  fmv.x.d a0, fa0
  feq.d a0, fa0, fa0
  csrr t1, sstatus
  sd t1, 0(s2)
  fadd.d fa0, fa1, fa2
  csrr t1, sstatus
  sd t1, 8(s2)
  csrc sstatus, t0          # FS = Clean (2)
  li t0, ${2n << 13n}
  csrs sstatus, t0
  li t0, 0x7ff0000000000001  # sNaN: feq raises NV -> fflags written
  fmv.d.x fa1, t0
  csrr t1, sstatus
  sd t1, 16(s2)
  feq.d a0, fa1, fa1
  csrr t1, sstatus
  sd t1, 24(s2)
  frflags t1
  sd t1, 32(s2)
  addi s2, s2, 40
`);
  assert.equal(r.error, undefined, r.error);
  const fs = (v: bigint): bigint => (v >> 13n) & 3n;
  assert.equal(fs(r.out[0]), 1n, 'FS stays Initial after fmv.x.d/feq on non-NaN');
  assert.equal(fs(r.out[1]), 3n, 'FS Dirty after fadd');
  assert.equal(r.out[1] >> 63n, 1n, 'SD set');
  assert.equal(fs(r.out[2]), 3n, 'fmv.d.x dirties');
  assert.equal(fs(r.out[3]), 3n);
  assert.equal(r.out[4], 16n, 'feq on sNaN sets NV');
});

test('compressed FP loads/stores (c.fld, c.fsd, c.fldsp, c.fsdsp)', async () => {
  const src = `
  .section .text.init
  .globl _start
_start:
  la a1, buf
  addi sp, sp, -64
  c.fld fa0, 8(a1)
  c.fsdsp fa0, 16(sp)
  c.fldsp fa1, 16(sp)
  c.fsd fa1, 24(a1)
  fadd.d fa2, fa0, fa1
  c.fsd fa2, 32(a1)
  li a0, 1
  la a1, buf
  li a2, 40
  li a7, 64
  ecall
  li a0, 0
  li a7, 93
  ecall
  .section .data
  .balign 8
buf: .dword 0, 0x400921fb54442d18, 0, 0, 0
`;
  const elfPath = await buildElf({ name: 'fp-rvc', sources: { 'c.S': src } });
  const ours = runUser(readFileSync(elfPath));
  const ref = await runQemuUser(elfPath);
  assert.deepEqual(Buffer.from(ours.stdout), ref.stdout);
  const v = new DataView(ours.stdout.buffer, ours.stdout.byteOffset, ours.stdout.length);
  assert.equal(v.getFloat64(24, true), Math.PI);
  assert.equal(v.getFloat64(32, true), 2 * Math.PI);
});

test('disassembler names FP rows', () => {
  assert.equal(disassemble(0x02b576d3), 'fadd.d f13, f10, f11');
  assert.equal(disassemble(0x60b536c3), 'fmadd.s f13, f10, f11, f12');
  assert.equal(disassemble(0xe20505d3), 'fmv.x.d a1, f10');
  assert.equal(disassemble(0x00b53427), 'fsd f11, 8(a0)');
  assert.equal(disassemble(0xc0051553).startsWith('fcvt.w.s a0, f10'), true);
});

const C_PROGRAM = `
typedef unsigned long u64;
static long sys3(long n, long a, long b, long c) {
  register long a0 __asm__("a0") = a; register long a1 __asm__("a1") = b;
  register long a2 __asm__("a2") = c; register long a7 __asm__("a7") = n;
  __asm__ volatile("ecall" : "+r"(a0) : "r"(a1), "r"(a2), "r"(a7) : "memory");
  return a0;
}
static u64 out[512]; static int n;
static void put(u64 v) { if (n < 512) out[n++] = v; }
static void putd(double d) { union { double d; u64 u; } x = { d }; put(x.u); }
static void putf(float f) { union { float f; unsigned u; } x = { f }; put(x.u); }
static u64 flags(void) { u64 f; __asm__ volatile("frflags %0" : "=r"(f)); return f; }

__attribute__((noinline)) static double nbody(int steps) {
  double x[3] = {0, 1, -1.5}, y[3] = {0, 0.25, 0.5}, vx[3] = {0, 0.1, -0.05}, vy[3] = {0.02, 0.9, -0.7}, m[3] = {10, 1, 0.5};
  for (int s = 0; s < steps; s++) {
    for (int i = 0; i < 3; i++) for (int j = 0; j < 3; j++) if (i != j) {
      double dx = x[j] - x[i], dy = y[j] - y[i];
      double r2 = dx * dx + dy * dy + 1e-3;
      double inv = m[j] / (r2 * __builtin_sqrt(r2));
      vx[i] += 0.001 * dx * inv; vy[i] += 0.001 * dy * inv;
    }
    for (int i = 0; i < 3; i++) { x[i] += 0.001 * vx[i]; y[i] += 0.001 * vy[i]; }
  }
  return x[0] + 2 * y[1] - x[2] * y[2];
}

__attribute__((noinline)) static float mandel(void) {
  float acc = 0;
  for (int py = 0; py < 24; py++) for (int px = 0; px < 48; px++) {
    float cr = -2.0f + px * (3.0f / 48), ci = -1.2f + py * (2.4f / 24), zr = 0, zi = 0;
    int k = 0;
    while (k < 100 && zr * zr + zi * zi < 4.0f) { float t = zr * zr - zi * zi + cr; zi = 2 * zr * zi + ci; zr = t; k++; }
    acc += k * 0.5f + zr * 0.25f;
  }
  return acc;
}

void _start(void) {
  putd(nbody(3000));
  putf(mandel());
  volatile double big = 1e300, tiny = 1e-300, neg = -2.75;
  putd(big * big); put(flags());
  putd(tiny * tiny); put(flags());
  put((u64)(long)neg); put((u64)(unsigned)(-neg)); put((u64)(long)(big / 1e290));
  putf((float)big); putd((double)(float)tiny);
  putd(__builtin_fabs(neg)); putd(-neg); putd(__builtin_copysign(3.0, neg));
  { double r, one = 1.0; __asm__("fmin.d %0, %1, %2" : "=f"(r) : "f"(neg), "f"(one)); putd(r); } putd(__builtin_fma(neg, 3.0, 1e-20));
  volatile long l = 0x7fffffffffffffffL; volatile unsigned long ul = 0xffffffffffffffffUL;
  putd((double)l); putd((double)ul); putf((float)l); putf((float)ul);
  put(neg < big); put(neg == neg); put(__builtin_isnan(big - big));
  put(flags());
  sys3(64, 1, (long)out, n * 8);
  sys3(93, 0, 0, 0);
  for (;;) {}
}
`;

test('compiled C floating-point code (gcc -O2) matches qemu', async () => {
  const elfPath = await buildElf({ name: 'fp-c', sources: { 'fp.c': C_PROGRAM }, cflags: ['-O2', '-fno-math-errno'] });
  const ours = runUser(readFileSync(elfPath));
  const ref = await runQemuUser(elfPath);
  assert.equal(ref.code, 0, ref.stderr);
  assert.equal(ours.code, 0);
  assert.equal(ours.stdout.length, 8 * 24);
  assert.deepEqual(Buffer.from(ours.stdout).toString('hex'), ref.stdout.toString('hex'));
});

test('flw NaN-boxes, fsw/fmv.x.w store the low 32 bits of an unboxed register', async () => {
  const src = `
  .section .text.init
  .globl _start
_start:
  la a1, buf
  flw fa0, 0(a1)            # 0x7f800001 (sNaN) -> boxed, payload kept
  fsd fa0, 8(a1)
  li t0, 0x123456783f800000 # unboxed 1.0
  fmv.d.x fa1, t0
  fsw fa1, 16(a1)           # stores 0x3f800000
  fadd.s fa2, fa1, fa1      # unboxed operand reads as canonical NaN
  fsd fa2, 24(a1)
  frflags t1
  sd t1, 32(a1)
  li a0, 1
  li a2, 40
  li a7, 64
  ecall
  li a0, 0
  li a7, 93
  ecall
  .section .data
  .balign 8
buf: .dword 0x7f800001, 0, 0xaaaaaaaaaaaaaaaa, 0, 0
`;
  const elfPath = await buildElf({ name: 'fp-box', sources: { 'b.S': src } });
  const ours = runUser(readFileSync(elfPath));
  const ref = await runQemuUser(elfPath);
  assert.deepEqual(Buffer.from(ours.stdout), ref.stdout);
  const v = new DataView(ours.stdout.buffer, ours.stdout.byteOffset, ours.stdout.length);
  assert.equal(v.getBigUint64(8, true), 0xffff_ffff_7f80_0001n);
  assert.equal(v.getBigUint64(16, true), 0xaaaa_aaaa_3f80_0000n);
  assert.equal(v.getBigUint64(24, true), 0xffff_ffff_7fc0_0000n);
  assert.equal(v.getBigUint64(32, true), 0n, 'canonical NaN input is quiet: no NV');
});
