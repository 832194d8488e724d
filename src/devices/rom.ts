/** Mask ROM (QEMU virt `riscv_virt_board.mrom` at 0x1000): the reset vector lives here. Read-only. */
import type { MmioDevice } from './device.js';

export class Rom implements MmioDevice {
  readonly name = 'mrom';
  private readonly bytes: Uint8Array;
  private readonly dv: DataView;

  constructor(size: number) {
    this.bytes = new Uint8Array(size);
    this.dv = new DataView(this.bytes.buffer);
  }

  /** Host-side: place contents at the start of the ROM. */
  load(data: Uint8Array, offset = 0): void {
    if (offset < 0 || offset + data.length > this.bytes.length) throw new Error(`boot ROM overflow: ${data.length} bytes at offset ${offset}`);
    this.bytes.set(data, offset);
  }

  read(offset: number, size: 1 | 2 | 4): number {
    if (offset + size > this.bytes.length) return 0;
    return size === 1 ? this.bytes[offset] : size === 2 ? this.dv.getUint16(offset, true) : this.dv.getUint32(offset, true);
  }

  write(): void { /* ROM: writes are ignored */ }
}
