/**
 * The translator's code generator: page functions in WebAssembly from decoded blocks
 * (translator.ts says how pages, blocks and functions relate). It depends on nothing but
 * the decoded instructions and the state block's layout.
 */
import { ModuleBuilder, FunctionBody, Op, ValType } from './wasm.js';
import { SINK } from '../state.js';
import type { Emit } from './emit.js';
import type { Decoded } from '../isa/types.js';
import { PRIV, MIE, MIP_SW, MIP_HW, RESV, PC, SCRATCH, JIT_RETIRED, JIT_EXIT, ATTENTION, TLB_R_PTR, TLB_W_PTR, TLB_DELTA, TLB_ENTRY_BYTES, TLB_SIZE, F0, MSTATUS_LO, FFLAGS, FRM, JIT_CTX, JIT_HOT, IBTC_SIZE, IBTC_WORDS, IBTC_FN_BITS, IBTC_FN_MASK, IBTC_HOT, JIT_DEPTH, JIT_RAS, JIT_RAS_SIZE } from '../state.js';
import { MSTATUS, MSTATUS_WMASK, SSTATUS_MASK, PRIV_S } from '../csr.js';

/**
 * Longest block, in instructions (an instruction's index fits SlowPaths' 6 bits). Translated
 * code goes on to another block only while this many instructions of its budget are left.
 */
export const MAX_BLOCK = 64;
/** Labels between a block's own loop and the function's others: its exit stub. */
const WRAP = 1;

/** One block to compile: the instructions from page offset `off` (`offs`: each one's). */
export interface BlockCode { off: number; insns: Decoded[]; offs: number[]; }
/**
 * One page function: its page (any number, the same for functions of one physical page),
 * the page's virtual base (for names) and its blocks, in page order.
 */
export interface FnCode { page: number; va: number; blocks: BlockCode[]; }

export interface ModuleOptions {
  /** Byte offsets in the shared memory of the hart's state block and target cache. */
  stateBase: number;
  ibcBase: number;
  /**
   * The exec index (the runtime exec's argument) of an instruction the code runs through
   * its row's exec (no emitter, or a fast path declined).
   */
  execIndex: (d: Decoded) => number;
  /** Name functions `g<va>_<offset>` (profiles). */
  names: boolean;
}

/** What a module's code needs of its caller. */
export interface ModuleCounts {
  /** Direct transfers compiled as tail calls to another function of the page. */
  siblingCalls: number;
}

/**
 * A module of page functions, exported as p0, p1, ... in the order of `fns`. Consecutive
 * functions with the same `page` are one page's: direct transfers between them are tail calls.
 */
export function encodeModule(fns: readonly FnCode[], o: ModuleOptions): ModuleCounts & { bytes: Uint8Array<ArrayBuffer> } {
  const m = new ModuleBuilder();
  m.importMemory('env', 'memory', 1);
  m.importTable('env', 'helpers', Slot.count);
  const tFn = pageFnType(m);
  const types = slotTypes(m);
  // One stub per slow path the module uses: a call site's direct call to it is a few
  // bytes of host code where a call_indirect (table bounds, signature, target) is ~80,
  // at every load and store, and the cold paths' code dilutes the hot ones' in the caches.
  const stubs = new Map<Slot, number>();
  const stub = (slot: Slot): number => {
    let index = stubs.get(slot);
    if (index === undefined) {
      const fn = m.func(types[slot]);
      for (let i = 0; i < fn.body.paramCount; i++) fn.body.get(i);
      fn.body.i32(slot).op(Op.return_call_indirect);
      fn.body.code.u32(types[slot]).u32(0);
      index = fn.index;
      stubs.set(slot, index);
    }
    return index;
  };
  const counts: ModuleCounts = { siblingCalls: 0 };
  for (let first = 0; first < fns.length;) {
    // One page's functions: a direct transfer to a head of another of them is a tail call.
    let end = first + 1;
    while (end < fns.length && fns[end].page === fns[first].page) end++;
    const bodies = fns.slice(first, end).map(() => m.func(tFn));
    const siblings = new Map<number, number>();
    for (let i = first; i < end; i++) for (const b of fns[i].blocks) siblings.set(b.off, bodies[i - first].index);
    for (let i = first; i < end; i++) {
      const { body, index } = bodies[i - first];
      const fn = fns[i];
      new PageWriter(body, o.stateBase, types, stub, o.execIndex, o.ibcBase, siblings, counts).write(fn.blocks);
      m.export(`p${i}`, index);
      if (o.names) m.names.push([index, `g${(fn.va >>> 0).toString(16)}_${fn.blocks[0].off.toString(16)}`]);
    }
    first = end;
  }
  return { bytes: m.encode(), ...counts };
}

/** Slots of the runtime's table: the slow paths, then the trampoline. */
export const enum Slot {
  load8, load8u, load16, load16u, load32, load32u, load64, store8, store16, store32, store64, exec, jump, count,
}

const SLOT_NAMES = ['load8', 'load8u', 'load16', 'load16u', 'load32', 'load32u', 'load64', 'store8', 'store16', 'store32', 'store64', 'exec'];

/**
 * A page function's type: (budget, done, entry offset, the page's virtual base, and a
 * param its code uses as a local: PageWriter's addr) -> instructions retired. Five
 * params: V8 passes that many in registers, a sixth on the stack.
 */
function pageFnType(m: ModuleBuilder): number {
  const I = ValType.I32, L = ValType.I64;
  return m.type([I, I, I, L, L], [I]);
}

/** Each slot's function type in module `m` (call_indirect compares types structurally). */
function slotTypes(m: ModuleBuilder): number[] {
  const I = ValType.I32, L = ValType.I64;
  const tLoad = m.type([L, L, I, I], [L, I]);
  const tStore = m.type([L, I, L, I, I], [I]);
  const types = [tLoad, tLoad, tLoad, tLoad, tLoad, tLoad, tLoad, tStore, tStore, tStore];
  types[Slot.store64] = m.type([L, L, L, I, I], [I]);
  types[Slot.exec] = m.type([I, L, I, I], [I]);
  types[Slot.jump] = m.type([I, I, I, I], [I]);
  return types;
}

/**
 * The runtime: one module, instantiated once, that alone imports the hart's JavaScript
 * helpers and the function table. Page modules import only the memory and the runtime's
 * table and reach it by call_indirect: V8 compiles import wrappers for every module that
 * imports functions (~0.1 ms, plus ~0.03 ms per signature: most of the compile time of a
 * boot's ~550 small modules).
 *
 * Its slow paths serve loads, stores and rows run through their exec. A call site passes
 * the helper's arguments (a load's or store's address as one i64, which the stub splits
 * into the words the hart's helpers take; a store's value), then vbase (i64), done and
 * `packed` (page offset | k << 12 | (len == 4) << 18, k the instruction's index in its
 * block). The helper stores pc and
 * JIT_RETIRED (a trap inside the hart's helper then leaves the interpreter's state), calls
 * the hart, and returns (after a load's value) the count the block must return, done + k + 1
 * with pc set to the next instruction, when it must end there (JIT_EXIT: code dropped, or
 * ATTENTION: an interrupt became pending, WFI, a stop request), else 0.
 * Slot.jump is the trampoline: `return_call_indirect` into the function table.
 */
