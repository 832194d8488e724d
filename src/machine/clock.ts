import type { TimeSource } from '../devices/device.js';

/** The board's timebase: 10 MHz, as QEMU virt's `timebase-frequency`. */
export const TIMEBASE_HZ = 10_000_000;
const TICKS_PER_MS = TIMEBASE_HZ / 1000;
const NS_PER_TICK = 1e9 / TIMEBASE_HZ;
/** Largest QEMU-style icount shift accepted (2^10 ns = about 1 µs per instruction). */
export const MAX_ICOUNT_SHIFT = 10;

/**
 * How guest time advances:
 * - 'host' (the default, as QEMU without -icount): guest time follows the host's monotonic
 *   clock, so `sleep 1` takes a second of wall time whatever the emulation speed.
 * - 'virtual' (QEMU's `-icount shift=N`): each retired instruction takes 2^N ns of guest
 *   time and nothing else moves the clock, except that a hart sleeping in WFI jumps it to
 *   the next deadline. Runs are then deterministic and independent of host load.
 */
export type ClockMode = { kind: 'host' } | { kind: 'virtual'; shift: number };

/** Saved clock: guest ticks at save time (the source of time is configuration, not state). */
export interface ClockState { v: 1; ticks: number }

/**
 * Guest time (mtime). The `time` CSR, the CLINT's mtime and Sstc all read this one clock
 * (Zicntr requires time to mirror mtime). Writes to mtime move an offset, so time stays
 * monotonic per write as on hardware.
 */
export class GuestClock implements TimeSource {
  private readonly mono: () => number;
  private readonly origin: number;
  private offset = 0;
  readonly mode: ClockMode;
  /** Guest ticks per retired instruction (virtual mode). */
  private readonly ticksPerInsn: number;
  private instructions: () => number = () => 0;
  /** While paused, now() is frozen at this value (host mode; snapshots). */
  private pausedAt: number | null = null;

  constructor(monoClockMs: () => number, mode: ClockMode = { kind: 'host' }) {
    if (mode.kind === 'virtual' && !(Number.isInteger(mode.shift) && mode.shift >= 0 && mode.shift <= MAX_ICOUNT_SHIFT)) {
      throw new Error(`icount shift must be an integer 0..${MAX_ICOUNT_SHIFT}, got ${mode.shift}`);
    }
    this.mono = monoClockMs;
    this.mode = mode;
    this.ticksPerInsn = mode.kind === 'virtual' ? 2 ** mode.shift / NS_PER_TICK : 0;
    this.origin = mode.kind === 'host' ? monoClockMs() : 0;
  }

  get virtual(): boolean { return this.mode.kind === 'virtual'; }

  /** Virtual mode: the retired-instruction counter that drives time (the hart's icount). */
  countInstructions(counter: () => number): void { this.instructions = counter; }

  private raw(): number {
    if (this.pausedAt !== null) return this.pausedAt;
    return this.mode.kind === 'host'
      ? Math.floor((this.mono() - this.origin) * TICKS_PER_MS)
      : Math.floor(this.instructions() * this.ticksPerInsn);
  }

  now(): number {
    return this.raw() + this.offset;
  }

  /** mtime write: from now on, now() continues from `ticks`. */
  set(ticks: number): void {
    this.offset += ticks - this.now();
  }

  /** Virtual mode, hart asleep in WFI: skip guest time forward to `ticks` (never back). */
  advanceTo(ticks: number): void {
    const d = ticks - this.now();
    if (d > 0 && Number.isFinite(d)) this.offset += d;
  }

  /**
   * Virtual mode: instructions to retire before now() reaches `ticks` (0 if already there),
   * so the run loop can stop exactly at a deadline whatever its slicing (deterministic runs).
   */
  instructionsUntil(ticks: number): number {
    if (this.mode.kind !== 'virtual' || !Number.isFinite(ticks)) return Infinity;
    const i0 = this.instructions();
    const at = (k: number): number => Math.floor(k * this.ticksPerInsn) + this.offset;
    if (this.pausedAt !== null || at(i0) >= ticks) return 0;
    let k = Math.ceil((ticks - this.offset) / this.ticksPerInsn);
    // Far deadlines (a guest may set stimecmp near 2^64): no exact count needed, and past
    // 2^53 k++ would not even change k.
    if (!(k - i0 < 2 ** 40)) return 2 ** 40;
    while (k > i0 && at(k - 1) >= ticks) k--;
    while (at(k) < ticks) k++;
    return k - i0;
  }

  /** Host milliseconds until guest time reaches `ticks` (0 if already past). */
  msUntil(ticks: number): number {
    const d = ticks - this.now();
    return d <= 0 ? 0 : d / TICKS_PER_MS;
  }

  /** Stop guest time (host mode: while a machine is paused or saved). */
  pause(): void { if (this.pausedAt === null) this.pausedAt = this.raw(); }

  /** Continue from where pause() stopped. */
  resume(): void {
    if (this.pausedAt === null) return;
    const frozen = this.pausedAt;
    this.pausedAt = null;
    this.offset += frozen - this.raw();
  }

  save(): ClockState { return { v: 1, ticks: this.now() }; }

  /** Continue from the saved tick count (the instruction counter must already be loaded). */
  load(s: ClockState): void {
    if (s.v !== 1 || !Number.isFinite(s.ticks)) throw new Error(`clock state: unsupported version or malformed (${JSON.stringify(s)})`);
    this.set(s.ticks);
  }
}
