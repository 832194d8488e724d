/**
 * A small WebAssembly binary encoder for the translator (WebAssembly Core Specification
 * 2.0, §5 "Binary Format"). It writes exactly what the translator needs: function types,
 * imported functions, memory and table, defined functions with locals, globals, exports and
 * element segments. Bytes accumulate in one growable buffer (no per-instruction arrays).
 */

export const enum ValType { I32 = 0x7f, I64 = 0x7e, F32 = 0x7d, F64 = 0x7c }
/** Block type "empty" (§5.3.5): the block yields no value. */
export const BLOCK_VOID = 0x40;

/** Opcodes used by the translator (§5.4). */
export const Op = {
  unreachable: 0x00, nop: 0x01, block: 0x02, loop: 0x03, if: 0x04, else: 0x05, end: 0x0b,
  // Exception handling (the proposal's first version, what V8 and the browsers ship).
  try: 0x06, rethrow: 0x09, catch_all: 0x19,
  br: 0x0c, br_if: 0x0d, br_table: 0x0e, return: 0x0f, call: 0x10, call_indirect: 0x11,
  return_call: 0x12, return_call_indirect: 0x13,
  drop: 0x1a, select: 0x1b,
  local_get: 0x20, local_set: 0x21, local_tee: 0x22, global_get: 0x23, global_set: 0x24,
  i32_load: 0x28, i64_load: 0x29, f32_load: 0x2a, f64_load: 0x2b,
  i32_load8_s: 0x2c, i32_load8_u: 0x2d, i32_load16_s: 0x2e, i32_load16_u: 0x2f,
  i64_load8_s: 0x30, i64_load8_u: 0x31, i64_load16_s: 0x32, i64_load16_u: 0x33, i64_load32_s: 0x34, i64_load32_u: 0x35,
  i32_store: 0x36, i64_store: 0x37, f32_store: 0x38, f64_store: 0x39,
  i32_store8: 0x3a, i32_store16: 0x3b, i64_store8: 0x3c, i64_store16: 0x3d, i64_store32: 0x3e,
  i32_const: 0x41, i64_const: 0x42, f32_const: 0x43, f64_const: 0x44,
  i32_eqz: 0x45, i32_eq: 0x46, i32_ne: 0x47, i32_lt_s: 0x48, i32_lt_u: 0x49, i32_gt_s: 0x4a, i32_gt_u: 0x4b,
  i32_le_s: 0x4c, i32_le_u: 0x4d, i32_ge_s: 0x4e, i32_ge_u: 0x4f,
  i64_eqz: 0x50, i64_eq: 0x51, i64_ne: 0x52, i64_lt_s: 0x53, i64_lt_u: 0x54, i64_gt_s: 0x55, i64_gt_u: 0x56,
  i64_le_s: 0x57, i64_le_u: 0x58, i64_ge_s: 0x59, i64_ge_u: 0x5a,
  i32_add: 0x6a, i32_sub: 0x6b, i32_mul: 0x6c, i32_div_s: 0x6d, i32_div_u: 0x6e, i32_rem_s: 0x6f, i32_rem_u: 0x70, i32_and: 0x71, i32_or: 0x72, i32_xor: 0x73,
  i32_shl: 0x74, i32_shr_s: 0x75, i32_shr_u: 0x76,
  i64_clz: 0x79, i64_ctz: 0x7a, i64_add: 0x7c, i64_sub: 0x7d, i64_mul: 0x7e, i64_div_s: 0x7f, i64_div_u: 0x80,
  i64_rem_s: 0x81, i64_rem_u: 0x82, i64_and: 0x83, i64_or: 0x84, i64_xor: 0x85, i64_shl: 0x86,
  i64_shr_s: 0x87, i64_shr_u: 0x88, i64_rotl: 0x89, i64_rotr: 0x8a,
  f64_eq: 0x61, f64_ne: 0x62, f64_lt: 0x63, f64_gt: 0x64, f64_le: 0x65, f64_ge: 0x66,
  f64_abs: 0x99, f64_neg: 0x9a, f64_ceil: 0x9b, f64_floor: 0x9c, f64_trunc: 0x9d, f64_nearest: 0x9e,
  f64_sqrt: 0x9f, f64_add: 0xa0, f64_sub: 0xa1, f64_mul: 0xa2, f64_div: 0xa3,
  i32_wrap_i64: 0xa7, i32_trunc_f64_s: 0xaa, i32_trunc_f64_u: 0xab, i64_extend_i32_s: 0xac, i64_extend_i32_u: 0xad,
  i64_trunc_f64_s: 0xb0, i64_trunc_f64_u: 0xb1,
  f64_convert_i32_s: 0xb7, f64_convert_i32_u: 0xb8, f64_convert_i64_s: 0xb9, f64_convert_i64_u: 0xba,
  f32_demote_f64: 0xb6, f64_promote_f32: 0xbb,
  i32_reinterpret_f32: 0xbc, i64_reinterpret_f64: 0xbd, f32_reinterpret_i32: 0xbe, f64_reinterpret_i64: 0xbf,
  i64_extend8_s: 0xc2, i64_extend16_s: 0xc3, i64_extend32_s: 0xc4,
} as const;