export function buildRuntime(base: number, env: Record<string, unknown>): WebAssembly.Table {
  const m = new ModuleBuilder();
  const I = ValType.I32, L = ValType.I64;
  const fn: Record<string, number> = {};
  const tLoad = m.type([I, I], [I]);
  for (const n of ['load8', 'load8u', 'load16', 'load16u', 'load32']) fn[n] = m.importFunc('env', n, tLoad);
  fn.load64 = m.importFunc('env', 'load64', m.type([I, I], []));
  for (const n of ['store8', 'store16', 'store32']) fn[n] = m.importFunc('env', n, m.type([I, I, I], []));
  fn.store64 = m.importFunc('env', 'store64', m.type([I, I, I, I], []));
  fn.exec = m.importFunc('env', 'exec', m.type([I], []));
  m.importMemory('env', 'memory', 1);
  m.importTable('env', 'table', 0);
  const types = slotTypes(m);
  const tFn = pageFnType(m);
  for (let slot = 0; slot < Slot.jump; slot++) {
    const kind = SLOT_NAMES[slot];
    const { body: f, index } = m.func(types[slot]);
    m.export(`s${slot}`, index);
    const load = slot <= Slot.load64;
    const P = load || slot === Slot.exec ? 1 : 2, vbase = P, done = P + 1, packed = P + 2;
    // The access's address (param 0, i64) as the hart's helpers take it: low and high words.
    const loHi = (): void => { f.get(0).op(Op.i32_wrap_i64).get(0).i64(32n).op(Op.i64_shr_u).op(Op.i32_wrap_i64); };
    const r = load ? f.local(L) : -1;
    const out = f.local(I);
    const off = (): void => { f.get(packed).i32(0xfff).op(Op.i32_and); };
    const retired = (): void => { f.get(done).get(packed).i32(12).op(Op.i32_shr_u).i32(63).op(Op.i32_and).op(Op.i32_add); };
    f.i32(base).get(vbase); off(); f.op(Op.i64_extend_i32_u).op(Op.i64_add).mem(Op.i64_store, 3, PC * 8);
    f.i32(base); retired(); f.mem(Op.i32_store, 2, JIT_RETIRED * 8);
    if (load) {
      loHi();
      if (slot === Slot.load64) f.call(fn.load64).i32(base).mem(Op.i64_load, 3, SCRATCH * 8);
      else f.call(fn[slot === Slot.load32u ? 'load32' : kind]).op(kind.endsWith('u') ? Op.i64_extend_i32_u : Op.i64_extend_i32_s);
      f.set(r);
    } else if (slot === Slot.exec) {
      f.get(0).call(fn.exec);
    } else if (slot === Slot.store64) {
      loHi(); f.get(1).op(Op.i32_wrap_i64).get(1).i64(32n).op(Op.i64_shr_u).op(Op.i32_wrap_i64).call(fn.store64);
    } else {
      loHi(); f.get(1).call(fn[kind]);
    }
    f.i32(base).mem(Op.i32_load, 2, JIT_EXIT * 8).i32(base).mem(Op.i32_load, 2, ATTENTION * 8).op(Op.i32_or);
    f.block(Op.if);
    f.i32(base).i32(0).mem(Op.i32_store, 2, JIT_EXIT * 8);
    // pc = vbase + off + len
    f.i32(base).get(vbase); off(); f.get(packed).i32(17).op(Op.i32_shr_u).i32(2).op(Op.i32_and).op(Op.i32_add).i32(2).op(Op.i32_add);
    f.op(Op.i64_extend_i32_u).op(Op.i64_add).mem(Op.i64_store, 3, PC * 8);
    retired(); f.i32(1).op(Op.i32_add).set(out);
    f.op(Op.end);
    if (load) f.get(r);
    f.get(out);
  }
  const { body, index } = m.func(types[Slot.jump]);
  // (budget, done, entry, the page's base from pc, a param of no value) into function get(3)
  body.get(0).get(1).get(2).i32(base).mem(Op.i64_load, 3, PC * 8).i64(-4096n).op(Op.i64_and).i64(0n).get(3);
  body.op(Op.return_call_indirect);
  body.code.u32(tFn).u32(0);
  m.export(`s${Slot.jump}`, index);
  const inst = new WebAssembly.Instance(new WebAssembly.Module(m.encode()), { env } as WebAssembly.Imports);
  const table = new WebAssembly.Table({ element: 'anyfunc', initial: Slot.count });
  for (let slot = 0; slot < Slot.count; slot++) table.set(slot, inst.exports[`s${slot}`] as (...a: number[]) => number);
  return table;
}

/** Locals for probe groups live at once in a block (more overlapping groups are not formed). */
const GROUP_LOCALS = 2;
/** PageWriter's lazily declared locals, by slot. */
const LOCAL_T64 = 0, LOCAL_T32 = 4, LOCAL_FRES = 6, LOCAL_FNX = 7, LOCAL_FPST = 8, LOCAL_LEAVE = 9, LOCAL_AMO = 10, LOCAL_ENT = 11, LOCAL_GROUP = 12;
/** A call's return address (0: the transfer to the default is no call), its depth and JIT_CTX. */
const LOCAL_RET = LOCAL_GROUP + GROUP_LOCALS, LOCAL_CALL_DEPTH = LOCAL_RET + 1, LOCAL_CALL_CTX = LOCAL_RET + 2;
const LOCAL_SLOTS = LOCAL_CALL_CTX + 1;
/** Members a probe group needs to pay for its probe and the code of both paths. */
const MIN_GROUP = 4;

/**
 * Loads (or stores) of one block that share one TLB probe: the same base register,
 * unchanged between them, the same size, offsets a multiple of it apart, within one page.
 * The first in program order probes for the lowest address and checks the span stays in
 * its page; the others then access at fixed offsets from its host address (`local`, 0 when
 * the probe failed: each then probes alone, so faults stay exact).
 */
interface ProbeGroup { first: number; minOff: number; span: number; size: 1 | 2 | 4 | 8; store: boolean; local: number }

