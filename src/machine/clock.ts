import type { TimeSource } from '../devices/device.js';

/** The board's timebase: 10 MHz, as QEMU virt's `timebase-frequency`. */
export const TIMEBASE_HZ = 10_000_000;
const TICKS_PER_MS = TIMEBASE_HZ / 1000;

/**
 * Guest time (mtime) derived from the host's monotonic clock. The `time` CSR, the CLINT's
 * mtime and Sstc all read this one clock (Zicntr requires time to mirror mtime).
 * Writes to mtime move an offset, so time stays monotonic per write as on hardware.
 */
export class GuestClock implements TimeSource {
  private readonly mono: () => number;
  private readonly origin: number;
  private offset = 0;

  constructor(monoClockMs: () => number) {
    this.mono = monoClockMs;
    this.origin = monoClockMs();
  }

  now(): number {
    return Math.floor((this.mono() - this.origin) * TICKS_PER_MS) + this.offset;
  }

  /** mtime write: from now on, now() continues from `ticks`. */
  set(ticks: number): void {
    this.offset += ticks - this.now();
  }

  /** Host milliseconds until guest time reaches `ticks` (0 if already past). */
  msUntil(ticks: number): number {
    const d = ticks - this.now();
    return d <= 0 ? 0 : d / TICKS_PER_MS;
  }
}
