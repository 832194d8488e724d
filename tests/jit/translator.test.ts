/**
 * The translator against the interpreter: the same programs, run with translation off,
 * at threshold 0 (everything translated at once) and at a small threshold (mixed), must
 * agree on output, registers and instruction counts; faults inside translated blocks must
 * leave exactly the interpreter's state; stores into a running block's own code, budgets
 * and interrupts raised by a block's MMIO store must behave as in the interpreter.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { buildElf } from '../lib/toolchain.js';
import { USER_MACROS, runUser, assertSameRun, userRegs, type UserResult } from '../lib/user.js';
import { runBare } from '../lib/bare.js';
import { CSR, PRIV_M } from '../../src/cpu/csr.js';

const EXIT = USER_MACROS;

/** Integer work with loops, calls, indirect jumps, every load/store width and M ops; prints a checksum. */
const WORKLOAD = EXIT + String.raw`
  .globl _start
_start:
  la s0, buf
  li s1, 0                  # checksum
  li s2, 300                # outer iterations
outer:
  # fill buf with a pattern, all widths
  li t0, 0
fill:
  slli t1, t0, 3
  add t2, s0, t1
  mul t3, t0, s2
  xor t3, t3, s1
  sd t3, 0(t2)
  sw t3, 8*64(t2)
  sh t3, 8*64+4(t2)
  sb t0, 8*64+6(t2)
  addi t0, t0, 1
  li t4, 64
  blt t0, t4, fill
  # sum with sign- and zero-extending loads
  li t0, 0
sum:
  slli t1, t0, 3
  add t2, s0, t1
  ld t3, 0(t2)
  lw t4, 8*64(t2)
  lwu t5, 8*64(t2)
  lh t6, 8*64+4(t2)
  lhu a1, 8*64+4(t2)
  lb a2, 8*64+6(t2)
  lbu a3, 8*64+6(t2)
  add s1, s1, t3
  xor s1, s1, t4
  add s1, s1, t5
  sub s1, s1, t6
  add s1, s1, a1
  xor s1, s1, a2
  add s1, s1, a3
  addi t0, t0, 1
  li a4, 64
  bne t0, a4, sum
  # a call and an indirect call
  mv a0, s1
  call mix
  la t0, mix
  jalr t0
  mv s1, a0
  addi s2, s2, -1
  bnez s2, outer
  EXIT_WITH s1
mix:
  li t1, 0x9e3779b97f4a7c15
  mulhu t2, a0, t1
  mulh t3, a0, t1
  mulhsu t4, a0, t1
  div t5, a0, t1
  remu t6, a0, t1
  divw a5, a0, t1
  remw a6, a0, t1
  add a0, a0, t2
  xor a0, a0, t3
  add a0, a0, t4
  xor a0, a0, t5
  add a0, a0, t6
  add a0, a0, a5
  xor a0, a0, a6
  slli a0, a0, 1
  addiw a0, a0, 7
  ret
  .bss
  .align 3
buf: .space 8*64*2
`;

test('translated code agrees with the interpreter: output, registers, instruction counts', { timeout: 60_000 }, async () => {
  const elf = readFileSync(await buildElf({ name: 'jit-workload', sources: { 'w.S': WORKLOAD } }));
  const ref = runUser(elf, { jitThreshold: Infinity });
  assert.equal(ref.code, 0);
  for (const th of [0, 3]) {
    const r = runUser(elf, { jitThreshold: th });
    assertSameRun(r, ref, `threshold ${th}`);
    const st = r.hart.jit!.stats;
    assert.ok(st.blocks >= 8, `threshold ${th}: ${st.blocks} blocks translated`);
    assert.ok(st.compiles < st.blocks || th === 0, 'blocks are batched into modules');
  }
});

/**
 * Double-precision work in a loop (loads, stores, moves, sign injection, + - * / sqrt, the
 * fused multiply-adds, compares and conversions), mostly inexact, with a few operands the inline fast path must
 * decline (a subnormal, a NaN, a directed rounding mode); prints f registers and fflags.
 */
