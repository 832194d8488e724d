/**
 * The instruction table and the decoder built from it. Every instruction is one row
 * (InsnSpec) in one of the extension files; this file only indexes them.
 */
import { Decoded, type InsnSpec } from './types.js';
import { RV64I } from './rv64i.js';
import { RV64M, RV64A } from './rv64ma.js';
import { SYSTEM } from './system.js';
import { RV64FD } from './rv64fd.js';
import { RVC } from './rvc.js';
import { SINK } from '../state.js';

/**
 * A row with every field, in one order: all rows then share one V8 hidden class, and the
 * decoder's loads of a row's fields stay monomorphic (each row shape first decoded after
 * V8 had optimized the run loop, which inlines the decoder, threw that code away).
 */
function uniform(s: InsnSpec): InsnSpec {
  // (`satisfies`: every key of InsnSpec is listed, so a field added to rows is copied too.)
  return {
    name: s.name, mask: s.mask, match: s.match, format: s.format, ext: s.ext,
    fd: s.fd, fs1: s.fs1, fs2: s.fs2, ends: s.ends, inBlock: s.inBlock, exec: s.exec, emit: s.emit,
  } satisfies Record<keyof InsnSpec, unknown>;
}

export const INSTRUCTIONS: readonly InsnSpec[] = [...RV64I, ...RV64M, ...RV64A, ...SYSTEM, ...RV64FD].map(uniform);

/** Decodes to illegal-instruction (reserved and unknown encodings). */
export const ILLEGAL: InsnSpec = uniform({
  name: 'illegal', mask: 0, match: 0, format: 'none', ext: 'I',
  exec(h, d) { h.illegal(d); },
});

/** Rows bucketed by major opcode (bits 6:0), most specific mask first. */
const buckets: InsnSpec[][] = Array.from({ length: 128 }, () => []);
for (const s of INSTRUCTIONS) {
  if ((s.mask & 0x7f) !== 0x7f) throw new Error(`instruction ${s.name}: mask must cover the opcode`);
  buckets[s.match & 0x7f].push(s);
}
for (const b of buckets) b.sort((p, q) => popcount(q.mask) - popcount(p.mask));

function popcount(v: number): number {
  let n = 0;
  for (let x = v >>> 0; x !== 0; x &= x - 1) n++;
  return n;
}

/** Find the row for a 32-bit instruction word. */
export function lookup(raw: number): InsnSpec {
  const b = buckets[raw & 0x7f];
  for (let i = 0; i < b.length; i++) if ((raw & b[i].mask) === (b[i].match | 0)) return b[i];
  return ILLEGAL;
}

/** Expand a 16-bit parcel to its 32-bit equivalent, or 0 if reserved. */
export function expandCompressed(raw16: number): number {
  for (let i = 0; i < RVC.length; i++) {
    const c = RVC[i];
    if ((raw16 & c.mask) === c.match) return c.expand(raw16);
  }
  return 0;
}

/** Decode one instruction (32-bit word, or a 16-bit parcel in the low half) into its cached form. */
export function decode(raw: number): Decoded {
  if ((raw & 3) !== 3) {
    const r16 = raw & 0xffff;
    const full = r16 === 0 ? 0 : expandCompressed(r16);
    const spec = full === 0 ? ILLEGAL : lookup(full);
    const d = new Decoded(spec, r16, 2);
    if (full !== 0) fillFields(d, spec, full);
    return d;
  }
  const spec = lookup(raw);
  const d = new Decoded(spec, raw, 4);
  fillFields(d, spec, raw);
  return d;
}

function fillFields(d: Decoded, spec: InsnSpec, raw: number): void {
  const rd = (raw >>> 7) & 31;
  d.rd = rd === 0 && !spec.fd ? SINK : rd;
  d.rs1 = (raw >>> 15) & 31;
  d.rs2 = (raw >>> 20) & 31;
  d.rs3 = raw >>> 27;
  d.rm = (raw >>> 12) & 7;
  let imm = 0;
  switch (spec.format) {
    case 'I': case 'load': case 'fload':
      imm = raw >> 20; break;
    case 'csr': case 'csri':
      imm = raw >>> 20; break;
    case 'S': case 'store': case 'fstore':
      imm = ((raw >> 25) << 5) | ((raw >>> 7) & 31); break;
    case 'B':
      imm = ((raw >> 31) << 12) | (((raw >>> 7) & 1) << 11) | (((raw >>> 25) & 0x3f) << 5) | (((raw >>> 8) & 15) << 1); break;
    case 'U':
      imm = raw & 0xfffff000; break;
    case 'J':
      imm = ((raw >> 31) << 20) | (((raw >>> 12) & 0xff) << 12) | (((raw >>> 20) & 1) << 11) | (((raw >>> 21) & 0x3ff) << 1); break;
    case 'shift':
      imm = (raw >>> 20) & 63; break;
    case 'shiftw':
      imm = (raw >>> 20) & 31; break;
    default:
      imm = 0;
  }
  d.imm = imm | 0;
  d.imm64 = d.imm >= -2048 && d.imm < 2048 ? SMALL_IMM64[d.imm + 2048] : BigInt(d.imm);
}

/** imm64 of the 12-bit immediates most instructions carry: one shared BigInt each, not one per decoded instruction. */
const SMALL_IMM64: readonly bigint[] = Array.from({ length: 4096 }, (_, i) => BigInt(i - 2048));
