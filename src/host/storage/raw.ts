/** A raw disk image: the file's bytes are the disk's bytes. */
import type { BlockBackend } from '../../devices/device.js';
import { DiskError, type HostFile } from './file.js';

export function checkRange(name: string, sizeBytes: number, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > sizeBytes) {
    throw new DiskError(`'${name}': request [${offset}, +${length}) outside the disk (${sizeBytes} bytes)`);
  }
}

const ZERO_CHUNK = 1 << 20;

export class RawDisk implements BlockBackend {
  readonly serial = '';
  private zeros: Uint8Array | null = null;
  private constructor(private readonly f: HostFile, readonly sizeBytes: number, readonly readOnly: boolean,
    private readonly syncEachWrite: boolean, private readonly probed: boolean) {}

  /**
   * `probed`: the format was guessed, not given. Then, as QEMU does, the guest may not write a
   * qcow2 magic into the first bytes: the next probe would read its header (and its backing
   * file name, any host file) instead of the guest's data.
   */
  static async open(f: HostFile, readOnly: boolean, syncEachWrite = false, probed = false): Promise<RawDisk> {
    const size = await f.size();
    // The guest sees whole sectors; a tail shorter than 512 bytes is not addressable.
    return new RawDisk(f, Math.floor(size / 512) * 512, readOnly, syncEachWrite, probed);
  }

  async read(offset: number, dst: Uint8Array): Promise<void> {
    checkRange(this.f.name, this.sizeBytes, offset, dst.length);
    let done = 0;
    while (done < dst.length) {
      const n = await this.f.pread(dst.subarray(done), offset + done);
      if (n <= 0) { dst.fill(0, done); break; }
      done += n;
    }
  }
  async write(offset: number, src: Uint8Array): Promise<void> {
    this.writable();
    checkRange(this.f.name, this.sizeBytes, offset, src.length);
    if (this.probed && offset === 0 && src.length >= 4 && src[0] === 0x51 && src[1] === 0x46 && src[2] === 0x49 && src[3] === 0xfb) {
      throw new DiskError(`'${this.f.name}': refusing a write that would make this raw image (format probed) look like qcow2; give format=raw explicitly`);
    }
    await this.f.pwrite(src, offset);
    if (this.syncEachWrite) await this.f.sync();
  }
  async flush(): Promise<void> { if (!this.readOnly) await this.f.sync(); }
  async discard(offset: number, length: number): Promise<void> {
    this.writable();
    checkRange(this.f.name, this.sizeBytes, offset, length);
  }
  async writeZeroes(offset: number, length: number): Promise<void> {
    this.writable();
    checkRange(this.f.name, this.sizeBytes, offset, length);
    this.zeros ??= new Uint8Array(ZERO_CHUNK);
    for (let done = 0; done < length;) {
      const n = Math.min(ZERO_CHUNK, length - done);
      await this.f.pwrite(this.zeros.subarray(0, n), offset + done);
      done += n;
    }
    if (this.syncEachWrite) await this.f.sync();
  }
  async close(): Promise<void> { await this.f.close(); }
  private writable(): void {
    if (this.readOnly) throw new DiskError(`'${this.f.name}': the disk is read-only`);
  }
}
