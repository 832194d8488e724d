/**
 * The translator: hot guest code becomes WebAssembly.
 *
 * The interpreter counts entries at block starts (the instruction after a control
 * transfer or trap). When a start gets hot, the block from there is planned: straight-line
 * instructions of one physical page, up to the first control transfer. The unit of
 * compilation is the page: its planned blocks, in page order, go into functions of up to
 * MAX_FN_BLOCKS blocks, each block once, entered through a binary search on the entry's
 * page offset. A transfer to another block of the same function (a branch, a jump, a `jalr`
 * whose target falls in the page) stays inside it, so loops and local calls need not
 * return to the dispatcher. Blocks of a page that get hot later get functions of their own
 * (with the page's other new blocks); heads that were warm already join the page's first
 * functions. A page whose translated heads the dispatcher keeps entering gets its hot
 * region (the blocks those heads reach by direct transfers) compiled again as one
 * function (hot()). Pages waiting for compilation are batched
 * into one module (module compiles and instantiations are costly). Transfers that leave
 * a function (jalr, returns, other pages) look pc up in the indirect-branch target cache
 * and tail-call the function it names through a trampoline in the runtime module, the one
 * module that imports the function table: a V8 table imported by many instances costs at
 * every instantiation and every `Table.set` (profiled: 23 % of a Linux boot with
 * per-block functions chained through one). Page modules import no functions either
 * (buildRuntime: V8 compiles import wrappers per module).
 *
 * Each function's index is stored on its blocks' first instructions (Decoded.blockIdx), so it shares
 * the decoded page's lifetime: a store, DMA or fence.i that drops the page drops its code.
 *
 * Memory accesses probe the TLB inline and, on a miss, call the runtime's slow path (through
 * a stub in their own module: a direct call is smaller host code than a call_indirect), which
 * writes pc and the number of retired instructions before it calls the hart's helper, so a
 * trap inside a block leaves the exact state the interpreter would. When the hart's
 * ATTENTION flag is set after a call (an interrupt became pending) or a helper sets
 * JIT_EXIT (the store hit translated code), the block returns after that instruction.
 */
import type { Decoded, BlockFn } from '../isa/types.js';
import { IBTC_FN_BITS, SINK } from '../state.js';
import { MAX_BLOCK, Slot, buildRuntime, encodeModule, type FnCode } from './codegen.js';

export { MAX_BLOCK };

/** Blocks per compiled module: at most, and enough to compile at once. */
const MAX_BATCH = 256;
const MIN_BATCH = 48;
/**
 * Run slices a pending page waits for company before it is compiled anyway. (A head entered
 * URGENT_HITS times meanwhile compiles at once: a loop does not wait.) 8 against 4: a Linux
 * boot's modules 555 -> ~415 (each has a fixed cost in V8), 1 % more instructions
 * interpreted; 16 (338 modules) made the integer benchmark ~3 % slower.
 */
const MAX_WAIT = 8;
/**
 * Whole-page compiles of one page; later blocks of it get functions of their own. (Compiling
 * a page again with all its blocks cost more than it saved in a Linux boot.)
 */
const MAX_PAGE_COMPILES = 1;
/**
 * Blocks per function at most (a page's blocks in page order, split). V8 tiers large
 * functions up sooner and its optimizing compile grows faster than their size: in a Linux
 * boot whole-page functions cost more CPU than one block per function, while hot loops
 * spanning blocks gain from sharing one.
 */
const MAX_FN_BLOCKS = 8;
/**
 * Dispatcher entries into one translated head (checked every HOT_ENTRIES) after which its
 * page is compiled again whole, into one function: hot code whose blocks got hot at
 * different times (each compile after the page's first gives them functions of their own)
 * then reaches them inside one function instead of through the dispatcher.
 */
export const HOT_ENTRIES = 65536;
/** Dispatcher entries since its last compile that make a head a seed of its page's hot region. */
const HOT_SEED = HOT_ENTRIES / 16;
/** Hot-region recompiles of a page, at most. */
const MAX_PROMOTIONS = 16;
/** Blocks per function in a hot page's recompile (a page's blocks, all of them in practice). */
const MAX_HOT_FN_BLOCKS = 512;
/** Page functions before the cache is dropped (a target-cache entry holds IBTC_FN_BITS of index; a flush adds < 4,096). */
const MAX_FUNCTIONS = (1 << IBTC_FN_BITS) - 4096;
/** Instructions compiled before the cache is dropped and refilled (bounds its memory). */
const MAX_INSTRUCTIONS = 1 << 20;

