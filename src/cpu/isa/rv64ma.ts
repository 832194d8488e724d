/**
 * M (unprivileged spec chapter 7) and A (chapter 8) extensions for RV64.
 *
 * Division by zero and overflow follow table 7.1: no traps, defined results.
 * AMOs and LR/SC need natural alignment and RAM (hart.amoHost); aq/rl bits need no action on
 * a single in-order hart.
 */
import type { Hart } from '../hart.js';
import type { InsnSpec, Decoded } from './types.js';
import type { Emit } from '../jit/emit.js';
import { Op } from '../jit/wasm.js';
import { bin, binW, div, mulh } from '../jit/emit.js';

const R = 0xfe00707f;
const INT64_MIN = -0x8000_0000_0000_0000n;

function setW(h: Hart, rd: number, v: number): void {
  h.x32[rd * 2] = v;
  h.x32[rd * 2 + 1] = v >> 31;
}

export const RV64M: InsnSpec[] = [
  { name: 'mul', mask: R, match: 0x02000033, format: 'R', ext: 'M', emit: bin(Op.i64_mul), exec(h, d) { h.x[d.rd] = BigInt.asIntN(64, h.x[d.rs1] * h.x[d.rs2]); } },
  { name: 'mulh', mask: R, match: 0x02001033, format: 'R', ext: 'M', emit: mulh(true, true), exec(h, d) { h.x[d.rd] = BigInt.asIntN(64, (h.x[d.rs1] * h.x[d.rs2]) >> 64n); } },
  {
    name: 'mulhsu', mask: R, match: 0x02002033, format: 'R', ext: 'M',
    emit: mulh(true, false),
    exec(h, d) { h.x[d.rd] = BigInt.asIntN(64, (h.x[d.rs1] * BigInt.asUintN(64, h.x[d.rs2])) >> 64n); },
  },
  {
    name: 'mulhu', mask: R, match: 0x02003033, format: 'R', ext: 'M',
    emit: mulh(false, false),
    exec(h, d) { h.x[d.rd] = BigInt.asIntN(64, (BigInt.asUintN(64, h.x[d.rs1]) * BigInt.asUintN(64, h.x[d.rs2])) >> 64n); },
  },
  {
    name: 'div', mask: R, match: 0x02004033, format: 'R', ext: 'M',
    emit: div(false, Op.i64_div_s, 'ones', true),
    exec(h, d) {
      const a = h.x[d.rs1], b = h.x[d.rs2];
      h.x[d.rd] = b === 0n ? -1n : (a === INT64_MIN && b === -1n) ? INT64_MIN : a / b;
    },
  },
  {
    name: 'divu', mask: R, match: 0x02005033, format: 'R', ext: 'M',
    emit: div(false, Op.i64_div_u, 'ones', false),
    exec(h, d) {
      const b = BigInt.asUintN(64, h.x[d.rs2]);
      h.x[d.rd] = b === 0n ? -1n : BigInt.asIntN(64, BigInt.asUintN(64, h.x[d.rs1]) / b);
    },
  },
  {
    name: 'rem', mask: R, match: 0x02006033, format: 'R', ext: 'M',
    emit: div(false, Op.i64_rem_s, 'dividend', false),
    exec(h, d) {
      const a = h.x[d.rs1], b = h.x[d.rs2];
      h.x[d.rd] = b === 0n ? a : (a === INT64_MIN && b === -1n) ? 0n : a % b;
    },
  },
  {
    name: 'remu', mask: R, match: 0x02007033, format: 'R', ext: 'M',
    emit: div(false, Op.i64_rem_u, 'dividend', false),
    exec(h, d) {
      const a = h.x[d.rs1], b = BigInt.asUintN(64, h.x[d.rs2]);
      h.x[d.rd] = b === 0n ? a : BigInt.asIntN(64, BigInt.asUintN(64, a) % b);
    },
  },
  { name: 'mulw', mask: R, match: 0x0200003b, format: 'R', ext: 'M', emit: binW(Op.i32_mul), exec(h, d) { setW(h, d.rd, Math.imul(h.x32[d.rs1 * 2], h.x32[d.rs2 * 2])); } },
  {
    name: 'divw', mask: R, match: 0x0200403b, format: 'R', ext: 'M',
    emit: div(true, Op.i32_div_s, 'ones', true),
    exec(h, d) {
      const a = h.x32[d.rs1 * 2], b = h.x32[d.rs2 * 2];
      setW(h, d.rd, b === 0 ? -1 : (a === -0x80000000 && b === -1) ? a : (a / b) | 0);
    },
  },
  {
    name: 'divuw', mask: R, match: 0x0200503b, format: 'R', ext: 'M',
    emit: div(true, Op.i32_div_u, 'ones', false),
    exec(h, d) {
      const a = h.x32[d.rs1 * 2] >>> 0, b = h.x32[d.rs2 * 2] >>> 0;
      setW(h, d.rd, b === 0 ? -1 : Math.floor(a / b) | 0);
    },
  },
  {
    name: 'remw', mask: R, match: 0x0200603b, format: 'R', ext: 'M',
    emit: div(true, Op.i32_rem_s, 'dividend', false),
    exec(h, d) {
      const a = h.x32[d.rs1 * 2], b = h.x32[d.rs2 * 2];
      setW(h, d.rd, b === 0 ? a : (a === -0x80000000 && b === -1) ? 0 : (a % b) | 0);
    },
  },
  {
    name: 'remuw', mask: R, match: 0x0200703b, format: 'R', ext: 'M',
    emit: div(true, Op.i32_rem_u, 'dividend', false),
    exec(h, d) {
      const a = h.x32[d.rs1 * 2] >>> 0, b = h.x32[d.rs2 * 2] >>> 0;
      setW(h, d.rd, b === 0 ? a | 0 : (a % b) | 0);
    },
  },
];

