/**
 * F and D extensions for RV64 (unprivileged spec chapters 11 and 12; RV64 conversions in
 * 11.7 and 12.5). Semantics live in ../fpu/fpu.ts; this file is the instruction table.
 * Every row checks mstatus.FS (requireFP) first; rows with an rm field resolve it through
 * roundingMode, which raises illegal-instruction for reserved modes. D rows with `emit` run
 * inline in translated code (jit/emit.ts: the same host-double fast paths, in WebAssembly)
 * when FS is on and the mode is RNE; everything else goes to their exec.
 */
import type { InsnSpec } from './types.js';
import * as fp from '../fpu/fpu.js';
import * as je from '../jit/emit.js';
import { Op } from '../jit/wasm.js';

const LS = 0x0000707f, R4 = 0x0600007f, RM = 0xfe00007f, RM1 = 0xfff0007f, F3 = 0xfe00707f, F31 = 0xfff0707f;
const OP_FP = 0x53;

/** match for OP-FP with funct7, optional rs2 and funct3. */
const op = (f7: number, rs2 = 0, f3 = 0): number => ((f7 << 25) | (rs2 << 20) | (f3 << 12) | OP_FP) | 0;

/** The rows that exist for both formats: fmt 0 = S, 1 = D. */
function rows(fmt: 0 | 1): InsnSpec[] {
  const S = fmt === 0;
  const t = S ? 's' : 'd';
  const ext = S ? 'F' : 'D';
  const f = fmt;
  const arith = { format: 'fR', ext, fd: true, fs1: true, fs2: true } as const;
  return [
    { name: `fmadd.${t}`, mask: R4, match: (f << 25) | 0x43, format: 'R4', ext, fd: true, fs1: true, fs2: true, exec: S ? fp.fmaddS : fp.fmaddD, emit: S ? je.fmaS(false, false) : je.fmaD(false, false) },
    { name: `fmsub.${t}`, mask: R4, match: (f << 25) | 0x47, format: 'R4', ext, fd: true, fs1: true, fs2: true, exec: S ? fp.fmsubS : fp.fmsubD, emit: S ? je.fmaS(false, true) : je.fmaD(false, true) },
    { name: `fnmsub.${t}`, mask: R4, match: (f << 25) | 0x4b, format: 'R4', ext, fd: true, fs1: true, fs2: true, exec: S ? fp.fnmsubS : fp.fnmsubD, emit: S ? je.fmaS(true, false) : je.fmaD(true, false) },
    { name: `fnmadd.${t}`, mask: R4, match: (f << 25) | 0x4f, format: 'R4', ext, fd: true, fs1: true, fs2: true, exec: S ? fp.fnmaddS : fp.fnmaddD, emit: S ? je.fmaS(true, true) : je.fmaD(true, true) },

    { name: `fadd.${t}`, mask: RM, match: op(0x00 | f), ...arith, exec: S ? fp.faddS : fp.faddD, emit: S ? je.faddS(false) : je.faddD(false) },
    { name: `fsub.${t}`, mask: RM, match: op(0x04 | f), ...arith, exec: S ? fp.fsubS : fp.fsubD, emit: S ? je.faddS(true) : je.faddD(true) },
    { name: `fmul.${t}`, mask: RM, match: op(0x08 | f), ...arith, exec: S ? fp.fmulS : fp.fmulD, emit: S ? je.fmulS : je.fmulD },
    { name: `fdiv.${t}`, mask: RM, match: op(0x0c | f), ...arith, exec: S ? fp.fdivS : fp.fdivD, emit: S ? je.fdivS : je.fdivD },
    { name: `fsqrt.${t}`, mask: RM1, match: op(0x2c | f), format: 'fR1', ext, fd: true, fs1: true, exec: S ? fp.fsqrtS : fp.fsqrtD, emit: S ? je.fsqrtS : je.fsqrtD },

    { name: `fsgnj.${t}`, mask: F3, match: op(0x10 | f, 0, 0), ...arith, exec: S ? (h, d) => fp.fsgnjS(h, d, 0) : (h, d) => fp.fsgnjD(h, d, 0), emit: S ? je.fsgnjS(0) : je.fsgnjD(0) },
    { name: `fsgnjn.${t}`, mask: F3, match: op(0x10 | f, 0, 1), ...arith, exec: S ? (h, d) => fp.fsgnjS(h, d, 1) : (h, d) => fp.fsgnjD(h, d, 1), emit: S ? je.fsgnjS(1) : je.fsgnjD(1) },
    { name: `fsgnjx.${t}`, mask: F3, match: op(0x10 | f, 0, 2), ...arith, exec: S ? (h, d) => fp.fsgnjS(h, d, 2) : (h, d) => fp.fsgnjD(h, d, 2), emit: S ? je.fsgnjS(2) : je.fsgnjD(2) },
    { name: `fmin.${t}`, mask: F3, match: op(0x14 | f, 0, 0), ...arith, exec: S ? (h, d) => fp.fminmaxS(h, d, false) : (h, d) => fp.fminmaxD(h, d, false) },
    { name: `fmax.${t}`, mask: F3, match: op(0x14 | f, 0, 1), ...arith, exec: S ? (h, d) => fp.fminmaxS(h, d, true) : (h, d) => fp.fminmaxD(h, d, true) },

    { name: `fle.${t}`, mask: F3, match: op(0x50 | f, 0, 0), format: 'fR', ext, fs1: true, fs2: true, exec: S ? (h, d) => fp.fcmpS(h, d, 0) : (h, d) => fp.fcmpD(h, d, 0), emit: S ? je.fcmpS(Op.f64_le) : je.fcmpD(Op.f64_le) },
    { name: `flt.${t}`, mask: F3, match: op(0x50 | f, 0, 1), format: 'fR', ext, fs1: true, fs2: true, exec: S ? (h, d) => fp.fcmpS(h, d, 1) : (h, d) => fp.fcmpD(h, d, 1), emit: S ? je.fcmpS(Op.f64_lt) : je.fcmpD(Op.f64_lt) },
    { name: `feq.${t}`, mask: F3, match: op(0x50 | f, 0, 2), format: 'fR', ext, fs1: true, fs2: true, exec: S ? (h, d) => fp.fcmpS(h, d, 2) : (h, d) => fp.fcmpD(h, d, 2), emit: S ? je.fcmpS(Op.f64_eq) : je.fcmpD(Op.f64_eq) },
    { name: `fclass.${t}`, mask: F31, match: op(0x70 | f, 0, 1), format: 'fR1', ext, fs1: true, exec: S ? fp.fclassS : fp.fclassD },

    { name: `fcvt.w.${t}`, mask: RM1, match: op(0x60 | f, 0), format: 'fcvt', ext, fs1: true, exec: S ? (h, d) => fp.fcvtIntS(h, d, 0) : (h, d) => fp.fcvtIntD(h, d, 0), emit: S ? je.fcvtIntS(0) : je.fcvtIntD(0) },
    { name: `fcvt.wu.${t}`, mask: RM1, match: op(0x60 | f, 1), format: 'fcvt', ext, fs1: true, exec: S ? (h, d) => fp.fcvtIntS(h, d, 1) : (h, d) => fp.fcvtIntD(h, d, 1), emit: S ? je.fcvtIntS(1) : je.fcvtIntD(1) },
    { name: `fcvt.l.${t}`, mask: RM1, match: op(0x60 | f, 2), format: 'fcvt', ext, fs1: true, exec: S ? (h, d) => fp.fcvtIntS(h, d, 2) : (h, d) => fp.fcvtIntD(h, d, 2), emit: S ? je.fcvtIntS(2) : je.fcvtIntD(2) },
    { name: `fcvt.lu.${t}`, mask: RM1, match: op(0x60 | f, 3), format: 'fcvt', ext, fs1: true, exec: S ? (h, d) => fp.fcvtIntS(h, d, 3) : (h, d) => fp.fcvtIntD(h, d, 3), emit: S ? je.fcvtIntS(3) : je.fcvtIntD(3) },
    { name: `fcvt.${t}.w`, mask: RM1, match: op(0x68 | f, 0), format: 'fcvt', ext, fd: true, exec: S ? (h, d) => fp.fcvtSInt(h, d, 0) : (h, d) => fp.fcvtDInt(h, d, 0), emit: S ? je.fcvtSInt(0) : je.fcvtDInt(0) },
    { name: `fcvt.${t}.wu`, mask: RM1, match: op(0x68 | f, 1), format: 'fcvt', ext, fd: true, exec: S ? (h, d) => fp.fcvtSInt(h, d, 1) : (h, d) => fp.fcvtDInt(h, d, 1), emit: S ? je.fcvtSInt(1) : je.fcvtDInt(1) },
    { name: `fcvt.${t}.l`, mask: RM1, match: op(0x68 | f, 2), format: 'fcvt', ext, fd: true, exec: S ? (h, d) => fp.fcvtSInt(h, d, 2) : (h, d) => fp.fcvtDInt(h, d, 2), emit: S ? je.fcvtSInt(2) : je.fcvtDInt(2) },
    { name: `fcvt.${t}.lu`, mask: RM1, match: op(0x68 | f, 3), format: 'fcvt', ext, fd: true, exec: S ? (h, d) => fp.fcvtSInt(h, d, 3) : (h, d) => fp.fcvtDInt(h, d, 3), emit: S ? je.fcvtSInt(3) : je.fcvtDInt(3) },
  ];
}