/** Decoded.hits of a head that is planned or cannot be translated: never counted again. */
const NEVER = -0x4000_0000;
/**
 * Decoded.hits of a planned head entered this many more times while its compile waits for
 * company (a loop that got hot alone): the batch is compiled at once. (Waiting, a memset's
 * loop ran up to four slices, 80,000 instructions, interpreted.)
 */
export const URGENT_HITS = NEVER + 64;

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
  /** Blocks compiled (a block compiled again with its page counts again). */
  blocks: number;
  /** Modules compiled. */
  compiles: number;
  /** Page functions compiled. */
  functions: number;
  /** Milliseconds spent planning, encoding, compiling (V8's baseline tier) and instantiating. */
  compileMs: number;
  /** Instructions compiled. */
  instructions: number;
  /** Block starts that could not be translated (first instruction has no emitter). */
  untranslatable: number;
  /** Modules the engine refused (a translator bug; the code stays interpreted). */
  failures: number;
  /** Calls from the dispatcher into translated code (each may run many blocks). */
  entries: number;
  /** Instructions retired in translated code (traps inside blocks aside). */
  executed: number;
  /** Times the whole cache was dropped to bound its memory. */
  evictions: number;
  /** Instructions translated code ran through their rows' exec (no emitter, or a fast path declined). */
  execCalls: number;
  /** Hot pages compiled again whole. */
  promotions: number;
  /** Direct transfers compiled as tail calls to another function of the same page and module. */
  siblingCalls: number;
}

/** Decoded instruction at a byte offset in the page (or null past the page or where it cannot be fetched). */
export type At = (off: number) => Decoded | null;
export type DecodedPage = (Decoded | undefined)[];

/** One block: instructions from `head` at page offset `off`. */
interface Plan { head: Decoded; off: number; insns: Decoded[]; offs: number[]; }

/** A page function to compile (codegen.ts FnCode), with its blocks' plans. */
interface PageFn extends FnCode { blocks: Plan[]; }
/** A compiled module: its functions (table indices from `first`) and their instruction count. */
interface Compiled { first: number; fns: PageFn[]; instructions: number; }


/** A code page with translated blocks. */
interface PageRec {
  va: number;
  page: DecodedPage;
  at: At;
  /** Blocks compiled (or being compiled) for the page, by head offset. */
  heads: Map<number, Plan>;
  /** Blocks planned since the last compile. */
  fresh: Plan[];
  queued: boolean;
  compiles: number;
  /** Functions the page's compiled blocks are spread over. */
  fns: number;
  /** The next compile takes every block of the page (a hot page), and how many times that happened. */
  promote: boolean;
  promotions: number;
  /** hot() calls since the last promotion. */
  hotCalls: number;
}

export class Translator {
  /** Entries before a block is translated; 0 translates on first sight, Infinity never. */
  threshold: number;
  readonly stats: JitStats = {
    blocks: 0, compiles: 0, functions: 0, compileMs: 0, instructions: 0, untranslatable: 0, failures: 0,
    entries: 0, executed: 0, evictions: 0, execCalls: 0, promotions: 0, siblingCalls: 0,
  };
  /**
   * Batch the blocks of a few run slices into one module (the default: a module has a fixed
   * cost); off, each slice's blocks are compiled at its end. Modules compile synchronously:
   * V8's baseline compiler is fast, and code waiting for a background compile runs
   * interpreted meanwhile (~10 % of the integer benchmark's time when compiles were async;
   * encoding and compiling on a worker thread left a Linux boot no faster on two cores:
   * docs/PERFORMANCE.md).
   */
  batch = true;
  /**
   * Name each page function by its page's virtual address and first block's offset
   * (`g<page>_<offset>` in the name section), so a V8 CPU profile of translated code can be
   * mapped to guest symbols (profiling only; encoding costs a little).
   */
  names = false;
  private pages = new WeakMap<DecodedPage, PageRec>();
  private pending: PageRec[] = [];
  private pendingBlocks = 0;
  /** Instructions compiled since the cache was last dropped. */
  private live = 0;
  /** What every page module imports: the memory and the runtime's table (no functions: see Runtime). */
  private readonly imports: WebAssembly.Imports;
  /** Instructions translated code runs through their rows' exec, by the runtime exec's argument (null: none). */
  private execs: Decoded[] = [];
  private readonly execIndex = (d: Decoded): number => this.execs.push(d) - 1;
  /** run() calls since the oldest pending plan (batching). */
  private waited = 0;
  /** Called when the cache is too big: the hart drops all decoded code (and so all translations). */
  onFull: () => void = () => {};
  /** Called when heads get new functions (a hot page compiled again), with the old ones: the target cache must forget them. */
  onReplace: (old: ReadonlySet<number>) => void = () => {};
  /**
   * Every page function, by index (Decoded.blockIdx): translated code continues through
   * the indirect-branch target cache by a tail call to the runtime's `jump`, which alone
   * imports the table and tail-calls into it. (A table imported by every module cost V8
   * an update of every instance at each element set: compile time doubled in a boot.)
   */
  private readonly table = new WebAssembly.Table({ element: 'anyfunc', initial: 1024 });
  private nextFn = 0;
  /**
   * The dispatcher's way in: `jump(budget, done, entry, Decoded.blockIdx)`. One export
   * called from one site gets V8's specialised JS-to-Wasm wrapper; calling the thousands of
   * page functions' own exports went through the generic one (5-6 % of a boot).
   */
  readonly enter: (budget: number, done: number, entry: number, fnIndex: number) => number;