const AMO = 0xf800707f, LR = 0xf9f0707f;

type Op32 = (old: number, v: number) => number;
type Op64 = (old: bigint, v: bigint) => bigint;

/**
 * The translator's form of an AMO's operation: the Wasm that leaves op(old, v) on the stack
 * from the locals `old` and `v` (i32 or i64 by `w`), one per funct5.
 */
function amoEmit(funct5: number, w: boolean): (e: Emit, d: Decoded) => void {
  const I = w ? { add: Op.i32_add, xor: Op.i32_xor, and: Op.i32_and, or: Op.i32_or, lt_s: Op.i32_lt_s, gt_s: Op.i32_gt_s, lt_u: Op.i32_lt_u, gt_u: Op.i32_gt_u }
    : { add: Op.i64_add, xor: Op.i64_xor, and: Op.i64_and, or: Op.i64_or, lt_s: Op.i64_lt_s, gt_s: Op.i64_gt_s, lt_u: Op.i64_lt_u, gt_u: Op.i64_gt_u };
  const bin: Record<number, number> = { 0x00: I.add, 0x04: I.xor, 0x0c: I.and, 0x08: I.or };
  // min/max: select(old, v, old < v) and the like.
  const pick: Record<number, number> = { 0x10: I.lt_s, 0x14: I.gt_s, 0x18: I.lt_u, 0x1c: I.gt_u };
  return (e, d) => e.amo(d, w ? 4 : 8, (old, v) => {
    const f = e.f;
    if (funct5 === 0x01) f.get(v);
    else if (bin[funct5] !== undefined) f.get(old).get(v).op(bin[funct5]);
    else f.get(old).get(v).get(old).get(v).op(pick[funct5]).op(Op.select);
  });
}

function amoW(name: string, funct5: number, op: Op32): InsnSpec {
  return {
    name, mask: AMO, match: (funct5 << 27) | 0x202f, format: 'amo', ext: 'A', emit: amoEmit(funct5, true),
    exec(h, d) {
      const lo = h.x32[d.rs1 * 2], hi = h.x32[d.rs1 * 2 + 1];
      const o = h.amoHost(lo, hi, 4, true) >>> 2;
      const m = h.mem32;
      const old = m[o];
      m[o] = op(old, h.x32[d.rs2 * 2]);
      setW(h, d.rd, old);
    },
  };
}

