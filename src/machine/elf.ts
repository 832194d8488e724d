/**
 * ELF64 loader for RISC-V programs (System V gABI, "ELF-64 Object File Format" 1.5, and the
 * RISC-V ELF psABI for e_machine 243).
 *
 * Only what a loader needs: PT_LOAD segments (by physical address, as QEMU's loader does)
 * and the symbol table (HTIF finds `tohost`/`fromhost` there). Every offset and size read
 * from the file is bounds-checked: a truncated or corrupt file gives an ElfError, never a
 * host exception or an out-of-range read.
 */

export class ElfError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ElfError';
  }
}

export interface ElfSegment {
  /** Physical load address. */
  readonly paddr: number;
  /** File bytes (filesz); the rest up to memsz is zero-filled. */
  readonly data: Uint8Array;
  readonly memsz: number;
}

export interface ElfImage {
  readonly entry: number;
  readonly segments: readonly ElfSegment[];
  readonly symbols: ReadonlyMap<string, number>;
}

const EM_RISCV = 243;
const PT_LOAD = 1;
const SHT_SYMTAB = 2;

export function isElf(b: Uint8Array): boolean {
  return b.length >= 4 && b[0] === 0x7f && b[1] === 0x45 && b[2] === 0x4c && b[3] === 0x46;
}

export function parseElf(bytes: Uint8Array): ElfImage {
  if (!isElf(bytes)) throw new ElfError('not an ELF file (bad magic)');
  if (bytes.length < 64) throw new ElfError(`truncated ELF header (${bytes.length} bytes, need 64)`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes[4] !== 2) throw new ElfError('not a 64-bit ELF (EI_CLASS is not ELFCLASS64)');
  if (bytes[5] !== 1) throw new ElfError('not a little-endian ELF');
  const machine = dv.getUint16(18, true);
  if (machine !== EM_RISCV) throw new ElfError(`ELF is for machine ${machine}, not RISC-V (243)`);
  const u64 = (off: number, what: string): number => {
    if (off + 8 > bytes.length) throw new ElfError(`truncated ELF: ${what} at offset ${off} is past the end`);
    const v = dv.getBigUint64(off, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ElfError(`ELF ${what} 0x${v.toString(16)} is out of range`);
    return Number(v);
  };
  const entry = u64(24, 'e_entry');
  const phoff = u64(32, 'e_phoff');
  const shoff = u64(40, 'e_shoff');
  const phentsize = dv.getUint16(54, true);
  const phnum = dv.getUint16(56, true);
  const shentsize = dv.getUint16(58, true);
  const shnum = dv.getUint16(60, true);

  const segments: ElfSegment[] = [];
  if (phnum > 0) {
    if (phentsize < 56) throw new ElfError(`bad e_phentsize ${phentsize}`);
    if (phoff + phnum * phentsize > bytes.length) throw new ElfError('truncated ELF: program headers are past the end of the file');
  }
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (dv.getUint32(ph, true) !== PT_LOAD) continue;
    const offset = u64(ph + 8, 'p_offset');
    const paddr = u64(ph + 24, 'p_paddr');
    const filesz = u64(ph + 32, 'p_filesz');
    const memsz = u64(ph + 40, 'p_memsz');
    if (filesz > memsz) throw new ElfError(`segment ${i}: p_filesz ${filesz} exceeds p_memsz ${memsz}`);
    if (offset + filesz > bytes.length) throw new ElfError(`truncated ELF: segment ${i} data (offset ${offset}, ${filesz} bytes) is past the end of the file`);
    if (memsz === 0) continue;
    segments.push({ paddr, data: bytes.subarray(offset, offset + filesz), memsz });
  }
  if (segments.length === 0) throw new ElfError('ELF has no loadable segments');

  const symbols = new Map<string, number>();
  if (shnum > 0 && shoff !== 0 && shentsize >= 64 && shoff + shnum * shentsize <= bytes.length) {
    for (let i = 0; i < shnum; i++) {
      const sh = shoff + i * shentsize;
      if (dv.getUint32(sh + 4, true) !== SHT_SYMTAB) continue;
      const symOff = u64(sh + 24, 'sh_offset');
      const symSize = u64(sh + 32, 'sh_size');
      const link = dv.getUint32(sh + 40, true);
      if (link >= shnum || symOff + symSize > bytes.length) throw new ElfError('corrupt ELF symbol table');
      const strSh = shoff + link * shentsize;
      const strOff = u64(strSh + 24, 'sh_offset');
      const strSize = u64(strSh + 32, 'sh_size');
      if (strOff + strSize > bytes.length) throw new ElfError('corrupt ELF string table');
      for (let s = symOff; s + 24 <= symOff + symSize; s += 24) {
        const nameOff = dv.getUint32(s, true);
        if (nameOff === 0 || nameOff >= strSize) continue;
        let end = strOff + nameOff;
        while (end < strOff + strSize && bytes[end] !== 0) end++;
        const name = new TextDecoder().decode(bytes.subarray(strOff + nameOff, end));
        const value = dv.getBigUint64(s + 8, true);
        if (value <= BigInt(Number.MAX_SAFE_INTEGER) && !symbols.has(name)) symbols.set(name, Number(value));
      }
    }
  }
  return { entry, segments, symbols };
}
