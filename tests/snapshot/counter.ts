/**
 * The tiny bare-metal machine the snapshot format tests and the committed fixture use:
 * M-mode firmware printing 'a'..'z' on the UART with a delay loop between letters, then
 * passing through the SiFive test device. Saved halfway, a machine resumes at the next letter.
 */
import { readFileSync } from 'node:fs';
import { Machine, type MachineConfig } from '../../src/machine/machine.js';
import { buildElf } from '../lib/toolchain.js';

export const COUNTER_SRC = String.raw`
  .section .text.init
  .globl _start
_start:
  li t0, 0x10000000
  li t1, 'a'
  li t2, 'z' + 1
1: sb t1, 0(t0)
  li t3, 2000
2: addi t3, t3, -1
  bnez t3, 2b
  addi t1, t1, 1
  blt t1, t2, 1b
  li t0, 0x100000
  li t1, 0x5555
  sw t1, 0(t0)
3: j 3b
`;

export const COUNTER_MEMORY = 4 << 20;
/** Steps after which about half the alphabet is out. */
export const COUNTER_HALF = 26_000;

export async function counterElf(): Promise<Uint8Array> {
  return readFileSync(await buildElf({ name: 'snapshot-counter', sources: { 'c.S': COUNTER_SRC } }));
}

export function counterMachine(elf: Uint8Array, sink: { out: string }, extra: Partial<MachineConfig> = {}): Machine {
  return new Machine({
    memoryBytes: COUNTER_MEMORY, bios: elf, kernel: null, initrd: null, append: '',
    clock: { kind: 'virtual', shift: 4 }, wallClockMs: () => 1_700_000_000_000,
    serial: { write(b: Uint8Array) { sink.out += new TextDecoder().decode(b); } },
    ...extra,
  });
}
