/**
 * Boot setup: where firmware, kernel, initrd and device tree go in RAM, the reset vector
 * in the boot ROM, and the three boot paths:
 *  - firmware (`bios`: OpenSBI fw_dynamic/fw_jump, U-Boot via OpenSBI, or any bare-metal
 *    ELF/raw program): the hart starts in M-mode at the reset vector, which passes
 *    a0 = mhartid, a1 = DTB address, a2 = the fw_dynamic info block (OpenSBI
 *    docs/firmware/fw_dynamic.md) and jumps to the firmware;
 *  - `bios: 'none'`: the kernel itself is started in M-mode the same way;
 *  - built-in SBI (`bios: null`): typevisor is the firmware; the hart enters the kernel in
 *    S-mode with a0 = hartid, a1 = DTB, as OpenSBI would leave it (Linux
 *    Documentation/riscv/boot.rst).
 * Placement follows QEMU's virt: kernel 2 MiB-aligned after the firmware, initrd in the
 * middle of RAM (at most 128 MiB in), DTB at the top 2 MiB-aligned.
 */
import type { Hart } from '../cpu/hart.js';
import type { Decoded } from '../cpu/isa/types.js';
import { CSR, PRIV_S } from '../cpu/csr.js';
import { VIRT, type VirtBoard } from './virt.js';
import { isElf, parseElf } from './elf.js';
import { parseLinuxImage } from './linux_image.js';
import { BuiltinSbi } from '../firmware/sbi.js';

export interface BootOptions {
  bios: Uint8Array | 'none' | null;
  kernel: Uint8Array | null;
  initrd: Uint8Array | null;
  append: string;
  /** Raw images placed at physical addresses before boot (QEMU's `-device loader,file=,addr=`). */
  images?: readonly RawImage[];
  /** /chosen/rng-seed for the device tree (none if absent). */
  rngSeed?: Uint8Array;
  onShutdown(code: number): void;
  onReset(): void;
}

export interface RawImage {
  /** For error messages (usually the file name). */
  name: string;
  address: number;
  data: Uint8Array;
}

export interface BootLayout {
  /** 'firmware' (M-mode firmware from bios), 'none' (kernel in M-mode), 'builtin' (built-in SBI). */
  mode: 'firmware' | 'none' | 'builtin';
  entry: number;
  kernelStart?: number;
  kernelEnd?: number;
  initrdStart?: number;
  initrdEnd?: number;
  dtbAddr: number;
  dtb: Uint8Array;
}

/** A clear error about the boot configuration (bad image, does not fit in RAM). */
export class BootError extends Error {
  constructor(message: string) { super(message); this.name = 'BootError'; }
}

const MiB = 1 << 20;
const KERNEL_ALIGN = 2 * MiB;
const FW_DYNAMIC_MAGIC = 0x4942534f; // "OSBI"
const FW_DYNAMIC_VERSION = 2;
const NEXT_MODE_S = 1;
/** Offsets in the boot ROM. */
const ROM_START_ADDR = 0x20, ROM_DTB_ADDR = 0x28, ROM_FW_DYNAMIC = 0x30, ROM_M_TRAP = 0x800;

const HOST = { raw: 0, len: 4, imm: 0 } as unknown as Decoded;

function alignUp(n: number, a: number): number { return Math.ceil(n / a) * a; }
function alignDown(n: number, a: number): number { return Math.floor(n / a) * a; }

/** Place an ELF's segments; returns [entry, end]. */
function loadElf(board: VirtBoard, bytes: Uint8Array, what: string): [number, number] {
  const img = parseElf(bytes);
  let end = 0;
  for (const s of img.segments) {
    if (board.bus.ramOffset(s.paddr, s.memsz) < 0) {
      throw new BootError(`${what}: ELF segment at 0x${s.paddr.toString(16)} (${s.memsz} bytes) is outside RAM ` +
        `0x${VIRT.DRAM_BASE.toString(16)}..0x${(VIRT.DRAM_BASE + board.memoryBytes).toString(16)}`);
    }
    board.bus.writeBytes(s.paddr, s.data);
    if (s.memsz > s.data.length) board.bus.writeBytes(s.paddr + s.data.length, new Uint8Array(s.memsz - s.data.length));
    end = Math.max(end, s.paddr + s.memsz);
  }
  return [img.entry, end];
}

