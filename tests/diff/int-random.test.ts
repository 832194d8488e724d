/**
 * Differential test of the integer ISA: random RV64IMA(C) programs (ALU ops, loads and stores,
 * forward branches and jumps, AMOs, LR/SC) run on
 * typevisor (user-mode runner) and on qemu-riscv64; the final registers and data must agree exactly.
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
/** Registers the random code may use: x5..x30 (x31 is the dump pointer; gp is the data base, tp the AMO address). */
const REGS = Array.from({ length: 26 }, (_, i) => i + 5);
const LOADS: Array<[string, number]> = [['lb', 1], ['lbu', 1], ['lh', 2], ['lhu', 2], ['lw', 4], ['lwu', 4], ['ld', 8]];
const STORES: Array<[string, number]> = [['sb', 1], ['sh', 2], ['sw', 4], ['sd', 8]];
const BRANCHES = ['beq', 'bne', 'blt', 'bge', 'bltu', 'bgeu'];
const AMOS = ['amoadd', 'amoswap', 'amoand', 'amoor', 'amoxor', 'amomax', 'amomin', 'amomaxu', 'amominu'];
/** Bytes of the data area loads, stores and AMOs work on (dumped and compared too). */
const DATA_BYTES = 2048;

function generate(rand: () => number): string {
  const reg = (): string => `x${REGS[rand() % REGS.length]}`;
  const lines: string[] = ['  .section .text.init', '  .globl _start', '_start:', '  la gp, data'];
  for (const r of REGS) {
    const v = rand() % 3 === 0 ? `0x${rand().toString(16)}${rand().toString(16).padStart(8, '0')}` : INTERESTING[rand() % INTERESTING.length];
    lines.push(`  li x${r}, ${v}`);
  }
  const off = (size: number): number => (rand() % (DATA_BYTES / size)) * size;
  // Forward branches only (no loops): each jumps over the next 1..6 instructions.
  const pending: Array<{ label: string; left: number }> = [];
  let labels = 0;
  for (let i = 0; i < LENGTH; i++) {
    const k = rand() % 100;
    if (k < 40) lines.push(`  ${R[rand() % R.length]} ${reg()}, ${reg()}, ${reg()}`);
    else if (k < 52) lines.push(`  ${I[rand() % I.length]} ${reg()}, ${reg()}, ${(rand() % 4096) - 2048}`);
    else if (k < 58) lines.push(`  ${SH[rand() % SH.length]} ${reg()}, ${reg()}, ${rand() % 64}`);
    else if (k < 62) lines.push(`  ${SHW[rand() % SHW.length]} ${reg()}, ${reg()}, ${rand() % 32}`);
    else if (k < 64) lines.push(`  lui ${reg()}, ${rand() % 0x100000}`);
    else if (k < 65) lines.push(`  auipc ${reg()}, ${rand() % 0x100000}`);
    else if (k < 74) { const [op, size] = LOADS[rand() % LOADS.length]; lines.push(`  ${op} ${reg()}, ${off(size)}(gp)`); }
    else if (k < 82) { const [op, size] = STORES[rand() % STORES.length]; lines.push(`  ${op} ${reg()}, ${off(size)}(gp)`); }
    else if (k < 90) {
      const label = `L${labels++}`;
      lines.push(rand() % 8 === 0 ? `  jal ${reg()}, ${label}` : `  ${BRANCHES[rand() % BRANCHES.length]} ${reg()}, ${reg()}, ${label}`);
      pending.push({ label, left: 1 + (rand() % 6) });
    } else if (k < 97) {
      const w = rand() % 2 === 0;
      lines.push(`  addi tp, gp, ${off(8)}`);
      lines.push(`  ${AMOS[rand() % AMOS.length]}.${w ? 'w' : 'd'} ${reg()}, ${reg()}, (tp)`);
    } else {
      // LR/SC pair (the SC succeeds: nothing intervenes) or a lone SC (fails: no reservation).
      lines.push(`  addi tp, gp, ${off(8)}`);
      if (rand() % 4 !== 0) lines.push(`  lr.d ${reg()}, (tp)`);
      lines.push(`  sc.d ${reg()}, ${reg()}, (tp)`);
    }
    for (const p of pending) p.left--;
    while (pending.length > 0 && pending[0].left <= 0) lines.push(`${pending.shift()?.label}:`);
  }
  for (const p of pending) lines.push(`${p.label}:`);
  lines.push('  la x31, dump');
  REGS.forEach((r, i) => lines.push(`  sd x${r}, ${i * 8}(x31)`));
  lines.push('  li a0, 1', '  la a1, dump', `  li a2, ${REGS.length * 8}`, '  li a7, 64', '  ecall');
  lines.push('  li a0, 1', '  la a1, data', `  li a2, ${DATA_BYTES}`, '  li a7, 64', '  ecall');
  lines.push('  li a0, 0', '  li a7, 93', '  ecall');
  lines.push('  .data', '  .align 3', 'data:');
  for (let i = 0; i < DATA_BYTES / 8; i++) lines.push(`  .dword 0x${rand().toString(16)}${rand().toString(16).padStart(8, '0')}`);
  lines.push('  .bss', '  .align 3', `dump: .space ${REGS.length * 8}`, '');
  return lines.join('\n');
}

test(`random RV64IMA(C) programs with memory, branches and AMOs: registers and data agree with qemu-riscv64 (seed ${SEED}, ${PROGRAMS} x ${LENGTH} instructions)`, { timeout: 120_000 }, async () => {
  const rand = prng(SEED);
  for (let p = 0; p < PROGRAMS; p++) {
    const path = await buildElf({ name: `int-random-${p}`, sources: { 'r.S': generate(rand) } });
    const ref = await runQemuUser(path);
    // Each program runs twice: S-mode without translation, and U-mode under Sv39 (as Linux runs it).
    for (const paging of [false, true]) check(p, runUser(readFileSync(path), { maxInsns: 1_000_000, paging }), ref, paging);
  }
});

function check(p: number, ours: ReturnType<typeof runUser>, ref: Awaited<ReturnType<typeof runQemuUser>>, paging: boolean): void {
  {
    const where = paging ? 'U-mode, Sv39' : 'S-mode, bare';
    assert.equal(ours.code, 0, where);
    assert.equal(ref.code, 0);
    assert.equal(ours.stdout.length, REGS.length * 8 + DATA_BYTES);
    assert.equal(ref.stdout.length, REGS.length * 8 + DATA_BYTES);
    const a = Buffer.from(ours.stdout), b = ref.stdout;
    for (let i = 0; i < REGS.length; i++) {
      const x = a.readBigUInt64LE(i * 8), y = b.readBigUInt64LE(i * 8);
      assert.equal(x, y, `program ${p} (seed ${SEED}, ${where}): x${REGS[i]} typevisor 0x${x.toString(16)} qemu 0x${y.toString(16)}`);
    }
    const d = REGS.length * 8;
    assert.ok(a.subarray(d).equals(b.subarray(d)), `program ${p} (seed ${SEED}, ${where}): the data area differs`);
    if (paging) assert.ok(ours.hart.mcause === 8n && ours.hart.satp >> 60n === 8n, 'ran in U-mode under Sv39 (exit was an ecall from U)');
  }
}
