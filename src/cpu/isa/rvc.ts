/**
 * The C extension (unprivileged spec chapter 16, "C" Standard Extension for Compressed
 * Instructions, RV64 variants, with the compressed FP loads/stores of F/D).
 *
 * Each 16-bit form expands to its 32-bit equivalent, whose table row gives the semantics.
 * `expand` returns 0 for reserved encodings, which raise illegal-instruction.
 */
import type { CompressedSpec } from './types.js';

const encI = (op: number, f3: number, rd: number, rs1: number, imm: number): number =>
  (((imm & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op) | 0;
const encS = (op: number, f3: number, rs1: number, rs2: number, imm: number): number =>
  ((((imm >> 5) & 0x7f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 31) << 7) | op) | 0;
const encR = (op: number, f3: number, f7: number, rd: number, rs1: number, rs2: number): number =>
  ((f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op) | 0;
const encB = (f3: number, rs1: number, rs2: number, imm: number): number =>
  ((((imm >> 12) & 1) << 31) | (((imm >> 5) & 0x3f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) |
    (((imm >> 1) & 0xf) << 8) | (((imm >> 11) & 1) << 7) | 0x63) | 0;
const encJ = (rd: number, imm: number): number =>
  ((((imm >> 20) & 1) << 31) | (((imm >> 1) & 0x3ff) << 21) | (((imm >> 11) & 1) << 20) |
    (((imm >> 12) & 0xff) << 12) | (rd << 7) | 0x6f) | 0;

const bit = (r: number, b: number): number => (r >>> b) & 1;
const rdp = (r: number): number => 8 + ((r >>> 2) & 7);
const rs1p = (r: number): number => 8 + ((r >>> 7) & 7);
const rd = (r: number): number => (r >>> 7) & 31;
const rs2 = (r: number): number => (r >>> 2) & 31;
/** 6-bit signed immediate imm[5]=bit12, imm[4:0]=bits 6:2. */
const imm6 = (r: number): number => ((bit(r, 12) << 5) | ((r >>> 2) & 31)) << 26 >> 26;
const uimm6 = (r: number): number => (bit(r, 12) << 5) | ((r >>> 2) & 31);
/** c.lw/c.sw offset: uimm[5:3]=12:10, [2]=6, [6]=5. */
const offW = (r: number): number => (((r >>> 10) & 7) << 3) | (bit(r, 6) << 2) | (bit(r, 5) << 6);
/** c.ld/c.sd/c.fld/c.fsd offset: uimm[5:3]=12:10, [7:6]=6:5. */
const offD = (r: number): number => (((r >>> 10) & 7) << 3) | (((r >>> 5) & 3) << 6);
/** c.lwsp: uimm[5]=12, [4:2]=6:4, [7:6]=3:2. */
const offLwsp = (r: number): number => (bit(r, 12) << 5) | (((r >>> 4) & 7) << 2) | (((r >>> 2) & 3) << 6);
/** c.ldsp/c.fldsp: uimm[5]=12, [4:3]=6:5, [8:6]=4:2. */
const offLdsp = (r: number): number => (bit(r, 12) << 5) | (((r >>> 5) & 3) << 3) | (((r >>> 2) & 7) << 6);
/** c.swsp: uimm[5:2]=12:9, [7:6]=8:7. */
const offSwsp = (r: number): number => (((r >>> 9) & 15) << 2) | (((r >>> 7) & 3) << 6);
/** c.sdsp/c.fsdsp: uimm[5:3]=12:10, [8:6]=9:7. */
const offSdsp = (r: number): number => (((r >>> 10) & 7) << 3) | (((r >>> 7) & 7) << 6);

function jOffset(r: number): number {
  const v = (bit(r, 12) << 11) | (bit(r, 11) << 4) | (((r >>> 9) & 3) << 8) | (bit(r, 8) << 10) |
    (bit(r, 7) << 6) | (bit(r, 6) << 7) | (((r >>> 3) & 7) << 1) | (bit(r, 2) << 5);
  return (v << 20) >> 20;
}

function bOffset(r: number): number {
  const v = (bit(r, 12) << 8) | (((r >>> 10) & 3) << 3) | (((r >>> 5) & 3) << 6) | (((r >>> 3) & 3) << 1) | (bit(r, 2) << 5);
  return (v << 23) >> 23;
}

const Q = 0xe003;

export const RVC: CompressedSpec[] = [
  // Quadrant 0
  {
    name: 'c.addi4spn', mask: Q, match: 0x0000, ext: 'C',
    expand(r) {
      const nz = (((r >>> 11) & 3) << 4) | (((r >>> 7) & 15) << 6) | (bit(r, 6) << 2) | (bit(r, 5) << 3);
      return nz === 0 ? 0 : encI(0x13, 0, rdp(r), 2, nz);
    },
  },
  { name: 'c.fld', mask: Q, match: 0x2000, ext: 'D', expand: (r) => encI(0x07, 3, rdp(r), rs1p(r), offD(r)) },
  { name: 'c.lw', mask: Q, match: 0x4000, ext: 'C', expand: (r) => encI(0x03, 2, rdp(r), rs1p(r), offW(r)) },
  { name: 'c.ld', mask: Q, match: 0x6000, ext: 'C', expand: (r) => encI(0x03, 3, rdp(r), rs1p(r), offD(r)) },
  { name: 'c.fsd', mask: Q, match: 0xa000, ext: 'D', expand: (r) => encS(0x27, 3, rs1p(r), rdp(r), offD(r)) },
  { name: 'c.sw', mask: Q, match: 0xc000, ext: 'C', expand: (r) => encS(0x23, 2, rs1p(r), rdp(r), offW(r)) },
  { name: 'c.sd', mask: Q, match: 0xe000, ext: 'C', expand: (r) => encS(0x23, 3, rs1p(r), rdp(r), offD(r)) },
  // Quadrant 1
  { name: 'c.addi', mask: Q, match: 0x0001, ext: 'C', expand: (r) => encI(0x13, 0, rd(r), rd(r), imm6(r)) },
  { name: 'c.addiw', mask: Q, match: 0x2001, ext: 'C', expand: (r) => (rd(r) === 0 ? 0 : encI(0x1b, 0, rd(r), rd(r), imm6(r))) },
  { name: 'c.li', mask: Q, match: 0x4001, ext: 'C', expand: (r) => encI(0x13, 0, rd(r), 0, imm6(r)) },
  {
    name: 'c.lui/c.addi16sp', mask: Q, match: 0x6001, ext: 'C',
    expand(r) {
      if (rd(r) === 2) {
        const v = (bit(r, 12) << 9) | (bit(r, 6) << 4) | (bit(r, 5) << 6) | (((r >>> 3) & 3) << 7) | (bit(r, 2) << 5);
        const imm = (v << 22) >> 22;
        return imm === 0 ? 0 : encI(0x13, 0, 2, 2, imm);
      }
      const imm = imm6(r);
      if (imm === 0) return 0;
      return ((imm << 12) | (rd(r) << 7) | 0x37) | 0;
    },
  },
  {
    name: 'c.alu', mask: Q, match: 0x8001, ext: 'C',
    expand(r) {
      const d = rs1p(r);
      switch ((r >>> 10) & 3) {
        case 0: return encI(0x13, 5, d, d, uimm6(r));
        case 1: return encI(0x13, 5, d, d, uimm6(r) | 0x400);
        case 2: return encI(0x13, 7, d, d, imm6(r));
      }
      const s = rdp(r);
      const f = (r >>> 5) & 3;
      if (bit(r, 12) === 0) {
        switch (f) {
          case 0: return encR(0x33, 0, 0x20, d, d, s);
          case 1: return encR(0x33, 4, 0, d, d, s);
          case 2: return encR(0x33, 6, 0, d, d, s);
          default: return encR(0x33, 7, 0, d, d, s);
        }
      }
      if (f === 0) return encR(0x3b, 0, 0x20, d, d, s);
      if (f === 1) return encR(0x3b, 0, 0, d, d, s);
      return 0;
    },
  },
  { name: 'c.j', mask: Q, match: 0xa001, ext: 'C', expand: (r) => encJ(0, jOffset(r)) },
  { name: 'c.beqz', mask: Q, match: 0xc001, ext: 'C', expand: (r) => encB(0, rs1p(r), 0, bOffset(r)) },
  { name: 'c.bnez', mask: Q, match: 0xe001, ext: 'C', expand: (r) => encB(1, rs1p(r), 0, bOffset(r)) },
  // Quadrant 2
  { name: 'c.slli', mask: Q, match: 0x0002, ext: 'C', expand: (r) => encI(0x13, 1, rd(r), rd(r), uimm6(r)) },
  { name: 'c.fldsp', mask: Q, match: 0x2002, ext: 'D', expand: (r) => encI(0x07, 3, rd(r), 2, offLdsp(r)) },
  { name: 'c.lwsp', mask: Q, match: 0x4002, ext: 'C', expand: (r) => (rd(r) === 0 ? 0 : encI(0x03, 2, rd(r), 2, offLwsp(r))) },
  { name: 'c.ldsp', mask: Q, match: 0x6002, ext: 'C', expand: (r) => (rd(r) === 0 ? 0 : encI(0x03, 3, rd(r), 2, offLdsp(r))) },
  {
    name: 'c.jr/mv/ebreak/jalr/add', mask: Q, match: 0x8002, ext: 'C',
    expand(r) {
      const a = rd(r), b = rs2(r);
      if (bit(r, 12) === 0) {
        if (b === 0) return a === 0 ? 0 : encI(0x67, 0, 0, a, 0);
        return encR(0x33, 0, 0, a, 0, b);
      }
      if (b === 0) return a === 0 ? 0x00100073 : encI(0x67, 0, 1, a, 0);
      return encR(0x33, 0, 0, a, a, b);
    },
  },
  { name: 'c.fsdsp', mask: Q, match: 0xa002, ext: 'D', expand: (r) => encS(0x27, 3, 2, rs2(r), offSdsp(r)) },
  { name: 'c.swsp', mask: Q, match: 0xc002, ext: 'C', expand: (r) => encS(0x23, 2, 2, rs2(r), offSwsp(r)) },
  { name: 'c.sdsp', mask: Q, match: 0xe002, ext: 'C', expand: (r) => encS(0x23, 3, 2, rs2(r), offSdsp(r)) },
];

/** Name of the compressed form of a 16-bit parcel (for the disassembler). */
export function compressedName(raw: number): string | undefined {
  for (const c of RVC) if ((raw & c.mask) === c.match) return c.name;
  return undefined;
}