/** Plan probe groups for a block: by instruction index, the group it belongs to. */
function probeGroups(insns: Decoded[], nLocals: number, local: (i: number) => number): (ProbeGroup | undefined)[] {
  const out: (ProbeGroup | undefined)[] = [];
  let accesses = 0;
  for (const d of insns) if (d.spec.format === 'load' || d.spec.format === 'store') accesses++;
  if (accesses < MIN_GROUP) return out; // (most blocks: too few to form a group)
  interface Open { g: ProbeGroup; base: number; maxOff: number; members: number[] }
  let open: Open[] = [];
  const done: Open[] = [];
  const close = (keep: (o: Open) => boolean): void => {
    const still: Open[] = [];
    for (const o of open) (keep(o) ? still : done).push(o);
    open = still;
  };
  for (let i = 0; i < insns.length; i++) {
    const d = insns[i], f = d.spec.format;
    if (f === 'load' || f === 'store') {
      const store = f === 'store', size = (1 << ((d.spec.match >>> 12) & 3)) as 1 | 2 | 4 | 8;
      let o = open.find((c) => c.base === d.rs1 && c.g.store === store && c.g.size === size);
      if (o !== undefined) {
        const lo = Math.min(o.g.minOff, d.imm), hi = Math.max(o.maxOff, d.imm);
        if ((d.imm - o.g.minOff) % size !== 0 || hi - lo + size > 4096) { close((c) => c !== o); o = undefined; }
        else { o.g.minOff = lo; o.maxOff = hi; o.members.push(i); }
      }
      if (o === undefined && d.rs1 !== 0) {
        open.push({ g: { first: i, minOff: d.imm, span: size, size, store, local: -1 }, base: d.rs1, maxOff: d.imm, members: [i] });
      }
      if (!store) close((c) => c.base !== d.rd); // (a load into the base register ends its group after it)
      continue;
    }
    // Anything that may change translation (CSR writes: SUM, MPRV) or run a row's exec ends all groups.
    if (d.spec.ends || !d.spec.emit) { close(() => false); continue; }
    if (f !== 'S' && f !== 'B' && f !== 'fstore') close((c) => c.base !== d.rd);
  }
  close(() => false);
  // Keep groups of two or more, giving each a local not used by an overlapping one.
  const busyUntil = new Array<number>(nLocals).fill(-1);
  for (const o of done.sort((a, b) => a.g.first - b.g.first)) {
    if (o.members.length < MIN_GROUP) continue;
    const last = o.members[o.members.length - 1];
    const l = busyUntil.findIndex((u) => u < o.g.first);
    if (l < 0) continue;
    busyUntil[l] = last;
    o.g.local = local(l);
    o.g.span = o.maxOff - o.g.minOff + o.g.size;
    for (const m of o.members) out[m] = o.g;
  }
  return out;
}

/**
 * Writes one page's function; implements the rows' view (Emit). The function takes the
 * instruction budget left, the instructions already retired, and the entry's page offset;
 * it returns the instructions retired. Guest registers stay in the state block: every read
 * is a load and every write a store there. V8's baseline compiler, which runs most of this
 * code, keeps Wasm locals in stack slots anyway and spills them at every join (each TLB
 * probe's if/else), so locals only added loads at a block's start, stores at each of its
 * exits and a catch_all for traps (measured: 24 % less host code, boots ~12 % faster, the
 * same on hot loops in the optimizing tier). A trap (a JavaScript exception from a helper)
 * thus leaves the registers as the interpreter would; a slow path that must end the block
 * branches to the block's exit stub, which returns.
 *
 * Layout: a dispatch loop around one Wasm block per guest block, innermost first in page
 * order; a binary search on the offset picks the entry's block, a forward transfer
 * branches straight to the target's code, a backward one re-enters the dispatch with a new
 * offset, and each block's code is a loop of its own so a branch back to its head stays put.
 */
class PageWriter implements Emit {
  f: FunctionBody;
  /** FunctionBody.depth just inside the current block's exit stub (a Wasm block). */
  private stubLevel = 0;
  /**
   * Params after budget, done and entry (pageFnType): the page's virtual base address (i64)
   * and a load's or store's effective address (i64). Callers pass the base (the trampoline
   * computes it from pc) and anything for the address: params are not zeroed at entry,
   * declared locals are (see locals). (A sixth param, the probed TLB entry's address, went
   * on the stack in V8's calling convention: a push at every call and a frame shuffle at
   * every tail call. It is a local now.)
   */
  private readonly vbase = 3;
  private readonly addr = 4;
  /** The address of the TLB entry probed for a load or store (and the target cache's entry). */
  private get ent(): number { return this.local(LOCAL_ENT, ValType.I32); }
  /**
   * Other locals, declared at their first use (by LOCAL_* slot): V8 zeroes a function's
   * declared locals at every entry, with a `rep stos` past 24 bytes, and a profile of a boot
   * put a quarter of its baseline-tier samples in page functions' prologues.
   */
  private readonly locals = new Int32Array(LOCAL_SLOTS).fill(-1);
  private local(slot: number, t: ValType): number {
    let l = this.locals[slot];
    if (l < 0) l = this.locals[slot] = this.body.local(t);
    return l;
  }
  private readonly tF: number[] = [];
  get fres(): number { return this.local(LOCAL_FRES, ValType.F64); }
  get fnx(): number { return this.local(LOCAL_FNX, ValType.I32); }
  /** A slow path's result: the count to return if the block must end there, else 0. */
  private get leave(): number { return this.local(LOCAL_LEAVE, ValType.I32); }
  /** A 32-bit AMO's operand. */
  private get tmpAmo(): number { return this.local(LOCAL_AMO, ValType.I32); }
  private get fpst(): number { return this.local(LOCAL_FPST, ValType.I32); }
  /** The current block's probe groups by instruction (ProbeGroup.local: LOCAL_GROUP + i). */
  private groups: (ProbeGroup | undefined)[] = [];
  /** Index of each block in the function by head page offset. */
  private caseOf = new Map<number, number>();
  /** Blocks in the function, and the one being written. */
  private cases = 0;
  private c = 0;
  /** Wasm blocks (if/else) open inside the current instruction's code. */
  private inner = 0;
  /** Index and page offset of the instruction being emitted. */
  private k = 0;
  private off = 0;
  /** Params: the budget, instructions retired before this block, the entry offset. */
  private readonly budget = 0;
  private readonly done = 1;
  private readonly entry = 2;
  private len = 4;
  private ended = false;
  /** Some block of this function makes a guest call through the default (callOut). */
  private calls = false;
  /** This block has set FS to Dirty already / has read its F/D state into fpst. */
  private dirtied = false;
  private fpRead = false;

  constructor(
    private readonly body: FunctionBody, private readonly base: number, private readonly types: number[],
    /** The module's function index of the stub that calls slow path `slot`. */
    private readonly stub: (slot: Slot) => number,
    private readonly execIndex: (d: Decoded) => number, private readonly ibcBase: number,
    /** Function index, in this module, of each block head of the page compiled with this function. */
    private readonly siblings: ReadonlyMap<number, number>,
    private readonly counts: ModuleCounts,
  ) {
    this.f = body;
  }

