import type { Hart } from '../hart.js';

/** Instruction formats: they say which fields the decoder extracts and how the disassembler prints. */
export type Format =
  | 'R' | 'I' | 'S' | 'B' | 'U' | 'J'
  | 'shift' | 'shiftw' | 'load' | 'store' | 'csr' | 'csri' | 'amo' | 'lr' | 'fence' | 'none'
  | 'R4' | 'fR' | 'fR1' | 'fload' | 'fstore' | 'fcvt';

/**
 * The operand fields of one decoded instruction. Produced once by the decoder and cached;
 * `exec` is the semantics. Register numbers are raw (0..31) except `rd` for integer
 * destinations, where x0 is redirected to SINK.
 */
export class Decoded {
  exec: (h: Hart, d: Decoded) => void;
  spec: InsnSpec;
  raw: number;
  /** 2 for compressed, 4 otherwise. */
  len: number;
  rd: number;
  rs1: number;
  rs2: number;
  rs3: number;
  /** rm field (funct3) for FP, or the CSR number for Zicsr, or the shift amount. */
  rm: number;
  imm: number;
  imm64: bigint;
  constructor(spec: InsnSpec, raw: number, len: number) {
    this.exec = spec.exec;
    this.spec = spec;
    this.raw = raw;
    this.len = len;
    this.rd = 0; this.rs1 = 0; this.rs2 = 0; this.rs3 = 0; this.rm = 0;
    this.imm = 0; this.imm64 = 0n;
  }
}

/**
 * One row of the instruction table: the single place an instruction is defined.
 * The decoder matches (raw & mask) === match; the interpreter calls exec; the disassembler
 * prints name and operands by format; the translator will emit code from the same row.
 */
export interface InsnSpec {
  readonly name: string;
  readonly mask: number;
  readonly match: number;
  readonly format: Format;
  /** Extension letter(s) for misa gating and documentation: 'I', 'M', 'A', 'F', 'D', 'Zicsr', ... */
  readonly ext: string;
  /** `rd` is an FP register (disassembly and x0 redirection). */
  readonly fd?: boolean;
  /** rs1 / rs2 are FP registers (disassembly). */
  readonly fs1?: boolean;
  readonly fs2?: boolean;
  /** Ends a translation block (branches, jumps, traps, CSR writes, fences). */
  readonly ends?: boolean;
  exec(h: Hart, d: Decoded): void;
}

/**
 * A compressed (16-bit) encoding: `expand` returns the equivalent 32-bit instruction, or 0
 * when the encoding is reserved (then it raises illegal-instruction).
 */
export interface CompressedSpec {
  readonly name: string;
  readonly mask: number;
  readonly match: number;
  readonly ext: string;
  expand(raw: number): number;
}
