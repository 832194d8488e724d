/**
 * Disassembler driven by the same instruction table as the decoder and interpreter:
 * the row gives the mnemonic and format, the decoder gives the operands.
 */
import { decode } from './table.js';
import { compressedName } from './rvc.js';
import { SINK } from '../state.js';

const ABI = ['zero', 'ra', 'sp', 'gp', 'tp', 't0', 't1', 't2', 's0', 's1', 'a0', 'a1', 'a2', 'a3', 'a4', 'a5',
  'a6', 'a7', 's2', 's3', 's4', 's5', 's6', 's7', 's8', 's9', 's10', 's11', 't3', 't4', 't5', 't6'];

const xr = (i: number): string => ABI[i === SINK ? 0 : i];
const fr = (i: number): string => `f${i}`;
const hex = (v: number): string => (v < 0 ? `-0x${(-v).toString(16)}` : `0x${v.toString(16)}`);

/** Disassemble one instruction. `pc` (as a number) resolves branch and jump targets. */
export function disassemble(raw: number, pc = 0): string {
  const d = decode(raw);
  const s = d.spec;
  const prefix = d.len === 2 ? `${compressedName(d.raw) ?? 'c.?'} => ` : '';
  const rd = s.fd ? fr(d.rd) : xr(d.rd);
  const rs1 = s.fs1 ? fr(d.rs1) : xr(d.rs1);
  const rs2 = s.fs2 ? fr(d.rs2) : xr(d.rs2);
  let ops: string;
  switch (s.format) {
    case 'R': ops = `${rd}, ${rs1}, ${rs2}`; break;
    case 'I': ops = `${rd}, ${rs1}, ${d.imm}`; break;
    case 'shift': case 'shiftw': ops = `${rd}, ${rs1}, ${d.imm}`; break;
    case 'load': case 'fload': ops = `${rd}, ${d.imm}(${xr(d.rs1)})`; break;
    case 'store': case 'fstore': ops = `${rs2}, ${d.imm}(${xr(d.rs1)})`; break;
    case 'B': ops = `${rs1}, ${rs2}, ${hex(pc + d.imm)}`; break;
    case 'U': ops = `${rd}, ${hex((d.imm >>> 12) & 0xfffff)}`; break;
    case 'J': ops = `${rd}, ${hex(pc + d.imm)}`; break;
    case 'csr': ops = `${rd}, ${hex(d.imm)}, ${rs1}`; break;
    case 'csri': ops = `${rd}, ${hex(d.imm)}, ${d.rs1}`; break;
    case 'amo': ops = `${rd}, ${rs2}, (${xr(d.rs1)})`; break;
    case 'lr': ops = `${rd}, (${xr(d.rs1)})`; break;
    case 'R4': ops = `${rd}, ${rs1}, ${rs2}, ${fr(d.rs3)}`; break;
    case 'fR': ops = `${rd}, ${rs1}, ${rs2}`; break;
    case 'fR1': case 'fcvt': ops = `${rd}, ${rs1}`; break;
    default: ops = '';
  }
  return `${prefix}${s.name}${ops ? ' ' + ops : ''}`;
}