export const RV64FD: InsnSpec[] = [
  // Transfers first: loads, stores and moves (no rounding, no flags).
  { name: 'flw', mask: LS, match: 0x2007, format: 'fload', ext: 'F', fd: true, exec: fp.flw, emit(e, d) { e.fpGuard(d, false, true, () => e.loadF(d, 4)); } },
  { name: 'fld', mask: LS, match: 0x3007, format: 'fload', ext: 'D', fd: true, exec: fp.fld, emit(e, d) { e.fpGuard(d, false, true, () => e.loadF(d)); } },
  { name: 'fsw', mask: LS, match: 0x2027, format: 'fstore', ext: 'F', fs2: true, exec: fp.fsw, emit(e, d) { e.fpGuard(d, false, false, () => e.storeF(d, 4)); } },
  { name: 'fsd', mask: LS, match: 0x3027, format: 'fstore', ext: 'D', fs2: true, exec: fp.fsd, emit(e, d) { e.fpGuard(d, false, false, () => e.storeF(d)); } },
  { name: 'fmv.x.w', mask: F31, match: op(0x70, 0, 0), format: 'fR1', ext: 'F', fs1: true, exec: fp.fmvXW, emit: je.fmvXW },
  { name: 'fmv.w.x', mask: F31, match: op(0x78, 0, 0), format: 'fR1', ext: 'F', fd: true, exec: fp.fmvWX, emit: je.fmvWX },
  { name: 'fmv.x.d', mask: F31, match: op(0x71, 0, 0), format: 'fR1', ext: 'D', fs1: true, exec: fp.fmvXD, emit(e, d) { e.fpGuard(d, false, false, () => e.setX(d.rd, () => e.fbits(d.rs1))); } },
  { name: 'fmv.d.x', mask: F31, match: op(0x79, 0, 0), format: 'fR1', ext: 'D', fd: true, exec: fp.fmvDX, emit(e, d) { e.fpGuard(d, false, true, () => e.setFbits(d.rd, () => e.x(d.rs1))); } },
  { name: 'fcvt.s.d', mask: RM1, match: op(0x20, 1), format: 'fcvt', ext: 'D', fd: true, fs1: true, exec: fp.fcvtSD, emit: je.fcvtSD },
  { name: 'fcvt.d.s', mask: RM1, match: op(0x21, 0), format: 'fcvt', ext: 'D', fd: true, fs1: true, exec: fp.fcvtDS, emit: je.fcvtDS },
  ...rows(0),
  ...rows(1),
];