const FPWORK = EXIT + String.raw`
  .globl _start
_start:
  la s0, vals
  li s2, 3000
  fld fs0, 0(s0)
  fld fs1, 8(s0)
  fld fs2, 16(s0)
  fmv.d.x fs3, zero
loop:
  fadd.d ft0, fs0, fs1
  fsub.d ft1, ft0, fs2
  fmul.d ft2, ft1, fs1
  fdiv.d ft3, ft2, fs2
  fsqrt.d ft4, ft0
  fmadd.d ft5, ft3, fs1, ft4
  fmsub.d ft6, ft5, fs2, ft3
  fnmadd.d ft7, ft6, fs0, ft5
  fnmsub.d fa0, ft7, fs1, ft6
  fsgnjn.d fa1, fa0, ft7
  fsgnjx.d fa2, fa1, fs2
  fsgnj.d fa3, fa2, fs0
  fadd.d fs3, fs3, fa3
  fsd fs3, 24(s0)
  fld fs4, 24(s0)
  fmv.x.d t0, fs4
  add s1, s1, t0
  flt.d t1, fs4, fs2
  fle.d t2, fs2, fs4
  feq.d t3, fs4, fs4
  fcvt.w.d t4, ft3, rtz
  fcvt.l.d t5, ft0
  fcvt.d.w fa5, s2
  fcvt.d.lu fa6, s2
  fcvt.wu.d t6, fa5, rup
  fadd.d fa5, fa5, fa6
  fcvt.l.d a3, fa5, rdn
  add s1, s1, t1
  add s1, s1, t2
  add s1, s1, t3
  add s1, s1, t4
  add s1, s1, t5
  add s1, s1, t6
  add s1, s1, a3
  fadd.d fs0, fs0, fs1
  addi s2, s2, -1
  bnez s2, loop
  fld ft8, 32(s0)          # a subnormal: declined, the softfloat decides
  fmul.d ft9, ft8, fs1
  fld ft10, 40(s0)         # a NaN
  fadd.d ft11, ft10, fs1
  flt.d t2, ft10, fs1      # NaN operands: declined (NV)
  fcvt.w.d t3, ft10
  fcvt.w.d t4, fs0, rmm    # a mode Wasm has no rounding for
  add s1, s1, t2
  add s1, s1, t3
  add s1, s1, t4
  fadd.d fa4, fs0, fs1, rtz  # a directed mode: the row's exec
  frflags t1
  la t0, out
  fsd fs3, 0(t0)
  fsd ft9, 8(t0)
  fsd ft11, 16(t0)
  fsd fa4, 24(t0)
  sd s1, 32(t0)
  sd t1, 40(t0)
  li a0, 1
  la a1, out
  li a2, 48
  li a7, 64
  ecall
  EXIT 0
  .data
  .align 3
vals: .double 1.1, 0.3, 2.7, 0, 4.9e-320
      .dword 0x7ff8000000000001
  .bss
  .align 3
out: .space 48
`;

test('translated F/D code agrees with the interpreter, flags included, and runs inline', { timeout: 60_000 }, async () => {
  const elf = readFileSync(await buildElf({ name: 'jit-fp', sources: { 'f.S': FPWORK } }));
  const ref = runUser(elf, { jitThreshold: Infinity });
  assert.equal(ref.code, 0);
  const fregs = (r: UserResult): bigint[] => Array.from({ length: 32 }, (_, i) => r.hart.freg(i));
  for (const th of [0, 3]) {
    const r = runUser(elf, { jitThreshold: th });
    assert.equal(r.code, 0);
    assert.deepEqual(Buffer.from(r.stdout), Buffer.from(ref.stdout), `threshold ${th}: results and fflags`);
    assert.deepEqual(fregs(r), fregs(ref), `threshold ${th}: f registers`);
    assert.deepEqual(userRegs(r), userRegs(ref), `threshold ${th}: x registers`);
    assert.equal(r.hart.fflags, ref.hart.fflags, `threshold ${th}: fflags`);
    assert.equal(r.hart.mstatus, ref.hart.mstatus, `threshold ${th}: mstatus (FS)`);
    assert.equal(r.hart.icount, ref.hart.icount, `threshold ${th}: instructions retired`);
    // 3000 iterations of 26 F/D instructions: nearly all must have run inline.
    const st = r.hart.jit!.stats;
    assert.ok(st.executed > 30000, `threshold ${th}: ${st.executed} instructions translated`);
    assert.ok(st.execCalls < 500, `threshold ${th}: ${st.execCalls} instructions went through exec`);
  }
  assert.notEqual(ref.hart.fflags & 1, 0, 'NX set');
});

/** Hot loop, then a faulting load in the middle of a block with registers changed before it. */
const FAULT = EXIT + String.raw`
  .globl _start
_start:
  li s0, 5000
  la s1, data
  li s2, 0
loop:
  addi s2, s2, 3
  ld t0, 0(s1)
  add s3, s2, t0
  xori s4, s3, 0x55
  addi s0, s0, -1
  bnez s0, loop
  # the same shape once more, now through a pointer that faults (outside RAM)
  li s1, 0x1000
  li s5, 7
again:
  addi s2, s2, 3
  mul s6, s2, s5
  ld t0, 8(s1)
  add s3, s2, t0
  j again
  .data
  .align 3
data: .dword 5
`;

test('a fault in the middle of a translated block leaves the interpreter\'s exact state', async () => {
  const elf = readFileSync(await buildElf({ name: 'jit-fault', sources: { 'f.S': FAULT } }));
  const ref = runUser(elf, { jitThreshold: Infinity, stopOnTrap: true });
  assert.equal(ref.trapped, true);
  assert.equal(ref.hart.mcause, 5n, 'load access fault');
  assert.equal(ref.hart.mtval, 0x1008n);
  for (const th of [0, 2]) {
    const r = runUser(elf, { jitThreshold: th, stopOnTrap: true });
    assert.equal(r.trapped, true);
    assert.deepEqual([r.hart.mcause, r.hart.mepc, r.hart.mtval], [ref.hart.mcause, ref.hart.mepc, ref.hart.mtval], `threshold ${th}`);
    assert.deepEqual(userRegs(r), userRegs(ref), `threshold ${th}: registers at the fault`);
    assert.equal(r.hart.icount, ref.hart.icount, `threshold ${th}: instructions retired`);
    assert.ok(r.hart.jit!.stats.blocks > 0);
  }
});

/**
 * An unrolled copy loop (eight loads from one base register, eight stores to another: two
 * probe groups sharing one TLB probe each), hot, then run once more with its source four
 * doublewords before the end of RAM: the group's probe must fail (its span leaves the
 * page), and the loads must fault one by one exactly where the interpreter does.
 */