  constructor(
    memory: WebAssembly.Memory, private readonly stateBase: number, private readonly mem: JitMemory, threshold: number,
    private readonly ibcBase: number,
  ) {
    this.threshold = threshold;
    const stats = this.stats;
    const exec = (i: number): void => { stats.execCalls++; mem.exec(this.execs[i]); };
    const helpers = buildRuntime(stateBase, {
      memory, table: this.table,
      load8: mem.load8, load8u: mem.load8u, load16: mem.load16, load16u: mem.load16u,
      load32: mem.load32, load64: mem.load64,
      store8: mem.store8, store16: mem.store16, store32: mem.store32, store64: mem.store64, exec,
    });
    this.enter = helpers.get(Slot.jump) as (budget: number, done: number, entry: number, fnIndex: number) => number;
    this.imports = { env: { memory, helpers } };
  }

  /** A block start at page offset `off` of `page` got hot; `at` decodes the page's instructions. */
  plan(head: Decoded, off: number, page: DecodedPage, at: At, va = 0): void {
    head.hits = NEVER; // planned (or hopeless): stop counting
    let rec = this.pages.get(page);
    if (rec === undefined) {
      rec = { va: va & ~0xfff, page, at, heads: new Map(), fresh: [], queued: false, compiles: 0, fns: 0, promote: false, promotions: 0, hotCalls: 0 };
      this.pages.set(page, rec);
    }
    if (!this.add(rec, head, off)) return;
    if (this.pendingBlocks >= MAX_BATCH || this.threshold <= 0) this.flush();
  }

  /** Plan the block at `off` into `rec`; false if its first instruction cannot be translated. */
  private add(rec: PageRec, head: Decoded, off: number): boolean {
    const insns: Decoded[] = [];
    const offs: number[] = [];
    let o = off;
    for (let d: Decoded | null = head; d !== null && insns.length < MAX_BLOCK; d = rec.at(o)) {
      // Rows without an emitter run through their exec from the block, except control
      // transfers and system instructions (they end blocks, unless the row says this one
      // need not: most CSR accesses) and illegal encodings.
      // (A row with an inBlock test that says no ends the block before it, emitter or not.)
      const inBlock = d.ends && d.spec.inBlock !== undefined && d.spec.inBlock(d);
      if ((!d.spec.emit || d.spec.inBlock !== undefined) && !inBlock && (d.ends || d.spec.name === 'illegal')) break;
      insns.push(d);
      offs.push(o);
      o += d.len;
      if (d.ends && !inBlock) break;
    }
    if (insns.length === 0) {
      this.stats.untranslatable++;
      return false;
    }
    rec.fresh.push({ head, off, insns, offs });
    this.pendingBlocks++;
    if (!rec.queued) { rec.queued = true; this.pending.push(rec); }
    // Cut at the length limit: the straight line goes on, as hot as this block, so plan
    // its continuation now. (Left to the dispatcher, each 64-instruction piece of a long
    // unrolled function waited for its own threshold of entries: one such function in a
    // Linux boot ran 2 M instructions interpreted.)
    if (insns.length === MAX_BLOCK && !insns[MAX_BLOCK - 1].spec.ends && o < 4096) {
      const next = rec.at(o);
      if (next !== null && next.blockIdx < 0 && next.hits !== NEVER) {
        next.hits = NEVER;
        this.add(rec, next, o);
      }
    }
    return true;
  }

