/**
 * The software TLBs (mmu.ts). Victim entries: two hot pages on one direct-mapped slot
 * (virtual 0x4000_0000 and 0x4040_0000, 1,024 pages apart) alternate without a page walk
 * each time, and a victim never outlives what would drop its entry: sfence.vma of its page,
 * or an address-space switch for a non-global mapping. Fences for one address space
 * (sfence.vma x0, rs2) drop its non-global translations and keep the global ones.
 * Interpreted and translated runs agree with the known answers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { buildElf } from '../lib/toolchain.js';
import { USER_MACROS, runUser } from '../lib/user.js';
import { TLB_SIZE } from '../../src/cpu/state.js';

/**
 * MAP table, index, sym, flags: table[index] = a leaf or pointer PTE for the page at
 * symbol sym. ROOT root, l1: root maps RAM 1:1 with a global gigapage (V R W X G A D at
 * 0x8000_0000) and its entry 1 (0x4000_0000..) points at l1. SATP root, asid: t0 = the
 * Sv39 satp value.
 */
const MACROS = USER_MACROS + String.raw`
  .macro MAP table, index, sym, flags
    la t2, \sym
    srli t3, t2, 12
    slli t3, t3, 10
    ori t3, t3, \flags
    la t4, \table
    sd t3, (\index * 8)(t4)
  .endm
  .macro ROOT root, l1
    li t1, ((0x80000000 >> 12) << 10) | 0xef
    la t4, \root
    sd t1, 16(t4)
    MAP \root, 1, \l1, 1
  .endm
  .macro SATP root, asid
    la t0, \root
    srli t0, t0, 12
    li t1, (8 << 60) | (\asid << 44)
    or t0, t0, t1
  .endm`;

const DATA = String.raw`
  .data
  .balign 4096
dataA: .dword 1, 0
  .balign 4096
dataB: .dword 1000, 0
  .balign 4096
dataC: .dword 1000000, 0
  .bss
  .balign 4096
root: .space 4096
l1: .space 4096
l0a: .space 4096
l0b: .space 4096
root2: .space 4096
l1b: .space 4096
l0c: .space 4096`;

/**
 * Sv39 in S-mode: a global gigapage maps RAM 1:1; 0x4000_0000 maps dataA and 0x4040_0000
 * dataB. 4,000 passes load and store both pages; after the pass with s0 = 2000 the second
 * page is remapped to dataC and fenced by address, while its entries are victims. The sum
 * of loads, then the stored words read back through the gigapage, weighted.
 */
const ALTERNATE = MACROS + String.raw`
  .globl _start
_start:
  ROOT root, l1
  MAP l1, 0, l0a, 1                           # 0x4000_0000
  MAP l1, 2, l0b, 1                           # 0x4040_0000
  MAP l0a, 0, dataA, 0xc7                     # V R W A D
  MAP l0b, 0, dataB, 0xc7
  SATP root, 0
  csrw satp, t0
  sfence.vma
  li s0, 4000
  li s1, 0
  li s2, 0x40000000
  li s3, 0x40400000
loop:
  ld t0, 0(s3)
  add s1, s1, t0
  ld t0, 0(s2)
  add s1, s1, t0
  sd s0, 8(s3)
  sd s0, 8(s2)                                # (dataB's entries are victims at the fence)
  li t0, 2000
  bne s0, t0, 1f
  MAP l0b, 0, dataC, 0xc7                     # 0x4040_0000 -> dataC
  sfence.vma s3
1:
  addi s0, s0, -1
  bnez s0, loop
  la t4, dataA
  ld t0, 8(t4)
  li t1, 13
  mul t0, t0, t1
  add s1, s1, t0
  la t4, dataB
  ld t0, 8(t4)
  li t1, 7
  mul t0, t0, t1
  add s1, s1, t0
  la t4, dataC
  ld t0, 8(t4)
  li t1, 11
  mul t0, t0, t1
  add s1, s1, t0
  EXIT_WITH s1
` + DATA;

/**
 * Two address spaces (ASIDs 1 and 2, switched without a fence, as Linux switches
 * processes): 0x4000_0000 maps dataA in both, 0x4040_0000 (non-global) dataB in the first
 * and dataC in the second. Each pass switches and loads both pages, so the second page's
 * entry of one space is a victim when the other space runs.
 */
const SWITCH = MACROS + String.raw`
  .globl _start
_start:
  ROOT root, l1
  ROOT root2, l1b
  MAP l1, 0, l0a, 1                           # both: 0x4000_0000 -> l0a
  MAP l1b, 0, l0a, 1
  MAP l1, 2, l0b, 1                           # first: 0x4040_0000 -> l0b
  MAP l1b, 2, l0c, 1                          # second: 0x4040_0000 -> l0c
  MAP l0a, 0, dataA, 0xc7
  MAP l0b, 0, dataB, 0xc7
  MAP l0c, 0, dataC, 0xc7
  SATP root, 1
  mv s4, t0
  SATP root2, 2
  mv s5, t0
  csrw satp, s4
  sfence.vma
  li s0, 3001
  li s1, 0
  li s2, 0x40000000
  li s3, 0x40400000
loop:
  andi t0, s0, 1
  beqz t0, 1f
  csrw satp, s4
  j 2f
1:
  csrw satp, s5
2:
  ld t0, 0(s3)
  add s1, s1, t0
  ld t0, 0(s2)
  add s1, s1, t0
  addi s0, s0, -1
  bnez s0, loop
  EXIT_WITH s1
` + DATA;

/**
 * Code written through a write-TLB victim: 0x4000_0000 maps a code page (fn: `li a0, 1`
 * or `li a0, 2`, then `ret`) and 0x4040_0000 a data page. Each pass patches fn's first
 * instruction through 0x4000_0000 (alternating the two), stores to the data page (the code
 * page's write entry becomes a victim), fence.i, and calls fn: running fn makes its page a
 * code page again while its write entry is a victim, which the next patch takes back.
 */