const GROUPS = EXIT + String.raw`
  .equ RAM_END, 0x84000000
  .globl _start
_start:
  li s0, 3000
outer:
  la a1, src
  la a0, dst
copy:
  ld a4, 0(a1)
  ld a5, 8(a1)
  ld a6, 16(a1)
  ld a7, 24(a1)
  ld t1, 32(a1)
  ld t2, 40(a1)
  ld t3, 48(a1)
  ld t4, 56(a1)
  sd a4, 0(a0)
  sd a5, 8(a0)
  sd a6, 16(a0)
  sd a7, 24(a0)
  sd t1, 32(a0)
  sd t2, 40(a0)
  sd t3, 48(a0)
  sd t4, 56(a0)
  addi s0, s0, -1
  bnez s0, outer
  la a0, dst
  ld t0, 56(a0)
  li t1, 0x5eed8
  bne t0, t1, bad
  li a1, RAM_END - 32      # the same block again: four loads in RAM, then a fault
  ld t5, 0(a1)             # (the last page is in the read TLB: the group's probe would hit it)
  li s0, 1
  j copy
bad:
  EXIT_WITH t0
  .data
  .align 6
src: .dword 1, 2, 3, 4, 5, 6, 7, 0x5eed8
dst: .fill 8, 8, 0
`;

test('loads and stores sharing a TLB probe: copied values, and a group leaving RAM faults at the exact load', async () => {
  const elf = readFileSync(await buildElf({ name: 'jit-probe-groups', sources: { 'g.S': GROUPS } }));
  const ref = runUser(elf, { jitThreshold: Infinity, stopOnTrap: true });
  assert.equal(ref.trapped, true, `the interpreter's run ended with code ${ref.code}`);
  assert.deepEqual([ref.hart.mcause, ref.hart.mtval], [5n, 0x84000000n], 'load access fault at the end of RAM');
  for (const th of [0, 2]) {
    const r = runUser(elf, { jitThreshold: th, stopOnTrap: true });
    assert.equal(r.trapped, true, `threshold ${th}`);
    assert.deepEqual([r.hart.mcause, r.hart.mepc, r.hart.mtval], [ref.hart.mcause, ref.hart.mepc, ref.hart.mtval], `threshold ${th}`);
    assert.deepEqual(userRegs(r), userRegs(ref), `threshold ${th}: registers at the fault`);
    assert.equal(r.hart.icount, ref.hart.icount, `threshold ${th}: instructions retired`);
  }
});

/**
 * A hot loop of twelve blocks, each ending in a branch or jump to the next, entered at
 * threshold 0 one block at a time (so each gets a function of its own) and a call to a
 * function of the same page: the dispatcher sees every transfer until the page's hot
 * region is compiled again as one function.
 */
const SPREAD = EXIT + String.raw`
  .globl _start
_start:
  li s0, 100000
  li s1, 0
  li s2, 0x5bd1e995
loop:
  add s1, s1, s0
  bnez s0, b1
  j done
b1:
  xor s1, s1, s2
  j b2
b2:
  slli t0, s1, 7
  beq t0, zero, b3
b3:
  srli t1, s1, 3
  bne t1, s1, b4
b4:
  add s1, s1, t1
  blt s1, s2, b5
b5:
  mul s1, s1, s2
  bge s2, zero, b6
b6:
  addiw s3, s1, 11
  bltu s3, s1, b7
b7:
  sub s1, s1, s3
  bgeu s1, s3, b8
b8:
  call mix
  j b9
b9:
  xori s1, s1, 0x3a5
  j b10
b10:
  addi s0, s0, -1
  j loop
done:
  EXIT_WITH s1
mix:
  srli t2, s1, 17
  xor s1, s1, t2
  ret
  .data
  .align 3
`;

test('a hot page whose blocks are spread over functions is compiled again as one: same results, few dispatcher entries', async () => {
  const elf = readFileSync(await buildElf({ name: 'jit-spread', sources: { 's.S': SPREAD } }));
  const ref = runUser(elf, { jitThreshold: Infinity });
  assert.equal(ref.code, 0);
  for (const th of [0, 2]) {
    const r = runUser(elf, { jitThreshold: th });
    assertSameRun(r, ref, `threshold ${th}`);
    const st = r.hart.jit!.stats;
    // At threshold 0 every block is compiled alone, in a module of its own: the page's
    // functions reach each other through the target cache until the recompile. At 2 they
    // are compiled together and call each other directly (no recompile needed).
    if (th === 0) assert.ok(st.promotions >= 1, `threshold ${th}: ${st.promotions} hot-page recompiles`);
    else assert.ok(st.siblingCalls >= 1, `threshold ${th}: ${st.siblingCalls} direct calls between the page's functions`);
    // 100,000 passes of 13 transfers each: 1.3 M entries without either, the recompile
    // coming after 65,536 passes (HOT_ENTRIES) have gone through the dispatcher.
    assert.ok(st.entries < 65536 * 13 + 50_000, `threshold ${th}: ${st.entries} dispatcher entries`);
  }
});

/**
 * One page of blocks, hot, spread over several functions (8 blocks each at most): c0 and c1
 * have 10 block heads between them, so they are in different functions and call each other
 * directly, 50 times a pass with no other transfer in between (only the callee's budget
 * check bounds the run). On the last pass c1, entered from c0, faults in its middle.
 */
