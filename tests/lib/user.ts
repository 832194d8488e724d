/**
 * A user-mode program runner for tests: runs a static, -nostdlib Linux-style program on a
 * bare hart (no board), in S-mode with FP enabled, emulating the few Linux syscalls such
 * programs use (write, exit, exit_group). The same ELF runs under qemu-riscv64, which makes
 * differential tests possible.
 */
import assert from 'node:assert/strict';
import { Bus } from '../../src/machine/bus.js';
import { Hart, type SbiHandler } from '../../src/cpu/hart.js';
import type { Decoded } from '../../src/cpu/isa/types.js';
import { parseElf } from '../../src/machine/elf.js';
import { DEFAULT_JIT_THRESHOLD } from '../../src/machine/machine.js';
import { CSR, CAUSE, PRIV_M, PRIV_S, PRIV_U } from '../../src/cpu/csr.js';

export interface UserResult {
  stdout: Uint8Array;
  code: number;
  hart: Hart;
  instructions: number;
  /** With stopOnTrap: the program trapped to M-mode (mcause/mepc/mtval are on the hart). */
  trapped?: boolean;
}

const HOST_CSR = { raw: 0, len: 4, imm: 0 } as unknown as Decoded;
const SYS_WRITE = 64, SYS_EXIT = 93, SYS_EXIT_GROUP = 94;
const ENOSYS = -38n, EFAULT = -14n;

/**
 * The translator threshold tests use: $TYPEVISOR_JIT (a number, or 'off' for the interpreter
 * alone); default the Machine's, as users get it.
 */
export function testJitThreshold(): number {
  const v = process.env.TYPEVISOR_JIT;
  if (v === undefined || v === '') return DEFAULT_JIT_THRESHOLD;
  if (v === 'off') return Infinity;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`TYPEVISOR_JIT must be a non-negative number or 'off', got '${v}'`);
  return n;
}

/**
 * `paging: true` runs the program as Linux would: in U-mode under Sv39, RAM mapped with 4 KiB
 * pages (A and D clear, so the walker sets them), and each ecall traps to M, where the runner
 * answers it and returns to U. Otherwise the program runs in S-mode without translation and
 * ecalls are answered directly. `stopOnTrap`: a trap to M-mode ends the run (result.trapped)
 * instead of throwing, so a test can compare the architectural state at the fault.
 */
export function runUser(elf: Uint8Array, opts: { maxInsns?: number; memoryBytes?: number; paging?: boolean; jitThreshold?: number; stopOnTrap?: boolean } = {}): UserResult {
  const img = parseElf(elf);
  const memoryBytes = opts.memoryBytes ?? 64 << 20;
  const bus = new Bus(0x8000_0000, memoryBytes);
  let insns = 0;
  const hart = new Hart(bus, 0, { now: () => insns / 10 });
  for (const s of img.segments) {
    bus.writeBytes(s.paddr, s.data);
  }
  const chunks: Uint8Array[] = [];
  let code = -1;
  const syscall = (h: Hart): void => {
    {
      const nr = Number(h.x[17]);
      if (nr === SYS_WRITE) {
        const buf = Number(BigInt.asUintN(64, h.x[11]));
        const len = Number(BigInt.asUintN(64, h.x[12]));
        const data = len <= memoryBytes ? bus.readBytes(buf, len) : undefined;
        if (data === undefined) { h.x[10] = EFAULT; return; }
        chunks.push(data);
        h.x[10] = BigInt(len);
      } else if (nr === SYS_EXIT || nr === SYS_EXIT_GROUP) {
        code = Number(h.x[10] & 0xffn);
        h.requestStop();
      } else {
        h.x[10] = ENOSYS;
      }
    }
  };
  const sbi: SbiHandler = { ecall: syscall };
  if (!opts.paging) hart.sbi = sbi;
  // This runner never yields to the event loop: compile synchronously.
  hart.enableJit(opts.jitThreshold ?? testJitThreshold(), false);
  // Open PMP (S-mode has no access without a matching entry), FS=Initial, then drop to S.
  hart.csrWrite(HOST_CSR, CSR.pmpaddr0, (1n << 54n) - 1n);
  hart.csrWrite(HOST_CSR, CSR.pmpcfg0, 0x1fn);
  hart.csrWrite(HOST_CSR, CSR.mstatus, 1n << 13n);
  hart.csrWrite(HOST_CSR, CSR.mcounteren, 7n);
  // A trap to M lands on a wfi, so the run loop returns with mcause/mepc intact.
  const trapPad = 0x8000_0000 + memoryBytes - 4096;
  bus.writeBytes(trapPad, new Uint8Array([0x73, 0x00, 0x50, 0x10]));
  hart.csrWrite(HOST_CSR, CSR.mtvec, BigInt(trapPad));
  if (opts.paging) {
    const tables = mapSv39(bus, trapPad);
    hart.csrWrite(HOST_CSR, CSR.satp, (8n << 60n) | BigInt(tables.root / 4096));
    hart.enterPrivilege(PRIV_U, BigInt(img.entry));
    hart.x[2] = BigInt(tables.base - 64);
  } else {
    hart.enterPrivilege(PRIV_S, BigInt(img.entry));
    hart.x[2] = BigInt(trapPad - 64);
  }
  const max = opts.maxInsns ?? 200_000_000;
  while (code < 0 && insns < max) {
    insns += hart.run(Math.min(20_000, max - insns));
    if (opts.paging && hart.priv === PRIV_M && hart.mcause === BigInt(CAUSE.ECALL_U)) {
      syscall(hart);
      hart.waiting = false;
      if (code < 0) hart.enterPrivilege(PRIV_U, hart.mepc + 4n);
      continue;
    }
    if (hart.priv === PRIV_M) {
      if (opts.stopOnTrap) { checkJit(hart); return { stdout: new Uint8Array(0), code, hart, instructions: insns, trapped: true }; }
      throw new Error(`user program trapped: mcause=${hart.mcause} mepc=0x${BigInt.asUintN(64, hart.mepc).toString(16)} mtval=0x${BigInt.asUintN(64, hart.mtval).toString(16)}`);
    }
    if (hart.waiting) throw new Error('user program executed wfi with nothing to wake it');
  }
  if (code < 0) throw new Error(`user program did not exit within ${max} instructions (pc=0x${hart.pc.toString(16)})`);
  checkJit(hart);
  let total = 0;
  for (const c of chunks) total += c.length;
  const stdout = new Uint8Array(total);
  let o = 0;
  for (const c of chunks) { stdout.set(c, o); o += c.length; }
  return { stdout, code, hart, instructions: insns };
}

