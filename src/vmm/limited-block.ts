/**
 * A BlockBackend whose requests pass a RateLimiter first (Firecracker's per-drive
 * rate_limiter). Reads and writes cost their length in bandwidth tokens and one op;
 * flush, discard and write-zeroes cost one op and no bandwidth. The guest sees only
 * slower completions: the vCPU never waits.
 */
import type { BlockBackend } from '../devices/device.js';
import type { RateLimiter } from './rate-limiter.js';

export class RateLimitedBlock implements BlockBackend {
  constructor(private readonly inner: BlockBackend, readonly limiter: RateLimiter) {}

  get sizeBytes(): number { return this.inner.sizeBytes; }
  get readOnly(): boolean { return this.inner.readOnly; }
  get serial(): string { return this.inner.serial; }

  read(offset: number, dst: Uint8Array): Promise<void> {
    return this.admit(dst.length, () => this.inner.read(offset, dst));
  }

  write(offset: number, src: Uint8Array): Promise<void> {
    return this.admit(src.length, () => this.inner.write(offset, src));
  }

  flush(): Promise<void> {
    return this.admit(0, () => this.inner.flush());
  }

  discard(offset: number, length: number): Promise<void> {
    return this.admit(0, () => this.inner.discard(offset, length));
  }

  writeZeroes(offset: number, length: number, mayUnmap: boolean): Promise<void> {
    return this.admit(0, () => this.inner.writeZeroes(offset, length, mayUnmap));
  }

  /**
   * Start `io` now if the buckets admit it, else once they do. (Not `await acquire()`: an
   * await defers the host I/O to the microtask queue, which the machine runs only when its
   * run loop yields, after the guest went on for thousands of instructions.)
   */
  private admit(bytes: number, io: () => Promise<void>): Promise<void> {
    if (this.limiter.tryConsume(bytes)) return io();
    return this.limiter.acquire(bytes).then(io);
  }

  close(): Promise<void> {
    this.limiter.close();
    return this.inner.close();
  }
}