function place(board: VirtBoard, addr: number, data: Uint8Array, what: string): void {
  if (board.bus.ramOffset(addr, data.length) < 0) {
    throw new BootError(`${what} (${data.length} bytes) does not fit in RAM at 0x${addr.toString(16)} ` +
      `with ${board.memoryBytes / MiB} MiB of memory; give the machine more memory (-m)`);
  }
  board.bus.writeBytes(addr, data);
}

/** Load a kernel (ELF, Linux Image, or raw) at or after `minAddr`; returns [entry, start, end]. */
function loadKernel(board: VirtBoard, kernel: Uint8Array, minAddr: number): [number, number, number] {
  if (isElf(kernel)) {
    const [entry, end] = loadElf(board, kernel, 'kernel');
    return [entry, entry, end];
  }
  const hdr = parseLinuxImage(kernel);
  const start = alignUp(minAddr, KERNEL_ALIGN);
  place(board, start, kernel, 'kernel');
  const size = hdr && hdr.imageSize > kernel.length ? hdr.imageSize : kernel.length;
  return [start, start, start + size];
}

/** The boot ROM: reset vector, its data words, and an M-mode trap stop for built-in SBI mode. */
function writeRom(board: VirtBoard, start: number, dtb: number, nextAddr: number): void {
  const rom = new Uint8Array(0x808);
  const dv = new DataView(rom.buffer);
  const insns = [
    0x00000297,                                          // auipc t0, 0
    (ROM_FW_DYNAMIC << 20) | (5 << 15) | (12 << 7) | 0x13, // addi  a2, t0, fw_dynamic_info
    (CSR.mhartid << 20) | (2 << 12) | (10 << 7) | 0x73,  // csrr  a0, mhartid
    (ROM_DTB_ADDR << 20) | (5 << 15) | (3 << 12) | (11 << 7) | 0x03, // ld a1, dtb(t0)
    (ROM_START_ADDR << 20) | (5 << 15) | (3 << 12) | (5 << 7) | 0x03, // ld t0, start(t0)
    (5 << 15) | 0x67,                                    // jr    t0
  ];
  insns.forEach((w, i) => dv.setUint32(i * 4, w >>> 0, true));
  dv.setBigUint64(ROM_START_ADDR, BigInt(start), true);
  dv.setBigUint64(ROM_DTB_ADDR, BigInt(dtb), true);
  const info = [FW_DYNAMIC_MAGIC, FW_DYNAMIC_VERSION, nextAddr, NEXT_MODE_S, 0, 0];
  info.forEach((v, i) => dv.setBigUint64(ROM_FW_DYNAMIC + i * 8, BigInt(v), true));
  dv.setUint32(ROM_M_TRAP, 0x0000006f, true); // j . (built-in SBI mode: an unexpected M-mode trap parks here)
  board.mrom.program(rom);
}

