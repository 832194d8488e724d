/** Mask ROM (QEMU virt `riscv_virt_board.mrom` at 0x1000): the reset vector lives here. Read-only. */
import type { MmioDevice, Stateful } from './device.js';

/** The contents (the reset vector and firmware-info block written at boot). */
export interface RomState { v: 1; bytes: Uint8Array }

export class Rom implements MmioDevice, Stateful<RomState> {
  readonly name = 'mrom';
  private readonly bytes: Uint8Array;
  private readonly dv: DataView;

  constructor(size: number) {
    this.bytes = new Uint8Array(size);
    this.dv = new DataView(this.bytes.buffer);
  }

  save(): RomState { return { v: 1, bytes: this.bytes.slice() }; }

  load(s: RomState): void {
    if (s?.v !== 1 || !(s.bytes instanceof Uint8Array) || s.bytes.length !== this.bytes.length) throw new Error('rom state: unsupported version or wrong size');
    this.bytes.set(s.bytes);
  }

  /** Host-side: place contents at the start of the ROM. */
  program(data: Uint8Array, offset = 0): void {
    if (offset < 0 || offset + data.length > this.bytes.length) throw new Error(`boot ROM overflow: ${data.length} bytes at offset ${offset}`);
    this.bytes.set(data, offset);
  }

  read(offset: number, size: 1 | 2 | 4): number {
    if (offset + size > this.bytes.length) return 0;
    return size === 1 ? this.bytes[offset] : size === 2 ? this.dv.getUint16(offset, true) : this.dv.getUint32(offset, true);
  }

  write(): void { /* ROM: writes are ignored */ }
}