  get hasPending(): boolean { return this.pending.length > 0; }

  /** Whether blocks of `page` were planned or compiled (the target cache can name its code only then). */
  hasPage(page: DecodedPage): boolean { return this.pages.has(page); }

  /**
   * A translated head of `page` was entered from the dispatcher HOT_ENTRIES times more:
   * compile its hot region again as one function if the page's blocks are spread over
   * several functions or it has heads not yet translated. (null: no such page.)
   */
  private hot(page: DecodedPage | null): void {
    if (page === null) return;
    const rec = this.pages.get(page);
    // Each promotion of a page waits twice as long as the one before.
    if (rec === undefined || rec.promote || ++rec.hotCalls < 1 << rec.promotions || rec.promotions >= MAX_PROMOTIONS) return;
    if (rec.fns <= 1 && !this.hasWarm(rec, 1)) return;
    rec.hotCalls = 0;
    rec.promote = true;
    rec.promotions++;
    this.stats.promotions++;
    if (!rec.queued) { rec.queued = true; this.pending.push(rec); }
    if (this.threshold <= 0 || !this.batch) this.flush();
    else this.pendingBlocks = Math.max(this.pendingBlocks, MIN_BATCH); // at the end of this slice
  }

  /**
   * A hot page's region: the blocks reachable by direct transfers (fall-through, branches,
   * jal, the return point of a call) from the heads the dispatcher entered at least
   * HOT_SEED times since their last compile. Heads that ran but are not translated yet are
   * planned on the way. In page order.
   */
  private hotRegion(rec: PageRec): Plan[] {
    const seen = new Set<number>();
    const work: number[] = [];
    for (const [off, p] of rec.heads) if (p.head.hits >= HOT_SEED) { seen.add(off); work.push(off); }
    const out: Plan[] = [];
    const visit = (off: number): void => {
      if (off < 0 || off >= 4096 || seen.has(off)) return;
      seen.add(off);
      work.push(off);
    };
    while (work.length > 0) {
      const off = work.pop()!;
      let p = rec.heads.get(off);
      if (p === undefined) {
        const d = rec.page[off >>> 1];
        if (d === undefined || d.blockIdx >= 0 || d.hits < 1 || !this.add(rec, d, off)) continue;
        d.hits = NEVER;
        p = rec.fresh[rec.fresh.length - 1];
        rec.heads.set(off, p);
      }
      out.push(p);
      const last = p.insns.length - 1, d = p.insns[last], at = p.offs[last];
      const f = d.spec.format;
      if (f === 'B') { visit(at + d.imm); visit(at + d.len); } else if (f === 'J') {
        visit(at + d.imm);
        if (d.rd !== SINK) visit(at + d.len);
      } else if (d.spec.name === 'jalr') {
        if (d.rd !== SINK) visit(at + d.len);
      } else visit(at + d.len);
    }
    return out.sort((a, b) => a.off - b.off);
  }

  /** Whether the page has untranslated heads entered at least `warm` times. */
  private hasWarm(rec: PageRec, warm: number): boolean {
    const page = rec.page;
    for (let i = 0; i < page.length; i++) {
      const d = page[i];
      if (d !== undefined && d.hits >= warm && d.blockIdx < 0) return true;
    }
    return false;
  }

  /** Plan the page's untranslated heads entered at least `warm` times. */
  private addWarm(rec: PageRec, warm: number): void {
    const page = rec.page;
    for (let i = 0; i < page.length; i++) {
      const d = page[i];
      if (d !== undefined && d.hits >= warm && d.blockIdx < 0) { d.hits = NEVER; this.add(rec, d, i * 2); }
    }
  }

  /**
   * End of a run slice: `hot` is a page a head of which got hot in the slice (hot(); null:
   * none), reported here, in a call made at every slice's end, because V8 drops the run
   * loop's optimized code at the first run of a call it never saw (Hart.run). Then compile
   * the pending pages once there are enough blocks for a module or they have waited a few
   * slices (module instantiation has a fixed cost).
   */
  endSlice(hot: DecodedPage | null): void {
    this.hot(hot);
    if (this.pending.length === 0) return;
    if (!this.batch || this.pendingBlocks >= MIN_BATCH || ++this.waited >= MAX_WAIT) this.flush();
  }