const SIBLINGS = EXIT + String.raw`
  .globl _start
_start:
  li s0, 300
  li s1, 0
  la s4, data
loop:
  li s6, 50
c0:
  addi s5, s5, 1
  j c1
b1:
  xori s1, s1, 0x55
  j b2
b2:
  slli t1, s1, 2
  j b3
b3:
  add s1, s1, t1
  j b4
b4:
  srli t1, s1, 7
  j b5
b5:
  xor s1, s1, t1
  j b6
b6:
  addi s0, s0, -1
  bnez s0, b7
  li s4, 0x1000            # the last pass: c1 loads from outside RAM
  j b7
b7:
  addiw s2, s1, 11
  j b8
b8:
  sub s1, s1, s2
  j b9
b9:
  mul s1, s1, s2
  j loop
c1:
  addi s6, s6, -1
  slli t2, s6, 3
  ld t0, 8(s4)
  add s5, s5, t0
  bnez s6, c0
  j b1
  .data
  .align 3
data: .dword 5, 9
`;

test('direct calls between one page\'s functions: exact state at a fault in the callee, budgets kept', async () => {
  const elf = readFileSync(await buildElf({ name: 'jit-siblings', sources: { 's.S': SIBLINGS } }));
  const ref = runUser(elf, { jitThreshold: Infinity, stopOnTrap: true });
  assert.equal(ref.trapped, true);
  assert.deepEqual([ref.hart.mcause, ref.hart.mtval], [5n, 0x1008n], 'load access fault outside RAM');
  const r = runUser(elf, { jitThreshold: 2, stopOnTrap: true });
  assert.equal(r.trapped, true);
  const st = r.hart.jit!.stats;
  assert.ok(st.siblingCalls >= 2, `${st.siblingCalls} direct calls between the page's functions`);
  assert.ok(st.entries < 300, `${st.entries} dispatcher entries for 300 passes`);
  assert.deepEqual([r.hart.mcause, r.hart.mepc, r.hart.mtval], [ref.hart.mcause, ref.hart.mepc, ref.hart.mtval]);
  assert.deepEqual(userRegs(r), userRegs(ref), 'registers at the fault');
  assert.equal(r.hart.icount, ref.hart.icount, 'instructions retired');
  // Again from the start on the same hart, its blocks translated: no run exceeds its budget.
  const h = r.hart;
  for (const budget of [1, 2, 5, 64, 65, 129, 1000, 12345]) {
    h.waiting = false; // (the trap went to the runner's wfi)
    h.enterPrivilege(PRIV_M, 0x8000_0000n);
    const before = h.icount;
    const n = h.run(budget);
    assert.ok(n <= budget, `budget ${budget}: ran ${n}`);
    assert.equal(h.icount - before, n, 'icount follows');
  }
});

/** HEADS: each block's page offset and what it adds. */
const HEAD_AT = [[0x100, 3], [0x3fa, 5], [0x400, 7], [0x802, 11], [0xa00, 13], [0xd00, 17], [0xf00, 19], [0xffa, 23]];

/**
 * Eight one-instruction blocks (and their returns) spread over one page, from near its
 * start to its last parcel, called in turn through a table by code in the same page (so
 * each call enters by its page offset inside the page's functions), and one table entry
 * that lands inside a block (on a head's `ret`): the functions' search over their heads
 * must pick each one, and send the other offset to their default path.
 */
const HEADS = EXIT + String.raw`
  .globl _start
  .balign 4096
_start:
  li s0, 400
  li s1, 0
  la s2, table
loop:
  li s3, 0
call:
  slli t0, s3, 3
  add t0, s2, t0
  ld t1, 0(t0)
  jalr ra, 0(t1)
  addi s3, s3, 1
  li t2, 9
  bne s3, t2, call
  addi s0, s0, -1
  bnez s0, loop
  EXIT_WITH s1
`
  + HEAD_AT.map(([off, k], i) => `  .org _start + ${off}\nh${i}: addi s1, s1, ${k}\n  ret\n`).join('') + String.raw`
  .data
  .align 3
table: .dword h0, h1, h2, h3, h4, h5, h6, h7, h3 + 2
`;

test('a page function picks each of its blocks by the entry offset, first parcel to last, and no other', async () => {
  const elf = readFileSync(await buildElf({ name: 'jit-heads', sources: { 'h.S': HEADS } }));
  const ref = runUser(elf, { jitThreshold: Infinity });
  assert.equal(ref.code, 0);
  for (const th of [0, 10]) {
    const r = runUser(elf, { jitThreshold: th });
    assertSameRun(r, ref, `threshold ${th}`);
    const st = r.hart.jit!.stats;
    assert.ok(st.blocks >= 9, `threshold ${th}: ${st.blocks} blocks translated`);
    assert.ok(st.executed > r.hart.icount * 0.8, `threshold ${th}: ${st.executed} of ${r.hart.icount} instructions translated`);
  }
});

/** A loop of 256 straight-line instructions (four blocks of the 64-instruction limit) and a branch. */
const LONG = EXIT + String.raw`
  .globl _start
_start:
  li s0, 400
  li s1, 0
  li s2, 0x9e3779b9
loop:
  .rept 128
  add s1, s1, s2
  srli t0, s1, 5
  .endr
  addi s0, s0, -1
  bnez s0, loop
  EXIT_WITH s1
  .data
  .align 3
`;

