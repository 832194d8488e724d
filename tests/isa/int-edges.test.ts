/**
 * Integer edge cases the spec pins down (unprivileged spec chapters 2, 5, 7, 8): division by
 * zero and overflow, *W sign extension, shift amounts, AMO signedness, LR/SC failure, pause.
 * Results are compared with qemu-riscv64 AND with the values the spec defines.
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
  li s1, -0x8000000000000000
  li s2, -1
  li s3, 7
  li s4, -0x80000000
  # 0..7: division by zero (quotient all ones, remainder = dividend)
  div t0, s3, zero;   OUT t0
  divu t0, s3, zero;  OUT t0
  rem t0, s3, zero;   OUT t0
  remu t0, s3, zero;  OUT t0
  divw t0, s3, zero;  OUT t0
  divuw t0, s3, zero; OUT t0
  remw t0, s4, zero;  OUT t0
  remuw t0, s4, zero; OUT t0
  # 8..11: signed overflow
  div t0, s1, s2;     OUT t0
  rem t0, s1, s2;     OUT t0
  divw t0, s4, s2;    OUT t0
  remw t0, s4, s2;    OUT t0
  # 12..17: *W sign extension
  li t1, 0x7fffffff
  addiw t0, t1, 1;    OUT t0
  addw t0, t1, t1;    OUT t0
  slliw t0, t1, 1;    OUT t0
  li t1, 0x80000000
  srliw t0, t1, 0;    OUT t0
  sraiw t0, t1, 4;    OUT t0
  mulw t0, t1, s3;    OUT t0
  # 18..25: shift amounts 31, 32, 63 and register amounts use the low bits
  li t1, 1
  slli t0, t1, 63;    OUT t0
  slli t0, t1, 32;    OUT t0
  srai t0, s1, 63;    OUT t0
  srli t0, s1, 63;    OUT t0
  li t2, 64 + 3
  sll t0, t1, t2;     OUT t0
  li t2, 32 + 31
  sllw t0, t1, t2;    OUT t0
  sraw t0, s4, t2;    OUT t0
  srlw t0, s4, t2;    OUT t0
  # 26..29: high multiplies
  mulh t0, s1, s2;    OUT t0
  mulhu t0, s2, s2;   OUT t0
  mulhsu t0, s2, s2;  OUT t0
  mul t0, s1, s2;     OUT t0
  # 30..37: AMO signedness (.w results are sign-extended; min/max signed vs unsigned)
  la a0, word
  li t1, 0x80000000
  sw t1, 0(a0)
  li t2, 1
  amomin.w t0, t2, (a0); OUT t0
  lw t0, 0(a0);          OUT t0
  sw t1, 0(a0)
  amominu.w t0, t2, (a0); lw t0, 0(a0); OUT t0
  sw t1, 0(a0)
  amomax.w t0, t2, (a0); lw t0, 0(a0); OUT t0
  sw t1, 0(a0)
  amomaxu.w t0, t2, (a0); lw t0, 0(a0); OUT t0
  la a0, dword
  sd s1, 0(a0)
  amomin.d t0, t2, (a0); ld t0, 0(a0); OUT t0
  sd s1, 0(a0)
  amomaxu.d t0, t2, (a0); ld t0, 0(a0); OUT t0
  amoadd.w t0, t2, (a0); OUT t0
  # 38..45: LR/SC
  la a0, dword
  li t1, 42
  sd zero, 0(a0)
  lr.d t0, (a0)
  sc.d t2, t1, (a0);  OUT t2      # success: 0
  ld t0, 0(a0);       OUT t0      # 42
  sc.d t2, t1, (a0);  OUT t2      # no reservation: fails
  # (A store by this same hart between LR and SC may or may not break the reservation:
  # the spec only requires stores by other agents to. Not tested here.)
  la a1, word
  lr.w t0, (a0)
  sc.w t2, t1, (a1);  OUT t2      # different address: fails
  lw t0, 0(a1);       OUT t0
  .word 0x0100000f                # pause (Zihintpause): a hint, no effect
  li t0, 0x5a
  OUT t0
  li a0, 1
  la a1, buf
  sub a2, s11, a1
  li a7, 64
  ecall
  li a0, 0
  li a7, 93
  ecall
  .data
  .align 3
word: .dword 0
dword: .dword 0
buf: .space 512
`;

const M = (v: bigint): bigint => BigInt.asUintN(64, v);

test('integer edge cases: agree with qemu-riscv64 and with the spec', { timeout: 60_000 }, async () => {
  const path = await buildElf({ name: 'int-edges', sources: { 'e.S': SRC } });
  const ours = runUser(readFileSync(path));
  const ref = await runQemuUser(path);
  assert.equal(ours.code, 0);
  assert.deepEqual(Buffer.from(ours.stdout), ref.stdout, 'identical to qemu-riscv64');
  const b = Buffer.from(ours.stdout);
  const v = (i: number): bigint => b.readBigUInt64LE(i * 8);
  const MIN = 0x8000_0000_0000_0000n, ALL = M(-1n);
  const expect: Array<[number, bigint]> = [
    [0, ALL], [1, ALL], [2, 7n], [3, 7n], [4, ALL], [5, ALL], [6, M(-0x8000_0000n)], [7, M(-0x8000_0000n)],
    [8, MIN], [9, 0n], [10, M(-0x8000_0000n)], [11, 0n],
    [12, M(-0x8000_0000n)], [13, M(-2n)], [14, M(-2n)], [15, M(-0x8000_0000n)], [16, M(-0x0800_0000n)], [17, M(-0x8000_0000n)],
    [18, MIN], [19, 1n << 32n], [20, ALL], [21, 1n], [22, 8n], [23, M(-0x8000_0000n)], [24, ALL], [25, 1n],
    [26, 0n], [27, M(-2n)], [28, ALL], [29, MIN],
    [30, M(-0x8000_0000n)], [31, M(-0x8000_0000n)], [32, 1n], [33, 1n], [34, M(-0x8000_0000n)], [35, MIN], [36, MIN], [37, 0n],
    [38, 0n], [39, 42n], [42, M(-0x8000_0000n)], [43, 0x5an],
  ];
  for (const [i, want] of expect) assert.equal(v(i), want, `result ${i}: 0x${v(i).toString(16)} != 0x${want.toString(16)}`);
  assert.notEqual(v(40), 0n, 'sc without a reservation fails');
  assert.notEqual(v(41), 0n, 'sc to another address fails');
  assert.equal(b.length, 44 * 8);
});
