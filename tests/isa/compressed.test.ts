/**
 * Every RV64C form, written with explicit `c.` mnemonics (unprivileged spec chapter 16), run
 * on typevisor and qemu-riscv64: results must be identical and match known values.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { buildElf, runQemuUser } from '../lib/toolchain.js';
import { runUser } from '../lib/user.js';

const SRC = String.raw`
  .macro OUT reg
    sd \reg, 0(s11)
    addi s11, s11, 8
  .endm
  .section .text.init
  .globl _start
_start:
  la s11, buf
  la sp, stack_top
  li s0, 0
  li s1, 0
  li a0, 5
  li a1, -3
  c.li a2, -17;          OUT a2        # 0
  c.lui a3, 0x1f;        OUT a3        # 1: 0x1f000
  c.lui a3, 0xfffe0;     OUT a3        # 2: sign-extended upper immediate
  c.addi a2, 7;          OUT a2        # 3
  c.addiw a0, -1;        OUT a0        # 4
  li a4, 0x7fffffff
  c.addiw a4, 1;         OUT a4        # 5: sign-extended 32-bit
  c.addi16sp sp, -64;    mv t0, sp; OUT t0
  c.addi4spn a5, sp, 16; OUT a5        # 7: sp + 16
  c.addi16sp sp, 64
  li a4, -256
  c.srli a4, 60;         OUT a4        # 8
  li a4, -256
  c.srai a4, 4;          OUT a4        # 9
  li a4, 0x1234
  c.andi a4, -16;        OUT a4        # 10
  li a4, 3
  c.slli a4, 62;         OUT a4        # 11
  li a4, 100
  li a5, 58
  c.sub a4, a5;          OUT a4        # 12
  c.xor a4, a5;          OUT a4        # 13
  c.or a4, a5;           OUT a4        # 14
  c.and a4, a5;          OUT a4        # 15
  li a4, 0x7fffffff
  li a5, 1
  c.addw a4, a5;         OUT a4        # 16
  li a4, -0x80000000
  c.subw a4, a5;         OUT a4        # 17
  c.mv t1, a1;           OUT t1        # 18
  c.add t1, a0;          OUT t1        # 19
  # loads and stores: register-based and stack-pointer-based
  la a4, data
  c.ld a5, 8(a4);        OUT a5        # 20
  c.lw a5, 4(a4);        OUT a5        # 21: sign-extended
  c.sd a1, 16(a4)
  c.sw a0, 24(a4)
  ld a5, 16(a4);         OUT a5        # 22
  lwu a5, 24(a4);        OUT a5        # 23
  addi sp, sp, -32
  c.sdsp a1, 8(sp)
  c.swsp a0, 16(sp)
  c.ldsp t2, 8(sp);      OUT t2        # 24
  c.lwsp t2, 16(sp);     OUT t2        # 25
  c.fsdsp fa0, 0(sp)
  li t0, 0x400921fb54442d18
  fmv.d.x fa1, t0
  c.fsd fa1, 0(a4)
  c.fld fa2, 0(a4)
  fmv.x.d t0, fa2;       OUT t0        # 26
  c.fsdsp fa2, 24(sp)
  c.fldsp fa3, 24(sp)
  fmv.x.d t0, fa3;       OUT t0        # 27
  addi sp, sp, 32
  # control transfer
  li a4, 0
  c.beqz a4, 1f
  li a4, 99
1:OUT a4                               # 28: 0
  li a4, 1
  c.bnez a4, 2f
  li a4, 99
2:OUT a4                               # 29: 1
  li t0, 1
  c.j 3f
  li t0, 99
3:OUT t0                               # 30: 1
  la t1, 4f
  c.jr t1
  li t0, 99
4:OUT t0                               # 31: 1
  la t1, 5f
  c.jalr t1
6:j 7f
5:la t2, 6b
  sub t0, ra, t2;        OUT t0        # 32: ra = return address = 6b
  c.jr ra
7:c.nop
  li t0, 0x5a;           OUT t0        # 33
  li a0, 1
  la a1, buf
  sub a2, s11, a1
  li a7, 64
  ecall
  li a0, 0
  li a7, 93
  ecall
  .data
  .align 4
data: .dword 0x1111111122222222, 0x3333333380000001, 0, 0
buf: .space 512
  .align 4
  .space 512
stack_top:
`;

test('every compressed form agrees with qemu-riscv64 and the spec', { timeout: 60_000 }, async () => {
  const path = await buildElf({ name: 'rvc', sources: { 'c.S': SRC } });
  const ours = runUser(readFileSync(path));
  const ref = await runQemuUser(path);
  assert.equal(ours.code, 0);
  assert.deepEqual(Buffer.from(ours.stdout), ref.stdout, 'identical to qemu-riscv64');
  const b = Buffer.from(ours.stdout);
  const v = (i: number): bigint => b.readBigUInt64LE(i * 8);
  const M = (x: bigint): bigint => BigInt.asUintN(64, x);
  const want: Array<[number, bigint]> = [
    [0, M(-17n)], [1, 0x1f000n], [2, M(-0x20000n)], [3, M(-10n)], [4, 4n], [5, M(-0x8000_0000n)],
    [8, 0xfn], [9, M(-16n)], [10, 0x1230n], [11, 0xc000_0000_0000_0000n], [12, 42n], [13, 42n ^ 58n],
    [14, (42n ^ 58n) | 58n], [15, ((42n ^ 58n) | 58n) & 58n], [16, M(-0x8000_0000n)], [17, 0x7fff_ffffn],
    [18, M(-3n)], [19, 1n], [20, 0x3333333380000001n], [21, 0x11111111n], [22, M(-3n)], [23, 4n],
    [24, M(-3n)], [25, 4n], [26, 0x400921fb54442d18n], [27, 0x400921fb54442d18n], [28, 0n], [29, 1n],
    [30, 1n], [31, 1n], [32, 0n], [33, 0x5an],
  ];
  for (const [i, x] of want) assert.equal(v(i), x, `result ${i}: 0x${v(i).toString(16)} != 0x${x.toString(16)}`);
  assert.equal(v(7), v(6) + 16n, 'c.addi4spn adds to sp');
});

test('c.ebreak raises a breakpoint; reserved compressed encodings raise illegal-instruction with the 16 bits in tval', { timeout: 60_000 }, async () => {
  const cases: Array<[string, RegExp]> = [
    ['c.ebreak', /mcause=3 /],
    ['.half 0x0000', /mcause=2 .* mtval=0x0$/],
    ['.half 0x6081', /mcause=2 .* mtval=0x6081$/],  // c.lui x1, 0
    ['.half 0x6101', /mcause=2 .* mtval=0x6101$/],  // c.addi16sp 0
    ['.half 0x2001', /mcause=2 .* mtval=0x2001$/],  // c.addiw x0
    ['.half 0x4002', /mcause=2 .* mtval=0x4002$/],  // c.lwsp x0
    ['.half 0x6002', /mcause=2 .* mtval=0x6002$/],  // c.ldsp x0
    ['.half 0x8002', /mcause=2 .* mtval=0x8002$/],  // c.jr x0
  ];
  for (const [insn, want] of cases) {
    const path = await buildElf({ name: 'rvc-trap', sources: { 't.S': `  .section .text.init\n  .globl _start\n_start:\n  ${insn}\n  li a7, 93\n  ecall\n` } });
    assert.throws(() => runUser(readFileSync(path)), (e: unknown) => e instanceof Error && want.test(e.message), insn);
  }
});