test('a long straight line is translated whole when its head gets hot, not one 64-instruction piece at a time', async () => {
  const elf = readFileSync(await buildElf({ name: 'jit-long', sources: { 'l.S': LONG } }));
  const ref = runUser(elf, { jitThreshold: Infinity });
  assert.equal(ref.code, 0);
  const r = runUser(elf, { jitThreshold: 50 });
  assert.deepEqual(Buffer.from(r.stdout), Buffer.from(ref.stdout), 'checksum');
  assert.deepEqual(userRegs(r), userRegs(ref), 'registers');
  assert.equal(r.hart.icount, ref.hart.icount, 'instructions retired');
  // 50 passes interpreted before the loop is planned, then up to a run slice while its
  // compile waits: 21 k instructions; piece by piece, each of the four pieces waited for
  // 50 entries of its own: 51 k.
  const interpreted = r.instructions - r.hart.jit!.stats.executed;
  assert.ok(interpreted < 30_000, `${interpreted} instructions interpreted`);
});

/**
 * Run an ELF interpreted and at threshold 50: the same run, with fewer than `max`
 * instructions (given the total) left to the interpreter.
 */
function assertMostlyTranslated(elf: Uint8Array, label: string, max: (total: number) => number): void {
  const ref = runUser(elf, { jitThreshold: Infinity });
  assert.equal(ref.code, 0);
  const r = runUser(elf, { jitThreshold: 50 });
  assertSameRun(r, ref, label);
  const interpreted = r.instructions - r.hart.jit!.stats.executed;
  assert.ok(interpreted < max(r.instructions), `${label}: ${interpreted} of ${r.instructions} instructions interpreted`);
}

/**
 * A loop whose straight-line body crosses a page boundary with a 4-byte instruction at the
 * page's last parcel (an instruction no block can hold), then goes on for 200 instructions.
 */
const STRADDLE = EXIT + String.raw`
  .globl _start
_start:
  li s2, 3000
  li a0, 0
  j loop
  .balign 4096
  .skip 4096 - 64
loop:
  .option push
  .option rvc
  c.addi a0, 1
  .option norvc
  .rept 15
  addi a0, a0, 1
  .endr
  xor a0, a0, s2          # at offset 4094: half in each page
  .rept 200
  addi a0, a0, 3
  .endr
  addi s2, s2, -1
  bnez s2, loop
  .option pop
  EXIT_WITH a0
`;

test('straight-line code after an instruction crossing a page is translated, not left to the interpreter', async () => {
  const elf = await buildElf({ name: 'jit-straddle', sources: { 's.S': STRADDLE } });
  const { execFileSync } = await import('node:child_process');
  // (The layout this test is about: the xor starts 2 bytes before a page boundary.)
  const dis = execFileSync('riscv64-linux-gnu-objdump', ['-d', elf], { encoding: 'utf8' });
  assert.match(dis, /^\s*[0-9a-f]*ffe:\s+[0-9a-f]{8}\s+xor\s/m, 'a 4-byte xor at offset 0xffe');
  // Each pass interprets the crossing xor; the 200 instructions after it run translated
  // once hot. (Left to the interpreter up to the next transfer, they were ~95 % of the run.)
  assertMostlyTranslated(readFileSync(elf), 'straddle', (total) => total / 10);
});

/** A hot loop whose body is 1,500 instructions without a transfer (over two page boundaries). */
const UNROLLED = EXIT + String.raw`
  .option norvc
  .globl _start
_start:
  li s2, 6000
  li a0, 0
loop:
  .rept 1500
  addi a0, a0, 1
  .endr
  addi s2, s2, -1
  bnez s2, loop
  EXIT_WITH a0
`;

test('a run slice that ends inside straight-line code leaves the rest to the next slice, translated', async () => {
  const elf = readFileSync(await buildElf({ name: 'jit-unrolled-slices', sources: { 'u.S': UNROLLED } }));
  // ~75 k instructions run interpreted before the body is translated. Each of the ~450
  // 20,000-instruction slices used to end mid-body with the rest of the body interpreted
  // (~750 instructions a slice: ~340 k in all); now a slice ends at a block's head instead.
  assertMostlyTranslated(elf, 'unrolled', () => 150_000);
});

/** 200,000 passes of a 3-instruction loop: 600,000 instructions, 30 run slices of 20,000. */
const SHORT_LOOP = EXIT + String.raw`
  .globl _start
_start:
  li s2, 200000
  li a0, 0
loop:
  add a0, a0, s2
  addi s2, s2, -1
  bnez s2, loop
  EXIT_WITH a0
`;

test('the end of a run slice costs one return to the dispatcher, not one per block', async () => {
  const elf = readFileSync(await buildElf({ name: 'jit-short-loop', sources: { 's.S': SHORT_LOOP } }));
  const ref = runUser(elf, { jitThreshold: Infinity });
  assert.equal(Buffer.from(ref.stdout).readBigUInt64LE(0), 200000n * 200001n / 2n);
  const r = runUser(elf, { jitThreshold: 0 });
  assertSameRun(r, ref, 'short loop');
  // Translated code stops with fewer than MAX_BLOCK instructions of its budget left; entered
  // again with that little, it ran one 3-instruction pass per entry: ~20 entries a slice.
  const entries = r.hart.jit!.stats.entries;
  assert.ok(entries <= 3 * 30, `${entries} dispatcher entries for 30 run slices`);
});

