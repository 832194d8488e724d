/**
 * The translator: hot guest code becomes WebAssembly.
 *
 * The interpreter counts entries at block starts (the instruction after a control
 * transfer or trap). When a start gets hot, the block from there is planned: straight-line
 * instructions of one physical page whose rows have an `emit`, up to the first control
 * transfer. Planned blocks are batched into one module per batch (module compiles are
 * costly) over the same WebAssembly.Memory that holds registers and RAM; each becomes a
 * function stored on its first instruction's Decoded, so it shares that decoded page's
 * lifetime: a store, DMA or fence.i that drops the page drops its blocks too.
 *
 * Memory accesses call the hart's load/store helpers (the TLB fast path inside them).
 * Before each such call the block writes pc and the number of retired instructions, so a
 * trap inside a block leaves the exact state the interpreter would. When a helper sets
 * JIT_EXIT (an interrupt became pending, or the store hit translated code) the block
 * returns after that instruction.
 */
import { ModuleBuilder, FunctionBody, Op, ValType } from './wasm.js';
import { SINK } from '../state.js';
import type { Emit } from './emit.js';
import type { Decoded, BlockFn } from '../isa/types.js';
import { PC, SCRATCH, JIT_RETIRED, JIT_EXIT, TLB_R_PTR, TLB_W_PTR, TLB_TAG_HI, TLB_HOST } from '../state.js';

/** Longest block, in instructions. */
const MAX_BLOCK = 64;
/** Blocks per compiled module: at most, and enough to compile at once. */
const MAX_BATCH = 64;
const MIN_BATCH = 24;
/** Run slices a pending plan waits for company before it is compiled anyway. */
const MAX_WAIT = 4;

/** The hart's memory helpers, called by translated loads and stores. */
export interface JitMemory {
  load8(lo: number, hi: number): number;
  load8u(lo: number, hi: number): number;
  load16(lo: number, hi: number): number;
  load16u(lo: number, hi: number): number;
  load32(lo: number, hi: number): number;
  /** Writes the value to the SCRATCH slot. */
  load64(lo: number, hi: number): void;
  store8(lo: number, hi: number, v: number): void;
  store16(lo: number, hi: number, v: number): void;
  store32(lo: number, hi: number, v: number): void;
  store64(lo: number, hi: number, vlo: number, vhi: number): void;
  /** Run one instruction through its row's `exec` (rows without an emitter). */
  exec(d: Decoded): void;
}

export interface JitStats {
  blocks: number;
  compiles: number;
  compileMs: number;
  instructions: number;
  /** Block starts that could not be translated (first instruction has no emitter). */
  untranslatable: number;
  /** Modules the engine refused (a translator bug; the code stays interpreted). */
  failures: number;
  /** Calls from the dispatcher into translated code (each may chain through many blocks). */
  entries: number;
  /** Instructions retired in translated code (traps inside blocks aside). */
  executed: number;
}

/** Decoded instruction at a byte offset from a block's head, in the same page (or null). */
type At = (off: number) => Decoded | null;

interface Plan { head: Decoded; insns: Decoded[]; offs: number[]; at: At; }

/** Table slots before the translation cache is dropped and refilled (bounds its memory). */
const MAX_SLOTS = 1 << 16;

/** Does this engine have tail calls (WebAssembly 3.0 return_call_indirect)? Chaining needs them. */
function hasTailCalls(): boolean {
  const m = new ModuleBuilder();
  const t = m.type([], []);
  m.importTable('env', 'table', 1);
  const { body } = m.func(t);
  body.i32(0).code.byte(Op.return_call_indirect).u32(t).u32(0);
  return WebAssembly.validate(m.encode());
}