export function setupBoot(board: VirtBoard, hart: Hart, opts: BootOptions): BootLayout {
  const ramEnd = VIRT.DRAM_BASE + board.memoryBytes;
  let mode: BootLayout['mode'];
  let entry: number;
  let firmwareEnd: number = VIRT.DRAM_BASE;

  if (opts.bios instanceof Uint8Array) {
    mode = 'firmware';
    if (opts.bios.length === 0) throw new BootError('firmware image is empty');
    if (isElf(opts.bios)) {
      [entry, firmwareEnd] = loadElf(board, opts.bios, 'firmware');
    } else {
      place(board, VIRT.DRAM_BASE, opts.bios, 'firmware');
      entry = VIRT.DRAM_BASE;
      firmwareEnd = VIRT.DRAM_BASE + opts.bios.length;
    }
  } else if (opts.bios === 'none') {
    mode = 'none';
    if (!opts.kernel) throw new BootError('with no firmware (bios none) a kernel is required');
    entry = VIRT.DRAM_BASE;
  } else {
    mode = 'builtin';
    if (!opts.kernel) throw new BootError('no kernel to boot: give a kernel (the built-in SBI boots a kernel in S-mode) or a firmware');
    entry = VIRT.DRAM_BASE;
  }

  let kernelStart: number | undefined, kernelEnd: number | undefined;
  if (opts.kernel) {
    if (opts.kernel.length === 0) throw new BootError('kernel image is empty');
    const minAddr = mode === 'none' ? VIRT.DRAM_BASE : Math.max(firmwareEnd, VIRT.DRAM_BASE + KERNEL_ALIGN);
    let kentry: number;
    [kentry, kernelStart, kernelEnd] = loadKernel(board, opts.kernel, minAddr);
    if (mode !== 'firmware') entry = kentry;
  }

  // DTB at the top of RAM (below 3 GiB, where 32-bit firmware can reach it), 2 MiB aligned.
  let dtb = board.buildDtb({ bootargs: opts.append, rngSeed: opts.rngSeed });
  const dtbSlot = alignDown(Math.min(ramEnd, 0xc000_0000) - alignUp(dtb.length + 0x1000, 8), 2 * MiB);

  let initrdStart: number | undefined, initrdEnd: number | undefined;
  if (opts.initrd) {
    const base = kernelEnd ?? firmwareEnd;
    initrdStart = alignUp(Math.max(VIRT.DRAM_BASE + Math.min(board.memoryBytes / 2, 128 * MiB), base), 4096);
    initrdEnd = initrdStart + opts.initrd.length;
    if (initrdEnd > dtbSlot) {
      throw new BootError(`initrd (${opts.initrd.length} bytes) does not fit in ${board.memoryBytes / MiB} MiB of RAM after the kernel; give the machine more memory (-m)`);
    }
    place(board, initrdStart, opts.initrd, 'initrd');
    dtb = board.buildDtb({ bootargs: opts.append, initrdStart, initrdEnd, rngSeed: opts.rngSeed });
  }
  const dtbAddr = dtbSlot;
  if (kernelEnd !== undefined && dtbAddr < kernelEnd) throw new BootError(`kernel does not leave room for the device tree in ${board.memoryBytes / MiB} MiB of RAM; give the machine more memory (-m)`);
  place(board, dtbAddr, dtb, 'device tree');

  for (const img of opts.images ?? []) {
    if (img.address >= VIRT.MROM_BASE && img.address + img.data.length <= VIRT.MROM_BASE + VIRT.MROM_SIZE) {
      throw new BootError(`${img.name}: 0x${img.address.toString(16)} is in the boot ROM; images go in RAM`);
    }
    place(board, img.address, img.data, img.name);
  }

  const nextAddr = kernelStart ?? VIRT.DRAM_BASE + KERNEL_ALIGN;
  writeRom(board, entry, dtbAddr, nextAddr);
  hart.reset(VIRT.MROM_BASE);

  if (mode === 'builtin') enterBuiltin(board, hart, entry, dtbAddr, opts);
  return { mode, entry, kernelStart, kernelEnd, initrdStart, initrdEnd, dtbAddr, dtb };
}

/** Firmware duties of the built-in SBI, then enter the kernel in S-mode. */
function enterBuiltin(board: VirtBoard, hart: Hart, entry: number, dtbAddr: number, opts: BootOptions): void {
  const w = (csr: number, v: bigint): void => hart.csrWrite(HOST, csr, v);
  w(CSR.mtvec, BigInt(VIRT.MROM_BASE + ROM_M_TRAP));
  // Delegate every exception S-mode handles (all but ecall-from-S, which the SBI takes) and the S interrupts.
  w(CSR.medeleg, 0xb1ffn);
  w(CSR.mideleg, 0x222n);
  w(CSR.mcounteren, 7n);
  w(CSR.scounteren, 7n); // as OpenSBI leaves it: user mode may read cycle, time, instret
  w(CSR.menvcfg, -0x8000_0000_0000_0000n); // STCE: S-mode owns stimecmp (Sstc)
  w(CSR.pmpaddr0, (1n << 54n) - 1n);
  w(CSR.pmpcfg0, 0x1fn); // NAPOT, RWX over all of memory
  w(CSR.mstatus, BigInt(PRIV_S << 11));
  const uart = board.uart;
  hart.sbi = new BuiltinSbi({
    bus: board.bus,
    consoleWrite: (b) => uart.emit(b),
    consoleRead: () => uart.takeInputByte(),
    shutdown: opts.onShutdown,
    reset: opts.onReset,
  });
  hart.x[10] = BigInt(hart.hartId);
  hart.x[11] = BigInt(dtbAddr);
  hart.enterPrivilege(PRIV_S, BigInt(entry));
}
