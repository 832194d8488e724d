/**
 * The built-in SBI: typevisor acts as the M-mode firmware itself, so a kernel boots with
 * no OpenSBI at all. RISC-V SBI specification v2.0: Base (§4), legacy extensions (§5:
 * set_timer, console_putchar/getchar, clear_ipi, send_ipi, remote fences, shutdown),
 * TIME (§6), IPI (§7), RFENCE (§8), HSM (§9), SRST (§10) and DBCN (§12).
 * Calling convention (§3): a7 = EID, a6 = FID, a0..a5 arguments; returns a0 = error, a1 = value.
 */
import type { Stateful } from '../devices/device.js';
import type { Hart, SbiHandler } from '../cpu/hart.js';
import type { Bus } from '../machine/bus.js';
import { MIP_SSIP } from '../cpu/csr.js';

const A0 = 10, A1 = 11, A2 = 12, A6 = 16, A7 = 17;

export const SBI_SUCCESS = 0, SBI_ERR_FAILED = -1, SBI_ERR_NOT_SUPPORTED = -2, SBI_ERR_INVALID_PARAM = -3;
export const SBI_ERR_INVALID_ADDRESS = -5, SBI_ERR_ALREADY_AVAILABLE = -6;

export const EXT = {
  BASE: 0x10, TIME: 0x54494d45, IPI: 0x735049, RFENCE: 0x52464e43, HSM: 0x48534d,
  SRST: 0x53525354, DBCN: 0x4442434e,
} as const;
const LEGACY_MAX = 8;

/** SBI v2.0. */
const SPEC_VERSION = 2 << 24;
/** Implementation ID: unregistered; chosen to not collide with the SBI spec's table. */
export const TYPEVISOR_SBI_IMPL_ID = 0x7479;
const IMPL_VERSION = 0x0001_0000;

export interface SbiPlatform {
  readonly bus: Bus;
  /** Console output, in order with the UART's output. */
  consoleWrite(bytes: Uint8Array): void;
  /** One byte of console input, or -1. */
  consoleRead(): number;
  shutdown(code: number): void;
  reset(): void;
}

/** The built-in SBI keeps no state of its own (timer and IPIs live in hart CSRs). */
export interface BuiltinSbiState { v: 1 }

export class BuiltinSbi implements SbiHandler, Stateful<BuiltinSbiState> {
  private readonly one = new Uint8Array(1);

  constructor(private readonly platform: SbiPlatform) {}

  save(): BuiltinSbiState { return { v: 1 }; }
  load(s: BuiltinSbiState): void { if (s?.v !== 1) throw new Error('built-in SBI state: unsupported version'); }

  ecall(h: Hart): void {
    const x = h.x;
    const eid = Number(BigInt.asUintN(32, x[A7]));
    const fid = Number(BigInt.asUintN(32, x[A6]));
    if (eid <= LEGACY_MAX) { this.legacy(h, eid); return; }
    let err = SBI_SUCCESS;
    let value = 0n;
    switch (eid) {
      case EXT.BASE: {
        switch (fid) {
          case 0: value = BigInt(SPEC_VERSION); break;
          case 1: value = BigInt(TYPEVISOR_SBI_IMPL_ID); break;
          case 2: value = BigInt(IMPL_VERSION); break;
          case 3: value = this.probe(Number(BigInt.asUintN(32, x[A0]))) ? 1n : 0n; break;
          case 4: case 5: case 6: value = 0n; break; // mvendorid, marchid, mimpid read as 0
          default: err = SBI_ERR_NOT_SUPPORTED;
        }
        break;
      }
      case EXT.TIME:
        if (fid === 0) this.setTimer(h); else err = SBI_ERR_NOT_SUPPORTED;
        break;
      case EXT.IPI:
        if (fid === 0) err = this.sendIpi(h, x[A0], x[A1]); else err = SBI_ERR_NOT_SUPPORTED;
        break;
      case EXT.RFENCE:
        if (fid <= 6) err = this.rfence(h, fid, x[A0], x[A1]); else err = SBI_ERR_NOT_SUPPORTED;
        break;
      case EXT.HSM: ({ err, value } = this.hsm(h, fid)); break;
      case EXT.SRST: err = this.srst(fid, x[A0], x[A1]); break;
      case EXT.DBCN: ({ err, value } = this.dbcn(h, fid)); break;
      default: err = SBI_ERR_NOT_SUPPORTED;
    }
    x[A0] = BigInt(err);
    x[A1] = value;
  }

  private probe(eid: number): boolean {
    if (eid <= LEGACY_MAX) return true;
    for (const v of Object.values(EXT)) if (v === eid) return true;
    return false;
  }

  private setTimer(h: Hart): void {
    const lo = h.x32[A0 * 2], hi = h.x32[A0 * 2 + 1];
    h.setSupervisorTimer(lo, hi);
  }

  /** hart_mask / hart_mask_base (SBI §3.1): is hart 0 selected? null = names a hart that does not exist. */
  private selects(mask: bigint, base: bigint): boolean | null {
    if (base === -1n) return true; // all harts; hart_mask is ignored
    if (base !== 0n) return null;
    const m = BigInt.asUintN(64, mask);
    if ((m & ~1n) !== 0n) return null;
    return m === 1n;
  }

