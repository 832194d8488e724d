/**
 * Guests under stress on the full board: a trap storm (mtvec pointing at an illegal
 * instruction or outside memory), a page-fault storm through Sv39 with sfence.vma each
 * time, and self-modifying code (stores of every width and an AMO patch instructions that
 * are then executed; the decode cache must notice). Results are checked against known
 * answers and against qemu-system-riscv64 running the same ELF.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { buildElf } from '../lib/toolchain.js';
import { runQemuSystem } from '../lib/qemu-system.js';
import { Machine, type MachineExit } from '../../src/machine/machine.js';
import { testJitThreshold } from '../lib/user.js';

const COMMON = String.raw`
  .equ UART, 0x10000000
  .equ FINISHER, 0x100000
  .macro PASS
    li t0, FINISHER
    li t1, 0x5555
    sw t1, 0(t0)
1:  j 1b
  .endm
  .macro FAIL code
    li t0, FINISHER
    li t1, (\code << 16) | 0x3333
    sw t1, 0(t0)
1:  j 1b
  .endm
`;

/** Print a0 as 16 hex digits and a newline on the UART (clobbers t0-t3). */
const PUTHEX = String.raw`
puthex:
  li t0, UART
  li t1, 60
2:
  srl t2, a0, t1
  andi t2, t2, 15
  li t3, 10
  blt t2, t3, 3f
  addi t2, t2, 'a' - 10
  j 4f
3:
  addi t2, t2, '0'
4:
  sb t2, 0(t0)
  addi t1, t1, -4
  bgez t1, 2b
  li t2, '\n'
  sb t2, 0(t0)
  ret
`;

async function runFor(elf: Uint8Array, ms: number): Promise<{ exit: MachineExit; out: string; m: Machine }> {
  let out = '';
  const m = new Machine({
    jitThreshold: testJitThreshold(),
    memoryBytes: 32 << 20, bios: elf, kernel: null, initrd: null, append: '',
    serial: { write(b: Uint8Array) { out += Buffer.from(b).toString('latin1'); } },
  });
  const t = setTimeout(() => m.stop(), ms);
  const exit = await m.run();
  clearTimeout(t);
  return { exit, out, m };
}

const TRAP_LOOPS: Record<string, string> = {
  // mtvec -> an all-zero (illegal) word: every trap traps again at the same place.
  illegal: String.raw`
  la t0, bad
  csrw mtvec, t0
  .word 0
  .align 4
bad:
  .word 0
`,
  // mtvec -> an unmapped hole: instruction access faults forever.
  hole: String.raw`
  li t0, 0x30000000
  csrw mtvec, t0
  ecall
`,
  // mtvec -> MMIO (the UART): instruction access faults forever, never a device fetch.
  mmio: String.raw`
  li t0, 0x10000000
  csrw mtvec, t0
  ebreak
`,
  // vectored mtvec whose vector table is garbage, with the timer interrupt firing.
  vectored: String.raw`
  la t0, bad
  ori t0, t0, 1
  csrw mtvec, t0
  li t0, 0x2004000
  sd zero, 0(t0)
  li t0, 0x80
  csrw mie, t0
  csrsi mstatus, 8
  .word 0
  .align 8
bad:
  .fill 64, 4, 0
`,
};

for (const [name, body] of Object.entries(TRAP_LOOPS)) {
  test(`trap storm (${name}): the host stays in control and stop() ends the run`, { timeout: 30_000 }, async () => {
    const path = await buildElf({ name: `trap-storm-${name}`, sources: { 's.S': `${COMMON}\n.section .text.init\n.globl _start\n_start:\n${body}` } });
    const t0 = performance.now();
    const { exit, m } = await runFor(readFileSync(path), 300);
    const dt = performance.now() - t0;
    assert.equal(exit.reason, 'stopped', `exit ${JSON.stringify(exit)}`);
    assert.ok(dt < 5000, `stop() took effect after ${dt} ms`);
    assert.equal(m.hart.priv, 3);
    // Each loop has one cause: a UART fetch that read RBR as an instruction would show 2 (illegal), not 1.
    const expected = { illegal: [2n], hole: [1n], mmio: [1n], vectored: [2n, (1n << 63n) | 7n] }[name] ?? [];
    const mcause = BigInt.asUintN(64, m.hart.mcause);
    assert.ok(expected.includes(mcause), `mcause ${mcause}, expected one of ${expected.join(', ')}`);
    if (name === 'mmio' || name === 'hole') assert.equal(BigInt.asUintN(64, m.hart.mepc), BigInt.asUintN(64, m.hart.mtvec), 'faulting at mtvec itself');
  });
}