/** One short loop, hot alone: 3,000 passes of 5 instructions, all inside one run slice. */
const LONE_LOOP = EXIT + String.raw`
  .globl _start
_start:
  li s2, 3000
  li a0, 0
loop:
  addi a0, a0, 3
  xor a0, a0, s2
  slli a1, a0, 1
  addi s2, s2, -1
  bnez s2, loop
  EXIT_WITH a0
`;

test('a loop that got hot alone is compiled after 64 more passes, not at the end of the run slice', async () => {
  const elf = readFileSync(await buildElf({ name: 'jit-lone-loop', sources: { 'l.S': LONE_LOOP } }));
  // 50 passes before it is planned and 64 while it waits (5 instructions each); waiting
  // for the slice's end, all 15,000 ran interpreted.
  assertMostlyTranslated(elf, 'lone loop', () => 1_000);
});

/** Counter reads and an sscratch write in the middle of straight-line code, in a hot loop. */
const CSRS = EXIT + String.raw`
  .globl _start
_start:
  li s0, 10000
  li s1, 0
loop:
  rdinstret t0
  addi s1, s1, 3
  xor s1, s1, s0
  rdcycle t1
  csrw sscratch, s1
  add s1, s1, t1
  rdinstret t2
  sub t2, t2, t0
  csrr t3, sscratch
  add s1, s1, t2
  add s1, s1, t3
  addi s0, s0, -1
  bnez s0, loop
  EXIT_WITH s1
  .data
  .align 3
`;

test('CSR instructions inside translated blocks: counters exact, the block goes on after them', async () => {
  const elf = readFileSync(await buildElf({ name: 'jit-csrs', sources: { 'c.S': CSRS } }));
  const ref = runUser(elf, { jitThreshold: Infinity });
  assert.equal(ref.code, 0);
  for (const th of [0, 2]) {
    const r = runUser(elf, { jitThreshold: th });
    assert.deepEqual(Buffer.from(r.stdout), Buffer.from(ref.stdout), `threshold ${th}: checksum of counter reads`);
    assert.deepEqual(userRegs(r), userRegs(ref), `threshold ${th}: registers`);
    assert.equal(r.hart.icount, ref.hart.icount, `threshold ${th}: instructions retired`);
    const st = r.hart.jit!.stats;
    // (The first run slice, 20,000 instructions, runs interpreted at threshold 2.)
    assert.ok(st.execCalls >= 5 * 8000, `threshold ${th}: ${st.execCalls} CSR instructions run from translated code`);
    assert.ok(st.entries < 1000, `threshold ${th}: ${st.entries} dispatcher entries`);
  }
});

/** A hot loop that rewrites an instruction of its own block: the new one runs on the next pass. */
const SMC = EXIT + String.raw`
  .globl _start
_start:
  li s0, 50
  li s1, 0
  la s2, patch
  lw s3, 0(s2)            # addi s1, s1, 1
  la t0, alt
  lw s4, 0(t0)            # addi s1, s1, 100
loop:
patch:
  addi s1, s1, 1
  li t1, 25
  bne s0, t1, 1f
  sw s4, 0(s2)            # from the 26th pass on, the loop adds 100
  fence.i
1:
  addi s0, s0, -1
  bnez s0, loop
  EXIT_WITH s1
alt:
  addi s1, s1, 100
  .data
  .align 3
`;

test('a store into a running block\'s own code takes effect at once, as in the interpreter', async () => {
  const elf = readFileSync(await buildElf({ name: 'jit-smc', sources: { 's.S': SMC } }));
  const ref = runUser(elf, { jitThreshold: Infinity });
  assert.equal(Buffer.from(ref.stdout).readBigUInt64LE(0), 26n + 24n * 100n, "26 passes add 1, then 24 add 100");
  for (const th of [0, 2]) {
    const r = runUser(elf, { jitThreshold: th });
    assert.deepEqual(Buffer.from(r.stdout), Buffer.from(ref.stdout), `threshold ${th}`);
    assert.equal(r.hart.icount, ref.hart.icount);
  }
});

test('hart.run never exceeds its budget with translated, chained and self-looping blocks', async () => {
  const elf = readFileSync(await buildElf({ name: 'jit-workload', sources: { 'w.S': WORKLOAD } }));
  const warm = runUser(elf, { jitThreshold: 0 });
  const h = warm.hart;
  assert.ok(h.jit!.stats.blocks > 0);
  // Re-run from the start on the same hart, whose blocks are translated now.
  for (const budget of [1, 2, 7, 64, 65, 1000, 12345]) {
    h.pc = 0x8000_0000n;
    const before = h.icount;
    const n = h.run(budget);
    assert.ok(n <= budget, `budget ${budget}: ran ${n}`);
    assert.equal(h.icount - before, n, 'icount follows');
  }
});

/** M-mode: a block's store to CLINT msip raises MSIP; the trap must come right after the store. */
const IRQ = String.raw`
  .equ CLINT, 0x2000000
  .equ FINISHER, 0x100000
  .globl _start
_start:
  la t0, handler
  csrw mtvec, t0
  li t0, 8
  csrs mie, t0             # MSIE
  csrsi mstatus, 8         # MIE
  li s0, 0
  li s1, 40
  li s2, CLINT
loop:
  addi s0, s0, 1
  bne s0, s1, loop
  li t1, 1
  sw t1, 0(s2)             # msip = 1: the interrupt is taken before the next instruction
  addi s0, s0, 1000
  addi s0, s0, 1000
  j loop
  .align 2
handler:
  csrr a0, mepc
  la t0, after
  sub a0, a0, t0           # 0 if precise
  sw zero, 0(s2)
  li t0, FINISHER
  li t1, 0x3333
  beqz a0, 1f
  li t1, (9 << 16) | 0x3333
1: bne s0, s1, 2f         # and s0 was not yet bumped past 40
  li t1, 0x5555
2: sw t1, 0(t0)
3: j 3b
  .equ after, loop + 12
`;