/** A growable byte buffer with the binary format's integer encodings (§5.2.2). */
export class ByteWriter {
  buf: Uint8Array<ArrayBuffer> = new Uint8Array(1024);
  len = 0;

  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const b = new Uint8Array(cap);
    b.set(this.buf.subarray(0, this.len));
    this.buf = b;
  }

  byte(b: number): this { this.ensure(1); this.buf[this.len++] = b & 0xff; return this; }

  bytes(b: ArrayLike<number>): this {
    this.ensure(b.length);
    for (let i = 0; i < b.length; i++) this.buf[this.len++] = b[i] & 0xff;
    return this;
  }

  /** Unsigned LEB128 of a u32. */
  u32(v: number): this {
    let x = v >>> 0;
    this.ensure(5);
    do {
      let b = x & 0x7f;
      x >>>= 7;
      if (x !== 0) b |= 0x80;
      this.buf[this.len++] = b;
    } while (x !== 0);
    return this;
  }

  /** Signed LEB128 of an i32. */
  s32(v: number): this {
    let x = v | 0;
    this.ensure(5);
    for (;;) {
      const b = x & 0x7f;
      x >>= 7;
      if ((x === 0 && (b & 0x40) === 0) || (x === -1 && (b & 0x40) !== 0)) { this.buf[this.len++] = b; return this; }
      this.buf[this.len++] = b | 0x80;
    }
  }

  /** Signed LEB128 of an i64. */
  s64(v: bigint): this {
    // Most constants are small: encode them with number arithmetic (BigInt per byte is slow).
    if (v >= -0x8000_0000n && v < 0x8000_0000n) return this.s32(Number(v));
    let x = BigInt.asIntN(64, v);
    this.ensure(10);
    for (;;) {
      const b = Number(x & 0x7fn);
      x >>= 7n;
      if ((x === 0n && (b & 0x40) === 0) || (x === -1n && (b & 0x40) !== 0)) { this.buf[this.len++] = b; return this; }
      this.buf[this.len++] = b | 0x80;
    }
  }

  name(s: string): this {
    const e = utf8.encode(s);
    return this.u32(e.length).bytes(e);
  }

  /** Append another writer's bytes prefixed by their length (sections, function bodies). */
  sized(w: ByteWriter): this { this.u32(w.len); this.ensure(w.len); this.buf.set(w.buf.subarray(0, w.len), this.len); this.len += w.len; return this; }

  /** Append another writer's bytes. */
  append(w: ByteWriter): this { this.ensure(w.len); this.buf.set(w.buf.subarray(0, w.len), this.len); this.len += w.len; return this; }

  reset(): void { this.len = 0; }
  finish(): Uint8Array<ArrayBuffer> { return this.buf.slice(0, this.len); }
}

const utf8 = new TextEncoder();
/**
 * Writers of function bodies already encoded, for the next ones: the translator writes
 * thousands of functions, and a typed array per function showed in its profile.
 */
const spare: ByteWriter[] = [];

/** The body of one function: locals, then instructions. */
export class FunctionBody {
  /** Where instructions go (a writer may swap in another and append it later). */
  code = spare.pop() ?? new ByteWriter();
  private static readonly head = new ByteWriter();
  private readonly locals: ValType[] = [];

  /** Labels open at this point (block, loop, if, try not yet ended): for branch depths. */
  depth = 0;

