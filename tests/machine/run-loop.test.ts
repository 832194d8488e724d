/**
 * The run loop and hart corners the other suites leave out: WFI sleeping on the host and
 * waking on a timer or on input, SRST reset through the built-in SBI, LR/SC reservations
 * across traps (checked against qemu-system-riscv64), and how often a computing guest lets
 * the host's event loop run (quiet, interactive and bulk device traffic).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Machine } from '../../src/machine/machine.js';
import { buildElf } from '../lib/toolchain.js';
import { runBare } from '../lib/bare.js';
import { runQemuSystem } from '../lib/qemu-system.js';

const WFI_TIMER = String.raw`
  .section .text.init
  .globl _start
_start:
  li s0, 0x200bff8
  li s1, 0x2004000
  ld t0, 0(s0)
  li t1, 3000000              # 300 ms
  add t0, t0, t1
  sd t0, 0(s1)
  li t0, 1 << 7
  csrs mie, t0
1: wfi
  csrr t0, mip
  andi t0, t0, 1 << 7
  beqz t0, 1b
  li t1, 0x100000
  li t2, 0x5555
  sw t2, 0(t1)
2: j 2b
`;

test('WFI sleeps on the host until the timer deadline: no spinning, wakes on time', { timeout: 30_000 }, async () => {
  const elf = readFileSync(await buildElf({ name: 'wfi-timer', sources: { 'w.S': WFI_TIMER } }));
  const m = new Machine({ memoryBytes: 16 << 20, bios: elf, kernel: null, initrd: null, append: '', serial: { write() {} } });
  const t0 = performance.now();
  const exit = await m.run();
  const ms = performance.now() - t0;
  assert.equal(exit.reason, 'poweroff');
  assert.ok(ms >= 290 && ms < 3000, `woke after ${ms} ms`);
  assert.ok(m.steps < 1000, `${m.steps} steps: the hart spun instead of sleeping`);
});

const WFI_INPUT = String.raw`
  .equ UART, 0x10000000
  .section .text.init
  .globl _start
_start:
  li t0, 0x0c000000
  li t1, 1
  sw t1, 40(t0)               # PLIC priority[10] = 1
  li t0, 0x0c002000
  li t1, 1 << 10
  sw t1, 0(t0)                # enable UART for the M context
  li t0, 0x0c200000
  sw zero, 0(t0)
  li s0, UART
  li t1, 1
  sb t1, 1(s0)                # IER.ERBFI
  li t0, 1 << 11
  csrs mie, t0                # MEIE; mstatus.MIE stays 0
1: wfi
  lbu t1, 5(s0)
  andi t1, t1, 1
  beqz t1, 1b
  lbu t1, 0(s0)
  sb t1, 0(s0)                # echo it
  li t1, 0x100000
  li t2, 0x5555
  sw t2, 0(t1)
2: j 2b
`;

test('WFI with no timer sleeps until console input arrives, then runs', { timeout: 30_000 }, async () => {
  const elf = readFileSync(await buildElf({ name: 'wfi-input', sources: { 'w.S': WFI_INPUT } }));
  let out = '';
  const m = new Machine({ memoryBytes: 16 << 20, bios: elf, kernel: null, initrd: null, append: '', serial: { write(b) { out += String.fromCharCode(...b); } } });
  setTimeout(() => m.sendInput(Uint8Array.of(0x51)), 200);
  const t0 = performance.now();
  const exit = await m.run();
  const ms = performance.now() - t0;
  assert.equal(exit.reason, 'poweroff');
  assert.equal(out, 'Q');
  assert.ok(ms >= 190, `finished after ${ms} ms, before the input was sent`);
  assert.ok(m.steps < 1000, `${m.steps} steps while waiting`);
});

const SRST = String.raw`
  .section .text.init
  .globl _start
_start:
  li a7, 0x53525354
  li a6, 0
  li a0, 3                    # reserved reset type
  li a1, 0
  ecall
  li t0, -3                   # SBI_ERR_INVALID_PARAM
  bne a0, t0, fail
  li a7, 0x53525354
  li a6, 1                    # no such function
  ecall
  li t0, -2                   # SBI_ERR_NOT_SUPPORTED
  bne a0, t0, fail
  li a7, 0x53525354
  li a6, 0
  li a0, RESET_TYPE
  li a1, 0
  ecall
fail:
  li a7, 0x53525354
  li a6, 0
  li a0, 0
  li a1, 1                    # shutdown, system failure
  ecall
1: j 1b
`;

test('built-in SBI: SRST cold and warm reboot end the run with reason reset; bad type and function are errors', { timeout: 30_000 }, async () => {
  for (const type of [1, 2]) {
    const elf = readFileSync(await buildElf({ name: `srst-${type}`, sources: { 's.S': SRST.replace('RESET_TYPE', String(type)) } }));
    const m = new Machine({ memoryBytes: 16 << 20, bios: null, kernel: elf, initrd: null, append: '', serial: { write() {} } });
    const exit = await m.run();
    assert.deepEqual(exit, { reason: 'reset', code: 0 }, `type ${type}`);
  }
});

const LRSC = String.raw`
  .equ UART, 0x10000000
  .section .text.init
  .globl _start
_start:
  la t0, trap
  csrw mtvec, t0
  la s0, word
  lr.d t1, (s0)
  sc.d s1, t1, (s0)           # no trap in between: succeeds (0)
  lr.d t1, (s0)
  ecall                       # a trap between LR and SC
  sc.d s2, t1, (s0)
  lr.d t1, (s0)
  sd zero, 8(s0)              # a store elsewhere
  sc.d s3, t1, (s0)
  sc.d s4, t1, (s0)           # no reservation left
  li t0, UART
  addi a0, s1, '0'
  sb a0, 0(t0)
  addi a0, s2, '0'
  sb a0, 0(t0)
  addi a0, s3, '0'
  sb a0, 0(t0)
  addi a0, s4, '0'
  sb a0, 0(t0)
  li a0, '\n'
  sb a0, 0(t0)
  li t1, 0x100000
  li t2, 0x5555
  sw t2, 0(t1)
1: j 1b
  .align 2
trap:
  csrr t0, mepc
  addi t0, t0, 4
  csrw mepc, t0
  mret
  .data
  .align 4
word: .dword 7, 0
`;

test('LR/SC: a trap between LR and SC makes the SC fail; SC consumes the reservation (as qemu-system-riscv64), interpreted and translated', { timeout: 60_000 }, async () => {
  const path = await buildElf({ name: 'lrsc-trap', sources: { 'l.S': LRSC } });
  const ours = await runBare(readFileSync(path));
  assert.equal(ours.reason, 'poweroff');
  assert.equal(ours.console, '0101\n', 'SC results: plain 0, across a trap 1, after an unrelated store 0, without LR 1');
  // The same with every block translated (LR/SC inline, the reservation in the state block).
  const jit = await runBare(readFileSync(path), { jitThreshold: 0 });
  assert.equal(jit.console, ours.console, 'translated');
  const ref = await runQemuSystem(path);
  assert.equal(ref.output.trim(), ours.console.trim());
});

test('board.schedule: a device timer fires at its guest tick; the virtual clock skips an idle hart to it', { timeout: 30_000 }, async () => {
  const src = String.raw`
  .section .text.init
  .globl _start
_start:
1: wfi
  j 1b
`;
  const elf = readFileSync(await buildElf({ name: 'wfi-forever', sources: { 'w.S': src } }));
  const m = new Machine({ memoryBytes: 16 << 20, bios: elf, kernel: null, initrd: null, append: '', serial: { write() {} }, clock: { kind: 'virtual', shift: 4 } });
  const fired: number[] = [];
  const owner = { timerId: 'test-timer', onTimer: (kind: string) => { fired.push(m.board.clock.now()); assert.equal(kind, 'k'); m.stop(); } };
  m.board.addTimerOwner(owner);
  m.board.schedule(50_000_000, owner, 'k'); // 5 s of guest time
  const t0 = performance.now();
  const exit = await m.run();
  assert.equal(exit.reason, 'stopped');
  assert.deepEqual(fired, [50_000_000]);
  assert.ok(performance.now() - t0 < 3000, 'idle guest time was skipped, not waited');
});

test('dirty pages: hart stores (fast path included), DMA and loaders mark pages; taking them re-arms the marking', async () => {
  const { VirtBoard } = await import('../../src/machine/virt.js');
  const board = new VirtBoard({ memoryBytes: 1 << 20, serial: { write() {} }, monoClockMs: () => 0, wallClockMs: () => 0, onPowerOff() {}, onReset() {} });
  const h = board.hart;
  const code = (words: number[]): void => board.bus.writeBytes(0x8000_0000, new Uint8Array(new Uint32Array(words).buffer));
  const step = (a0: bigint, n: number): void => { h.pc = 0x8000_0000n; h.x[10] = a0; h.run(n); };
  assert.equal(h.takeDirtyPages().length, 256, 'everything counts as written before the first call');
  code([0x00b53023, 0x00b53023, 0x0000006f]); // sd a1, 0(a0); sd a1, 0(a0); j .
  assert.deepEqual(h.takeDirtyPages(), [0], 'the loader wrote page 0');
  step(0x8001_0008n, 2);                         // the second sd hits the write TLB
  assert.deepEqual(h.takeDirtyPages(), [16]);
  assert.deepEqual(h.takeDirtyPages(), [], 'nothing written since');
  step(0x8001_0010n, 2);                         // same page again: its TLB entry was dropped, so it is marked again
  assert.deepEqual(h.takeDirtyPages(), [16]);
  code([0x00053603, 0x0000006f]);                // ld a2, 0(a0); j .
  h.takeDirtyPages();
  step(0x8001_4000n, 2);
  assert.deepEqual(h.takeDirtyPages(), [], 'a load does not dirty');
  assert.ok(board.bus.dmaWrite(0x8003_0ffc, new Uint8Array(8)));
  assert.deepEqual(h.takeDirtyPages(), [48, 49], 'DMA across a page boundary');
});

const SPIN = String.raw`
  .section .text.init
  .globl _start
_start:
1: j 1b
`;

test('host turns: every 15 ms while the guest computes, after every slice while a device has interactive traffic with the host, every 15 ms again for bulk traffic', { timeout: 30_000 }, async () => {
  const elf = readFileSync(await buildElf({ name: 'spin', sources: { 's.S': SPIN } }));
  const m = new Machine({ memoryBytes: 16 << 20, bios: elf, kernel: null, initrd: null, append: '', serial: { write() {} }, virtio: [{ kind: 'rng' }] });
  // A device whose traffic with the host (VirtioDevice.traffic, bytes) the test drives.
  let traffic = 0;
  Object.defineProperty(m.virtioDevices[0], 'traffic', { get: () => traffic });
  const run = m.run();
  /** Host turns in `ms`, the device's traffic growing by `step` bytes at each. */
  const turns = async (ms: number, step: number): Promise<number> => {
    let n = 0;
    const end = performance.now() + ms;
    while (performance.now() < end) {
      traffic += step;
      await new Promise((r) => setImmediate(r));
      n++;
    }
    return n;
  };
  await turns(100, 0); // (the guest's loop gets translated)
  const quiet = await turns(300, 0);
  const interactive = await turns(300, 8);
  await turns(100, 0);
  const bulk = await turns(300, 128 << 10);
  m.stop();
  await run;
  console.log(`# host turns: quiet ${quiet}, interactive ${interactive}, bulk ${bulk}`);
  assert.ok(quiet <= 30, `${quiet} host turns in 300 ms of a computing guest (every 15 ms: ~20)`);
  assert.ok(interactive > 5 * quiet, `${interactive} host turns in 300 ms of interactive traffic (${quiet} without)`);
  assert.ok(bulk <= 30, `${bulk} host turns in 300 ms of bulk traffic`);
});
