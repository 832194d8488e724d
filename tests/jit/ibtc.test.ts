/**
 * The indirect-branch target cache: calls through function pointers and returns that
 * leave a translated page function continue in translated code (far fewer dispatcher
 * entries) with the interpreter's results, and a changed mapping (code overwritten, a
 * remapped page after sfence.vma) is honoured.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { ibcIndex } from '../../src/cpu/state.js';
import { buildElf } from '../lib/toolchain.js';
import { USER_MACROS, runUser, assertSameRun } from '../lib/user.js';

const MACROS = USER_MACROS;
/** Two functions on pages of their own, returning 1 and 1,000: the code two mappings switch between. */
const TWO_FNS = String.raw`
  .balign 4096
fn_one:
  li a0, 1
  ret
  .balign 4096
fn_thousand:
  li a0, 1000
  ret`;

/**
 * At pass `at` (s0), overwrite `fn`'s first instruction with `patch:` (it then adds 1,000
 * instead of 7; fence.i), then the loop's end at label `next` and the exit with s1.
 */
function patchAt(at: number, fn: string, next: string): string {
  return String.raw`
  li t1, ${at}
  bne s0, t1, ${next}f
  la t2, ${fn}
  la t3, patch
  lw t4, 0(t3)
  sw t4, 0(t2)             # ${fn} now adds 1000 instead of 7
  fence.i
${next}:
  addi s0, s0, -1
  bnez s0, loop
  EXIT_WITH s1
patch:
  addi a0, a0, 1000`;
}

/**
 * 20,000 passes calling three functions in three other pages through a pointer table
 * (jalr) and returning (ret): 120,000 transfers across pages. After pass 10,000 the
 * program overwrites the first instruction of one callee (fence.i), which must take effect.
 */
const CALLS = MACROS + String.raw`
  .globl _start
_start:
  li s0, 20000
  li s1, 0
  la s2, table
loop:
  ld t0, 0(s2)
  mv a0, s1
  jalr t0
  mv s1, a0
  ld t0, 8(s2)
  jalr t0
  mv s1, a0
  ld t0, 16(s2)
  jalr t0
  mv s1, a0
` + patchAt(10000, 'fn_c', '1') + String.raw`
  .balign 4096
fn_a:
  slli t5, a0, 5
  xor a0, a0, t5
  addi a0, a0, 3
  ret
  .balign 4096
fn_b:
  srli t5, a0, 7
  add a0, a0, t5
  ret
  .balign 4096
  .option push
  .option norvc              # (the patch is a 4-byte instruction)
fn_c:
  addi a0, a0, 7
  ret
  .option pop
  .data
  .align 3
table: .dword fn_a, fn_b, fn_c
`;

test('indirect calls and returns across pages stay in translated code; overwritten code takes effect', async () => {
  const elf = readFileSync(await buildElf({ name: 'jit-ibtc-calls', sources: { 'c.S': CALLS } }));
  const ref = runUser(elf, { jitThreshold: Infinity });
  assert.equal(ref.code, 0);
  // The known answer, computed as the program does (fn_c adds 7, then 1000 once pass 10,000 patched it).
  const M = (1n << 64n) - 1n;
  let s = 0n;
  for (let pass = 20000; pass > 0; pass--) {
    s = ((s ^ (s << 5n)) + 3n) & M;
    s = (s + (s >> 7n)) & M;
    s = (s + (pass < 10000 ? 1000n : 7n)) & M;
  }
  assert.equal(Buffer.from(ref.stdout).readBigUInt64LE(0), s, 'interpreter: the known answer');
  for (const th of [0, 3]) {
    const r = runUser(elf, { jitThreshold: th });
    assertSameRun(r, ref, `threshold ${th}`);
    const st = r.hart.jit!.stats;
    // Each of the 120,000 transfers went through the dispatcher before the cache.
    assert.ok(st.entries < 12_000, `threshold ${th}: ${st.entries} dispatcher entries for 120,000 cross-page transfers`);
    assert.ok(st.executed > ref.hart.icount * 0.9, `threshold ${th}: ${st.executed} of ${ref.hart.icount} instructions translated`);
  }
});