  constructor(readonly typeIndex: number, readonly paramCount: number) {}

  /** Declare a local; returns its index (after the parameters). */
  local(t: ValType): number { this.locals.push(t); return this.paramCount + this.locals.length - 1; }

  op(o: number): this {
    if (o === Op.end) this.depth--;
    this.code.byte(o);
    return this;
  }
  i32(v: number): this { this.code.byte(Op.i32_const).s32(v); return this; }
  /** i64.const: a number (a safe integer) costs no BigInt, the common case (offsets, masks). */
  i64(v: bigint | number): this {
    this.code.byte(Op.i64_const);
    if (typeof v === 'number' && v === (v | 0)) this.code.s32(v); else this.code.s64(BigInt(v));
    return this;
  }
  /** f64.const: the IEEE 754 bits, little-endian (§5.4.7). */
  f64(v: number): this {
    FunctionBody.f64Buf[0] = v;
    this.code.byte(Op.f64_const).bytes(FunctionBody.f64Bytes);
    return this;
  }
  private static readonly f64Buf = new Float64Array(1);
  private static readonly f64Bytes = new Uint8Array(FunctionBody.f64Buf.buffer);
  get(l: number): this { this.code.byte(Op.local_get).u32(l); return this; }
  set(l: number): this { this.code.byte(Op.local_set).u32(l); return this; }
  tee(l: number): this { this.code.byte(Op.local_tee).u32(l); return this; }
  call(f: number): this { this.code.byte(Op.call).u32(f); return this; }
  globalGet(g: number): this { this.code.byte(Op.global_get).u32(g); return this; }
  globalSet(g: number): this { this.code.byte(Op.global_set).u32(g); return this; }
  /** A load or store with its memarg (§5.4.6): alignment as log2, then offset. */
  mem(o: number, alignLog2: number, offset: number): this { this.code.byte(o).u32(alignLog2).u32(offset); return this; }
  block(o: typeof Op.block | typeof Op.loop | typeof Op.if, type: number = BLOCK_VOID): this {
    this.depth++;
    this.code.byte(o).byte(type);
    return this;
  }
  br(o: typeof Op.br | typeof Op.br_if, depth: number): this { this.code.byte(o).u32(depth); return this; }

  /** Locals run-length encoded by type (§5.5.13), then the code. */
  encode(out: ByteWriter): void {
    const head = FunctionBody.head, locals = this.locals;
    head.reset();
    let groups = 0;
    for (let i = 0; i < locals.length; i++) if (i === 0 || locals[i] !== locals[i - 1]) groups++;
    head.u32(groups);
    for (let i = 0; i < locals.length;) {
      let j = i + 1;
      while (j < locals.length && locals[j] === locals[i]) j++;
      head.u32(j - i).byte(locals[i]);
      i = j;
    }
    out.u32(head.len + this.code.len + 1).append(head).append(this.code).byte(Op.end);
  }

  /** The body was encoded: its writer goes to the next function. */
  release(): void {
    this.code.reset();
    spare.push(this.code);
  }
}

interface FuncType { params: ValType[]; results: ValType[]; }

/**
 * A module under construction. Imported functions take the first function indices
 * (§2.5.1), so all imports are declared before any function is defined.
 */
export class ModuleBuilder {
  private readonly types: FuncType[] = [];
  private readonly imports: { module: string; name: string; kind: 'func' | 'memory' | 'table'; type: number; shared?: boolean; min?: number; max?: number }[] = [];
  private readonly funcs: FunctionBody[] = [];
  private readonly exports: { name: string; index: number }[] = [];
  private readonly elements: { offset: number; funcs: number[] }[] = [];
  private readonly globals: { type: ValType; init: number }[] = [];
  private importedFuncs = 0;
  private encoded = false;
  /** Where modules are encoded (one at a time). */
  private static readonly out = new ByteWriter();
  private static readonly sec = new ByteWriter();

  /** Index of a function type, deduplicated. */
  type(params: ValType[], results: ValType[]): number {
    const i = this.types.findIndex((t) => t.params.join() === params.join() && t.results.join() === results.join());
    if (i >= 0) return i;
    this.types.push({ params, results });
    return this.types.length - 1;
  }