  write(plans: BlockCode[]): void {
    plans.forEach((p, i) => this.caseOf.set(p.off, i));
    this.cases = plans.length;
    const f = this.f;
    const K = plans.length;
    f.block(Op.loop); // dispatch
    const dispatchLevel = f.depth;
    f.block(Op.block); // default: not a block head here
    for (let i = 0; i < K; i++) f.block(Op.block);
    this.selectCase(plans.map((p) => p.off), 0, K, 0);
    f.op(Op.unreachable);
    for (let i = 0; i < K; i++) {
      f.op(Op.end);
      this.c = i;
      this.writeBlock(plans[i]);
      f.op(Op.unreachable);
    }
    f.op(Op.end);
    // Default: pc = vbase + entry is no block here (also where transfers out of the
    // function land). Go on in the function the target cache names for pc if there is one
    // and a block fits the budget; else return to the dispatcher.
    // (Params as temporaries: addr for pc, entry for its low word; ent for the entry.)
    const t = this.addr, lo = this.entry, ent = this.ent, base = this.ibcBase;
    f.get(this.vbase).get(this.entry).op(Op.i64_extend_i32_u).op(Op.i64_add).set(t);
    this.setPc(() => { f.get(t); });
    this.mayGoOn();
    f.block(Op.if);
    // ent = ibcIndex(lo) * entry bytes (the set's first way)
    f.get(t).op(Op.i32_wrap_i64).tee(lo).i32(1).op(Op.i32_shr_u).get(lo).i32(12).op(Op.i32_shr_u).op(Op.i32_xor);
    f.i32(IBTC_SIZE / 2 - 1).op(Op.i32_and).i32(Math.log2(2 * IBTC_WORDS * 4)).op(Op.i32_shl).set(ent);
    // (The entry's pc words, low then high, read as one i64: the pc itself.) Not in the
    // first way: the second (state.ts).
    f.get(ent).mem(Op.i64_load, 3, base).get(t).op(Op.i64_ne);
    f.block(Op.if).get(ent).i32(IBTC_WORDS * 4).op(Op.i32_xor).set(ent).op(Op.end);
    f.get(ent).mem(Op.i64_load, 3, base).get(t).op(Op.i64_eq);
    f.get(ent).mem(Op.i32_load, 2, base + 8).i32(this.base).mem(Op.i32_load, 2, JIT_CTX * 8).op(Op.i32_eq).op(Op.i32_and);
    f.block(Op.if);
    // Count the hit (above the function's index); every IBTC_HOT-th goes to the dispatcher,
    // which counts them all (hot()). (`lo` holds the entry's new word from here.)
    f.get(ent).get(ent).mem(Op.i32_load, 2, base + 12).i32(1 << IBTC_FN_BITS).op(Op.i32_add).tee(lo).mem(Op.i32_store, 2, base + 12);
    f.get(lo).i32(~IBTC_FN_MASK).op(Op.i32_and);
    f.block(Op.if);
    if (this.calls) this.callOut(t, lo, dispatchLevel);
    f.get(this.budget).get(this.done).get(t).op(Op.i32_wrap_i64).i32(0xfff).op(Op.i32_and);
    f.get(lo).i32(IBTC_FN_MASK).op(Op.i32_and);
    f.i32(Slot.jump).op(Op.return_call_indirect);
    f.code.u32(this.types[Slot.jump]).u32(0);
    f.op(Op.end);
    f.i32(this.base).i32(IBTC_HOT - 1).mem(Op.i32_store, 2, JIT_HOT * 8);
    f.op(Op.end);
    f.op(Op.end);
    f.get(this.done).op(Op.return);
    f.op(Op.end).op(Op.unreachable);
  }

  /**
   * Calls and returns. A guest call (jal/jalr with rd = ra) whose return address is a block
   * of this function leaves through the default with that address in LOCAL_RET; there the
   * target's function is entered by a host call, not a tail call, with the address pushed on
   * the return-address stack (JIT_RAS, JIT_DEPTH: state.ts). A guest return (jalr x0, 0(ra))
   * to the address on top of that stack pops it and returns from the host function, and
   * the caller goes on at its block: the host's own return prediction, where a return
   * through the target cache and the trampoline's shared indirect jump mispredicted
   * (~570 returns a QD1 disk read). Everything else unwinds as before: a function that
   * returns for any other reason (the budget, an exit, a trap's exception) leaves
   * JIT_DEPTH above the caller's depth, and a caller goes on only if the depth, pc and
   * JIT_CTX (privilege and code epoch) are what it left, else returns its count too, down
   * to the dispatcher, which starts each entry at depth 0.
   */
  private callOut(t: number, fnWord: number, dispatchLevel: number): void {
    const f = this.f, base = this.base, ret = this.retLocal;
    const depth = this.local(LOCAL_CALL_DEPTH, ValType.I32), ctx = this.local(LOCAL_CALL_CTX, ValType.I32);
    // A call, and room on the stack:
    f.get(ret).op(Op.i64_eqz).op(Op.i32_eqz);
    f.i32(base).mem(Op.i32_load, 2, JIT_DEPTH * 8).tee(depth).i32(JIT_RAS_SIZE).op(Op.i32_lt_u).op(Op.i32_and);
    f.block(Op.if);
    // RAS[depth] = ret; JIT_DEPTH = depth + 1
    f.get(depth).i32(3).op(Op.i32_shl).get(ret).mem(Op.i64_store, 3, base + JIT_RAS * 8);
    f.i32(base).get(depth).i32(1).op(Op.i32_add).mem(Op.i32_store, 2, JIT_DEPTH * 8);
    f.i32(base).mem(Op.i32_load, 2, JIT_CTX * 8).set(ctx);
    f.get(this.budget).get(this.done).get(t).op(Op.i32_wrap_i64).i32(0xfff).op(Op.i32_and);
    f.get(fnWord).i32(IBTC_FN_MASK).op(Op.i32_and);
    f.i32(Slot.jump).op(Op.call_indirect);
    f.code.u32(this.types[Slot.jump]).u32(0);
    f.set(this.done);
    // Returned to us, at our return address, in the same context, with room for a block: go on there.
    f.i32(base).mem(Op.i32_load, 2, JIT_DEPTH * 8).get(depth).op(Op.i32_eq);
    f.i32(base).mem(Op.i64_load, 3, PC * 8).get(ret).op(Op.i64_eq).op(Op.i32_and);
    f.i32(base).mem(Op.i32_load, 2, JIT_CTX * 8).get(ctx).op(Op.i32_eq).op(Op.i32_and);
    this.mayGoOn();
    f.op(Op.i32_and);
    f.block(Op.if);
    f.get(ret).i64(-4096n).op(Op.i64_and).set(this.vbase);
    f.get(ret).op(Op.i32_wrap_i64).i32(0xfff).op(Op.i32_and).set(this.entry);
    f.i64(0n).set(ret);
    f.br(Op.br, f.depth - dispatchLevel);
    f.op(Op.end);
    f.get(this.done).op(Op.return);
    f.op(Op.end);
  }

  /** LOCAL_RET (declared when the page has a call: PageWriter.calls). */
  private get retLocal(): number { return this.local(LOCAL_RET, ValType.I64); }