/**
 * S-mode with Sv39: a gigapage maps RAM 1:1, and virtual page 0x4000_0000 is mapped to the
 * page of fn_one. The loop calls it 2,000 times (jalr) and returns; after 1,000 calls the
 * program points the page's PTE at fn_thousand and issues sfence.vma (for that address,
 * or for all in the second variant): the remaining calls must run fn_thousand.
 */
function remapSource(fence: string, alias = false): string {
  // alias: 0x4100_0000 (16 MiB on: the same slot of Hart.ibcPages) maps fn_thousand's page
  // through a second leaf table, and the loop calls it too, so the fenced page shares its
  // slot with another page that has entries.
  const aliasMap = alias ? String.raw`
  la t2, l0b
  srli t3, t2, 12
  slli t3, t3, 10
  ori t3, t3, 1
  la t4, l1
  sd t3, 64(t4)                               # l1[8] -> l0b
  la t2, fn_thousand
  srli t3, t2, 12
  slli t3, t3, 10
  ori t3, t3, 0xcb
  la t4, l0b
  sd t3, 0(t4)                                # l0b[0]: 0x4100_0000 -> fn_thousand` : '';
  const aliasCall = alias ? String.raw`
  li t0, 0x41000000
  jalr t0
  add s1, s1, a0` : '';
  return MACROS + String.raw`
  .globl _start
_start:
  la t0, root
  li t1, ((0x80000000 >> 12) << 10) | 0xcf   # V R W X A D, 1 GiB at 0x8000_0000
  sd t1, 16(t0)
  la t2, l1
  srli t3, t2, 12
  slli t3, t3, 10
  ori t3, t3, 1
  sd t3, 8(t0)                                # VPN[2] = 1 -> l1
  la t2, l0
  srli t3, t2, 12
  slli t3, t3, 10
  ori t3, t3, 1
  la t4, l1
  sd t3, 0(t4)                                # l1[0] -> l0
  la t2, fn_one
  srli t3, t2, 12
  slli t3, t3, 10
  ori t3, t3, 0xcb                            # V R X A D
  la t4, l0
  sd t3, 0(t4)                                # l0[0]: 0x4000_0000 -> fn_one${aliasMap}
  la t0, root
  srli t0, t0, 12
  li t1, 8 << 60
  or t0, t0, t1
  csrw satp, t0
  sfence.vma
  li s0, 2000
  li s1, 0
  li s2, 0x40000000
loop:
  jalr s2
  add s1, s1, a0${aliasCall}
  addi s0, s0, -1
  li t0, 1000
  bne s0, t0, 1f
  la t2, fn_thousand
  srli t3, t2, 12
  slli t3, t3, 10
  ori t3, t3, 0xcb
  la t4, l0
  sd t3, 0(t4)                                # 0x4000_0000 -> fn_thousand
  ${fence}
1:
  bnez s0, loop
  EXIT_WITH s1
${TWO_FNS}
  .data
  .align 3
  .bss
  .balign 4096
root: .space 4096
l1: .space 4096
l0: .space 4096
l0b: .space 4096
`;
}

test('a page remapped under translated indirect calls: sfence.vma (one address or all) is honoured', async () => {
  for (const [fence, alias] of [['sfence.vma s2', false], ['sfence.vma', false], ['sfence.vma s2', true]] as const) {
    const elf = readFileSync(await buildElf({ name: `jit-ibtc-remap${alias ? '-alias' : ''}`, sources: { 'r.S': remapSource(fence, alias) } }));
    const ref = runUser(elf, { jitThreshold: Infinity });
    assert.equal(ref.code, 0);
    const expect = 1000n + 1000n * 1000n + (alias ? 2000n * 1000n : 0n);
    assert.equal(Buffer.from(ref.stdout).readBigUInt64LE(0), expect, `${fence}${alias ? ' (aliased slot)' : ''}: interpreter, known answer`);
    for (const th of [0, 3]) {
      const r = runUser(elf, { jitThreshold: th });
      assertSameRun(r, ref, `${fence}${alias ? ' (aliased slot)' : ''}, threshold ${th}`);
      const st = r.hart.jit!.stats;
      assert.ok(st.entries < 1_000, `${fence}${alias ? ' (aliased slot)' : ''}, threshold ${th}: ${st.entries} dispatcher entries for ${alias ? '8,000' : '4,000'} cross-page transfers`);
    }
  }
});