  private sendIpi(h: Hart, mask: bigint, base: bigint): number {
    const sel = this.selects(mask, base);
    if (sel === null) return SBI_ERR_INVALID_PARAM;
    if (sel) h.setSoftwareInterrupt(MIP_SSIP);
    return SBI_SUCCESS;
  }

  private rfence(h: Hart, fid: number, mask: bigint, base: bigint): number {
    const sel = this.selects(mask, base);
    if (sel === null) return SBI_ERR_INVALID_PARAM;
    if (fid >= 3) return SBI_ERR_NOT_SUPPORTED; // hypervisor fences: no H extension
    if (sel && fid !== 0) h.flushTlb(); // remote_fence_i needs nothing: stores already drop decoded code
    return SBI_SUCCESS;
  }

  private hsm(h: Hart, fid: number): { err: number; value: bigint } {
    const hartid = h.x[A0];
    switch (fid) {
      case 0: // hart_start: the only hart is already running
        return { err: hartid === 0n ? SBI_ERR_ALREADY_AVAILABLE : SBI_ERR_INVALID_PARAM, value: 0n };
      case 1: return { err: SBI_ERR_FAILED, value: 0n }; // hart_stop of the last hart
      case 2: return hartid === 0n ? { err: SBI_SUCCESS, value: 0n /* STARTED */ } : { err: SBI_ERR_INVALID_PARAM, value: 0n };
      case 3: { // hart_suspend: retentive default suspend behaves as WFI
        const type = BigInt.asUintN(32, h.x[A0]);
        if (type !== 0n) return { err: SBI_ERR_NOT_SUPPORTED, value: 0n };
        h.wfi();
        return { err: SBI_SUCCESS, value: 0n };
      }
      default: return { err: SBI_ERR_NOT_SUPPORTED, value: 0n };
    }
  }

  private srst(fid: number, type: bigint, reason: bigint): number {
    if (fid !== 0) return SBI_ERR_NOT_SUPPORTED;
    const t = BigInt.asUintN(32, type), r = BigInt.asUintN(32, reason);
    if (t === 0n) { this.platform.shutdown(r === 1n ? 1 : 0); return SBI_SUCCESS; }
    if (t === 1n || t === 2n) { this.platform.reset(); return SBI_SUCCESS; }
    return SBI_ERR_INVALID_PARAM;
  }

  private dbcn(h: Hart, fid: number): { err: number; value: bigint } {
    const x = h.x;
    if (fid === 2) { // console_write_byte
      this.one[0] = Number(x[A0] & 0xffn);
      this.platform.consoleWrite(this.one);
      return { err: SBI_SUCCESS, value: 0n };
    }
    if (fid !== 0 && fid !== 1) return { err: SBI_ERR_NOT_SUPPORTED, value: 0n };
    const num = BigInt.asUintN(64, x[A0]);
    const addr = (BigInt.asUintN(64, x[A2]) << 64n) | BigInt.asUintN(64, x[A1]);
    const bus = this.platform.bus;
    // Physical addresses; the range must lie in RAM (SBI §12: SBI_ERR_INVALID_PARAM otherwise).
    if (num > 0x10_0000n || addr + num > 0xffff_ffffn) return { err: SBI_ERR_INVALID_PARAM, value: 0n };
    const pa = Number(addr), n = Number(num);
    if (bus.ramOffset(pa, n) < 0) return { err: SBI_ERR_INVALID_PARAM, value: 0n };
    if (fid === 0) {
      const data = bus.readBytes(pa, n);
      if (data) this.platform.consoleWrite(data);
      return { err: SBI_SUCCESS, value: num };
    }
    let got = 0;
    const buf = new Uint8Array(n);
    while (got < n) {
      const c = this.platform.consoleRead();
      if (c < 0) break;
      buf[got++] = c;
    }
    if (got > 0) bus.writeBytes(pa, buf.subarray(0, got));
    return { err: SBI_SUCCESS, value: BigInt(got) };
  }

  /** Legacy extensions (SBI §5): return value in a0 only. */
  private legacy(h: Hart, eid: number): void {
    const x = h.x;
    switch (eid) {
      case 0: this.setTimer(h); x[A0] = 0n; return;
      case 1: this.one[0] = Number(x[A0] & 0xffn); this.platform.consoleWrite(this.one); x[A0] = 0n; return;
      case 2: x[A0] = BigInt(this.platform.consoleRead()); return;
      case 3: h.clearSoftwareInterrupt(MIP_SSIP); x[A0] = 0n; return;
      case 4: case 5: case 6: case 7: {
        // The argument is a virtual address of a hart mask; with one hart, act on ourselves.
        if (eid === 4) h.setSoftwareInterrupt(MIP_SSIP);
        else if (eid !== 5) h.flushTlb();
        x[A0] = 0n;
        return;
      }
      case 8: this.platform.shutdown(0); x[A0] = 0n; return;
      default: x[A0] = BigInt(SBI_ERR_NOT_SUPPORTED);
    }
  }
}
