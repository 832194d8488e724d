/**
 * Differential test of the integer ISA: random straight-line RV64IM(C) programs run on
 * typevisor (user-mode runner) and on qemu-riscv64; the final registers must agree exactly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { buildElf, runQemuUser } from '../lib/toolchain.js';
import { runUser } from '../lib/user.js';
import { prng } from '../lib/prng.js';

const SEED = Number(process.env.INT_DIFF_SEED ?? 0x1d1ff);
const PROGRAMS = 5;
const LENGTH = 2500;

const INTERESTING = ['0', '1', '-1', '0x7fffffffffffffff', '-0x8000000000000000', '0x80000000', '0x7fffffff',
  '0xffffffff', '-0x80000000', '0x100000000', '63', '64', '-2', '0x5555555555555555', '0xaaaaaaaaaaaaaaaa'];
const R = ['add', 'sub', 'sll', 'slt', 'sltu', 'xor', 'srl', 'sra', 'or', 'and', 'mul', 'mulh', 'mulhsu', 'mulhu',
  'div', 'divu', 'rem', 'remu', 'addw', 'subw', 'sllw', 'srlw', 'sraw', 'mulw', 'divw', 'divuw', 'remw', 'remuw'];
const I = ['addi', 'slti', 'sltiu', 'xori', 'ori', 'andi', 'addiw'];
const SH = ['slli', 'srli', 'srai'];
const SHW = ['slliw', 'srliw', 'sraiw'];
/** Registers the random code may use: x5..x30 (x31 is the dump pointer; ra, sp, gp, tp are left alone). */
const REGS = Array.from({ length: 26 }, (_, i) => i + 5);

function generate(rand: () => number): string {
  const reg = (): string => `x${REGS[rand() % REGS.length]}`;
  const lines: string[] = ['  .section .text.init', '  .globl _start', '_start:'];
  for (const r of REGS) {
    const v = rand() % 3 === 0 ? `0x${rand().toString(16)}${rand().toString(16).padStart(8, '0')}` : INTERESTING[rand() % INTERESTING.length];
    lines.push(`  li x${r}, ${v}`);
  }
  for (let i = 0; i < LENGTH; i++) {
    const k = rand() % 100;
    if (k < 55) lines.push(`  ${R[rand() % R.length]} ${reg()}, ${reg()}, ${reg()}`);
    else if (k < 75) lines.push(`  ${I[rand() % I.length]} ${reg()}, ${reg()}, ${(rand() % 4096) - 2048}`);
    else if (k < 85) lines.push(`  ${SH[rand() % SH.length]} ${reg()}, ${reg()}, ${rand() % 64}`);
    else if (k < 92) lines.push(`  ${SHW[rand() % SHW.length]} ${reg()}, ${reg()}, ${rand() % 32}`);
    else if (k < 96) lines.push(`  lui ${reg()}, ${rand() % 0x100000}`);
    else lines.push(`  auipc ${reg()}, ${rand() % 0x100000}`);
  }
  lines.push('  la x31, dump');
  REGS.forEach((r, i) => lines.push(`  sd x${r}, ${i * 8}(x31)`));
  lines.push('  li a0, 1', '  la a1, dump', `  li a2, ${REGS.length * 8}`, '  li a7, 64', '  ecall', '  li a0, 0', '  li a7, 93', '  ecall');
  lines.push('  .bss', '  .align 3', `dump: .space ${REGS.length * 8}`, '');
  return lines.join('\n');
}

test(`random RV64IM(C) programs: registers agree with qemu-riscv64 (seed ${SEED}, ${PROGRAMS} x ${LENGTH} instructions)`, { timeout: 120_000 }, async () => {
  const rand = prng(SEED);
  for (let p = 0; p < PROGRAMS; p++) {
    const path = await buildElf({ name: `int-random-${p}`, sources: { 'r.S': generate(rand) } });
    const ours = runUser(readFileSync(path), { maxInsns: 1_000_000 });
    const ref = await runQemuUser(path);
    assert.equal(ours.code, 0);
    assert.equal(ref.code, 0);
    assert.equal(ours.stdout.length, REGS.length * 8);
    const a = Buffer.from(ours.stdout), b = ref.stdout;
    for (let i = 0; i < REGS.length; i++) {
      const x = a.readBigUInt64LE(i * 8), y = b.readBigUInt64LE(i * 8);
      assert.equal(x, y, `program ${p} (seed ${SEED}): x${REGS[i]} typevisor 0x${x.toString(16)} qemu 0x${y.toString(16)}`);
    }
  }
});