/**
 * Two address spaces (satp ASIDs 1 and 2, switched without sfence.vma, as Linux switches
 * processes) share a global gigapage of RAM; each maps virtual page 0x4000_0000 to code of
 * its own (fn_one / fn_thousand, non-global) and 0x4000_1000 to data of its own. A switch
 * keeps the global translations but must forget the others: every call and load sees the
 * current address space, translated or not.
 */
const ASID_SWITCH = MACROS + String.raw`
  .globl _start
_start:
  la a0, rootA
  la a1, l1A
  la a2, l0A
  la a3, fn_one
  la a4, dataA
  call build
  la a0, rootB
  la a1, l1B
  la a2, l0B
  la a3, fn_thousand
  la a4, dataB
  call build
  la t0, rootA
  srli t0, t0, 12
  li t1, (8 << 60) | (1 << 44)                # Sv39, ASID 1
  or s3, t0, t1
  la t0, rootB
  srli t0, t0, 12
  li t1, (8 << 60) | (2 << 44)                # Sv39, ASID 2
  or s4, t0, t1
  csrw satp, s3
  sfence.vma
  li s0, 2000
  li s1, 0
  li s2, 0x40000000
  li s5, 0x40001000
loop:
  andi t0, s0, 1
  beqz t0, 1f
  csrw satp, s3
  j 2f
1:
  csrw satp, s4
2:
  jalr s2
  add s1, s1, a0
  ld t0, 0(s5)
  add s1, s1, t0
  addi s0, s0, -1
  bnez s0, loop
  EXIT_WITH s1

# build(root a0, l1 a1, l0 a2, code a3, data a4): RAM 1:1 as a global gigapage,
# 0x4000_0000 -> the code page (R X), 0x4000_1000 -> the data page (R W), both non-global.
build:
  li t1, ((0x80000000 >> 12) << 10) | 0xef    # V R W X G A D
  sd t1, 16(a0)
  srli t3, a1, 12
  slli t3, t3, 10
  ori t3, t3, 1
  sd t3, 8(a0)                                # VPN[2] = 1 -> l1
  srli t3, a2, 12
  slli t3, t3, 10
  ori t3, t3, 1
  sd t3, 0(a1)                                # l1[0] -> l0
  srli t3, a3, 12
  slli t3, t3, 10
  ori t3, t3, 0xcb                            # V R X A D
  sd t3, 0(a2)
  srli t3, a4, 12
  slli t3, t3, 10
  ori t3, t3, 0xc7                            # V R W A D
  sd t3, 8(a2)
  ret

${TWO_FNS}
  .data
  .align 3
  .balign 4096
dataA: .dword 7
  .balign 4096
dataB: .dword 9
  .bss
  .balign 4096
rootA: .space 4096
l1A: .space 4096
l0A: .space 4096
rootB: .space 4096
l1B: .space 4096
l0B: .space 4096
`;

test('address spaces switched by satp ASID without a fence: global translations stay, the others do not', async () => {
  const elf = readFileSync(await buildElf({ name: 'jit-asid-switch', sources: { 'a.S': ASID_SWITCH } }));
  const ref = runUser(elf, { jitThreshold: Infinity });
  assert.equal(ref.code, 0);
  assert.equal(Buffer.from(ref.stdout).readBigUInt64LE(0), 1000n * (1n + 7n) + 1000n * (1000n + 9n), 'interpreter, known answer');
  for (const th of [0, 3]) {
    const r = runUser(elf, { jitThreshold: th });
    assertSameRun(r, ref, `threshold ${th}`);
  }
});