/** The program passes only if mepc is the instruction right after the msip store. */
function irqSource(): string {
  return IRQ.replace('  .equ after, loop + 12\n', '')
    .replace('  sw t1, 0(s2)             # msip', 'store_msip:\n  sw t1, 0(s2)             # msip')
    .replace('  la t0, after\n', '  la t0, store_msip\n  addi t0, t0, 4\n');
}

test('an interrupt raised by a translated MMIO store is taken at the next instruction', async () => {
  const elf = readFileSync(await buildElf({ name: 'jit-irq', sources: { 'i.S': irqSource() } }));
  for (const th of [Infinity, 0, 2]) {
    const r = await runBare(elf, { jitThreshold: th, timeoutMs: 10_000 });
    assert.deepEqual([r.reason, r.code], ['poweroff', 0], `threshold ${th}: ${JSON.stringify(r)}`);
  }
  assert.equal(CSR.mepc, 0x341);
});

test('typevisor run --accel: jit and interp give the same program output; bad values are usage errors', async () => {
  const { spawnSync } = await import('node:child_process');
  const { join, dirname } = await import('node:path');
  const { fileURLToPath } = await import('node:url');
  const bin = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'bin', 'typevisor.js');
  const elf = await buildElf({ name: 'jit-irq', sources: { 'i.S': irqSource() } });
  const runs = ['interp', 'jit', 'jit,threshold=0', 'jit,threshold=0,tier=baseline', 'jit,tier=v8'].map((a) => spawnSync(process.execPath, [bin, 'run', '--accel', a, '--bios', elf], { encoding: 'utf8', timeout: 30_000 }));
  for (const r of runs) assert.equal(r.status, 0, r.stderr);
  for (const r of runs) assert.equal(r.stdout, runs[0].stdout);
  for (const bad of ['fast', 'jit,threshold=x', 'jit,foo=1', 'jit,tier=fast']) {
    const r = spawnSync(process.execPath, [bin, 'run', '--accel', bad, '--bios', 'none'], { encoding: 'utf8' });
    assert.equal(r.status, 2, bad);
    assert.match(r.stderr, /accel/);
  }
});

/**
 * CSR accesses run inside translated blocks (all but satp, misa and PMP): minstret and
 * mcycle read there count exactly, FS turned off there makes the next F instruction of the
 * same block trap, and an interrupt enabled there is taken before the next instruction.
 */
/** A bare-metal test's failure exit: the finisher's fail code with a0 as the reason (code 0x3333). */
const BARE_FAIL = String.raw`
  li t0, FINISHER
  slli a0, a0, 16
  li t1, 0x3333
  or t1, t1, a0
  sw t1, 0(t0)
1: j 1b
`;

/** Run a bare-metal program interpreted and translated (thresholds 0 and 2): it must power off with code 0. */
async function assertBarePasses(name: string, source: string): Promise<void> {
  const elf = readFileSync(await buildElf({ name, sources: { 'b.S': source } }));
  for (const th of [Infinity, 0, 2]) {
    const r = await runBare(elf, { jitThreshold: th, timeoutMs: 10_000 });
    assert.deepEqual([r.reason, r.code], ['poweroff', 0], `threshold ${th}: ${JSON.stringify(r)}`);
  }
}

const CSR_IN_BLOCK = String.raw`
  .equ CLINT, 0x2000000
  .equ FINISHER, 0x100000
  .equ FS, 0x6000
  .globl _start
_start:
  la t0, handler
  csrw mtvec, t0
  li s0, 0
  li s1, 60                # passes: every loop gets translated at thresholds 0 and 2
  li s9, 0                 # interrupts taken
  li s10, 0                # FP traps taken
  li s2, CLINT
  li t0, FS
  csrs mstatus, t0
loop:
  addi a3, a3, 1
  csrr a1, minstret
  addi a3, a3, 1
  addi a3, a3, 1
  csrr a2, minstret
  sub a2, a2, a1
  addi a2, a2, -3
  bnez a2, fail_count
  csrr a1, mcycle
  addi a3, a3, 1
  csrr a2, mcycle
  sub a2, a2, a1
  addi a2, a2, -2
  bnez a2, fail_count
  li t0, FS
  fadd.d f1, f1, f2        # FS on: the block reads mstatus.FS here
  csrc mstatus, t0
fp_off:
  fadd.d f1, f1, f2        # FS off: illegal instruction; the handler turns FS on and skips it
  addi s0, s0, 1
  bne s0, s1, loop
  bne s10, s1, fail_fp
  li t0, 8
  csrs mie, t0             # MSIE
  li s0, 0
irq_loop:
  li t1, 1
  sw t1, 0(s2)             # msip = 1 with mstatus.MIE off: pending, not taken
  addi a4, a4, 1
  csrsi mstatus, 8         # MIE on: taken before the next instruction
irq_after:
  addi a4, a4, 1
  addi s0, s0, 1
  bne s0, s1, irq_loop
  bne s9, s1, fail_irq
  li t0, FINISHER
  li t1, 0x5555
  sw t1, 0(t0)
1: j 1b

  .align 2
handler:
  csrr t2, mcause
  li t3, 2
  bne t2, t3, 1f
  csrr t2, mepc
  la t3, fp_off
  bne t2, t3, fail_fp
  li t3, FS
  csrs mstatus, t3
  addi t2, t2, 4
  csrw mepc, t2
  addi s10, s10, 1
  mret
1:
  li t3, -1
  slli t3, t3, 63
  addi t3, t3, 3           # machine software interrupt
  bne t2, t3, fail_other
  csrr t2, mepc
  la t3, irq_after
  bne t2, t3, fail_irq
  sw zero, 0(s2)           # msip = 0
  li t3, 0x80
  csrc mstatus, t3         # MPIE = 0: mret leaves MIE off
  addi s9, s9, 1
  mret

fail_count: li a0, 2
  j fail
fail_fp: li a0, 3
  j fail
fail_irq: li a0, 4
  j fail
fail_other: li a0, 5
fail:
` + BARE_FAIL;

