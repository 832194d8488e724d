/**
 * HTIF (Berkeley host-target interface) through the `tohost`/`fromhost` words that a
 * program's ELF symbols locate, as riscv-tests and bare-metal test programs use it.
 * tohost = dev[63:56] cmd[55:48] payload[47:0]:
 *  - dev 0, cmd 0, payload odd: exit with code payload >> 1 (0 = pass);
 *  - dev 0, cmd 0, payload even: address of a "magic memory" syscall block
 *    (u64 [nr, a0, a1, a2, ...]); SYS_write (64) to fd 1/2 is supported, the result goes to
 *    block[0] and fromhost gets 1;
 *  - dev 1, cmd 1: console putchar (payload & 0xff).
 * The words are polled between run slices; the guest spins on them, so that is enough.
 */
import type { Bus } from '../machine/bus.js';
import type { Stateful } from './device.js';

const SYS_WRITE = 64;

/** HTIF keeps no state: tohost/fromhost live in guest RAM, their addresses come from the ELF. */
export interface HtifState { v: 1 }

export class Htif implements Stateful<HtifState> {
  private readonly wordBytes = new Uint8Array(8);
  private readonly word = new DataView(this.wordBytes.buffer);
  constructor(
    private readonly bus: Bus,
    private readonly tohost: number,
    private readonly fromhost: number | null,
    private readonly emit: (bytes: Uint8Array) => void,
    private readonly onExit: (code: number) => void,
  ) {}

  private read64(pa: number): bigint | undefined {
    const off = this.bus.ramOffset(pa, 8);
    return off < 0 ? undefined : this.bus.dv.getBigUint64(off, true);
  }

  /** Through the bus's DMA path, so decoded code and reservations on that RAM are dropped. */
  private write64(pa: number, v: bigint): void {
    this.word.setBigUint64(0, BigInt.asUintN(64, v), true);
    this.bus.dmaWrite(pa, this.wordBytes);
  }

  save(): HtifState { return { v: 1 }; }
  load(s: HtifState): void { if (s?.v !== 1) throw new Error('htif state: unsupported version'); }

  poll(): void {
    const v = this.read64(this.tohost);
    if (v === undefined || v === 0n) return;
    this.write64(this.tohost, 0n);
    const dev = Number(v >> 56n), cmd = Number((v >> 48n) & 0xffn);
    const payload = v & 0xffff_ffff_ffffn;
    if (dev === 0 && cmd === 0) {
      if ((payload & 1n) === 1n) { this.onExit(Number((payload >> 1n) & 0x7fff_ffffn)); return; }
      this.syscall(Number(payload));
    } else if (dev === 1 && cmd === 1) {
      this.emit(Uint8Array.of(Number(payload & 0xffn)));
    }
  }

  private syscall(block: number): void {
    const nr = this.read64(block);
    let ret = -38n; // ENOSYS
    if (nr === BigInt(SYS_WRITE)) {
      const fd = this.read64(block + 8) ?? 0n, buf = this.read64(block + 16) ?? 0n, len = this.read64(block + 24) ?? 0n;
      const data = len <= 0x10_0000n ? this.bus.readBytes(Number(buf), Number(len)) : undefined;
      if ((fd === 1n || fd === 2n) && data) { this.emit(data); ret = len; } else ret = -14n; // EFAULT
    }
    if (nr !== undefined) this.write64(block, ret);
    if (this.fromhost !== null) this.write64(this.fromhost, 1n);
  }
}