  importFunc(module: string, name: string, typeIndex: number): number {
    if (this.funcs.length > 0) throw new Error('wasm: imports must precede defined functions');
    this.imports.push({ module, name, kind: 'func', type: typeIndex });
    return this.importedFuncs++;
  }

  /** Import a memory of `min` (and `max`) 64 KiB pages; shared memories need a maximum. */
  importMemory(module: string, name: string, min: number, max?: number, shared = false): void {
    this.imports.push({ module, name, kind: 'memory', type: 0, min, max, shared });
  }

  /** Import a funcref table of at least `min` entries (for indirect calls between blocks). */
  importTable(module: string, name: string, min: number): void {
    this.imports.push({ module, name, kind: 'table', type: 0, min });
  }

  /** Define a function; returns its body and its function index. */
  func(typeIndex: number): { body: FunctionBody; index: number } {
    const body = new FunctionBody(typeIndex, this.types[typeIndex].params.length);
    this.funcs.push(body);
    return { body, index: this.importedFuncs + this.funcs.length - 1 };
  }

  /** A mutable i32 or i64 global of the module, initialised to `init`; returns its index. */
  global(type: ValType.I32 | ValType.I64, init: number): number {
    this.globals.push({ type, init });
    return this.globals.length - 1;
  }

  export(name: string, funcIndex: number): void { this.exports.push({ name, index: funcIndex }); }

  /** Function names for the name section (profiles), by function index. */
  readonly names: [number, string][] = [];

  /** Place functions into the imported table at `offset` (an active element segment). */
  element(offset: number, funcs: number[]): void { this.elements.push({ offset, funcs }); }

  /** The module's bytes (once: the function bodies' writers are reused after). */
  encode(): Uint8Array<ArrayBuffer> {
    if (this.encoded) throw new Error('wasm: module encoded already');
    this.encoded = true;
    const out = ModuleBuilder.out, sec = ModuleBuilder.sec;
    out.reset();
    sec.reset();
    out.bytes([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
    const section = (id: number): void => { out.byte(id).sized(sec); sec.reset(); };

    sec.u32(this.types.length);
    for (const t of this.types) {
      sec.byte(0x60).u32(t.params.length).bytes(t.params).u32(t.results.length).bytes(t.results);
    }
    section(1);

    if (this.imports.length > 0) {
      sec.u32(this.imports.length);
      for (const im of this.imports) {
        sec.name(im.module).name(im.name);
        if (im.kind === 'func') sec.byte(0x00).u32(im.type);
        else if (im.kind === 'table') sec.byte(0x01).byte(0x70).byte(0x00).u32(im.min ?? 0);
        else {
          const flags = (im.max !== undefined ? 1 : 0) | (im.shared ? 2 : 0);
          sec.byte(0x02).byte(flags).u32(im.min ?? 0);
          if (im.max !== undefined) sec.u32(im.max);
        }
      }
      section(2);
    }

    sec.u32(this.funcs.length);
    for (const f of this.funcs) sec.u32(f.typeIndex);
    section(3);

    if (this.globals.length > 0) {
      sec.u32(this.globals.length);
      for (const g of this.globals) {
        sec.byte(g.type).byte(0x01).byte(g.type === ValType.I32 ? Op.i32_const : Op.i64_const).s32(g.init).byte(Op.end);
      }
      section(6);
    }

    if (this.exports.length > 0) {
      sec.u32(this.exports.length);
      for (const e of this.exports) sec.name(e.name).byte(0x00).u32(e.index);
      section(7);
    }

    if (this.elements.length > 0) {
      sec.u32(this.elements.length);
      for (const el of this.elements) {
        sec.byte(0x00).byte(Op.i32_const).s32(el.offset).byte(Op.end).u32(el.funcs.length);
        for (const f of el.funcs) sec.u32(f);
      }
      section(9);
    }

    sec.u32(this.funcs.length);
    for (const f of this.funcs) { f.encode(sec); f.release(); }
    section(10);

    if (this.names.length > 0) {
      // The name section's function names (custom section "name", subsection 1): profilers show them.
      const sub = new ByteWriter();
      sub.u32(this.names.length);
      for (const [i, n] of this.names) sub.u32(i).name(n);
      sec.name('name').byte(1).sized(sub);
      section(0);
    }
    return out.finish();
  }
}