  /**
   * If pc `t` (the current instruction's target) is the return address on top of the
   * return-address stack: pop it, set pc and return from this function (callOut).
   */
  private returnToCaller(t: number): void {
    const f = this.f, base = this.base, depth = this.tmp32(0);
    f.i32(base).mem(Op.i32_load, 2, JIT_DEPTH * 8).tee(depth).i32(0).op(Op.i32_ne);
    // (RAS[depth - 1]; at depth 0 the slot below the stack, read and ignored.)
    f.get(depth).i32(3).op(Op.i32_shl).mem(Op.i64_load, 3, base + (JIT_RAS - 1) * 8).get(t).op(Op.i64_eq).op(Op.i32_and);
    f.block(Op.if);
    f.i32(base).get(depth).i32(1).op(Op.i32_sub).mem(Op.i32_store, 2, JIT_DEPTH * 8);
    this.setPc(() => { f.get(t); });
    f.get(this.done).op(Op.return);
    f.op(Op.end);
  }

  /**
   * Branch to the case (the Wasm block of depth i, plus `nest`) whose head offset `offs[i]`
   * equals the entry offset, or to the default (depth K): a binary search over the heads.
   * Not a br_table over the offsets: that spans up to 2,048 entries for at most
   * MAX_FN_BLOCKS heads, and V8's baseline compiler lowers a br_table to a compare tree as
   * long as the table (~10 bytes of host code per entry, up to 11 compares per entry).
   */
  private selectCase(offs: readonly number[], lo: number, hi: number, nest: number): void {
    const f = this.f;
    if (hi - lo === 1) {
      f.get(this.entry).i32(offs[lo]).op(Op.i32_eq).br(Op.br_if, lo + nest);
      f.br(Op.br, offs.length + nest);
      return;
    }
    const mid = (lo + hi) >>> 1;
    f.get(this.entry).i32(offs[mid]).op(Op.i32_lt_u).block(Op.if);
    this.selectCase(offs, lo, mid, nest + 1);
    f.op(Op.else);
    this.selectCase(offs, mid, hi, nest + 1);
    f.op(Op.end);
  }

  /**
   * One block's code: a loop (its own head) inside the exit stub's Wasm block. The loop
   * never falls out.
   */
  private writeBlock(p: BlockCode): void {
    const f = this.f;
    f.block(Op.block); // the exit stub (WRAP counts it)
    this.stubLevel = f.depth;
    f.block(Op.loop);
    this.ended = false;
    this.dirtied = false;
    this.fpRead = false;
    this.inner = 0;
    this.groups = probeGroups(p.insns, GROUP_LOCALS, (i) => this.local(LOCAL_GROUP + i, ValType.I32));
    for (let i = 0; i < p.insns.length; i++) {
      const d = p.insns[i];
      this.k = i;
      this.off = p.offs[i];
      this.len = d.len;
      this.emitOne(d);
      if (this.ended) break;
    }
    if (!this.ended) {
      // Fell off the end (page end, length limit or an untranslatable instruction next).
      const last = p.insns.length - 1;
      this.goto(p.offs[last] + p.insns[last].len, p.insns.length);
    }
    f.op(Op.end); // loop
    f.op(Op.end); // the exit stub: a slow path returned its count in `leave` (pc is set)
    f.get(this.leave).op(Op.return);
  }

  private emitOne(d: Decoded): void {
    if (d.spec.emit) { d.spec.emit(this, d); return; }
    this.execRow(d);
  }

  /** Run the row's exec (it reads and writes the registers in the state block, as translated code does). */
  private execRow(d: Decoded): void {
    const f = this.f;
    f.i32(this.execIndex(d));
    this.slowCall(Slot.exec);
    this.leaveCheck();
    // A CSR write may have changed FS or frm: the next F/D instruction reads them again.
    if (d.ends) { this.fpRead = false; this.dirtied = false; }
  }

  /**
   * Call the runtime's slow path `slot` (its own arguments pushed already) for the current
   * instruction; its count goes to `leave` (a load's value stays on the stack).
   */
  private slowCall(slot: Slot): void {
    const f = this.f;
    f.get(this.vbase).get(this.done).i32(this.off | this.k << 12 | (this.len === 4 ? 1 << 18 : 0));
    f.call(this.stub(slot)).set(this.leave);
  }

  /** After a slow path: to the block's exit stub if it must end here. */
  private leaveCheck(): void {
    this.f.get(this.leave).br(Op.br_if, this.f.depth - this.stubLevel);
  }


  /** Push done + c: the retired count after `c` instructions of this block. */
  private retired(c: number): void {
    this.f.get(this.done);
    if (c !== 0) this.f.i32(c).op(Op.i32_add);
  }

  /** pc = vbase + off; return done + count. */
  private exit(off: number, count: number): void {
    this.setPc(() => this.pcAt(off));
    this.retired(count);
    this.f.op(Op.return);
  }

  /**
   * Transfer to page offset `target` after `count` instructions of this block: straight
   * on in the target's code if it is a block of this function and a whole block still
   * fits the budget, else return to the dispatcher with pc there.
   */
  private goto(target: number, count: number, call = false): void {
    const f = this.f;
    const j = this.caseOf.get(target);
    if (j === undefined) {
      // Not a block of this function: to the default (the target cache, or the dispatcher).
      this.retired(count);
      f.set(this.done);
      const inPage = target & 0xfff;
      const sibling = inPage === target ? this.siblings.get(target) : undefined;
      if (sibling !== undefined) {
        // A block of another function of this page in this module: tail-call it if a block
        // fits the budget (as the default does), else leave with pc there. (Its page's
        // functions share their cache entries' fate.)
        this.setPc(() => this.pcAt(target));
        this.mayGoOn();
        f.block(Op.if);
        f.get(this.budget).get(this.done).i32(target).get(this.vbase).get(this.addr).op(Op.return_call);
        f.code.u32(sibling);
        f.op(Op.end);
        this.counts.siblingCalls++;
        f.get(this.done).op(Op.return);
        return;
      }
      if (call) this.markCall();
      if (inPage !== target) f.get(this.vbase).i64(target - inPage).op(Op.i64_add).set(this.vbase);
      f.i32(inPage).set(this.entry).br(Op.br, this.inner + WRAP + this.cases - this.c);
      return;
    }
    const c = this.c, K = this.cases, inner = this.inner;
    // (entry: where the dispatch loop and the default go on.)
    if (j < c) f.i32(target).set(this.entry);
    this.retired(count);
    f.tee(this.done).i32(MAX_BLOCK).op(Op.i32_add).get(this.budget).op(Op.i32_le_u);
    if (j === c) f.br(Op.br_if, inner); // this block's own loop
    else if (j > c) f.br(Op.br_if, inner + WRAP + j - c); // the end of Wasm block j: its code follows
    else f.br(Op.br_if, inner + WRAP + K - c + 1); // the dispatch loop
    // No block fits the budget: the default, which sets pc and sees no room either, returns.
    // (One shared exit, not a pc store and return at every transfer: ~15 bytes less each.)
    if (j >= c) f.i32(target).set(this.entry);
    f.br(Op.br, inner + WRAP + K - c);
  }