export class Translator {
  /** Entries before a block is translated; 0 translates on first sight, Infinity never. */
  threshold: number;
  readonly stats: JitStats = { blocks: 0, compiles: 0, compileMs: 0, instructions: 0, untranslatable: 0, failures: 0, entries: 0, executed: 0 };
  /** Modules being compiled in the background. */
  inFlight = 0;
  /**
   * Compile in the background (the default): the caller must yield to the event loop
   * for compiled blocks to arrive, as Machine.run does. Synchronous callers turn it off.
   */
  background = true;
  /** Bumped when the cache is dropped, so late compiles are discarded. */
  private generation = 0;
  private pending: Plan[] = [];
  private readonly imports: WebAssembly.Imports;
  /** Every block and chaining target has a slot; a target not yet compiled holds `stub`. */
  private readonly table: WebAssembly.Table;
  private nextSlot = 0;
  /** Slots below this have held a block since the table was made. */
  private usedSlots = 0;
  /** run() calls since the oldest pending plan (batching). */
  private waited = 0;
  /** Instructions that blocks run through their rows' exec, by index (the `exec` import's argument). */
  private execs: Decoded[] = [];
  private readonly stub: BlockFn;
  readonly chaining: boolean;
  /** Called when the table is full: the hart drops all decoded code (and so all blocks). */
  onFull: () => void = () => {};

  constructor(memory: WebAssembly.Memory, private readonly stateBase: number, mem: JitMemory, threshold: number) {
    this.threshold = threshold;
    this.chaining = hasTailCalls();
    // The stub returns to the dispatcher: the chaining block already stored pc.
    const sm = new ModuleBuilder();
    const { body, index } = sm.func(sm.type([ValType.I32, ValType.I32], [ValType.I32]));
    body.get(1);
    sm.export('stub', index);
    this.stub = new WebAssembly.Instance(new WebAssembly.Module(sm.encode())).exports.stub as BlockFn;
    // Full size from the start, every slot the stub: Table.grow and set are slow calls.
    this.table = new WebAssembly.Table({ initial: MAX_SLOTS, element: 'anyfunc' }, this.stub);
    this.imports = {
      env: {
        memory,
        table: this.table,
        load8: mem.load8, load8u: mem.load8u, load16: mem.load16, load16u: mem.load16u,
        load32: mem.load32, load64: mem.load64,
        store8: mem.store8, store16: mem.store16, store32: mem.store32, store64: mem.store64,
        exec: (i: number) => mem.exec(this.execs[i]),
      },
    };
  }

  /**
   * A block start got hot. `at(off)` returns the decoded instruction at byte offset `off`
   * from the head (or null past the page or where it cannot be fetched).
   */
  plan(head: Decoded, at: At): void {
    const insns: Decoded[] = [];
    const offs: number[] = [];
    let off = 0;
    for (let d: Decoded | null = head; d !== null && insns.length < MAX_BLOCK; d = at(off)) {
      // Rows without an emitter run through their exec from the block, except control
      // transfers and system instructions (they end blocks) and illegal encodings.
      if (!d.spec.emit && (d.ends || d.spec.name === 'illegal')) break;
      insns.push(d);
      offs.push(off);
      off += d.len;
      if (d.spec.ends) break;
    }
    if (insns.length === 0) {
      head.hits = -0x4000_0000; // never again
      this.stats.untranslatable++;
      return;
    }
    head.hits = -0x4000_0000; // planned: stop counting
    this.pending.push({ head, insns, offs, at });
    if (this.pending.length >= MAX_BATCH || this.threshold <= 0) this.flush();
  }

  get hasPending(): boolean { return this.pending.length > 0; }

  /**
   * End of a run slice: compile the pending plans once there are enough for a module or
   * they have waited a few slices (module instantiation has a fixed cost).
   */
  endSlice(): void {
    if (this.pending.length === 0) return;
    if (!this.background || this.pending.length >= MIN_BATCH || ++this.waited >= MAX_WAIT) this.flush();
  }

  /** The table slot of a block start (allocated on first use, holding the stub), or -1. */
  private slotFor(d: Decoded | null): number {
    if (d === null) return -1;
    if (d.slot >= 0) return d.slot;
    const slot = this.nextSlot++;
    // Slots above the high-water mark still hold the stub; reused ones (after a reset) do not.
    if (d.block !== null || slot < this.usedSlots) this.table.set(slot, d.block ?? this.stub);
    else this.usedSlots = slot + 1;
    d.slot = slot;
    return slot;
  }

