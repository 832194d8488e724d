/**
 * The hart's hot state in the shared state block (cpu/state.ts), save/load of snapshots
 * taken before those slots existed, and the write-TLB reverse map: a page that becomes code
 * loses every write-TLB entry that maps it, through any virtual alias and privilege level.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Bus } from '../../src/machine/bus.js';
import { Hart } from '../../src/cpu/hart.js';
import type { Decoded } from '../../src/cpu/isa/types.js';
import { CSR, IRQ, PRIV_M, PRIV_S } from '../../src/cpu/csr.js';
import { PRIV, MIE, MIP_SW, MIP_HW, ATTENTION, WAITING, ICOUNT, HART_STATE_BYTES, F0 } from '../../src/cpu/state.js';
import { TLB_INVALID } from '../../src/cpu/mmu.js';

const RAM = 0x8000_0000;
/** A stand-in for the CSR instruction (only its bits are used, for illegal-instruction tval). */
const HOST_CSR = { raw: 0, len: 4, imm: 0 } as unknown as Decoded;
const LI_A0 = (v: number): number => ((v & 0xfff) << 20) | (10 << 7) | 0x13; // addi a0, x0, v
const J_SELF = 0x0000006f; // jal x0, 0

function newHart(): { bus: Bus; hart: Hart } {
  const bus = new Bus(RAM, 1 << 20);
  return { bus, hart: new Hart(bus, 0, { now: () => 0 }) };
}

function le32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, true);
  return b;
}

test('priv, mie, mip, attention, waiting and icount live in the state block', () => {
  const { hart } = newHart();
  const x32 = hart.x32;
  assert.equal(x32[PRIV * 2], PRIV_M);
  hart.enterPrivilege(PRIV_S, BigInt(RAM));
  assert.equal(hart.priv, PRIV_S);
  assert.equal(x32[PRIV * 2], PRIV_S);
  hart.enterPrivilege(PRIV_M, BigInt(RAM)); // (test access only: CSR writes need M)
  hart.csrWrite(HOST_CSR, CSR.mie, BigInt(1 << IRQ.MTI));
  assert.equal(x32[MIE * 2], 1 << IRQ.MTI);
  hart.setIrqLine(IRQ.MEI, true);
  assert.equal(x32[MIP_HW * 2], 1 << IRQ.MEI);
  hart.csrWrite(HOST_CSR, CSR.mip, BigInt(1 << IRQ.SSI));
  assert.equal(x32[MIP_SW * 2], 1 << IRQ.SSI);
  assert.equal(hart.mipValue, (1 << IRQ.MEI) | (1 << IRQ.SSI));
  hart.wfi(); // nothing enabled is pending (MTI enabled, not pending): sleeps
  assert.equal(x32[WAITING * 2], 1);
  assert.equal(x32[ATTENTION * 2], 1);
  hart.f64[ICOUNT] = 2 ** 53 - 1;
  assert.equal(hart.icount, 2 ** 53 - 1, 'icount is exact up to 2^53');
  hart.icount = 7;
  assert.equal(hart.f64[ICOUNT], 7);
  // Reset keeps the interrupt lines and the retired count, clears the rest.
  hart.reset(RAM);
  assert.equal(x32[MIP_HW * 2], 1 << IRQ.MEI);
  assert.equal(hart.icount, 7);
  assert.equal(x32[MIE * 2], 0);
  assert.equal(x32[MIP_SW * 2], 0);
  assert.equal(x32[WAITING * 2], 0);
});