function amoD(name: string, funct5: number, op: Op64): InsnSpec {
  return {
    name, mask: AMO, match: (funct5 << 27) | 0x302f, format: 'amo', ext: 'A', emit: amoEmit(funct5, false),
    exec(h, d) {
      const lo = h.x32[d.rs1 * 2], hi = h.x32[d.rs1 * 2 + 1];
      const o = h.amoHost(lo, hi, 8, true) >>> 3;
      const m = h.mem64;
      const old = m[o];
      m[o] = op(old, h.x[d.rs2]);
      h.x[d.rd] = old;
    },
  };
}

const ltu32 = (a: number, b: number): boolean => (a >>> 0) < (b >>> 0);
const ltu64 = (a: bigint, b: bigint): boolean => BigInt.asUintN(64, a) < BigInt.asUintN(64, b);

export const RV64A: InsnSpec[] = [
  {
    name: 'lr.w', mask: LR, match: 0x1000202f, format: 'lr', ext: 'A', emit: (e, d) => e.lr(d, 4),
    exec(h, d) {
      const o = h.amoHost(h.x32[d.rs1 * 2], h.x32[d.rs1 * 2 + 1], 4, false) >>> 2;
      setW(h, d.rd, h.mem32[o]);
      h.setReservation(h.amoPa);
    },
  },
  {
    name: 'sc.w', mask: AMO, match: 0x1800202f, format: 'amo', ext: 'A', emit: (e, d) => e.sc(d, 4),
    exec(h, d) {
      const o = h.amoHost(h.x32[d.rs1 * 2], h.x32[d.rs1 * 2 + 1], 4, true) >>> 2;
      if (h.checkReservation(h.amoPa)) { h.mem32[o] = h.x32[d.rs2 * 2]; h.x[d.rd] = 0n; } else h.x[d.rd] = 1n;
    },
  },
  {
    name: 'lr.d', mask: LR, match: 0x1000302f, format: 'lr', ext: 'A', emit: (e, d) => e.lr(d, 8),
    exec(h, d) {
      const o = h.amoHost(h.x32[d.rs1 * 2], h.x32[d.rs1 * 2 + 1], 8, false) >>> 3;
      h.x[d.rd] = h.mem64[o];
      h.setReservation(h.amoPa);
    },
  },
  {
    name: 'sc.d', mask: AMO, match: 0x1800302f, format: 'amo', ext: 'A', emit: (e, d) => e.sc(d, 8),
    exec(h, d) {
      const o = h.amoHost(h.x32[d.rs1 * 2], h.x32[d.rs1 * 2 + 1], 8, true) >>> 3;
      if (h.checkReservation(h.amoPa)) { h.mem64[o] = h.x[d.rs2]; h.x[d.rd] = 0n; } else h.x[d.rd] = 1n;
    },
  },
  amoW('amoswap.w', 0x01, (_o, v) => v),
  amoW('amoadd.w', 0x00, (o, v) => (o + v) | 0),
  amoW('amoxor.w', 0x04, (o, v) => o ^ v),
  amoW('amoand.w', 0x0c, (o, v) => o & v),
  amoW('amoor.w', 0x08, (o, v) => o | v),
  amoW('amomin.w', 0x10, (o, v) => (o < v ? o : v)),
  amoW('amomax.w', 0x14, (o, v) => (o > v ? o : v)),
  amoW('amominu.w', 0x18, (o, v) => (ltu32(o, v) ? o : v)),
  amoW('amomaxu.w', 0x1c, (o, v) => (ltu32(o, v) ? v : o)),
  amoD('amoswap.d', 0x01, (_o, v) => v),
  amoD('amoadd.d', 0x00, (o, v) => BigInt.asIntN(64, o + v)),
  amoD('amoxor.d', 0x04, (o, v) => o ^ v),
  amoD('amoand.d', 0x0c, (o, v) => o & v),
  amoD('amoor.d', 0x08, (o, v) => o | v),
  amoD('amomin.d', 0x10, (o, v) => (o < v ? o : v)),
  amoD('amomax.d', 0x14, (o, v) => (o > v ? o : v)),
  amoD('amominu.d', 0x18, (o, v) => (ltu64(o, v) ? o : v)),
  amoD('amomaxu.d', 0x1c, (o, v) => (ltu64(o, v) ? v : o)),
];
