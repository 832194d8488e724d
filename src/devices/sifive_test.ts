/**
 * SiFive test finisher / syscon at 0x10_0000 (QEMU `sifive,test0`): one 32-bit register.
 * Low 16 bits select the action: 0x5555 pass (power off, status 0), 0x3333 fail with the
 * code in the upper 16 bits, 0x7777 reset. Linux drives it through syscon-poweroff/reboot.
 */
import type { MmioDevice, Stateful } from './device.js';

export const FINISHER_FAIL = 0x3333, FINISHER_PASS = 0x5555, FINISHER_RESET = 0x7777;

/** No state: the finisher only acts on writes. */
export interface SifiveTestState { v: 1 }

export class SifiveTest implements MmioDevice, Stateful<SifiveTestState> {
  readonly name = 'sifive_test';
  constructor(private readonly onPowerOff: (code: number) => void, private readonly onReset: () => void) {}

  save(): SifiveTestState { return { v: 1 }; }
  load(s: SifiveTestState): void { if (s?.v !== 1) throw new Error('sifive_test state: unsupported version'); }
  read(): number { return 0; }

  write(offset: number, size: 1 | 2 | 4, value: number): void {
    // OpenSBI writes the 16-bit status alone (writew); a 32-bit write also carries the code.
    if (offset !== 0 || size === 1) return;
    const status = value & 0xffff;
    const code = (value >>> 16) & 0xffff;
    if (status === FINISHER_PASS) this.onPowerOff(0);
    else if (status === FINISHER_FAIL) this.onPowerOff(code === 0 ? 1 : code);
    else if (status === FINISHER_RESET) this.onReset();
  }
}
