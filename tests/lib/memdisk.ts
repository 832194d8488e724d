/**
 * An in-memory BlockBackend for device tests: optional per-call latency, failure injection,
 * and counters of what the device asked for.
 */
import type { BlockBackend } from '../../src/devices/device.js';

export class MemDisk implements BlockBackend {
  readonly data: Uint8Array;
  readonly serial: string;
  readonly readOnly: boolean;
  flushes = 0;
  /** Writes completed (resolved) so far, and the count at each flush's start. */
  writesDone = 0;
  flushSawWrites: number[] = [];
  discards: Array<[number, number]> = [];
  zeroes: Array<[number, number, boolean]> = [];
  /** Milliseconds each write takes (to test ordering and async completion). */
  writeDelayMs = 0;
  failNext = false;
  /** Writes running now, and the most ever running at once. */
  active = 0;
  maxActive = 0;
  closed = false;

  constructor(size: number, opts: { readOnly?: boolean; serial?: string; data?: Uint8Array } = {}) {
    this.data = opts.data ?? new Uint8Array(size);
    this.readOnly = opts.readOnly ?? false;
    this.serial = opts.serial ?? 'memdisk';
  }

  get sizeBytes(): number { return this.data.length; }

  private check(offset: number, len: number): void {
    if (this.failNext) { this.failNext = false; throw new Error('injected I/O error'); }
    if (offset < 0 || offset + len > this.data.length || offset % 512 || len % 512) throw new Error(`bad range ${offset}+${len}`);
  }

  async read(offset: number, dst: Uint8Array): Promise<void> {
    await Promise.resolve();
    this.check(offset, dst.length);
    dst.set(this.data.subarray(offset, offset + dst.length));
  }

  async write(offset: number, src: Uint8Array): Promise<void> {
    this.maxActive = Math.max(this.maxActive, ++this.active);
    if (this.writeDelayMs) await new Promise((r) => setTimeout(r, this.writeDelayMs));
    else await Promise.resolve();
    this.active--;
    this.check(offset, src.length);
    this.data.set(src, offset);
    this.writesDone++;
  }

  async flush(): Promise<void> {
    this.flushSawWrites.push(this.writesDone);
    await Promise.resolve();
    this.flushes++;
  }

  async discard(offset: number, length: number): Promise<void> {
    this.check(offset, length);
    this.discards.push([offset, length]);
    this.data.fill(0, offset, offset + length);
  }

  async writeZeroes(offset: number, length: number, mayUnmap: boolean): Promise<void> {
    this.check(offset, length);
    this.zeroes.push([offset, length, mayUnmap]);
    this.data.fill(0, offset, offset + length);
  }

  async close(): Promise<void> { this.closed = true; }
}
