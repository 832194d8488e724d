/**
 * Platform-Level Interrupt Controller at 0x0c00_0000 (RISC-V PLIC specification 1.0.0):
 * 96 interrupt sources (IDs 1..96; 0 means "none"), as QEMU virt's `riscv,ndev = 96`, 3-bit priorities, two contexts for the
 * single hart — context 0 is M-mode (drives mip.MEIP), context 1 is S-mode (mip.SEIP).
 * Gateways are level-triggered: a source is pending while its line is high and it is not
 * claimed; completing re-arms it.
 */
import type { MmioDevice, IrqLine, Stateful } from './device.js';
import { IRQ } from '../cpu/csr.js';

export const PLIC_SIZE = 0x60_0000;
/** Interrupt IDs including the reserved 0. */
export const PLIC_SOURCES = 97;
const CONTEXTS = 2;
const WORDS = Math.ceil(PLIC_SOURCES / 32);
const PRIORITY_MASK = 7;
const PENDING_BASE = 0x1000, ENABLE_BASE = 0x2000, ENABLE_STRIDE = 0x80;
const CONTEXT_BASE = 0x20_0000, CONTEXT_STRIDE = 0x1000;

export interface PlicHart {
  setIrqLine(bit: number, level: boolean): void;
}

export interface PlicState {
  v: 1; priority: number[]; level: number[]; pending: number[]; claimed: number[]; enable: number[];
  threshold: number[]; ctxLevel: boolean[];
}

export class Plic implements MmioDevice, Stateful<PlicState> {
  readonly name = 'plic';
  private readonly priority = new Uint8Array(PLIC_SOURCES);
  private readonly level = new Uint32Array(WORDS);
  private readonly pending = new Uint32Array(WORDS);
  private readonly claimed = new Uint32Array(WORDS);
  private readonly enable = new Uint32Array(WORDS * CONTEXTS);
  private readonly threshold = new Uint8Array(CONTEXTS);
  private readonly ctxIrq = [IRQ.MEI, IRQ.SEI];
  private readonly ctxLevel = [false, false];
  private readonly lines: IrqLine[] = [];

  constructor(private readonly hart: PlicHart) {
    for (let i = 0; i < PLIC_SOURCES; i++) {
      const n = i;
      this.lines.push({ set: (level: boolean) => this.setLevel(n, level) });
    }
  }

  save(): PlicState {
    return {
      v: 1, priority: [...this.priority], level: [...this.level], pending: [...this.pending], claimed: [...this.claimed],
      enable: [...this.enable], threshold: [...this.threshold], ctxLevel: [...this.ctxLevel],
    };
  }

  load(s: PlicState): void {
    const ok = (a: unknown, n: number): boolean => Array.isArray(a) && a.length === n && a.every((x) => Number.isInteger(x));
    if (s?.v !== 1 || !ok(s.priority, PLIC_SOURCES) || !ok(s.level, WORDS) || !ok(s.pending, WORDS) || !ok(s.claimed, WORDS) ||
      !ok(s.enable, WORDS * CONTEXTS) || !ok(s.threshold, CONTEXTS) || !Array.isArray(s.ctxLevel) || s.ctxLevel.length !== CONTEXTS) {
      throw new Error('plic state: unsupported version or malformed');
    }
    this.priority.set(s.priority.map((p) => p & PRIORITY_MASK)); this.level.set(s.level); this.pending.set(s.pending);
    this.claimed.set(s.claimed); this.enable.set(s.enable); this.threshold.set(s.threshold.map((t) => t & PRIORITY_MASK));
    for (let c = 0; c < CONTEXTS; c++) this.ctxLevel[c] = s.ctxLevel[c] === true;
  }

  /** The interrupt line for source n (1..96). */
  line(n: number): IrqLine {
    if (n <= 0 || n >= PLIC_SOURCES) throw new Error(`PLIC source ${n} out of range`);
    return this.lines[n];
  }

  private setLevel(n: number, high: boolean): void {
    const w = n >>> 5, b = 1 << (n & 31);
    if (high) {
      this.level[w] |= b;
      if ((this.claimed[w] & b) === 0) this.pending[w] |= b;
    } else {
      this.level[w] &= ~b;
      this.pending[w] &= ~b;
    }
    this.update();
  }