  /** The decoded code was all dropped: slots can be reused. */
  reset(): void {
    this.generation++;
    this.pending = [];
    this.nextSlot = 0;
    this.execs = [];
  }

  /** Compile every planned block, in one module. */
  flush(): void {
    const plans = this.pending;
    if (plans.length === 0) return;
    this.pending = [];
    this.waited = 0;
    const t0 = performance.now();
    const m = new ModuleBuilder();
    const I = ValType.I32;
    const tLoad = m.type([I, I], [I]);
    const tLoad64 = m.type([I, I], []);
    const tStore = m.type([I, I, I], []);
    const tStore64 = m.type([I, I, I, I], []);
    const fn: Record<string, number> = {};
    for (const n of ['load8', 'load8u', 'load16', 'load16u', 'load32']) fn[n] = m.importFunc('env', n, tLoad);
    fn.load64 = m.importFunc('env', 'load64', tLoad64);
    for (const n of ['store8', 'store16', 'store32']) fn[n] = m.importFunc('env', n, tStore);
    fn.store64 = m.importFunc('env', 'store64', tStore64);
    fn.exec = m.importFunc('env', 'exec', m.type([I], []));
    m.importMemory('env', 'memory', 1);
    m.importTable('env', 'table', 1);
    const tBlock = m.type([I, I], [I]);
    // Chaining targets of this batch need slots before the table can hold them.
    if (this.nextSlot + plans.length * 3 > MAX_SLOTS) {
      this.nextSlot = 0;
      this.onFull();
      return;
    }
    plans.forEach((p, i) => {
      const { body, index } = m.func(tBlock);
      // (The head's own slot first, so a self-chain finds it.)
      const chain = this.chaining ? (off: number): number => this.slotFor(p.at(off)) : null;
      new BlockWriter(body, this.stateBase, fn, tBlock, chain, this.execs).write(p);
      m.export(`b${i}`, index);
    });
    const bytes = m.encode();
    const slots = plans.map((p) => this.slotFor(p.head));
    const gen = this.generation;
    const install = (inst: WebAssembly.Instance): void => {
      if (gen !== this.generation) return; // the cache was dropped meanwhile: slots are reused
      plans.forEach((p, i) => {
        const b = inst.exports[`b${i}`] as BlockFn;
        p.head.block = b;
        p.head.blockLen = p.insns.length;
        this.table.set(slots[i], b);
        this.stats.instructions += p.insns.length;
      });
      this.stats.blocks += plans.length;
    };
    this.stats.compiles++;
    if (this.threshold <= 0 || !this.background) {
      // Translate-at-once mode (tests) and callers that never yield: synchronous.
      install(new WebAssembly.Instance(new WebAssembly.Module(bytes), this.imports));
    } else {
      // Compiled off the vCPU's thread; the interpreter runs the code meanwhile.
      this.inFlight++;
      WebAssembly.instantiate(bytes, this.imports).then(
        (r) => { this.inFlight--; install(r.instance); },
        () => { this.inFlight--; this.stats.failures++; },
      );
    }
    this.stats.compileMs += performance.now() - t0;
  }
}

/**
 * Writes one block's function; implements the rows' view (Emit). Guest registers the
 * block uses live in Wasm locals: loaded once at entry, stored back at every exit and
 * before every helper call that may trap (so a trap sees them in memory).
 */
class BlockWriter implements Emit {
  f: FunctionBody;
  /** Wasm local of each guest register x1..x31 used by the block, or -1. */
  private readonly reg = new Int32Array(32).fill(-1);
  /** Registers the block writes (stored back at exits). */
  private written: number[] = [];
  /** The first pass only records which registers are used. */
  private scanning = false;
  private readonly scanRead = new Uint8Array(33);
  private readonly scanWrite = new Uint8Array(33);
  private readonly pc0: number;
  private readonly lo: number;
  private readonly hi: number;
  private readonly t64: number[];
  private readonly t32: number[];
  /** Address of the TLB entry being probed. */
  private readonly ent: number;
  /** Index and byte offset of the instruction being emitted. */
  private k = 0;
  private off = 0;
  /** Instructions in one pass of the block. */
  private passLen = 0;
  /** Param 1: instructions retired before this pass (chained blocks, earlier passes). */
  private readonly done = 1;
  private len = 4;
  private ended = false;