const PF_STORM = String.raw`
  .equ N, 50000
  .equ BADVA, 0x40000000
  .section .text.init
  .globl _start
_start:
  la t0, mtrap
  csrw mtvec, t0
  li t0, -1                    # PMP: everything RWX for S
  csrw pmpaddr0, t0
  li t0, 0x1f
  csrw pmpcfg0, t0
  la t0, root                  # root[2]: gigapage VA 0x80000000 -> PA 0x80000000, RWXAD
  li t1, (0x80000000 >> 12) << 10 | 0xcf
  sd t1, 16(t0)
  srli t0, t0, 12
  li t1, 8 << 60
  or t0, t0, t1
  csrw satp, t0
  li s0, 0                     # faults seen
  li s1, 0                     # wrong cause/tval seen
  li t0, 3 << 11
  csrc mstatus, t0
  li t0, 1 << 11               # MPP = S
  csrs mstatus, t0
  la t0, smode
  csrw mepc, t0
  mret

smode:                         # alternate load, store and fetch faults on unmapped pages
  li s2, BADVA
  li s3, 0
1:
  andi t0, s3, 3
  slli t1, s3, 12
  add t1, t1, s2               # a different page each time: the TLB must not cache misses
  beqz t0, 2f
  addi t0, t0, -1
  beqz t0, 3f
  addi t0, t0, -1
  beqz t0, 4f
  ld a0, 0(t1)
  j 5f
2: sd a0, 8(t1)
  j 5f
3: lw a0, 4(t1)
  j 5f
4: jalr ra, 0(t1)              # fetch fault: the handler returns to ra
5:
  sfence.vma
  addi s3, s3, 1
  li t0, N
  blt s3, t0, 1b
  ecall

mtrap:
  csrr t5, mcause
  li t6, 9
  beq t5, t6, done
  addi s0, s0, 1
  csrr t6, mtval               # tval must be the faulting VA, page-aligned + 0/4/8
  srli t6, t6, 12
  slli t6, t6, 12
  slli t4, s3, 12
  add t4, t4, s2
  beq t6, t4, 6f
  addi s1, s1, 1
6:
  li t6, 12
  bne t5, t6, 7f
  csrw mepc, ra                # fetch fault: back to the caller
  mret
7:
  csrr t6, mepc
  addi t6, t6, 4
  csrw mepc, t6
  mret

done:
  mv a0, s0
  call puthex
  mv a0, s1
  call puthex
  bnez s1, bad
  li t0, N
  bne s0, t0, bad
  PASS
bad:
  FAIL 2
${PUTHEX}
  .section .data
  .align 12
root:
  .fill 512, 8, 0
`;

test('page-fault storm: 50000 load/store/fetch page faults under Sv39, each counted with the right tval', { timeout: 60_000 }, async () => {
  const path = await buildElf({ name: 'pf-storm', sources: { 's.S': COMMON + PF_STORM } });
  const { exit, out } = await runFor(readFileSync(path), 20_000);
  assert.deepEqual([exit.reason, exit.code], ['poweroff', 0], `exit ${JSON.stringify(exit)} console ${out}`);
  assert.equal(out, '000000000000c350\n0000000000000000\n');
});