test('CSR accesses inside translated blocks: exact counters, FS and interrupt enables take effect at once', async () => {
  await assertBarePasses('jit-csr-in-block', CSR_IN_BLOCK);
});

const SSTATUS_INLINE = String.raw`
  .equ FINISHER, 0x100000
  .globl _start
_start:
  la t0, mhandler
  csrw mtvec, t0
  la t0, shandler
  csrw stvec, t0
  li t0, -1
  csrw pmpaddr0, t0
  li t0, 0x1f
  csrw pmpcfg0, t0         # S may use all of memory
  li t0, 2
  csrw mideleg, t0         # SSIP goes to S
  csrs mie, t0             # SSIE
  li t0, 0x1800
  csrc mstatus, t0
  li t0, 0x800
  csrs mstatus, t0         # MPP = S
  la t0, s_start
  csrw mepc, t0
  mret

s_start:
  li s0, 0
  li s1, 60                # passes: the loop gets translated at thresholds 0 and 2
  li s9, 0                 # S software interrupts taken
  li s10, 0                # FP traps taken
sloop:
  csrr a1, sstatus         # SIE off, FS off: UXL = 2 only in the high word
  andi a2, a1, 2
  bnez a2, fail_read
  srli a2, a1, 32
  addi a2, a2, -2
  bnez a2, fail_read
  csrsi sstatus, 2         # SIE on, nothing pending: inline
  csrr a1, sstatus
  andi a2, a1, 2
  beqz a2, fail_read
  csrrci a3, sstatus, 2    # SIE off; the old value has it
  andi a2, a3, 2
  beqz a2, fail_read
  li t0, 2
  csrrs a1, sstatus, t0    # register operand, rd = old (SIE off)
  andi a2, a1, 2
  bnez a2, fail_read
  csrrc a1, sstatus, t0    # and off again: rd = old (SIE on)
  andi a2, a1, 2
  beqz a2, fail_read
  csrsi sip, 2             # SSIP pending, SIE off: not taken
  addi a4, a4, 1
  csrsi sstatus, 2         # SIE on with an interrupt pending: taken before the next instruction
s_after:
  addi a4, a4, 1
  li t0, 0x6000
  csrs sstatus, t0         # FS Dirty through sstatus (not inline: FS changes)
  fadd.d f1, f1, f2        # legal now
  csrr a1, sstatus
  bgez a1, fail_read       # SD set: FS is Dirty
  csrc sstatus, t0         # FS off
s_fp_off:
  fadd.d f1, f1, f2        # illegal: M turns FS on and skips it
  addi s0, s0, 1
  bne s0, s1, sloop
  bne s9, s1, fail_irq
  bne s10, s1, fail_fp
  ecall                    # to M: done

  .align 2
shandler:
  csrr t2, scause
  li t3, -1
  slli t3, t3, 63
  addi t3, t3, 1           # supervisor software interrupt
  bne t2, t3, fail_other
  csrr t2, sepc
  la t3, s_after
  bne t2, t3, fail_irq
  csrci sip, 2
  li t3, 0x20
  csrc sstatus, t3         # SPIE = 0: sret leaves SIE off
  addi s9, s9, 1
  sret

  .align 2
mhandler:
  csrr t2, mcause
  li t3, 9                 # ecall from S: pass
  beq t2, t3, pass
  li t3, 2
  bne t2, t3, fail_other
  csrr t2, mepc
  la t3, s_fp_off
  bne t2, t3, fail_fp
  li t3, 0x2000
  csrs mstatus, t3
  addi t2, t2, 4
  csrw mepc, t2
  addi s10, s10, 1
  mret
pass:
  li t0, FINISHER
  li t1, 0x5555
  sw t1, 0(t0)
1: j 1b

fail_read: li a0, 2
  j fail
fail_irq: li a0, 3
  j fail
fail_fp: li a0, 4
  j fail
fail_other: li a0, 5
fail:
` + BARE_FAIL;

test('sstatus accesses inline in translated S-mode code: values, SIE toggles, a pending interrupt taken at once, FS changes', async () => {
  await assertBarePasses('jit-sstatus', SSTATUS_INLINE);
});