  constructor(
    f: FunctionBody, private readonly base: number, private readonly fn: Record<string, number>,
    private readonly blockType: number, private readonly chain: ((off: number) => number) | null,
    private readonly execs: Decoded[],
  ) {
    this.f = f;
    this.pc0 = f.local(ValType.I64);
    this.lo = f.local(ValType.I32);
    this.hi = f.local(ValType.I32);
    this.t64 = [f.local(ValType.I64), f.local(ValType.I64), f.local(ValType.I64), f.local(ValType.I64)];
    this.t32 = [f.local(ValType.I32), f.local(ValType.I32)];
    this.ent = f.local(ValType.I32);
  }

  /**
   * The function takes the instruction budget left and returns the instructions retired.
   * Its body is a loop, so a branch back to the block's own head (an inner loop) stays in
   * WebAssembly while whole passes fit the budget.
   */
  write(p: Plan): void {
    this.scan(p);
    const f = this.f;
    for (let r = 1; r < 32; r++) {
      if (!this.scanRead[r] && !this.scanWrite[r]) continue;
      this.reg[r] = f.local(ValType.I64);
      if (this.scanWrite[r]) this.written.push(r);
      // Loaded even if only written: an exit before the write stores it back unchanged.
      f.i32(this.base).mem(Op.i64_load, 3, r * 8).set(this.reg[r]);
    }
    this.passLen = p.insns.length;
    f.i32(this.base).mem(Op.i64_load, 3, PC * 8).set(this.pc0);
    f.block(Op.loop);
    for (let i = 0; i < p.insns.length; i++) {
      const d = p.insns[i];
      this.k = i;
      this.off = p.offs[i];
      this.len = d.len;
      this.emitOne(d);
      if (this.ended) { f.op(Op.end).op(Op.unreachable); return; }
    }
    // Fell off the end (page end, length limit or an untranslatable instruction next).
    const last = p.insns.length - 1;
    this.exit(p.offs[last] + p.insns[last].len, p.insns.length);
    f.op(Op.end).op(Op.unreachable);
  }

  private emitOne(d: Decoded): void {
    if (d.spec.emit) { d.spec.emit(this, d); return; }
    if (this.scanning) return;
    // The row's exec reads and writes the state block: store locals, run it, reload rd.
    const f = this.f;
    this.precise();
    f.i32(this.execs.length).call(this.fn.exec);
    this.execs.push(d);
    if (!d.spec.fd && d.rd !== SINK && d.rd !== 0 && this.reg[d.rd] >= 0) {
      f.i32(this.base).mem(Op.i64_load, 3, d.rd * 8).set(this.reg[d.rd]);
    }
    this.checkExit();
  }

  /** A dry run of the rows' emitters into a scratch body, recording register use. */
  private scan(p: Plan): void {
    const real = this.f;
    this.f = new FunctionBody(0, 0);
    this.scanning = true;
    for (let i = 0; i < p.insns.length && !this.ended; i++) {
      const d = p.insns[i];
      this.k = i; this.off = p.offs[i]; this.len = d.len;
      this.emitOne(d);
    }
    this.scanning = false;
    this.ended = false;
    this.f = real;
  }

  /** Store the written registers back to the state block. */
  private flushRegs(): void {
    for (const r of this.written) this.f.i32(this.base).get(this.reg[r]).mem(Op.i64_store, 3, r * 8);
  }

  /** Push done + c: the retired count after `c` instructions of this pass. */
  private retired(c: number): void {
    this.f.get(this.done);
    if (c !== 0) this.f.i32(c).op(Op.i32_add);
  }

