/**
 * The contract between the bus and a memory-mapped device.
 *
 * Offsets are relative to the device's base. `size` is 1, 2 or 4; the bus splits an
 * 8-byte access into two 4-byte accesses, low word first, so devices with 64-bit
 * registers (CLINT mtime/mtimecmp) see both halves. Values are returned as numbers;
 * the bus masks them to the access size. A device must never throw on guest input:
 * unknown offsets read as zero and ignore writes.
 */
export interface MmioDevice {
  readonly name: string;
  read(offset: number, size: 1 | 2 | 4): number;
  write(offset: number, size: 1 | 2 | 4, value: number): void;
}

/** A level-triggered interrupt line, as wired from a device to the PLIC. */
export interface IrqLine {
  set(level: boolean): void;
}

/** Something that happens in guest time: devices ask the machine to call them back. */
export interface TimeSource {
  /** Current guest time in ticks of the 10 MHz timebase (mtime). */
  now(): number;
}

/** Where the guest console's bytes go (a terminal, a test buffer, a WebSocket). */
export interface SerialBackend {
  write(data: Uint8Array): void;
}
