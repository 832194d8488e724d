/**
 * The privileged architecture against the reference: one bare-metal program exercises
 * traps (causes, epc, tval), delegation to S, U/S/M transitions, WARL CSRs, counters
 * gating, TW/TVM, interrupt priority and vectored mtvec, Sv39/Sv48/Sv57 page tables with
 * superpages, A/D updates, U/SUM/MXR checks and faults, and PMP (NAPOT, NA4, locking).
 * Every trap is logged (cause, epc, tval, previous privilege); the log is printed on the
 * UART and must be identical on typevisor and qemu-system-riscv64 (same ELF), and key
 * entries are also checked against the spec directly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { buildElf } from '../lib/toolchain.js';
import { runBare } from '../lib/bare.js';
import { runQemuSystem } from '../lib/qemu-system.js';
import { testJitThreshold } from '../lib/user.js';

const PROGRAM = String.raw`
  .equ CLINT_MSIP, 0x2000000
  .equ CLINT_MTIMECMP, 0x2004000
  .equ UART, 0x10000000
  .equ VA_A, 0x40000000
  .equ VA_B, 0x40001000
  .equ VA_C, 0x40002000
  .equ VA_D, 0x40003000
  .equ VA_E, 0x40004000
  .equ VA_F, 0x40005000
  .equ VA_MIS, 0x40200000

  .macro DATA reg
    sd \reg, 0(s11)
    sd zero, 8(s11)
    sd zero, 16(s11)
    li t6, 0xda7a
    sd t6, 24(s11)
    addi s11, s11, 32
  .endm
  # implementation-specific values: compared with the spec in JS, not with QEMU (which has H)
  .macro IMPL reg
    sd \reg, 0(s11)
    sd zero, 8(s11)
    sd zero, 16(s11)
    li t6, 0xda7b
    sd t6, 24(s11)
    addi s11, s11, 32
  .endm
  .macro GOTO_MODE mode, target, resume
    la s10, \resume
    li t0, 3 << 11
    csrc mstatus, t0
    li t0, \mode << 11
    csrs mstatus, t0
    la t0, \target
    csrw mepc, t0
    mret
  .endm
  .macro PTE_AT table, index, pa_sym, flags
    la t0, \pa_sym
    srli t0, t0, 12
    slli t0, t0, 10
    ori t0, t0, \flags
    la t1, \table
    sd t0, (\index * 8)(t1)
  .endm

  .section .text.init
  .globl _start
_start:
  la t0, mtrap
  csrw mtvec, t0
  la s11, log
  li s10, 0
  li s9, 0
  # PMP entry 15: everything, RWX, for S and U (lowest priority)
  li t0, -1
  csrw pmpaddr15, t0
  li t0, 0x1f << 56
  csrw pmpcfg2, t0
  li t1, CLINT_MTIMECMP        # mtimecmp resets to an unspecified value: park it
  li t0, -1
  sw t0, 0(t1)
  sw t0, 4(t1)

  # ---- 1. exceptions in M-mode ----
  .half 0x0000                 # illegal: all-zero parcel
  .half 0x6081                 # c.lui x1, 0: reserved
  .half 0x2001                 # c.addiw x0: reserved
  .half 0x4002                 # c.lwsp x0: reserved
  .half 0x8002                 # c.jr x0: reserved
  .word 0x0000000b             # custom-0 opcode
  .option push
  .option norvc
  ebreak
  .option pop
  ecall
  li t0, 0x90000000            # beyond RAM: access faults with tval = address
  ld t1, 0(t0)
  sd t1, 0(t0)
  la s10, 1f                   # fetch from nowhere: instruction access fault
  li t0, 0x90000000
  jr t0
1:
  # ---- 2. WARL fields ----
  csrr t0, misa
  IMPL t0
  csrw misa, zero
  csrr t0, misa
  IMPL t0
  la t1, mtrap
  ori t2, t1, 2                # mtvec mode 2 is reserved
  csrw mtvec, t2
  csrr t0, mtvec
  sub t0, t0, t1
  DATA t0
  csrw mtvec, t1
  li t0, -1
  csrw medeleg, t0
  csrr t0, medeleg
  IMPL t0
  csrw medeleg, zero
  li t0, -1
  csrw mideleg, t0
  csrr t0, mideleg
  IMPL t0
  csrw mideleg, zero
  li t0, (1 << 60) | 5         # satp mode 1 is reserved: write ignored
  csrw satp, t0
  csrr t0, satp
  DATA t0
  csrr t0, mhartid
  DATA t0
  # mret to M: MIE <- MPIE, MPIE <- 1, MPP <- U
  li t0, 3 << 11
  csrs mstatus, t0
  li t0, 1 << 7
  csrs mstatus, t0
  csrci mstatus, 8
  la t0, 2f
  csrw mepc, t0
  mret
2:
  csrr t0, mstatus
  li t1, 0x1888
  and t0, t0, t1
  DATA t0
  csrci mstatus, 8

  # ---- 3. U and S, delegation, counters, TW/TVM ----
  la t0, strap
  csrw stvec, t0
  li t0, (1 << 2) | (1 << 8) | (1 << 12) | (1 << 13) | (1 << 15)
  csrw medeleg, t0
  csrw mcounteren, zero
  csrw scounteren, zero
  GOTO_MODE 0, ucode1, 3f
3:
  li t0, (1 << 21) | (1 << 20) # TW, TVM
  csrs mstatus, t0
  GOTO_MODE 1, scode1, 4f
4:
  li t0, (1 << 21) | (1 << 20)
  csrc mstatus, t0
  li t0, 7
  csrw mcounteren, t0
  csrw scounteren, t0
  GOTO_MODE 0, ucode2, 5f
5:
  # ---- 4. interrupts ----
  li t0, 2
  csrw mideleg, t0
  csrs mip, t0                 # SSIP pending, delegated to S
  GOTO_MODE 1, scode_int, 6f
6:
  csrw mideleg, zero
  li t0, (1 << 3) | (1 << 7)
  csrw mie, t0
  li t1, CLINT_MSIP
  li t0, 1
  sw t0, 0(t1)
  li t1, CLINT_MTIMECMP
  sw zero, 0(t1)
  sw zero, 4(t1)
  csrsi mstatus, 8             # MSI then MTI, by priority
  nop
  csrci mstatus, 8
  la t0, vtable                # vectored mode
  ori t0, t0, 1
  csrw mtvec, t0
  li t1, CLINT_MSIP
  li t0, 1
  sw t0, 0(t1)
  csrsi mstatus, 8
  nop
  csrci mstatus, 8
  la t0, mtrap
  csrw mtvec, t0
  csrw mie, zero

  # ---- 5. paging ----
  la t0, page_a
  li t1, 0x0a0a0a0a0a0a0a0a
  sd t1, 0(t0)
  la t0, page_c
  li t1, 0x0c0c0c0c0c0c0c0c
  sd t1, 0(t0)
  la t0, page_d
  li t1, 0x0d0d0d0d0d0d0d0d
  sd t1, 0(t0)
  # L2 (Sv39 root): [0] gigapage at PA 0 (MMIO), [1] -> L1, [2] gigapage at PA 0x80000000 (code, data)
  li t0, 0xcf                  # V R W X A D, PPN 0
  la t1, pt_l2
  sd t0, 0(t1)
  li t0, (0x80000000 >> 12) << 10 | 0xcf
  sd t0, 16(t1)
  PTE_AT pt_l2, 1, pt_l1, 0x01
  PTE_AT pt_l1, 0, pt_l0, 0x01
  li t0, ((0x80000000 >> 12) + 1) << 10 | 0xc3   # 2 MiB leaf with PPN[0] != 0: misaligned superpage
  la t1, pt_l1
  sd t0, 8(t1)
  PTE_AT pt_l0, 0, page_a, 0x07  # R W, A and D clear: the hart sets them
  PTE_AT pt_l0, 1, page_b, 0x43  # R, A
  PTE_AT pt_l0, 2, page_c, 0x49  # X only, A
  PTE_AT pt_l0, 3, page_d, 0xd7  # U R W A D
  PTE_AT pt_l0, 6, ucode_page, 0xd9  # U X A D: user code lives here (VA 0x40006000)
  PTE_AT pt_l3, 0, pt_l2, 0x01   # Sv48 root -> the same L2
  PTE_AT pt_l4, 0, pt_l3, 0x01   # Sv57 root
  la t0, pt_l2
  srli t0, t0, 12
  li t1, 8 << 60
  or t0, t0, t1
  csrw satp, t0
  sfence.vma
  GOTO_MODE 1, spage, 7f
7:
  la s10, 8f                   # U code runs from its U page at VA 0x40006000
  li t0, 3 << 11
  csrc mstatus, t0
  li t0, 0x40006000
  csrw mepc, t0
  mret
8:
  la t0, pt_l3
  srli t0, t0, 12
  li t1, 9 << 60
  or t0, t0, t1
  csrw satp, t0
  sfence.vma
  GOTO_MODE 1, sshort, 9f
9:
  la t0, pt_l4
  srli t0, t0, 12
  li t1, 10 << 60
  or t0, t0, t1
  csrw satp, t0
  csrr t1, satp
  DATA t1
  sfence.vma
  GOTO_MODE 1, sshort, 10f
10:
  csrw satp, zero
  sfence.vma

  # ---- 6. PMP ----
  la t0, pmp_page
  srli t0, t0, 2
  ori t0, t0, 0x1ff            # NAPOT, 4 KiB
  csrw pmpaddr0, t0
  la t0, page_b
  srli t0, t0, 2               # NA4 on the first word of page_b
  csrw pmpaddr1, t0
  li t0, 0x1019                # entry 0: NAPOT R; entry 1: NA4, no access
  csrw pmpcfg0, t0
  GOTO_MODE 1, spmp, 11f
11:
  la t0, pmp_page
  sd t0, 0(t0)                 # M is not bound by unlocked entries
  li t1, 0x1099                # lock entry 0: now M is bound too
  csrw pmpcfg0, t1
  sd t0, 0(t0)
  ld t1, 0(t0)
  csrr t1, pmpcfg0
  DATA t1

  # ---- dump the log and power off ----
  la s0, log
12:
  bgeu s0, s11, 13f
  ld a0, 0(s0)
  call puthex64
  addi s0, s0, 8
  j 12b
13:
  li t0, 0x100000
  li t1, 0x5555
  sw t1, 0(t0)
14: j 14b

puthex64:
  li t0, 60
  li a1, UART
1:
  srl t1, a0, t0
  andi t1, t1, 15
  la t2, hexdigits
  add t2, t2, t1
  lbu t1, 0(t2)
2:
  lbu t3, 5(a1)
  andi t3, t3, 0x20
  beqz t3, 2b
  sb t1, 0(a1)
  addi t0, t0, -4
  bgez t0, 1b
3:
  lbu t3, 5(a1)
  andi t3, t3, 0x20
  beqz t3, 3b
  li t1, '\n'
  sb t1, 0(a1)
  ret

# ---- lower-privilege code ----
ucode1:
  .half 0x0000                 # illegal (delegated: S logs)
  csrr t0, mstatus             # M CSR from U
  sret                         # sret from U
  wfi                          # wfi from U
  rdtime t0                    # counters not enabled
  ecall                        # delegated ecall from U
  .option push
  .option norvc
  ebreak                       # back to M
  .option pop
scode1:
  csrr t0, mstatus             # M CSR from S: illegal, handled by S itself
  rdtime t0                    # mcounteren.TM = 0
  wfi                          # TW = 1
  sfence.vma                   # TVM = 1
  csrr t0, satp                # TVM = 1
  ecall                        # ecall from S: to M
ucode2:
  rdtime t0
  rdcycle t0
  rdinstret t0
  .option push
  .option norvc
  ebreak
  .option pop
scode_int:
  li t0, 2
  csrs sie, t0
  csrsi sstatus, 2             # SSIP taken here
  nop
  csrci sstatus, 2
  ecall
spage:
  li s8, VA_A
  ld t0, 0(s8)
  DATA t0
  la t1, pt_l0
  ld t0, 0(t1)
  andi t0, t0, 0xff            # A set by the load, D still clear
  DATA t0
  sd t0, 0(s8)
  la t1, pt_l0
  ld t0, 0(t1)
  andi t0, t0, 0xff            # D set by the store
  DATA t0
  li s8, VA_B
  ld t0, 0(s8)
  sd t0, 0(s8)                 # read-only page: store page fault
  li s8, VA_C
  ld t0, 0(s8)                 # execute-only page: load page fault
  li t1, 1 << 19               # MXR
  csrs sstatus, t1
  ld t0, 0(s8)
  DATA t0
  csrc sstatus, t1
  li s8, VA_D
  ld t0, 0(s8)                 # U page from S without SUM
  li t1, 1 << 18
  csrs sstatus, t1
  ld t0, 0(s8)
  DATA t0
  csrc sstatus, t1
  ld t0, 0(s8)                 # SUM clear again: a fault (what was cached under SUM must not serve)
  li s8, VA_MIS
  ld t0, 0(s8)                 # misaligned superpage
  li s8, VA_F
  ld t0, 0(s8)                 # invalid PTE
  la s9, 1f
  li s8, VA_E
  jr s8                        # fetch page fault
1:
  ecall
  .align 12
ucode_page:
upage:
  li s8, VA_A
  ld t0, 0(s8)                 # supervisor page from U
  li s8, VA_D
  ld t0, 0(s8)
  sd t0, 0(s8)
  .option push
  .option norvc
  ebreak
  .option pop
  .align 12
sshort:
  li s8, VA_A
  ld t0, 0(s8)
  DATA t0
  li s8, VA_E
  ld t0, 0(s8)
  ecall
spmp:
  la s8, pmp_page
  ld t0, 0(s8)
  sd t0, 0(s8)                 # R-only PMP region: store access fault (to M)
  la s8, page_b
  ld t0, 0(s8)                 # NA4 with no permissions
  ld t0, 8(s8)
  ecall

# ---- trap handlers ----
  .align 2
mtrap:
  csrr t6, mcause
  sd t6, 0(s11)
  csrr t6, mepc
  sd t6, 8(s11)
  csrr t6, mtval
  sd t6, 16(s11)
  csrr t6, mstatus
  srli t6, t6, 11
  andi t6, t6, 3
  sd t6, 24(s11)
  addi s11, s11, 32
  csrr t6, mcause
  bltz t6, mint
  beqz s10, mskip
  li t5, 1
  beq t6, t5, mresume
  li t5, 3
  beq t6, t5, mresume
  li t5, 8
  beq t6, t5, mresume
  li t5, 9
  beq t6, t5, mresume
  li t5, 12
  beq t6, t5, mresume
mskip:
  csrr t6, mepc
  lhu t5, 0(t6)
  andi t5, t5, 3
  li t4, 3
  addi t6, t6, 2
  bne t5, t4, 1f
  addi t6, t6, 2
1:
  csrw mepc, t6
  mret
mresume:
  csrw mepc, s10
  li s10, 0
  li t6, 3 << 11
  csrs mstatus, t6
  li t6, 1 << 7                # back in M with MIE = 0
  csrc mstatus, t6
  mret
mint:
  slli t6, t6, 1
  srli t6, t6, 1
  li t5, 3
  bne t6, t5, 1f
  li t5, CLINT_MSIP
  sw zero, 0(t5)
  mret
1:
  li t5, 7
  bne t6, t5, 2f
  li t5, CLINT_MTIMECMP
  li t4, -1
  sw t4, 0(t5)
  sw t4, 4(t5)
2:
  mret

  .align 2
strap:
  csrr t6, scause
  sd t6, 0(s11)
  csrr t6, sepc
  sd t6, 8(s11)
  csrr t6, stval
  sd t6, 16(s11)
  csrr t6, sstatus
  srli t6, t6, 8
  andi t6, t6, 1
  ori t6, t6, 0x100
  sd t6, 24(s11)
  addi s11, s11, 32
  csrr t6, scause
  bgez t6, 1f
  li t6, 2
  csrc sip, t6
  sret
1:
  li t5, 12
  bne t6, t5, 2f
  beqz s9, 2f
  csrw sepc, s9
  li s9, 0
  sret
2:
  li t5, 3 << 18               # SUM, MXR: the faulting instruction may be in an execute-only U page
  csrs sstatus, t5
  csrr t6, sepc
  lhu t5, 0(t6)
  li t4, 3 << 18
  csrc sstatus, t4
  andi t5, t5, 3
  li t4, 3
  addi t6, t6, 2
  bne t5, t4, 3f
  addi t6, t6, 2
3:
  csrw sepc, t6
  sret

  .align 8
vtable:
  .option push
  .option norvc
  j mtrap
  j mtrap
  j mtrap
  j vec3
  j mtrap
  j mtrap
  j mtrap
  j vec7
  j mtrap
  j mtrap
  j mtrap
  j mtrap
  .option pop
vec3:
  li t6, 0x7ec3
  sd t6, 0(s11)
  sd zero, 8(s11)
  sd zero, 16(s11)
  sd zero, 24(s11)
  addi s11, s11, 32
  j mtrap
vec7:
  li t6, 0x7ec7
  sd t6, 0(s11)
  sd zero, 8(s11)
  sd zero, 16(s11)
  sd zero, 24(s11)
  addi s11, s11, 32
  j mtrap

  .section .rodata
hexdigits: .ascii "0123456789abcdef"

  .bss
  .align 12
pt_l4: .space 4096
pt_l3: .space 4096
pt_l2: .space 4096
pt_l1: .space 4096
pt_l0: .space 4096
page_a: .space 4096
page_b: .space 4096
page_c: .space 4096
page_d: .space 4096
pmp_page: .space 4096
log: .space 16384
`;

interface Entry { cause: bigint; epc: bigint; tval: bigint; tag: bigint }

function parseLog(out: string): Entry[] {
  const words = out.split('\n').map((l) => l.trim()).filter((l) => /^[0-9a-f]{16}$/.test(l)).map((l) => BigInt('0x' + l));
  const entries: Entry[] = [];
  for (let i = 0; i + 3 < words.length; i += 4) entries.push({ cause: words[i], epc: words[i + 1], tval: words[i + 2], tag: words[i + 3] });
  return entries;
}

function fmt(e: Entry): string {
  const h = (v: bigint): string => '0x' + v.toString(16);
  if (e.tag === 0xda7an) return `DATA ${h(e.cause)}`;
  if (e.tag === 0xda7bn) return 'IMPL';
  // ebreak's tval may be 0 or the pc (privileged spec 3.1.16); QEMU writes 0, typevisor the pc.
  if (e.cause === 3n) return fmt({ ...e, cause: 0xb0000n + e.cause, tval: 0n });
  const who = e.tag >= 0x100n ? `S(from ${e.tag & 1n ? 'S' : 'U'})` : `M(from ${['U', 'S', '?', 'M'][Number(e.tag)]})`;
  return `${who} cause=${h(e.cause)} epc=${h(e.epc)} tval=${h(e.tval)}`;
}

test('privileged architecture: trap log identical to qemu-system-riscv64, and as the spec says', { timeout: 120_000 }, async () => {
  const path = await buildElf({ name: 'priv', sources: { 'priv.S': PROGRAM } });
  // Virtual clock: where the timer fires in the program cannot depend on host load.
  const ours = await runBare(readFileSync(path), { timeoutMs: 30_000, clock: { kind: 'virtual', shift: 4 } });
  assert.equal(ours.reason, 'poweroff', `typevisor exit: ${ours.reason} ${ours.message ?? ''}`);
  const ref = await runQemuSystem(path);
  const oursLog = parseLog(ours.console);
  const a = oursLog.map(fmt), b = parseLog(ref.output).map(fmt);
  // misa (RV64 IMAFDC SU, and writes cannot change it), medeleg (bit 11 and bit 10 read-only zero), mideleg (S interrupts)
  assert.deepEqual(oursLog.filter((e) => e.tag === 0xda7bn).map((e) => e.cause), [0x800000000014112dn, 0x800000000014112dn, 0xb3ffn, 0x222n]);
  assert.ok(b.length > 40, `qemu log has ${b.length} entries: ${ref.output.slice(0, 500)}`);
  assert.deepEqual(a, b);

  // Independent checks against the spec, so a shared mistake cannot pass.
  const has = (re: RegExp): void => assert.ok(a.some((l) => re.test(l)), `expected an entry matching ${re}\n${a.join('\n')}`);
  has(/^M\(from M\) cause=0x2 epc=0x[0-9a-f]+ tval=0x6081$/);        // reserved c.lui
  has(/^M\(from M\) cause=0x2 epc=0x[0-9a-f]+ tval=0xb$/);           // custom-0
  has(/^M\(from M\) cause=0xb /);                                     // ecall from M
  has(/^M\(from M\) cause=0x5 epc=0x[0-9a-f]+ tval=0x90000000$/);    // load access fault
  has(/^M\(from M\) cause=0x7 epc=0x[0-9a-f]+ tval=0x90000000$/);    // store access fault
  has(/^M\(from M\) cause=0x1 epc=0x90000000 tval=0x90000000$/);      // fetch access fault
  has(/^S\(from U\) cause=0x8 /);                                     // delegated ecall from U
  has(/^M\(from S\) cause=0x9 /);                                     // ecall from S
  has(/^S\(from S\) cause=0x8000000000000001 /);                      // delegated SSIP
  has(/^M\(from M\) cause=0x8000000000000003 /);                      // MSI before MTI
  has(/^M\(from M\) cause=0x8000000000000007 /);
  has(/^S\(from S\) cause=0xf epc=0x[0-9a-f]+ tval=0x40001000$/);    // store to a read-only page
  has(/^S\(from S\) cause=0xd epc=0x[0-9a-f]+ tval=0x40200000$/);    // misaligned superpage
  // A U page from S: a fault without SUM, data with it, a fault once SUM is clear again.
  const sum = a.findIndex((l) => /^S\(from S\) cause=0xd epc=0x[0-9a-f]+ tval=0x40003000$/.test(l));
  assert.ok(sum >= 0, 'U page from S without SUM faults');
  assert.match(a[sum + 1], /^DATA /);
  assert.match(a[sum + 2], /^S\(from S\) cause=0xd epc=0x[0-9a-f]+ tval=0x40003000$/);
  has(/^S\(from S\) cause=0xc epc=0x40004000 tval=0x40004000$/);      // fetch page fault
  has(/^S\(from U\) cause=0xd epc=0x[0-9a-f]+ tval=0x40000000$/);    // S page from U
  has(/^DATA 0x47$/);                                                 // A set, D clear after a load
  has(/^DATA 0xc7$/);                                                 // A and D after a store
  has(/^M\(from S\) cause=0x7 /);                                     // PMP store access fault
  has(/^M\(from S\) cause=0x5 /);                                     // PMP NA4
  // Vectored mtvec: the MSI went through vector entry 3 (marker 0x7ec3), then was handled.
  const v = oursLog.findIndex((e) => e.cause === 0x7ec3n);
  assert.ok(v >= 0, 'vectored mtvec: MSI went through vector entry 3');
  assert.equal(oursLog[v + 1].cause, (1n << 63n) | 3n);
  assert.ok(!oursLog.some((e) => e.cause === 0x7ec7n), 'no timer interrupt in the vectored part');
});

const MISALIGNED = String.raw`
  .section .text.init
  .globl _start
_start:
  la t0, trap
  csrw mtvec, t0
  la s11, out
  la t0, data
  ld t1, 1(t0)                 # misaligned loads and stores are performed by the hart
  sd t1, 0(s11)
  lw t1, 5(t0)
  sd t1, 8(s11)
  lhu t1, 7(t0)
  sd t1, 16(s11)
  li t2, 0x1122334455667788
  sd t2, 3(t0)
  ld t1, 0(t0)
  sd t1, 24(s11)
  ld t1, 8(t0)
  sd t1, 32(s11)
  la t0, cross                 # across a page boundary
  li t2, 0x0102030405060708
  li t3, 4093
  add t0, t0, t3
  sd t2, 0(t0)
  ld t1, 0(t0)
  sd t1, 40(s11)
  la t0, data
  addi t0, t0, 1
  amoadd.w t1, t1, (t0)        # misaligned AMO: store/AMO address misaligned
  lr.d t1, (t0)                # misaligned LR: load address misaligned
  li t0, 0x100000
  li t1, 0x5555
  sw t1, 0(t0)
1: j 1b
  .align 2
trap:
  csrr t6, mcause
  sd t6, 48(s11)
  csrr t6, mtval
  sd t6, 56(s11)
  addi s11, s11, 16
  csrr t6, mepc
  addi t6, t6, 4
  csrw mepc, t6
  mret
  .data
  .align 4
data: .dword 0x0807060504030201, 0x100f0e0d0c0b0a09, 0
  .bss
  .align 12
cross: .space 8192
out: .space 256
`;

test('misaligned loads and stores are carried out by the hart; misaligned AMO and LR trap', { timeout: 60_000 }, async () => {
  const { Machine } = await import('../../src/machine/machine.js');
  const { parseElf } = await import('../../src/machine/elf.js');
  const bytes = readFileSync(await buildElf({ name: 'misaligned', sources: { 'm.S': MISALIGNED } }));
  const m = new Machine({ jitThreshold: testJitThreshold(), memoryBytes: 16 << 20, bios: bytes, kernel: null, initrd: null, append: '', serial: { write() {} } });
  assert.deepEqual(await m.run(), { reason: 'poweroff', code: 0 });
  const out = parseElf(bytes).symbols.get('out') ?? 0;
  const data = parseElf(bytes).symbols.get('data') ?? 0;
  const w = (i: number): bigint => new DataView(m.board.bus.readBytes(out + i * 8, 8)?.buffer ?? new ArrayBuffer(8)).getBigUint64(0, true);
  assert.equal(w(0), 0x0908070605040302n);
  assert.equal(w(1), 0x09080706n);
  assert.equal(w(2), 0x0908n);
  assert.equal(w(3), 0x4455667788030201n);
  assert.equal(w(4), 0x100f0e0d0c112233n);
  assert.equal(w(5), 0x0102030405060708n);
  // after two traps, s11 advanced by 32: the trap records sit at 48 + 0 and 48 + 16
  assert.equal(w(6), 6n, 'misaligned AMO: cause 6');
  assert.equal(w(7), BigInt(data + 1));
  assert.equal(w(8), 4n, 'misaligned LR: cause 4');
  assert.equal(w(9), BigInt(data + 1));
});