/** A module the engine refused would leave its code interpreted and every test passing: fail instead. */
function checkJit(hart: Hart): void {
  const failures = hart.jit?.stats.failures ?? 0;
  if (failures > 0) throw new Error(`the translator produced ${failures} module(s) WebAssembly refused`);
}

/** Bytes below the trap pad reserved for the page tables (root, one L1, one L0 per 2 MiB). */
const TABLE_BYTES = 1 << 20;

/** Map RAM below the tables 1:1 for U-mode with 4 KiB pages (V R W X U; A and D left to the walker). */
function mapSv39(bus: Bus, top: number): { root: number; base: number } {
  const base = top - TABLE_BYTES;
  const root = base, l1 = base + 4096;
  const pte = (ppn: number, flags: number): bigint => (BigInt(ppn) << 10n) | BigInt(flags);
  const put = (pa: number, v: bigint): void => { bus.dv.setBigUint64(bus.ramOffset(pa, 8), v, true); };
  const ram0 = bus.ramBase;
  put(root + ((ram0 / 2 ** 30) & 511) * 8, pte(l1 / 4096, 0x01));
  let l0 = base + 2 * 4096;
  for (let mb2 = ram0; mb2 < base; mb2 += 2 << 20) {
    if (l0 + 4096 > top) throw new Error('runUser: page tables do not fit');
    put(l1 + ((mb2 / (2 << 20)) & 511) * 8, pte(l0 / 4096, 0x01));
    for (let i = 0; i < 512 && mb2 + i * 4096 < base; i++) put(l0 + i * 8, pte(mb2 / 4096 + i, 0x1f));
    l0 += 4096;
  }
  bus.notifyRamWrite(base, TABLE_BYTES);
  return { root, base };
}

/**
 * Assembler macros for user-mode test programs (Linux syscalls, as qemu-riscv64 and runUser
 * serve them): EXIT code, PRINT8 sym, and EXIT_WITH reg (print the register's 8 bytes, exit 0).
 */
export const USER_MACROS = String.raw`
  .macro EXIT code
    li a0, \code
    li a7, 93
    ecall
  .endm
  .macro PRINT8 sym
    li a0, 1
    la a1, \sym
    li a2, 8
    li a7, 64
    ecall
  .endm
  .macro EXIT_WITH reg
    .pushsection .data
    .balign 8
  result\@: .dword 0
    .popsection
    la t0, result\@
    sd \reg, 0(t0)
    PRINT8 result\@
    EXIT 0
  .endm
`;

/** x0..x31 of a run's hart. */
export function userRegs(r: UserResult): bigint[] {
  return Array.from({ length: 32 }, (_, i) => r.hart.reg(i));
}

/** A run ended as the reference (the interpreter's) did: exit code 0, output, registers, instructions retired. */
export function assertSameRun(r: UserResult, ref: UserResult, label: string): void {
  assert.equal(r.code, 0, `${label}: exit code`);
  assert.deepEqual(Buffer.from(r.stdout), Buffer.from(ref.stdout), `${label}: output`);
  assert.deepEqual(userRegs(r), userRegs(ref), `${label}: registers`);
  assert.equal(r.hart.icount, ref.hart.icount, `${label}: instructions retired`);
}