/**
 * 5,000 passes: two calls through pointers to translated functions on pages of their own,
 * then a call to a function on a page the pass then writes to (its code only ever
 * interpreted: each write drops its decoded instructions, so it never gets hot).
 */
const WRITTEN_PAGE = MACROS + String.raw`
  .globl _start
_start:
  li s0, 5000
  li s1, 0
  la s2, table
  la s3, scratch
loop:
  ld t0, 0(s2)
  mv a0, s1
  jalr t0
  ld t0, 8(s2)
  jalr t0
  jalr s3
  mv s1, a0
  sd s0, 64(s3)            # a store into the interpreted page
  addi s0, s0, -1
  bnez s0, loop
  EXIT_WITH s1
  .balign 4096
fn_a:
  addi a0, a0, 3
  ret
  .balign 4096
fn_b:
  slli t5, a0, 1
  xor a0, a0, t5
  ret
  .balign 4096
scratch:
  addi a0, a0, 5
  ret
  .balign 4096
  .data
  .align 3
table: .dword fn_a, fn_b
`;

test('a store into a page whose code was only interpreted keeps the target cache', async () => {
  const elf = readFileSync(await buildElf({ name: 'jit-ibtc-written-page', sources: { 'w.S': WRITTEN_PAGE } }));
  const ref = runUser(elf, { jitThreshold: Infinity });
  const M = (1n << 64n) - 1n;
  let s = 0n;
  for (let pass = 0; pass < 5000; pass++) { s = (s + 3n) & M; s = (s ^ (s << 1n)) & M; s = (s + 5n) & M; }
  assert.equal(Buffer.from(ref.stdout).readBigUInt64LE(0), s, 'interpreter: the known answer');
  // (At threshold 0 the written page is translated too: only the counts below need more.)
  for (const th of [0, 3, 50]) {
    const r = runUser(elf, { jitThreshold: th });
    assertSameRun(r, ref, `threshold ${th}`);
    if (th === 0) continue;
    // Into and out of the interpreted function: two entries a pass. Emptying the cache at
    // each store sent the four transfers to and from fn_a and fn_b there too.
    const entries = r.hart.jit!.stats.entries;
    assert.ok(entries < 3 * 5000, `threshold ${th}: ${entries} dispatcher entries in 5,000 passes`);
  }
});

/**
 * 3,000 passes calling eight functions on eight pages through a pointer table. Every 30th
 * pass stores into a data word on the last callee's page: its code is dropped and
 * translated again, and from pass 1,500 on that callee's code is patched to add 1,000.
 */
const CODE_PAGE_STORES = MACROS + String.raw`
  .globl _start
_start:
  li s0, 3000
  li s1, 0
  la s2, table
loop:
  li s3, 0
1:
  add t1, s2, s3
  ld t0, 0(t1)
  mv a0, s1
  jalr t0
  mv s1, a0
  addi s3, s3, 8
  li t1, 64
  bne s3, t1, 1b
  li t1, 30
  remu t1, s0, t1
  bnez t1, 2f
  la t2, word
  sd s0, 0(t2)             # a store into fn_7's page
` + patchAt(1500, 'fn_7', '2') + [0, 1, 2, 3, 4, 5, 6].map((i) => `
  .balign 4096
fn_${i}:
  addi a0, a0, ${i + 1}
  slli t5, a0, ${i + 1}
  xor a0, a0, t5
  ret`).join('') + String.raw`
  .balign 4096
fn_7:
  .option push
  .option norvc
  addi a0, a0, 7           # four bytes, as the patch
  .option pop
  ret
  .balign 64
word: .dword 0
  .balign 4096
  .data
  .align 3
table: .dword fn_0, fn_1, fn_2, fn_3, fn_4, fn_5, fn_6, fn_7
`;