  /**
   * pc = pc0 + off; return done + count. With `chain`, a target in the same page goes on
   * in its block by a tail call, if a whole block of the longest kind still fits the budget
   * (a target not yet translated is the stub, which returns to the dispatcher).
   */
  private exit(off: number, count: number, chain = true): void {
    const f = this.f;
    this.flushRegs();
    this.setPc(() => this.pcAt(off));
    this.retired(count);
    const slot = chain && this.chain && !this.scanning ? this.chain(off) : -1;
    if (slot >= 0) {
      const t = this.t32[0];
      f.tee(t).i32(MAX_BLOCK).op(Op.i32_add).get(0).op(Op.i32_le_u).block(Op.if);
      f.get(0).get(t).i32(slot).code.byte(Op.return_call_indirect).u32(this.blockType).u32(0);
      f.op(Op.end).get(t);
    }
    f.op(Op.return);
  }

  /**
   * A taken transfer to the block's own head, `depth` levels inside the loop: start
   * another pass if a whole one fits the budget (param 0), else leave with pc = head.
   */
  private loopBack(depth: number): void {
    const f = this.f;
    this.retired(this.k + 1);
    f.tee(this.done).i32(this.passLen).op(Op.i32_add).get(0).op(Op.i32_le_u).br(Op.br_if, depth);
    this.exit(0, 0, false);
  }

  private pcAt(off: number): void {
    this.f.get(this.pc0);
    if (off !== 0) this.f.i64(BigInt(off)).op(Op.i64_add);
  }

  private setPc(value: () => void): void {
    this.f.i32(this.base);
    value();
    this.f.mem(Op.i64_store, 3, PC * 8);
  }

  x(r: number): void {
    if (r === 0) { this.f.i64(0n); return; }
    if (this.scanning) this.scanRead[r] = 1;
    this.f.get(this.reg[r]);
  }

  x32(r: number): void {
    this.x(r);
    if (r !== 0) this.f.op(Op.i32_wrap_i64); else { this.f.op(Op.drop).i32(0); }
  }

  setX(rd: number, value: () => void): void {
    value();
    if (rd === SINK || rd === 0) { this.f.op(Op.drop); return; }
    if (this.scanning) this.scanWrite[rd] = 1;
    this.f.set(this.reg[rd]);
  }

  setXw(rd: number, value: () => void): void {
    this.setX(rd, () => { value(); this.f.op(Op.i64_extend_i32_s); });
  }

  pcPlus(k: number): void { this.pcAt(this.off + k); }

  tmp64(i: 0 | 1 | 2 | 3): number { return this.t64[i]; }
  tmp32(i: 0 | 1): number { return this.t32[i]; }

  jump(d: Decoded, target: () => void): void {
    const t = this.t64[0];
    const f = this.f;
    if (d.spec.format === 'J' && this.off + d.imm === 0) {
      this.setX(d.rd, () => this.pcPlus(d.len));
      this.loopBack(0);
      this.ended = true;
      return;
    }
    target();
    f.set(t);
    this.setX(d.rd, () => this.pcPlus(d.len));
    this.flushRegs();
    this.setPc(() => f.get(t));
    this.retired(this.k + 1);
    f.op(Op.return);
    this.ended = true;
  }

  branch(d: Decoded, cond: () => void): void {
    cond();
    this.f.block(Op.if);
    if (this.off + d.imm === 0) this.loopBack(1); else this.exit(this.off + d.imm, this.k + 1);
    this.f.op(Op.end);
    this.exit(this.off + d.len, this.k + 1);
    this.ended = true;
  }

  /** Effective address into lo/hi. */
  private ea(d: Decoded): void {
    const f = this.f, t = this.t64[0];
    this.x(d.rs1);
    if (d.imm !== 0) f.i64(BigInt(d.imm)).op(Op.i64_add);
    f.tee(t).op(Op.i32_wrap_i64).set(this.lo);
    f.get(t).i64(32n).op(Op.i64_shr_u).op(Op.i32_wrap_i64).set(this.hi);
  }

  /** Before a helper call that may trap: pc and the retired count, as the interpreter has them. */
  private precise(): void {
    this.flushRegs();
    this.setPc(() => this.pcAt(this.off));
    this.f.i32(this.base);
    this.retired(this.k);
    this.f.mem(Op.i32_store, 2, JIT_RETIRED * 8);
  }

