/**
 * The RISC-V Linux `Image` header (Linux Documentation/riscv/boot-image-header.rst):
 * 64 bytes at the start of the Image with the load offset, image size and the magics
 * "RISCV\0\0\0" (offset 48, deprecated) and "RSC\x05" (offset 56).
 */
export interface LinuxImageHeader {
  /** Offset from the start of RAM (2 MiB aligned) where the Image expects to be loaded. */
  textOffset: number;
  /** Effective image size in memory (including bss); 0 if the header predates the field. */
  imageSize: number;
  version: number;
}

const MAGIC1 = 0x4353_4952; // "RISC" little-endian at 48, then "V\0\0\0"
const MAGIC2 = 0x0543_5352; // "RSC\x05" at 56

export function parseLinuxImage(bytes: Uint8Array): LinuxImageHeader | null {
  if (bytes.length < 64) return null;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const m2 = dv.getUint32(56, true);
  const m1 = dv.getUint32(48, true) === MAGIC1 && dv.getUint32(52, true) === 0x56;
  if (m2 !== MAGIC2 && !m1) return null;
  return {
    textOffset: Number(dv.getBigUint64(8, true)),
    imageSize: Number(dv.getBigUint64(16, true)),
    version: dv.getUint32(32, true),
  };
}