const SMC = String.raw`
  .option norvc                 # every patched slot is exactly 4 bytes
  .section .text.init
  .globl _start
_start:
  la sp, stack_top
  # 1. sw over the very next instruction, no fence.i in between. The ISA leaves this
  #    unspecified (qemu-system runs the stale instruction); typevisor's decode cache is
  #    invalidated by the store itself, so it must run the new one.
  li a0, 0
  la t0, p1
  lw t1, addi_a0_42
  sw t1, 0(t0)
p1:
  addi a0, a0, 1
  call puthex                   # 2a

  # 2. the same with fence.i (the architectural way).
  li a0, 0
  la t0, p2
  lw t1, addi_a0_42
  sw t1, 0(t0)
  fence.i
p2:
  addi a0, a0, 1
  call puthex                   # 2a

  # 3. a loop that rewrites its own body each iteration: addi a0, a0, i (i = 0..999).
  li a0, 0
  li s1, 0
  la s2, p3
  lw s3, addi_a0_0
3:
  slli t1, s1, 20
  or t1, t1, s3
  sw t1, 0(s2)
  fence.i
p3:
  nop
  addi s1, s1, 1
  li t1, 1000
  blt s1, t1, 3b
  call puthex                   # sum 0..999 = 499500 = 0x79f2c

  # 4. byte-by-byte patch (sb): the cached old instruction must not survive a partial write.
  li a0, 0
  la t0, p4
  lw t1, addi_a0_42
  sb t1, 0(t0)
  srli t1, t1, 8
  sb t1, 1(t0)
  srli t1, t1, 8
  sb t1, 2(t0)
  srli t1, t1, 8
  sb t1, 3(t0)
  fence.i
p4:
  addi a0, a0, 1
  call puthex                   # 2a

  # 5. two compressed parcels (sh) over one 32-bit instruction.
  li a0, 0
  la t0, p5
  li t1, 0x0515                 # c.addi a0, 5
  sh t1, 0(t0)
  li t1, 0x0529                 # c.addi a0, 10
  sh t1, 2(t0)
  fence.i
p5:
  .option push
  .option norvc
  addi a0, a0, 1
  .option pop
  call puthex                   # f

  # 6. amoswap.w installs the instruction, sd installs two at once.
  li a0, 0
  la t0, p6
  lw t1, addi_a0_42
  amoswap.w zero, t1, (t0)
  fence.i
p6:
  addi a0, a0, 1
  la t0, p7
  ld t1, two_insns
  sd t1, 0(t0)
  fence.i
  .align 3
p7:
  addi a0, a0, 1
  addi a0, a0, 1
  call puthex                   # 2a + 3 + 4 = 0x31

  # 7. patch code that was already executed (and cached) before running it again.
  li s1, 0
  li a0, 0
8:
p8:
  addi a0, a0, 1
  la t0, p8
  lw t1, addi_a0_42
  sw t1, 0(t0)
  fence.i
  addi s1, s1, 1
  li t1, 2
  blt s1, t1, 8b
  call puthex                   # 1 + 42 = 0x2b

  li t0, FINISHER
  li t1, 0x5555
  sw t1, 0(t0)
9: j 9b
${PUTHEX}
  .align 3
addi_a0_42:
  addi a0, a0, 42
addi_a0_0:
  addi a0, a0, 0
  .align 3
two_insns:
  addi a0, a0, 3
  addi a0, a0, 4
  .section .data
  .align 4
  .fill 1024, 8, 0
stack_top:
`;

const SMC_EXPECTED = ['2a', '2a', '79f2c', '2a', 'f', '31', '2b'].map((v) => v.padStart(16, '0') + '\n').join('');

test('self-modifying code: patched instructions execute as written (known answer and qemu-system-riscv64)', { timeout: 60_000 }, async () => {
  const path = await buildElf({ name: 'smc', sources: { 's.S': COMMON + SMC } });
  const { exit, out } = await runFor(readFileSync(path), 10_000);
  assert.deepEqual([exit.reason, exit.code], ['poweroff', 0], `exit ${JSON.stringify(exit)} console ${out}`);
  assert.equal(out, SMC_EXPECTED);
  const q = await runQemuSystem(path);
  const lines = q.output.replace(/\r/g, '').split('\n');
  assert.equal(lines.slice(1).join('\n'), SMC_EXPECTED.split('\n').slice(1).join('\n'), 'qemu-system-riscv64 agrees (after the unspecified case 1)');
});