  /**
   * Push the i32 condition "the TLB at slot `ptr` maps lo/hi and the access is aligned",
   * leaving the entry's address in `ent` (the interpreter's fast path, inline).
   */
  private tlbHit(ptr: number, size: number): void {
    const f = this.f, ent = this.ent;
    f.i32(this.base).mem(Op.i32_load, 2, ptr * 8);
    f.get(this.lo).i32(10).op(Op.i32_shr_u).i32(0xffc).op(Op.i32_and).op(Op.i32_add).tee(ent);
    f.mem(Op.i32_load, 2, 0).get(this.lo).i32(-4096).op(Op.i32_and).op(Op.i32_eq);
    f.get(ent).mem(Op.i32_load, 2, TLB_TAG_HI).get(this.hi).op(Op.i32_eq).op(Op.i32_and);
    if (size > 1) f.get(this.lo).i32(size - 1).op(Op.i32_and).op(Op.i32_eqz).op(Op.i32_and);
  }

  /** Push the host address of lo in the page of TLB entry `ent`. */
  private hostAddr(): void {
    this.f.get(this.ent).mem(Op.i32_load, 2, TLB_HOST).get(this.lo).i32(0xfff).op(Op.i32_and).op(Op.i32_add);
  }

  /** After a helper call: leave the block if the hart asked for it. */
  private checkExit(): void {
    const f = this.f;
    f.i32(this.base).mem(Op.i32_load, 2, JIT_EXIT * 8).block(Op.if);
    f.i32(this.base).i32(0).mem(Op.i32_store, 2, JIT_EXIT * 8);
    this.exit(this.off + this.len, this.k + 1, false);
    f.op(Op.end);
  }

  load(d: Decoded, size: 1 | 2 | 4 | 8, signed: boolean): void {
    const f = this.f;
    this.ea(d);
    const fast = size === 8 ? Op.i64_load : size === 4 ? (signed ? Op.i64_load32_s : Op.i64_load32_u)
      : size === 2 ? (signed ? Op.i64_load16_s : Op.i64_load16_u) : (signed ? Op.i64_load8_s : Op.i64_load8_u);
    const align = size === 8 ? 3 : size === 4 ? 2 : size === 2 ? 1 : 0;
    this.setX(d.rd, () => {
      this.tlbHit(TLB_R_PTR, size);
      f.block(Op.if, ValType.I64);
      this.hostAddr();
      f.mem(fast, align, 0);
      f.op(Op.else);
      this.precise();
      if (size === 8) {
        f.get(this.lo).get(this.hi).call(this.fn.load64);
        f.i32(this.base).mem(Op.i64_load, 3, SCRATCH * 8);
      } else {
        const name = size === 1 ? (signed ? 'load8' : 'load8u') : size === 2 ? (signed ? 'load16' : 'load16u') : 'load32';
        f.get(this.lo).get(this.hi).call(this.fn[name]);
        f.op(signed ? Op.i64_extend_i32_s : Op.i64_extend_i32_u);
      }
      f.op(Op.end);
    });
    this.checkExit();
  }

  store(d: Decoded, size: 1 | 2 | 4 | 8): void {
    const f = this.f;
    this.ea(d);
    this.tlbHit(TLB_W_PTR, size);
    f.block(Op.if);
    this.hostAddr();
    this.x(d.rs2);
    f.mem(size === 8 ? Op.i64_store : size === 4 ? Op.i64_store32 : size === 2 ? Op.i64_store16 : Op.i64_store8,
      size === 8 ? 3 : size === 4 ? 2 : size === 2 ? 1 : 0, 0);
    f.op(Op.else);
    this.precise();
    f.get(this.lo).get(this.hi);
    if (size === 8) {
      this.x(d.rs2);
      f.tee(this.t64[1]).op(Op.i32_wrap_i64);
      f.get(this.t64[1]).i64(32n).op(Op.i64_shr_u).op(Op.i32_wrap_i64);
      f.call(this.fn.store64);
    } else {
      this.x32(d.rs2);
      f.call(this.fn[size === 1 ? 'store8' : size === 2 ? 'store16' : 'store32']);
    }
    f.op(Op.end);
    this.checkExit();
  }
}