test('a store into a translated page forgets that page\'s target-cache entries only', async () => {
  const elf = readFileSync(await buildElf({ name: 'jit-ibtc-code-page-stores', sources: { 's.S': CODE_PAGE_STORES } }));
  const ref = runUser(elf, { jitThreshold: Infinity });
  const M = (1n << 64n) - 1n;
  let s = 0n;
  for (let pass = 3000; pass > 0; pass--) {
    for (let i = 0; i < 7; i++) { s = (s + BigInt(i + 1)) & M; s = (s ^ ((s << BigInt(i + 1)) & M)) & M; }
    s = (s + (pass < 1500 ? 1000n : 7n)) & M;
  }
  assert.equal(Buffer.from(ref.stdout).readBigUInt64LE(0), s, 'interpreter: the known answer');
  // Dispatcher entries: 244 and 2,917 here; emptying the whole cache at each of the 100
  // stores sent the other seven calls and eight returns through the dispatcher again
  // (1,540 and 3,801).
  for (const [th, most] of [[0, 600], [3, 3400]]) {
    const r = runUser(elf, { jitThreshold: th });
    assertSameRun(r, ref, `threshold ${th}`);
    const entries = r.hart.jit!.stats.entries;
    assert.ok(entries < most, `threshold ${th}: ${entries} dispatcher entries (at most ${most})`);
  }
});

/**
 * Two callees whose pcs share the target cache's first way (fn_y is 64 KiB + 32 bytes after
 * the 128 KiB-aligned fn_x: ibcIndex is equal), called in turn 20,000 times: both stay
 * cached in the two ways of their entry. Direct-mapped, each call evicted the other's
 * entry and went through the dispatcher (40,000 entries).
 */
/** The low word of ELF symbol `name`'s address (the target cache hashes the low word). */
function symbolLo(path: string, name: string): number {
  const line = execFileSync('riscv64-linux-gnu-nm', [path], { encoding: 'utf8' }).split('\n').find((l) => l.endsWith(` ${name}`));
  assert.ok(line, `symbol ${name}`);
  return Number(BigInt('0x' + line.split(' ')[0]) & 0xffff_ffffn);
}

const COLLIDING = MACROS + String.raw`
  .globl _start
_start:
  li s0, 20000
  li s1, 0
  la s2, fn_x
  la s3, fn_y
loop:
  jalr s2
  add s1, s1, a0
  jalr s3
  add s1, s1, a0
  addi s0, s0, -1
  bnez s0, loop
  EXIT_WITH s1
  .balign 131072
fn_x:
  li a0, 1
  ret
  .balign 65536
  .space 32
fn_y:
  li a0, 1000
  ret
`;

test('two targets sharing a target-cache entry both stay cached (two ways)', async () => {
  const path = await buildElf({ name: 'jit-ibtc-ways', sources: { 'w.S': COLLIDING } });
  const sym = (name: string): number => symbolLo(path, name);
  assert.equal(ibcIndex(sym('fn_x')), ibcIndex(sym('fn_y')), 'the two callees share their first way');
  const elf = readFileSync(path);
  const ref = runUser(elf, { jitThreshold: Infinity });
  assert.equal(Buffer.from(ref.stdout).readBigUInt64LE(0), 20000n * 1001n);
  const r = runUser(elf, { jitThreshold: 0 });
  assertSameRun(r, ref, 'threshold 0');
  const st = r.hart.jit!.stats;
  assert.ok(st.entries < 2_000, `${st.entries} dispatcher entries for 40,000 calls to two colliding targets`);
});

/**
 * Three call sites on three pages whose return addresses share one target-cache set (of
 * two ways), calling one function 20,000 times each. Returns through the cache would evict
 * each other at every pass (~60,000 dispatcher entries); through the return-address stack
 * (codegen.ts, callOut) they never look at it. Then the cases the stack must not get wrong:
 * recursion deeper than the stack (JIT_RAS_SIZE), a callee that returns somewhere else than
 * its caller's next instruction, a longjmp past two frames, and a system call inside a
 * callee (a trap with host calls waiting).
 */
