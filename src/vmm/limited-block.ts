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

  async read(offset: number, dst: Uint8Array): Promise<void> {
    await this.limiter.acquire(dst.length);
    return this.inner.read(offset, dst);
  }

  async write(offset: number, src: Uint8Array): Promise<void> {
    await this.limiter.acquire(src.length);
    return this.inner.write(offset, src);
  }

  async flush(): Promise<void> {
    await this.limiter.acquire(0);
    return this.inner.flush();
  }

  async discard(offset: number, length: number): Promise<void> {
    await this.limiter.acquire(0);
    return this.inner.discard(offset, length);
  }

  async writeZeroes(offset: number, length: number, mayUnmap: boolean): Promise<void> {
    await this.limiter.acquire(0);
    return this.inner.writeZeroes(offset, length, mayUnmap);
  }

  close(): Promise<void> {
    this.limiter.close();
    return this.inner.close();
  }
}
