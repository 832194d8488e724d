/**
 * The built-in SBI, driven by an S-mode "kernel" assembled at test time: every extension
 * the issue names (Base, legacy, TIME, IPI, RFENCE, HSM, SRST, DBCN) is called through
 * `ecall` and its results checked in the guest; failures print which check failed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { buildElf } from '../lib/toolchain.js';
import { Machine } from '../../src/machine/machine.js';

const KERNEL = `
  .equ EXT_BASE, 0x10
  .equ EXT_TIME, 0x54494d45
  .equ EXT_IPI, 0x735049
  .equ EXT_RFENCE, 0x52464e43
  .equ EXT_HSM, 0x48534d
  .equ EXT_SRST, 0x53525354
  .equ EXT_DBCN, 0x4442434e
  .macro SBI eid, fid
    li a7, \\eid
    li a6, \\fid
    ecall
  .endm
  # expect a0 == err and a1 == val, else fail with check number n
  .macro EXPECT n, err, val
    li t0, \\err
    li t1, \\val
    li s1, \\n
    bne a0, t0, fail
    bne a1, t1, fail
  .endm
  .macro EXPECT_ERR n, err
    li t0, \\err
    li s1, \\n
    bne a0, t0, fail
  .endm

  .section .text.init
  .globl _start
_start:
  # The built-in SBI enters S-mode with a0 = hartid, a1 = device tree.
  li s1, 100
  bnez a0, fail
  lwu t0, 0(a1)
  li t1, 0xedfe0dd0          # FDT magic, big-endian
  bne t0, t1, fail
  csrr t0, sstatus           # we are in S-mode: sstatus is accessible
  la sp, stack_top

  SBI EXT_BASE, 0            # spec version 2.0
  EXPECT 1, 0, 0x2000000
  SBI EXT_BASE, 1            # impl id
  EXPECT_ERR 2, 0
  li a0, EXT_TIME
  SBI EXT_BASE, 3            # probe
  EXPECT 3, 0, 1
  li a0, EXT_DBCN
  SBI EXT_BASE, 3
  EXPECT 4, 0, 1
  li a0, EXT_HSM
  SBI EXT_BASE, 3
  EXPECT 5, 0, 1
  li a0, 0x12345678
  SBI EXT_BASE, 3
  EXPECT 6, 0, 0
  SBI 0x0a000000, 0          # unknown extension
  EXPECT_ERR 7, -2

  # DBCN console_write of a buffer (physical address in a1/a2)
  li a0, 6
  la a1, msg_dbcn
  li a2, 0
  SBI EXT_DBCN, 0
  EXPECT 10, 0, 6
  # console_write_byte
  li a0, 'B'
  SBI EXT_DBCN, 2
  EXPECT_ERR 11, 0
  li a0, '\\n'
  SBI EXT_DBCN, 2
  # an address outside RAM is refused
  li a0, 4
  li a1, 0x1000
  li a2, 0
  SBI EXT_DBCN, 0
  EXPECT_ERR 12, -3
  # legacy console_putchar
  li a0, 'L'
  SBI 1, 0
  li a0, '\\n'
  SBI 1, 0

  # HSM
  li a0, 0
  SBI EXT_HSM, 2             # hart_get_status(0) = STARTED (0)
  EXPECT 20, 0, 0
  li a0, 7
  SBI EXT_HSM, 2
  EXPECT_ERR 21, -3
  li a0, 0
  SBI EXT_HSM, 0             # hart_start of a running hart
  EXPECT_ERR 22, -6

  # RFENCE
  li a0, 1
  li a1, 0
  SBI EXT_RFENCE, 0          # remote_fence_i
  EXPECT_ERR 30, 0
  li a0, 1
  li a1, 0
  li a2, 0
  li a3, -1
  SBI EXT_RFENCE, 1          # remote_sfence_vma
  EXPECT_ERR 31, 0
  li a0, 2
  li a1, 0
  SBI EXT_RFENCE, 0          # hart 1 does not exist
  EXPECT_ERR 32, -3

  # IPI: send to ourselves, sip.SSIP becomes pending
  csrci sip, 2
  li a0, 1
  li a1, 0
  SBI EXT_IPI, 0
  EXPECT_ERR 40, 0
  csrr t0, sip
  andi t0, t0, 2
  li s1, 41
  beqz t0, fail
  csrci sip, 2

  # TIME: program the timer 2 ms ahead and take the interrupt in a handler
  la t0, trap
  csrw stvec, t0
  li t0, 1 << 5
  csrs sie, t0
  rdtime t0
  li t1, 20000
  add a0, t0, t1
  SBI EXT_TIME, 0
  EXPECT_ERR 50, 0
  li s2, 0
  # WFI with SIE clear (it still wakes on a pending enabled interrupt), then take the
  # interrupt with SIE set: with SIE set across WFI, an interrupt taken just before the
  # WFI would return to it and sleep for ever (a slow host makes that likely).
1: wfi
  csrsi sstatus, 2           # SIE: the handler runs here
  csrci sstatus, 2
  beqz s2, 1b
  li s1, 51
  li t0, 0x8000000000000005  # supervisor timer interrupt
  bne s3, t0, fail
  rdtime t1
  li t2, 20000
  sub t1, t1, t2
  li s1, 52
  bltu t1, s4, fail          # not before the programmed time

  # print "pass" and power off through SRST
  li a0, 5
  la a1, msg_pass
  li a2, 0
  SBI EXT_DBCN, 0
  li a0, 0                   # shutdown
  li a1, 0                   # no reason
  SBI EXT_SRST, 0
  li s1, 99
fail:
  # print "FAIL <n>" with the check number in decimal, then shut down with a failure reason
  li a0, 'F'
  SBI 1, 0
  li t2, 10
  divu t3, s1, t2
  remu t4, s1, t2
  addi a0, t3, '0'
  SBI 1, 0
  addi a0, t4, '0'
  SBI 1, 0
  li a0, 0
  li a1, 1                   # system failure
  SBI EXT_SRST, 0
2: j 2b

  .align 2
trap:
  csrr s3, scause
  mv s4, a0                  # the time we asked for
  li s2, 1
  li a0, -1                  # push the timer out: clears STIP
  SBI EXT_TIME, 0
  sret

  .data
msg_dbcn: .ascii "DBCN:\\n"
msg_pass: .ascii "pass\\n"
  .align 4
  .space 4096
stack_top:
`;

test('built-in SBI: Base, legacy, TIME, IPI, RFENCE, HSM, SRST and DBCN from S-mode', { timeout: 60_000 }, async () => {
  const elf = readFileSync(await buildElf({ name: 'sbi-kernel', sources: { 'sbi.S': KERNEL } }));
  let out = '';
  const m = new Machine({
    memoryBytes: 64 << 20, bios: null, kernel: elf, initrd: null, append: '',
    serial: { write(b: Uint8Array) { out += Buffer.from(b).toString('latin1'); } },
  });
  assert.equal(m.layout.mode, 'builtin');
  const t = setTimeout(() => m.stop(), 30_000);
  const exit = await m.run();
  clearTimeout(t);
  assert.equal(out, 'DBCN:\nB\nL\npass\n', `console: ${JSON.stringify(out)}`);
  assert.deepEqual(exit, { reason: 'poweroff', code: 0 });
});

test('built-in SBI: SRST with a failure reason ends the machine with a failure', { timeout: 60_000 }, async () => {
  const src = `
  .section .text.init
  .globl _start
_start:
  li a7, 0x53525354
  li a6, 0
  li a0, 0
  li a1, 1
  ecall
1: j 1b
`;
  const elf = readFileSync(await buildElf({ name: 'sbi-fail', sources: { 'f.S': src } }));
  const m = new Machine({ memoryBytes: 16 << 20, bios: null, kernel: elf, initrd: null, append: '', serial: { write() {} } });
  const exit = await m.run();
  assert.equal(exit.reason, 'fail');
  assert.notEqual(exit.code, 0);
});

test('built-in SBI: a guest faulting in a loop (stvec = 0, unmapped memory) keeps the host running', { timeout: 60_000 }, async () => {
  // The load faults (access fault, delegated to S), stvec = 0 has no memory so the fetch
  // faults again, forever. The machine must stay responsive and stoppable.
  const src = `
  .section .text.init
  .globl _start
_start:
  csrw stvec, zero
  li t0, 0x40000000
  ld t1, 0(t0)
1: j 1b
`;
  const elf = readFileSync(await buildElf({ name: 'sbi-loop', sources: { 'l.S': src } }));
  const m = new Machine({ memoryBytes: 16 << 20, bios: null, kernel: elf, initrd: null, append: '', serial: { write() {} } });
  const t = setTimeout(() => m.stop(), 500);
  const exit = await m.run();
  clearTimeout(t);
  assert.equal(exit.reason, 'stopped');
  assert.equal(m.hart.priv, 1, 'the faulting guest stays in S-mode');
  assert.equal(m.hart.scause, 1n, 'instruction access fault at stvec = 0');
  assert.equal(m.hart.stval, 0n);
});