const RAS_SITES = MACROS + String.raw`
  .option norvc
  .globl _start
_start:
  li s0, 20000
  li s1, 0
  j site1
callee:
  addi s1, s1, 1
  ret
  .org 0x40000 + 2044
site1:
  jal ra, callee
r1:
  j site2
  .org 0x40000 + 2044 + 0x10020
site2:
  jal ra, callee
r2:
  j site3
  .org 0x40000 + 2044 + 0x20040
site3:
  jal ra, callee
r3:
  addi s0, s0, -1
  beqz s0, corner
  j site1
corner:
  # Recursion 100 deep (the stack holds 32): s1 += depth + ... + 1.
  li a0, 100
  call sum
  # A callee that returns past its caller's next instruction (ra + 8).
  call skip
  addi s1, s1, 1000          # skipped
  addi s1, s1, 7
  # longjmp: inner returns straight to outer's caller.
  call outer
  addi s1, s1, 3
  # A write(2) inside a callee, 3 deep.
  call say
  EXIT_WITH s1
sum:
  addi sp, sp, -16
  sd ra, 0(sp)
  sd a0, 8(sp)
  beqz a0, 1f
  addi a0, a0, -1
  call sum
  ld a0, 8(sp)
  add s1, s1, a0
1:
  ld ra, 0(sp)
  addi sp, sp, 16
  ret
  .balign 4096
skip:
  addi ra, ra, 4
  ret
outer:
  mv s2, ra                   # the jump buffer: outer's return address and sp
  mv s3, sp
  addi sp, sp, -16
  sd ra, 0(sp)
  call inner
  addi s1, s1, 500            # never reached
  ld ra, 0(sp)
  addi sp, sp, 16
  ret
  .balign 4096
inner:
  addi sp, sp, -16
  sd ra, 0(sp)
  call deeper
  ld ra, 0(sp)
  addi sp, sp, 16
  ret
deeper:
  mv sp, s3
  mv ra, s2
  ret                         # to outer's caller
say:
  addi sp, sp, -16
  sd ra, 0(sp)
  call say2
  ld ra, 0(sp)
  addi sp, sp, 16
  ret
  .balign 4096
say2:
  addi sp, sp, -16
  sd ra, 0(sp)
  call say3
  ld ra, 0(sp)
  addi sp, sp, 16
  ret
say3:
  li a0, 2
  la a1, msg
  li a2, 3
  li a7, 64
  ecall
  add s1, s1, a0
  ret
msg:
  .ascii "ok\n"
`;

test('guest returns go back to the host frame of their call: colliding return addresses stay out of the target cache, and deep, wrong-way and trapping returns stay exact', async () => {
  const path = await buildElf({ name: 'jit-ras', sources: { 'r.S': RAS_SITES } });
  const sym = (name: string): number => symbolLo(path, name);
  const i1 = ibcIndex(sym('r1'));
  assert.ok(ibcIndex(sym('r2')) === i1 && ibcIndex(sym('r3')) === i1, 'the three return addresses share a set');
  const elf = readFileSync(path);
  const ref = runUser(elf, { jitThreshold: Infinity });
  // 60,000 calls, 5,050 from the recursion, 7, 3, and 3 bytes written.
  assert.equal(Buffer.from(ref.stdout).subarray(-8).readBigUInt64LE(0), 60000n + 5050n + 7n + 3n + 3n);
  for (const th of [0, 10, 50]) {
    const r = runUser(elf, { jitThreshold: th });
    assertSameRun(r, ref, `threshold ${th}`);
    // (At threshold 0 each block is compiled alone when first entered, so a return
    // address is no block of its call's function and the call is a tail call, as before.)
    if (th === 0) continue;
    const st = r.hart.jit!.stats;
    assert.ok(st.entries < 3_000, `threshold ${th}: ${st.entries} dispatcher entries for 60,000 returns to three colliding addresses (~60,000 through the target cache)`);
  }
});