test('load() takes a snapshot whose register block predates the hot-state slots', () => {
  const { hart } = newHart();
  hart.csrWrite(HOST_CSR, CSR.mie, BigInt(1 << IRQ.STI));
  hart.csrWrite(HOST_CSR, CSR.mip, BigInt(1 << IRQ.SSI));
  hart.setIrqLine(IRQ.SEI, true);
  hart.icount = 123_456_789_012;
  hart.enterPrivilege(PRIV_S, BigInt(RAM + 0x40));
  const st = hart.save();
  // An older snapshot: the same fields, zeros where the new slots are.
  const old = { ...st, regs: st.regs.slice() };
  old.regs.fill(0, PRIV * 8, (ICOUNT + 1) * 8);
  assert.equal(old.regs.length, HART_STATE_BYTES);
  const fresh = newHart().hart;
  fresh.load(old);
  assert.equal(fresh.priv, PRIV_S);
  assert.equal(fresh.x32[PRIV * 2], PRIV_S);
  assert.equal(fresh.mie, 1 << IRQ.STI);
  assert.equal(fresh.mipValue, (1 << IRQ.SSI) | (1 << IRQ.SEI));
  assert.equal(fresh.icount, 123_456_789_012);
  assert.equal(fresh.pc, BigInt(RAM + 0x40));
  const again = fresh.save();
  assert.deepEqual({ ...again, regs: null }, { ...st, regs: null });
  // x, pc and f registers alike (the run-loop slots between them differ: load() asks for attention).
  assert.deepEqual(again.regs.subarray(0, PRIV * 8), st.regs.subarray(0, PRIV * 8));
  assert.deepEqual(again.regs.subarray(F0 * 8), st.regs.subarray(F0 * 8));
});

test('a page that becomes code loses its write-TLB entries from every alias and privilege level', () => {
  const { bus, hart } = newHart();
  // Sv39: root at RAM+0x10000 -> L1 at +0x11000 -> L0 at +0x12000. Three virtual pages map
  // the physical code page RAM+0x2000: 0x2000 (executed), 0x5000 and 0x9000 (written).
  const root = RAM + 0x10000, l1 = RAM + 0x11000, l0 = RAM + 0x12000, code = RAM + 0x2000;
  const pte = (pa: number, flags: number): Uint8Array => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, (BigInt(pa / 4096) << 10n) | BigInt(flags), true);
    return b;
  };
  const LEAF = 0xcf; // V R W X A D (supervisor page)
  bus.writeBytes(root, pte(l1, 1));
  bus.writeBytes(l1, pte(l0, 1));
  for (const va of [0x2000, 0x5000, 0x9000]) bus.writeBytes(l0 + (va >>> 12) * 8, pte(code, LEAF));
  bus.writeBytes(code, le32(LI_A0(1)));
  bus.writeBytes(code + 4, le32(J_SELF));
  // PMP: all of memory RWX for S (NAPOT over everything), as firmware sets it up.
  hart.csrWrite(HOST_CSR, CSR.pmpaddr0, (1n << 54n) - 1n);
  hart.csrWrite(HOST_CSR, CSR.pmpcfg0, 0x1fn);
  // M-mode store to the page (fills the M write TLB), then S-mode stores through both aliases.
  hart.store32(code + 0x100, 0, 0x11);
  hart.csrWrite(HOST_CSR, CSR.satp, (8n << 60n) | BigInt(root / 4096));
  hart.enterPrivilege(PRIV_S, 0x2000n);
  hart.store32(0x5100, 0, 0x22);
  hart.store32(0x9104, 0, 0x33);
  const hostPage = bus.ramHostOffset + (code - RAM);
  const mapped = (): number => hart.tlbSets.reduce((n, set) => {
    const t = set[1];
    for (let e = 0; e < t.tag.length; e += 4) if (t.tag[e] !== TLB_INVALID && t.host[e + 2] === hostPage) n++;
    return n;
  }, 0);
  assert.equal(mapped(), 3, 'the three stores filled three write-TLB entries for the page');
  hart.run(3);
  assert.equal(hart.reg(10), 1n);
  assert.equal(mapped(), 0, 'fetching from the page dropped every write entry for it');
  // Stores through either alias now take the slow path, which drops the decoded code.
  hart.store32(0x5000, 0, LI_A0(2));
  hart.pc = 0x2000n;
  hart.run(3);
  assert.equal(hart.reg(10), 2n, 'the store through the first alias changed the code that runs');
  hart.store32(0x9000, 0, LI_A0(3));
  hart.pc = 0x2000n;
  hart.run(3);
  assert.equal(hart.reg(10), 3n, 'the store through the second alias changed the code that runs');
  assert.deepEqual(bus.readBytes(code + 0x100, 8), Uint8Array.of(0x22, 0, 0, 0, 0x33, 0, 0, 0), 'the data stores landed');
});
