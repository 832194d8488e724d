import type { Hart } from '../hart.js';
import type { Emit } from '../jit/emit.js';

/**
 * A translated code page: runs from the block at page offset `entry` with at most `budget`
 * instructions (that block fits); `done` is added to the count it returns, the
 * instructions retired. `vbase` is the page's virtual base; `addr` is scratch
 * (jit/codegen.ts pageFnType). Entered only through the translator's trampoline.
 */
export type BlockFn = (budget: number, done: number, entry: number, vbase: bigint, addr: bigint) => number;

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
  // (Fields in the order the run loop reads them: V8 lays them out so, and the hot ones
  // share the object's first cache line.)
  exec: (h: Hart, d: Decoded) => void;
  /** 2 for compressed, 4 otherwise. */
  len: number;
  /** spec.ends, copied for the run loop. */
  ends: boolean;
  /** Times the interpreter entered a block here (translator hotness counter); once translated, dispatcher entries. */
  hits: number;
  /**
   * The translated page function holding a block that starts at this instruction, by its
   * index in the translator's function table (entered through it), or -1: none.
   */
  blockIdx: number;
  /** Instructions in that block (the run loop never overshoots its budget). */
  blockLen: number;
  rd: number;
  rs1: number;
  rs2: number;
  imm: number;
  imm64: bigint;
  rs3: number;
  /** rm field (funct3) for FP, or the CSR number for Zicsr, or the shift amount. */
  rm: number;
  spec: InsnSpec;
  raw: number;
  constructor(spec: InsnSpec, raw: number, len: number) {
    this.exec = spec.exec;
    this.len = len;
    this.ends = spec.ends === true;
    this.hits = 0; this.blockIdx = -1; this.blockLen = 0;
    this.rd = 0; this.rs1 = 0; this.rs2 = 0; this.imm = 0; this.imm64 = 0n; this.rs3 = 0; this.rm = 0;
    this.spec = spec;
    this.raw = raw;
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
  /**
   * For a row that `ends` blocks: whether this instruction may run inside a translated
   * block after all, through its exec (a CSR access that leaves fetch and decoding alone).
   * The interpreter still starts a block after it.
   */
  readonly inBlock?: (d: Decoded) => boolean;
  exec(h: Hart, d: Decoded): void;
  /**
   * The same semantics for the translator: emit WebAssembly through `e`. Rows without it
   * end a translated block before them and run in the interpreter.
   */
  emit?(e: Emit, d: Decoded): void;
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