  /**
   * Push "a whole block fits the budget": translated code may go on to another function.
   * (No interrupt can be waiting here: the dispatcher enters with ATTENTION clear, and a
   * helper that sets it makes its block return at once; only the budget bounds a run,
   * as inside a function.)
   */
  private mayGoOn(): void {
    this.f.get(this.done).i32(MAX_BLOCK).op(Op.i32_add).get(this.budget).op(Op.i32_le_u);
  }

  private pcAt(off: number): void {
    this.f.get(this.vbase);
    if (off !== 0) this.f.i64(off).op(Op.i64_add);
  }

  private setPc(value: () => void): void {
    this.f.i32(this.base);
    value();
    this.f.mem(Op.i64_store, 3, PC * 8);
  }

  x(r: number): void {
    if (r === 0) { this.f.i64(0); return; }
    this.f.i32(this.base).mem(Op.i64_load, 3, r * 8);
  }

  x32(r: number): void {
    this.x(r);
    if (r !== 0) this.f.op(Op.i32_wrap_i64); else { this.f.op(Op.drop).i32(0); }
  }

  setX(rd: number, value: () => void): void {
    if (rd !== SINK && rd !== 0) {
      this.f.i32(this.base);
      value();
      this.f.mem(Op.i64_store, 3, rd * 8);
      return;
    }
    value();
    this.f.op(Op.drop);
  }

  setXw(rd: number, value: () => void): void {
    this.setX(rd, () => { value(); this.f.op(Op.i64_extend_i32_s); });
  }

  pcPlus(k: number): void { this.pcAt(this.off + k); }

  tmp64(i: 0 | 1 | 2 | 3): number { return this.local(LOCAL_T64 + i, ValType.I64); }
  tmp32(i: 0 | 1): number { return this.local(LOCAL_T32 + i, ValType.I32); }

  /**
   * Whether the current instruction, a jal/jalr, is a call that can wait for its return
   * in this function: rd = ra and a block of this function at the return address (callOut).
   */
  private isCall(d: Decoded): boolean {
    return d.rd === 1 && this.caseOf.has(this.off + d.len);
  }

  /** Before a branch to the default: this transfer is a call; LOCAL_RET = its return address (vbase is still this page's). */
  private markCall(): void {
    this.calls = true;
    this.pcPlus(this.len);
    this.f.set(this.retLocal);
  }

  jump(d: Decoded, target: () => void): void {
    const f = this.f, t = this.tmp64(0);
    if (d.spec.format === 'J') {
      this.setX(d.rd, () => this.pcPlus(d.len));
      this.goto(this.off + d.imm, this.k + 1, this.isCall(d));
      this.ended = true;
      return;
    }
    target();
    f.set(t);
    this.setX(d.rd, () => this.pcPlus(d.len));
    this.retired(this.k + 1);
    f.set(this.done);
    // `ret` (jalr x0, 0(ra)) to the caller waiting for it: back to its host frame.
    if (d.rs1 === 1 && (d.rd === 0 || d.rd === SINK) && d.imm === 0) this.returnToCaller(t);
    // A target in the same virtual page goes on through the dispatch (which sends offsets
    // that are no block here to the default), if a block fits the budget; any
    // other goes to the default (the target cache, or the dispatcher).
    const t1 = this.tmp64(1);
    f.get(t).op(Op.i32_wrap_i64).i32(0xfff).op(Op.i32_and).set(this.entry);
    f.get(t).i64(-4096).op(Op.i64_and).tee(t1).get(this.vbase).op(Op.i64_eq);
    f.get(this.done).i32(MAX_BLOCK).op(Op.i32_add).get(this.budget).op(Op.i32_le_u).op(Op.i32_and);
    f.block(Op.if);
    f.br(Op.br, this.inner + 1 + WRAP + this.cases - this.c + 1);
    f.op(Op.end);
    if (this.isCall(d)) this.markCall();
    f.get(t1).set(this.vbase);
    f.br(Op.br, this.inner + WRAP + this.cases - this.c);
    this.ended = true;
  }

  branch(d: Decoded, cond: () => void): void {
    cond();
    this.f.block(Op.if);
    this.inner = 1;
    this.goto(this.off + d.imm, this.k + 1);
    this.inner = 0;
    this.f.op(Op.end);
    this.goto(this.off + d.len, this.k + 1);
    this.ended = true;
  }

  // ---- F/D ----

  fx(r: number): void { this.f.i32(this.base).mem(Op.f64_load, 3, (F0 + r) * 8); }
  fbits(r: number): void { this.f.i32(this.base).mem(Op.i64_load, 3, (F0 + r) * 8); }

  setFbits(rd: number, value: () => void): void {
    this.f.i32(this.base);
    value();
    this.f.mem(Op.i64_store, 3, (F0 + rd) * 8);
  }

  tmpF(i: number): number {
    while (this.tF.length <= i) this.tF.push(this.body.local(ValType.F64));
    return this.tF[i];
  }

  /**
   * mstatus.FS = Dirty, in the state block: once per block (straight-line code, so after
   * the first F/D instruction that dirties, on its inline path or through its row's exec,
   * FS is Dirty).
   */
  private fpDirty(): void {
    if (this.dirtied) return;
    this.dirtied = true;
    const f = this.f;
    f.i32(this.base).i32(this.base).mem(Op.i32_load, 2, MSTATUS_LO * 8).i32(MSTATUS.FS).op(Op.i32_or).mem(Op.i32_store, 2, MSTATUS_LO * 8);
  }

  /**
   * Push the block's F/D state: bit 0 set if mstatus.FS is Off, bit 1 if frm is not RNE.
   * Read at the block's first F/D instruction (neither changes inside a block: CSR writes
   * end blocks and the rows run inside one only set FS to Dirty).
   */
  private fpState(): void {
    const f = this.f;
    if (!this.fpRead) {
      this.fpRead = true;
      f.i32(this.base).mem(Op.i32_load, 2, MSTATUS_LO * 8).i32(MSTATUS.FS).op(Op.i32_and).op(Op.i32_eqz);
      f.i32(this.base).mem(Op.i32_load, 2, FRM * 8).i32(0).op(Op.i32_ne).i32(1).op(Op.i32_shl).op(Op.i32_or).set(this.fpst);
    }
    f.get(this.fpst);
  }

  fallback(d: Decoded): void { this.execRow(d); }

  amo(d: Decoded, size: 4 | 8, op: (old: number, v: number) => void): void {
    const f = this.f, w = size === 4;
    const old = w ? this.tmp32(1) : this.tmp64(1), v = w ? this.tmpAmo : this.tmp64(2);
    this.ea(d);
    this.tlbHit(TLB_W_PTR, size);
    f.block(Op.if);
    // mem[host] = op(old, x[rs2]); x[rd] = old (sign-extended for .w), rs2 read before rd is set.
    this.hostAddr();
    f.tee(this.tmp32(0)).get(this.tmp32(0)).mem(w ? Op.i32_load : Op.i64_load, w ? 2 : 3, 0).set(old);
    if (w) this.x32(d.rs2); else this.x(d.rs2);
    f.set(v);
    op(old, v);
    f.mem(w ? Op.i32_store : Op.i64_store, w ? 2 : 3, 0);
    this.setX(d.rd, () => { f.get(old); if (w) f.op(Op.i64_extend_i32_s); });
    f.op(Op.else);
    this.execRow(d);
    f.op(Op.end);
  }