  /** The decoded code was all dropped. */
  reset(): void {
    this.pages = new WeakMap();
    this.pending = [];
    this.pendingBlocks = 0;
    this.live = 0;
    this.nextFn = 0; // (the hart bumped the target cache's epoch: no entry names these any more)
    // (Code that named the old ones has left: a store that drops code ends its block.)
    this.execs = [];
  }

  /** Compile every pending page, in one module. */
  flush(): void {
    const recs = this.pending;
    if (recs.length === 0) return;
    this.pending = [];
    this.pendingBlocks = 0;
    this.waited = 0;
    const t0 = performance.now();
    if (this.live > MAX_INSTRUCTIONS || this.nextFn > MAX_FUNCTIONS) {
      this.stats.evictions++;
      this.onFull();
      return;
    }
    // Warm neighbours: heads of the same page that ran a fair share of the threshold
    // join now, which saves compiling the page again soon.
    const warm = Math.max(1, this.threshold / 4);
    for (const rec of recs) {
      if (!rec.promote && this.threshold > 0 && rec.compiles < MAX_PAGE_COMPILES) this.addWarm(rec, warm);
    }
    this.pendingBlocks = 0;
    const fns: PageFn[] = [];
    recs.forEach((rec, r) => {
      // Functions for the page: its hot region in one (a promotion), then what is new.
      const parts: Plan[][] = [];
      const split = (plans: Plan[], per: number): void => {
        plans.sort((a, b) => a.off - b.off);
        for (let i = 0; i < plans.length; i += per) parts.push(plans.slice(i, i + per));
      };
      for (const p of rec.fresh) rec.heads.set(p.off, p);
      const hot = rec.promote ? this.hotRegion(rec) : [];
      rec.queued = false;
      if (hot.length > 0) {
        split(hot, MAX_HOT_FN_BLOCKS);
        const inHot = new Set(hot);
        split(rec.fresh.filter((p) => !inHot.has(p)), MAX_FN_BLOCKS);
        rec.fns = parts.length;
      } else {
        const whole = rec.compiles < MAX_PAGE_COMPILES;
        split(whole ? [...rec.heads.values()] : rec.fresh, MAX_FN_BLOCKS);
        rec.fns = whole ? parts.length : rec.fns + parts.length;
      }
      rec.fresh = [];
      rec.compiles++;
      rec.promote = false;
      // (The page's functions in this module: a direct transfer between them is a tail call.)
      for (const part of parts) fns.push({ page: r, va: rec.va, blocks: part });
    });
    let count = 0;
    for (const f of fns) for (const p of f.blocks) count += p.insns.length;
    this.live += count;
    const first = this.nextFn;
    const need = first + fns.length;
    if (need > this.table.length) this.table.grow(Math.max(need - this.table.length, this.table.length));
    this.nextFn = need;
    this.stats.compiles++;
    const { bytes, siblingCalls } = encodeModule(fns, { stateBase: this.stateBase, ibcBase: this.ibcBase, execIndex: this.execIndex, names: this.names });
    let module: WebAssembly.Module | null = null;
    try {
      module = new WebAssembly.Module(bytes);
    } catch { /* counted by install */ }
    this.stats.siblingCalls += siblingCalls;
    this.install({ first, fns, instructions: count }, module);
    this.stats.compileMs += performance.now() - t0;
  }

  /** Instantiate a compiled module and give its functions to their heads. */
  private install(job: Compiled, module: WebAssembly.Module | null): void {
    let inst: WebAssembly.Instance | null = null;
    try {
      if (module !== null) inst = new WebAssembly.Instance(module, this.imports);
    } catch { /* as below */ }
    if (inst === null) {
      this.stats.failures++; // (a translator bug: the code stays interpreted)
      return;
    }
    const replaced = new Set<number>();
    job.fns.forEach(({ blocks }, i) => {
      this.table.set(job.first + i, inst.exports[`p${i}`] as BlockFn);
      for (const p of blocks) {
        if (p.head.blockIdx >= 0) replaced.add(p.head.blockIdx);
        p.head.blockIdx = job.first + i;
        p.head.blockLen = p.insns.length;
        p.head.hits = 0; // now counts dispatcher entries (hot())
      }
      this.stats.blocks += blocks.length;
    });
    this.stats.functions += job.fns.length;
    this.stats.instructions += job.instructions;
    if (replaced.size > 0) this.onReplace(replaced);
  }
}
