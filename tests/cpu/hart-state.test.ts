/**
 * The hart's hot state in the shared state block (cpu/state.ts), and save/load of snapshots
 * taken before those slots existed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Bus } from '../../src/machine/bus.js';
import { Hart } from '../../src/cpu/hart.js';
import type { Decoded } from '../../src/cpu/isa/types.js';
import { CSR, IRQ, PRIV_M, PRIV_S } from '../../src/cpu/csr.js';
import { PRIV, MIE, MIP_SW, MIP_HW, ATTENTION, WAITING, ICOUNT, HART_STATE_BYTES, F0 } from '../../src/cpu/state.js';

const RAM = 0x8000_0000;
/** A stand-in for the CSR instruction (only its bits are used, for illegal-instruction tval). */
const HOST_CSR = { raw: 0, len: 4, imm: 0 } as unknown as Decoded;

function newHart(): { bus: Bus; hart: Hart } {
  const bus = new Bus(RAM, 1 << 20);
  return { bus, hart: new Hart(bus, 0, { now: () => 0 }) };
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