const PATCH = MACROS + String.raw`
  .globl _start
_start:
  ROOT root, l1
  MAP l1, 0, l0a, 1
  MAP l1, 2, l0b, 1
  MAP l0a, 0, fnpage, 0xcf                    # V R W X A D
  MAP l0b, 0, dataB, 0xc7
  SATP root, 0
  csrw satp, t0
  sfence.vma
  li s0, 1000
  li s1, 0
  li s2, 0x40000000
  li s3, 0x40400000
  la t4, insns
  lw s4, 0(t4)                                # li a0, 1
  lw s5, 4(t4)                                # li a0, 2
loop:
  andi t0, s0, 1
  mv t1, s4
  beqz t0, 1f
  mv t1, s5
1:
  sw t1, 0(s2)                                # patch fn
  sd s0, 8(s3)                                # the code page's write entry -> victim
  fence.i
  jalr s2
  add s1, s1, a0
  addi s0, s0, -1
  bnez s0, loop
  EXIT_WITH s1
  .option push
  .option norvc
insns:
  li a0, 1
  li a0, 2
  .balign 4096
fnpage:
  li a0, 1
  ret
  .balign 4096
  .option pop
` + DATA;

function answer(r: { code: number; stdout: Uint8Array }): bigint {
  assert.equal(r.code, 0);
  return Buffer.from(r.stdout).readBigUInt64LE(0);
}

test('two pages on one TLB slot alternate without a walk each time; sfence.vma of one drops its victim too', async () => {
  assert.equal((0x40400000 - 0x40000000) / 4096 % TLB_SIZE, 0, 'the two pages share a slot');
  const elf = readFileSync(await buildElf({ name: 'victim-tlb-alternate', sources: { 'a.S': ALTERNATE } }));
  // Loads: 4,000 x dataA, 2,001 x dataB, 1,999 x dataC; stores left 1 in dataA, 2000 in dataB, 1 in dataC.
  const expect = 4000n + 2001n * 1000n + 1999n * 1_000_000n + 13n * 1n + 7n * 2000n + 11n * 1n;
  for (const th of [Infinity, 0, 3]) {
    const r = runUser(elf, { jitThreshold: th });
    assert.equal(answer(r), expect, `threshold ${th}`);
    // 16,000 accesses alternating on one slot of the read and the write TLB walked ~16,000 times without victims.
    assert.ok(r.hart.walks < 200, `threshold ${th}: ${r.hart.walks} page walks`);
  }
});

test('an address-space switch drops the victims of non-global mappings', async () => {
  const elf = readFileSync(await buildElf({ name: 'victim-tlb-switch', sources: { 's.S': SWITCH } }));
  // s0 = 3001 .. 1: odd passes (1,501) run the first space (dataB), even ones (1,500) the second (dataC).
  const expect = 3001n * 1n + 1501n * 1000n + 1500n * 1_000_000n;
  for (const th of [Infinity, 0, 3]) assert.equal(answer(runUser(elf, { jitThreshold: th })), expect, `threshold ${th}`);
});

test('code patched through a write-TLB victim is seen after fence.i', async () => {
  const elf = readFileSync(await buildElf({ name: 'victim-tlb-patch', sources: { 'p.S': PATCH } }));
  // s0 = 1000 .. 1: odd passes patch in `li a0, 2` (500), even ones `li a0, 1` (500).
  const expect = 500n * 2n + 500n * 1n;
  for (const th of [Infinity, 0, 3]) assert.equal(answer(runUser(elf, { jitThreshold: th })), expect, `threshold ${th}`);
});

/**
 * ASID 1: a global gigapage maps RAM 1:1 (code and dataC), 0x4000_0000 (non-global) maps
 * dataA. 2,000 passes load both and fence ASID 1 (sfence.vma x0, s4); after pass 1,000 the
 * page is remapped to dataB first, which the fence must make visible.
 */
const ASID_FENCE = MACROS + String.raw`
  .globl _start
_start:
  ROOT root, l1
  MAP l1, 0, l0a, 1
  MAP l0a, 0, dataA, 0xc7                     # non-global
  SATP root, 1
  mv s4, t0
  csrw satp, s4
  sfence.vma
  li s4, 1                                    # the ASID
  li s0, 2000
  li s1, 0
  li s2, 0x40000000
  la s3, dataC
loop:
  ld t0, 0(s2)
  add s1, s1, t0
  ld t0, 0(s3)
  add s1, s1, t0
  li t0, 1000
  bne s0, t0, 1f
  MAP l0a, 0, dataB, 0xc7                     # 0x4000_0000 -> dataB
1:
  sfence.vma x0, s4
  addi s0, s0, -1
  bnez s0, loop
  EXIT_WITH s1
` + DATA;

test('sfence.vma x0, rs2 drops the address space\'s own translations and keeps the global ones', async () => {
  const elf = readFileSync(await buildElf({ name: 'tlb-asid-fence', sources: { 'f.S': ASID_FENCE } }));
  // s0 = 2000 .. 1000 read dataA (1,001 passes; the remap follows the loads), 999 .. 1
  // dataB (999); dataC in each.
  const expect = 1001n * 1n + 999n * 1000n + 2000n * 1_000_000n;
  for (const th of [Infinity, 0, 3]) {
    const r = runUser(elf, { jitThreshold: th });
    assert.equal(answer(r), expect, `threshold ${th}`);
    // One walk a pass for the non-global page; a full flush also walked for the code and dataC.
    assert.ok(r.hart.walks < 2000 + 200, `threshold ${th}: ${r.hart.walks} page walks`);
  }
});