  lr(d: Decoded, size: 4 | 8): void {
    const f = this.f, host = this.tmp32(0), w = size === 4;
    this.ea(d);
    this.tlbHit(TLB_R_PTR, size);
    f.block(Op.if);
    this.hostAddr();
    f.set(host);
    f.i32(this.base).get(host).mem(Op.i32_store, 2, RESV * 8);
    this.setX(d.rd, () => { f.get(host).mem(w ? Op.i64_load32_s : Op.i64_load, w ? 2 : 3, 0); });
    f.op(Op.else);
    this.execRow(d);
    f.op(Op.end);
  }

  sc(d: Decoded, size: 4 | 8): void {
    const f = this.f, host = this.tmp32(0), ok = this.tmp32(1), w = size === 4;
    this.ea(d);
    this.tlbHit(TLB_W_PTR, size);
    f.block(Op.if);
    this.hostAddr();
    f.tee(host).i32(this.base).mem(Op.i32_load, 2, RESV * 8).op(Op.i32_eq).tee(ok);
    f.block(Op.if);
    f.get(host);
    this.x(d.rs2);
    f.mem(w ? Op.i64_store32 : Op.i64_store, w ? 2 : 3, 0);
    f.op(Op.end);
    f.i32(this.base).i32(-1).mem(Op.i32_store, 2, RESV * 8);
    this.setX(d.rd, () => { f.get(ok).op(Op.i32_eqz).op(Op.i64_extend_i32_u); });
    f.op(Op.else);
    this.execRow(d);
    f.op(Op.end);
  }

  sstatus(d: Decoded, op: 0 | 1 | 2, imm: boolean): void {
    const f = this.f, base = this.base, old = this.tmp32(0), nw = this.tmp32(1);
    const writes = op === 0 || d.rs1 !== 0;
    const m = SSTATUS_MASK & MSTATUS_WMASK;
    // Inline in S and M mode when the write changes at most SIE and no enabled interrupt
    // is pending (then enabling one cannot make it takeable: updateIrq has nothing to do).
    f.i32(base).mem(Op.i32_load, 2, MSTATUS_LO * 8).set(old);
    f.i32(base).mem(Op.i32_load, 2, PRIV * 8).i32(PRIV_S).op(Op.i32_ge_u);
    if (writes) {
      const src = (): void => { if (imm) f.i32(d.rs1); else this.x32(d.rs1); f.i32(m).op(Op.i32_and); };
      if (op === 0) { f.get(old).i32(~m).op(Op.i32_and); src(); f.op(Op.i32_or); }
      else if (op === 1) { f.get(old); src(); f.op(Op.i32_or); }
      else { f.get(old); src(); f.i32(-1).op(Op.i32_xor).op(Op.i32_and); }
      f.tee(nw).get(old).op(Op.i32_xor).i32(~MSTATUS.SIE).op(Op.i32_and).op(Op.i32_eqz).op(Op.i32_and);
      f.i32(base).mem(Op.i32_load, 2, MIP_SW * 8).i32(base).mem(Op.i32_load, 2, MIP_HW * 8).op(Op.i32_or);
      f.i32(base).mem(Op.i32_load, 2, MIE * 8).op(Op.i32_and).op(Op.i32_eqz).op(Op.i32_and);
    }
    f.block(Op.if);
    if (writes) f.i32(base).get(nw).mem(Op.i32_store, 2, MSTATUS_LO * 8);
    // sstatus (privileged spec 10.1.1): the low word's S bits, UXL = 2, SD when FS is Dirty.
    this.setX(d.rd, () => {
      f.get(old).i32(SSTATUS_MASK).op(Op.i32_and).op(Op.i64_extend_i32_u).i64(0x2_0000_0000n).op(Op.i64_or);
      f.get(old).i32(MSTATUS.FS).op(Op.i32_and).i32(MSTATUS.FS).op(Op.i32_eq).op(Op.i64_extend_i32_u).i64(63n).op(Op.i64_shl).op(Op.i64_or);
    });
    f.op(Op.else);
    this.execRow(d);
    f.op(Op.end);
    // (The row may have changed FS.)
    this.fpRead = false;
    this.dirtied = false;
  }

  orFlags(value: () => void): void {
    const f = this.f, t = this.tmp32(0);
    value();
    f.tee(t).block(Op.if);
    f.i32(this.base).i32(this.base).mem(Op.i32_load, 2, FFLAGS * 8).get(t).op(Op.i32_or).mem(Op.i32_store, 2, FFLAGS * 8);
    if (!this.dirtied) f.i32(this.base).i32(this.base).mem(Op.i32_load, 2, MSTATUS_LO * 8).i32(MSTATUS.FS).op(Op.i32_or).mem(Op.i32_store, 2, MSTATUS_LO * 8);
    f.op(Op.end);
  }

  fpGuard(d: Decoded, rm: boolean, dirty: boolean, body: () => void): void {
    const f = this.f;
    // A static mode other than RNE (or a reserved one): always the row's exec.
    if (rm && d.rm !== 0 && d.rm !== 7) { this.execRow(d); return; }
    this.fpState();
    if (!(rm && d.rm === 7)) f.i32(1).op(Op.i32_and);
    f.block(Op.if);
    this.inner++;
    this.execRow(d);
    f.op(Op.else);
    body();
    if (dirty) this.fpDirty();
    this.inner--;
    f.op(Op.end);
  }

  fpArith(d: Decoded, fast: () => void, single = false): void {
    this.fpGuard(d, true, false, () => {
      const f = this.f;
      fast();
      f.block(Op.if);
      this.inner++;
      if (single) {
        f.i32(this.base).get(this.fres).op(Op.f32_demote_f64).op(Op.i32_reinterpret_f32).op(Op.i64_extend_i32_u);
        f.i64(-0x1_0000_0000n).op(Op.i64_or).mem(Op.i64_store, 3, (F0 + d.rd) * 8);
      } else {
        f.i32(this.base).get(this.fres).mem(Op.f64_store, 3, (F0 + d.rd) * 8);
      }
      f.i32(this.base).i32(this.base).mem(Op.i32_load, 2, FFLAGS * 8).get(this.fnx).op(Op.i32_or).mem(Op.i32_store, 2, FFLAGS * 8);
      this.fpDirty();
      f.op(Op.else);
      this.execRow(d);
      this.inner--;
      f.op(Op.end);
    });
  }

