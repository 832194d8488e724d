/**
 * An empty virtio-mmio transport slot (Virtio 1.2 §4.2.2 "MMIO Device Register Layout").
 * QEMU virt has eight at 0x1000_1000..0x1000_8000. With no device attached, a slot
 * answers with the magic value, version 2 and DeviceID 0 ("no device", §4.2.3.1.1), which
 * drivers skip. Devices (block, net, console) will attach to these slots later.
 */
import type { MmioDevice } from './device.js';

export const VIRTIO_MMIO_SIZE = 0x1000;
const MAGIC_VALUE = 0x000, VERSION = 0x004, DEVICE_ID = 0x008, VENDOR_ID = 0x00c;
/** "virt" in little-endian ASCII. */
const VIRTIO_MAGIC = 0x74726976;
const VENDOR = 0x554d4551;

export class VirtioMmioSlot implements MmioDevice {
  readonly name: string;
  constructor(index: number) { this.name = `virtio_mmio${index}`; }

  read(offset: number, size: 1 | 2 | 4): number {
    if (size !== 4) return 0;
    switch (offset) {
      case MAGIC_VALUE: return VIRTIO_MAGIC;
      case VERSION: return 2;
      case DEVICE_ID: return 0;
      case VENDOR_ID: return VENDOR;
      default: return 0;
    }
  }

  write(): void { /* no device: writes are ignored */ }
}