  /** Highest-priority pending, enabled source above the context's threshold (ties: lowest id). */
  private best(ctx: number): number {
    let id = 0, prio = this.threshold[ctx];
    for (let w = 0; w < WORDS; w++) {
      let m = this.pending[w] & this.enable[ctx * WORDS + w];
      while (m !== 0) {
        const bit = 31 - Math.clz32(m & -m);
        m &= m - 1;
        const n = w * 32 + bit;
        if (this.priority[n] > prio) { prio = this.priority[n]; id = n; }
      }
    }
    return id;
  }

  private update(): void {
    for (let c = 0; c < CONTEXTS; c++) {
      const lv = this.best(c) !== 0;
      if (lv !== this.ctxLevel[c]) {
        this.ctxLevel[c] = lv;
        this.hart.setIrqLine(this.ctxIrq[c], lv);
      }
    }
  }

  private claim(ctx: number): number {
    const id = this.best(ctx);
    if (id !== 0) {
      const w = id >>> 5, b = 1 << (id & 31);
      this.pending[w] &= ~b;
      this.claimed[w] |= b;
      this.update();
    }
    return id;
  }

  private complete(ctx: number, id: number): void {
    if (id <= 0 || id >= PLIC_SOURCES) return;
    const w = id >>> 5, b = 1 << (id & 31);
    // Completion for a source not enabled for this context is ignored (PLIC spec §9).
    if ((this.enable[ctx * WORDS + w] & b) === 0) return;
    this.claimed[w] &= ~b;
    if ((this.level[w] & b) !== 0) this.pending[w] |= b;
    this.update();
  }

  read(offset: number, size: 1 | 2 | 4): number {
    if (size !== 4 || (offset & 3) !== 0) return 0;
    if (offset < PENDING_BASE) {
      const n = offset >>> 2;
      return n < PLIC_SOURCES ? this.priority[n] : 0;
    }
    if (offset < ENABLE_BASE) {
      const w = (offset - PENDING_BASE) >>> 2;
      return w < WORDS ? this.pending[w] : 0;
    }
    if (offset < CONTEXT_BASE) {
      const ctx = Math.floor((offset - ENABLE_BASE) / ENABLE_STRIDE);
      const w = ((offset - ENABLE_BASE) % ENABLE_STRIDE) >>> 2;
      return ctx < CONTEXTS && w < WORDS ? this.enable[ctx * WORDS + w] : 0;
    }
    const ctx = Math.floor((offset - CONTEXT_BASE) / CONTEXT_STRIDE);
    const reg = (offset - CONTEXT_BASE) % CONTEXT_STRIDE;
    if (ctx >= CONTEXTS) return 0;
    if (reg === 0) return this.threshold[ctx];
    if (reg === 4) return this.claim(ctx);
    return 0;
  }

  write(offset: number, size: 1 | 2 | 4, value: number): void {
    if (size !== 4 || (offset & 3) !== 0) return;
    if (offset < PENDING_BASE) {
      const n = offset >>> 2;
      if (n > 0 && n < PLIC_SOURCES) { this.priority[n] = value & PRIORITY_MASK; this.update(); }
      return;
    }
    if (offset < ENABLE_BASE) return; // pending bits are read-only
    if (offset < CONTEXT_BASE) {
      const ctx = Math.floor((offset - ENABLE_BASE) / ENABLE_STRIDE);
      const w = ((offset - ENABLE_BASE) % ENABLE_STRIDE) >>> 2;
      if (ctx < CONTEXTS && w < WORDS) {
        this.enable[ctx * WORDS + w] = w === 0 ? value & ~1 : value; // source 0 does not exist
        this.update();
      }
      return;
    }
    const ctx = Math.floor((offset - CONTEXT_BASE) / CONTEXT_STRIDE);
    const reg = (offset - CONTEXT_BASE) % CONTEXT_STRIDE;
    if (ctx >= CONTEXTS) return;
    if (reg === 0) { this.threshold[ctx] = value & PRIORITY_MASK; this.update(); }
    else if (reg === 4) this.complete(ctx, value >>> 0);
  }
}