  loadF(d: Decoded, size: 4 | 8 = 8): void {
    const f = this.f;
    // A single is NaN-boxed: the upper 32 bits all ones.
    const box = (): void => { f.op(Op.i64_extend_i32_u).i64(-0x1_0000_0000n).op(Op.i64_or); };
    this.ea(d);
    this.tlbHit(TLB_R_PTR, size);
    f.block(Op.if);
    f.i32(this.base);
    this.hostAddr();
    if (size === 8) f.mem(Op.i64_load, 3, 0); else { f.mem(Op.i32_load, 2, 0); box(); }
    f.mem(Op.i64_store, 3, (F0 + d.rd) * 8);
    f.op(Op.else);
    f.i32(this.base);
    this.loHi();
    if (size === 8) this.slowCall(Slot.load64);
    else { this.slowCall(Slot.load32u); f.i64(-0x1_0000_0000n).op(Op.i64_or); }
    f.mem(Op.i64_store, 3, (F0 + d.rd) * 8);
    this.leaveCheck();
    f.op(Op.end);
  }

  storeF(d: Decoded, size: 4 | 8 = 8): void {
    this.storeAlone(d, size, size === 8 ? Op.i64_store : Op.i64_store32, size === 8 ? 3 : 2,
      () => this.fbits(d.rs2), () => { this.fbits(d.rs2); this.f.op(Op.i32_wrap_i64); });
  }

  /** Effective address into `addr` (i64) and its low word into `lo`. */
  private ea(d: Decoded): void {
    const f = this.f;
    this.x(d.rs1);
    if (d.imm !== 0) f.i64(d.imm).op(Op.i64_add);
    f.set(this.addr);
  }

  /** Push the address: a slow path's first argument (its stub splits it for the hart). */
  private loHi(): void {
    this.f.get(this.addr);
  }

  /**
   * Push the i32 condition "the TLB at slot `ptr` maps the address and the access is
   * aligned", leaving the entry's address in `ent` (the interpreter's fast path, inline):
   * one i64 compare of the entry's tag with the address's page and alignment bits.
   */
  private tlbHit(ptr: number, size: number): void {
    const f = this.f;
    f.i32(this.base).mem(Op.i32_load, 2, ptr * 8);
    f.get(this.addr).op(Op.i32_wrap_i64).i32(12 - Math.log2(TLB_ENTRY_BYTES)).op(Op.i32_shr_u).i32((TLB_SIZE - 1) * TLB_ENTRY_BYTES).op(Op.i32_and);
    f.op(Op.i32_add).tee(this.ent).mem(Op.i64_load, 3, 0);
    f.get(this.addr).i64(-4096 | (size - 1)).op(Op.i64_and).op(Op.i64_eq);
  }

  /** Push the host address of lo in the page of TLB entry `ent`. */
  private hostAddr(): void {
    this.f.get(this.ent).mem(Op.i32_load, 2, TLB_DELTA).get(this.addr).op(Op.i32_wrap_i64).op(Op.i32_add);
  }

  /**
   * A member of a probe group: at the first, probe for the group (its host address or 0 into
   * the group's local); then `if` the group's probe held, the fast access (`fast`, with the
   * host address on the stack), `else` the member alone (`alone`).
   */
  private grouped(g: ProbeGroup, d: Decoded, fast: () => void, alone: () => void): void {
    const f = this.f;
    if (g.first === this.k) {
      this.x(d.rs1);
      if (g.minOff !== 0) f.i64(g.minOff).op(Op.i64_add);
      f.set(this.addr);
      this.tlbHit(g.store ? TLB_W_PTR : TLB_R_PTR, g.size);
      f.get(this.addr).op(Op.i32_wrap_i64).i32(0xfff).op(Op.i32_and).i32(4096 - g.span).op(Op.i32_le_u).op(Op.i32_and);
      f.block(Op.if, ValType.I32);
      this.hostAddr();
      f.op(Op.else).i32(0).op(Op.end).set(g.local);
    }
    f.get(g.local);
    f.block(Op.if);
    fast();
    f.op(Op.else);
    alone();
    f.op(Op.end);
  }

  load(d: Decoded, size: 1 | 2 | 4 | 8, signed: boolean): void {
    const fast = size === 8 ? Op.i64_load : size === 4 ? (signed ? Op.i64_load32_s : Op.i64_load32_u)
      : size === 2 ? (signed ? Op.i64_load16_s : Op.i64_load16_u) : (signed ? Op.i64_load8_s : Op.i64_load8_u);
    const align = size === 8 ? 3 : size === 4 ? 2 : size === 2 ? 1 : 0;
    const g = this.groups[this.k];
    if (g === undefined) { this.loadAlone(d, size, signed, fast, align); return; }
    this.grouped(g, d, () => { this.setX(d.rd, () => { this.f.get(g.local).mem(fast, align, d.imm - g.minOff); }); },
      () => this.loadAlone(d, size, signed, fast, align));
  }

  private loadAlone(d: Decoded, size: 1 | 2 | 4 | 8, signed: boolean, fast: number, align: number): void {
    const f = this.f;
    this.ea(d);
    this.tlbHit(TLB_R_PTR, size);
    f.block(Op.if);
    this.setX(d.rd, () => { this.hostAddr(); f.mem(fast, align, 0); });
    f.op(Op.else);
    this.setX(d.rd, () => {
      this.loHi();
      this.slowCall(size === 8 ? Slot.load64 : size === 4 ? (signed ? Slot.load32 : Slot.load32u)
        : size === 2 ? (signed ? Slot.load16 : Slot.load16u) : (signed ? Slot.load8 : Slot.load8u));
    });
    this.leaveCheck();
    f.op(Op.end);
  }

  store(d: Decoded, size: 1 | 2 | 4 | 8): void {
    const op = size === 8 ? Op.i64_store : size === 4 ? Op.i64_store32 : size === 2 ? Op.i64_store16 : Op.i64_store8;
    const align = size === 8 ? 3 : size === 4 ? 2 : size === 2 ? 1 : 0;
    const g = this.groups[this.k];
    if (g === undefined) { this.storeAlone(d, size, op, align); return; }
    this.grouped(g, d, () => { this.f.get(g.local); this.x(d.rs2); this.f.mem(op, align, d.imm - g.minOff); },
      () => this.storeAlone(d, size, op, align));
  }

  /** A store alone (no probe group): `value` pushes rs2's bits (i64), `value32` its low word (the narrow slow paths'). */
  private storeAlone(d: Decoded, size: 1 | 2 | 4 | 8, op: number, align: number,
    value = (): void => this.x(d.rs2), value32 = (): void => this.x32(d.rs2)): void {
    const f = this.f;
    this.ea(d);
    this.tlbHit(TLB_W_PTR, size);
    f.block(Op.if);
    this.hostAddr();
    value();
    f.mem(op, align, 0);
    f.op(Op.else);
    this.loHi();
    if (size === 8) value(); else value32();
    this.slowCall(size === 8 ? Slot.store64 : size === 4 ? Slot.store32 : size === 2 ? Slot.store16 : Slot.store8);
    this.leaveCheck();
    f.op(Op.end);
  }
}
