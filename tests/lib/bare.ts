/**
 * Runs an M-mode bare-metal ELF on the full virt board, the way `typevisor run --bios prog.elf`
 * does: exit through HTIF tohost or the SiFive test finisher; console on UART0.
 */
import { Machine, type MachineExit, type ClockMode } from '../../src/machine/machine.js';
import { testJitThreshold } from './user.js';

export interface BareResult {
  code: number;
  reason: MachineExit['reason'];
  console: string;
  message?: string;
}

export async function runBare(elf: Uint8Array, opts: { timeoutMs?: number; memoryBytes?: number; clock?: ClockMode; jitThreshold?: number } = {}): Promise<BareResult> {
  let out = '';
  const dec = new TextDecoder();
  const m = new Machine({
    jitThreshold: opts.jitThreshold ?? testJitThreshold(),
    memoryBytes: opts.memoryBytes ?? 128 << 20,
    bios: elf,
    kernel: null,
    initrd: null,
    append: '',
    clock: opts.clock,
    serial: { write(b: Uint8Array) { out += dec.decode(b, { stream: true }); } },
  });
  const timer = setTimeout(() => m.stop(), opts.timeoutMs ?? 20_000);
  try {
    const e = await m.run();
    return { code: e.reason === 'stopped' ? 124 : e.code, reason: e.reason, console: out, message: e.message };
  } finally {
    clearTimeout(timer);
  }
}
