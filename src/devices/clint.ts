/**
 * CLINT at 0x0200_0000: the SiFive CLINT layout that QEMU virt uses, i.e. an ACLINT MSWI
 * device (msip, RISC-V ACLINT spec §3) at +0x0 and an MTIMER device (§2) with mtimecmp
 * at +0x4000 and mtime at +0xbff8. One hart. Drives mip.MSIP and mip.MTIP.
 */
import type { MmioDevice, Stateful } from './device.js';
import type { Mmio64 } from '../machine/bus.js';
import type { GuestClock } from '../machine/clock.js';
import { IRQ } from '../cpu/csr.js';

export const CLINT_SIZE = 0x10000;
const MSIP = 0x0, MTIMECMP = 0x4000, MTIME = 0xbff8;
const TWO32 = 0x1_0000_0000;

export interface ClintHart {
  setIrqLine(bit: number, level: boolean): void;
}

export interface ClintState { v: 1; msip: number; cmpLo: number; cmpHi: number; mtip: boolean }

export class Clint implements MmioDevice, Mmio64, Stateful<ClintState> {
  readonly name = 'clint';
  private msip = 0;
  /** mtimecmp as a double: exact below 2^53, i.e. for 28 years of 10 MHz ticks; larger means never. */
  private mtimecmp = Number.MAX_VALUE;
  private cmpLo = 0xffff_ffff;
  private cmpHi = 0xffff_ffff;
  private mtip = false;

  /** `onDeadlineChange`: mtimecmp or mtime was written, so the machine's next timer deadline moved. */
  constructor(private readonly hart: ClintHart, private readonly clock: GuestClock, private readonly onDeadlineChange: () => void = () => {}) {}

  read(offset: number, size: 1 | 2 | 4): number {
    if (size !== 4) return 0;
    switch (offset) {
      case MSIP: return this.msip;
      case MTIMECMP: return this.cmpLo;
      case MTIMECMP + 4: return this.cmpHi;
      case MTIME: return this.clock.now() % TWO32;
      case MTIME + 4: return Math.floor(this.clock.now() / TWO32);
      default: return 0;
    }
  }

  write(offset: number, size: 1 | 2 | 4, value: number): void {
    if (size !== 4) return;
    value >>>= 0;
    switch (offset) {
      case MSIP:
        this.msip = value & 1;
        this.hart.setIrqLine(IRQ.MSI, this.msip !== 0);
        return;
      case MTIMECMP: this.cmpLo = value; break;
      case MTIMECMP + 4: this.cmpHi = value; break;
      case MTIME: { const n = this.clock.now(); this.clock.set(Math.floor(n / TWO32) * TWO32 + value); break; }
      case MTIME + 4: { const n = this.clock.now(); this.clock.set(value * TWO32 + (n % TWO32)); break; }
      default: return;
    }
    this.mtimecmp = this.cmpHi >= 0x20_0000 ? Number.MAX_VALUE : this.cmpHi * TWO32 + this.cmpLo;
    this.update();
    this.onDeadlineChange();
  }

  save(): ClintState { return { v: 1, msip: this.msip, cmpLo: this.cmpLo, cmpHi: this.cmpHi, mtip: this.mtip }; }

  /** mtime is the machine clock's state, restored with it. */
  load(s: ClintState): void {
    if (s?.v !== 1 || ![s.msip, s.cmpLo, s.cmpHi].every((x) => Number.isInteger(x) && x >= 0 && x <= 0xffff_ffff)) {
      throw new Error('clint state: unsupported version or malformed');
    }
    this.msip = s.msip & 1; this.cmpLo = s.cmpLo; this.cmpHi = s.cmpHi; this.mtip = s.mtip === true;
    this.mtimecmp = this.cmpHi >= 0x20_0000 ? Number.MAX_VALUE : this.cmpHi * TWO32 + this.cmpLo;
  }

  /** A 64-bit access samples the clock once (no torn mtime when the low word wraps). */
  read64(offset: number): bigint {
    switch (offset) {
      case MTIMECMP: return (BigInt(this.cmpHi) << 32n) | BigInt(this.cmpLo);
      case MTIME: return BigInt(this.clock.now());
      default: return (BigInt(this.read(offset + 4, 4) >>> 0) << 32n) | BigInt(this.read(offset, 4) >>> 0);
    }
  }

  write64(offset: number, value: bigint): void {
    const lo = Number(value & 0xffff_ffffn), hi = Number(value >> 32n);
    switch (offset) {
      case MTIMECMP: this.cmpLo = lo; this.cmpHi = hi; break;
      case MTIME: this.clock.set(hi * TWO32 + lo); break;
      default: this.write(offset, 4, lo); this.write(offset + 4, 4, hi); return;
    }
    this.mtimecmp = this.cmpHi >= 0x20_0000 ? Number.MAX_VALUE : this.cmpHi * TWO32 + this.cmpLo;
    this.update();
    this.onDeadlineChange();
  }

  /** Re-evaluate MTIP; returns the tick at which it next changes (Infinity if none). */
  update(): number {
    const level = this.clock.now() >= this.mtimecmp;
    if (level !== this.mtip) {
      this.mtip = level;
      this.hart.setIrqLine(IRQ.MTI, level);
    }
    return level || this.mtimecmp === Number.MAX_VALUE ? Infinity : this.mtimecmp;
  }
}
