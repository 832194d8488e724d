/**
 * A guest can only hurt itself: random machine code that pokes every device, CSR and
 * hole in the address space, in M-mode and as an S-mode kernel hammering the built-in
 * SBI with random arguments, must never make the host throw. The machine must end
 * only by the guest's own doing (poweroff/fail/reset) or by being stopped.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Machine, type MachineExit } from '../../src/machine/machine.js';
import { prng } from '../lib/prng.js';
import { testJitThreshold } from '../lib/user.js';

const SEED = Number(process.env.TYPEVISOR_FUZZ_SEED ?? 0x7e57);
const CASES = Number(process.env.TYPEVISOR_FUZZ_CASES ?? 24);
/** Each case runs this many steps (instructions + traps) on the virtual clock, so a seed reproduces a run exactly. */
const STEPS = 1_000_000;
/** Only for a guest asleep in WFI with no timer armed (nothing would ever wake it). */
const IDLE_STOP_MS = 5000;

/** Addresses worth hitting: every device, register blocks, holes, RAM edges. */
const TARGETS = [
  0x0, 0x1000, 0x1ff8, 0x100000, 0x101000, 0x101018, 0x2000000, 0x2004000, 0x200bff8, 0xc000000, 0xc001000,
  0xc002000, 0xc002080, 0xc200000, 0xc200004, 0xc201000, 0xc201004, 0x10000000, 0x10000005, 0x10001000,
  0x10001070, 0x10008000, 0x3000_0000, 0x8000_0000, 0x8000_1000, 0x83ff_f000, 0x8400_0000, 0x9000_0000,
];
const CSRS = [0x001, 0x002, 0x003, 0x100, 0x104, 0x105, 0x106, 0x10a, 0x140, 0x141, 0x142, 0x143, 0x144, 0x14d, 0x180,
  0x300, 0x301, 0x302, 0x303, 0x304, 0x305, 0x306, 0x30a, 0x320, 0x340, 0x341, 0x342, 0x343, 0x344, 0x3a0, 0x3a2,
  0x3b0, 0x3b5, 0x3bf, 0xb00, 0xb02, 0xc00, 0xc01, 0xc02, 0xf11, 0xf14, 0x7c0, 0x5a8];
const SBI_EIDS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 0x10, 0x54494d45, 0x735049, 0x52464e43, 0x48534d, 0x53525354, 0x4442434e, 0x12345];

const enc = {
  lui: (rd: number, imm20: number) => ((imm20 & 0xfffff) << 12) | (rd << 7) | 0x37,
  addi: (rd: number, rs1: number, imm: number) => ((imm & 0xfff) << 20) | (rs1 << 15) | (rd << 7) | 0x13,
  load: (rd: number, rs1: number, imm: number, f3: number) => ((imm & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | 0x03,
  store: (rs2: number, rs1: number, imm: number, f3: number) =>
    (((imm >> 5) & 0x7f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 0x1f) << 7) | 0x23,
  csr: (rd: number, csr: number, rs1: number, f3: number) => (csr << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | 0x73,
  amo: (rd: number, rs1: number, rs2: number, f5: number, w: boolean) =>
    (f5 << 27) | (rs2 << 20) | (rs1 << 15) | ((w ? 2 : 3) << 12) | (rd << 7) | 0x2f,
};
const SYSTEM = [0x00000073, 0x00100073, 0x30200073, 0x10200073, 0x10500073, 0x12000073, 0x0000100f, 0x0100000f];

/** li rd, value (value < 2^32) with lui + addi, then zero-extend via slli/srli when needed. */
function li(out: number[], rd: number, v: number): void {
  const lo = ((v & 0xfff) << 20) >> 20;
  const hi = ((v - lo) >>> 12) & 0xfffff;
  out.push(enc.lui(rd, hi), enc.addi(rd, rd, lo));
  if (v >= 0x8000_0000) out.push((32 << 20) | (rd << 15) | (1 << 12) | (rd << 7) | 0x13, (32 << 20) | (rd << 15) | (5 << 12) | (rd << 7) | 0x13);
}

function program(rand: () => number, sbi: boolean): Uint8Array {
  const w: number[] = [];
  const pick = <T>(a: readonly T[]): T => a[rand() % a.length];
  for (let r = 1; r < 32; r++) li(w, r, rand() % 4 === 0 ? rand() : pick(TARGETS));
  li(w, 5, 0x8000_0000);
  w.push(enc.csr(0, 0x305, 5, 1)); // mtvec = start: traps re-enter the random code
  for (let i = 0; i < 1500; i++) {
    const k = rand() % 100, rd = 1 + (rand() % 31), rs = 1 + (rand() % 31), rs2 = 1 + (rand() % 31);
    if (k < 30) w.push(enc.load(rd, rs, (rand() % 64) - 32, rand() % 7));
    else if (k < 50) w.push(enc.store(rs2, rs, (rand() % 64) - 32, rand() % 4));
    else if (k < 62) w.push(enc.csr(rd, pick(CSRS), rs, 1 + (rand() % 3)));
    else if (k < 68) w.push(enc.amo(rd, rs, rs2, pick([0, 1, 2, 3, 4, 8, 12, 16, 20, 24, 28]), rand() % 2 === 0));
    else if (k < 74) w.push(pick(SYSTEM));
    else if (k < 82) li(w, rd, rand() % 2 ? pick(TARGETS) + (rand() % 4096) : rand());
    else if (k < 90 && sbi) {
      li(w, 17, pick(SBI_EIDS));
      li(w, 16, rand() % 8);
      for (let a = 10; a < 16; a++) li(w, a, rand() % 3 === 0 ? pick(TARGETS) : rand());
      w.push(0x00000073);
    } else w.push(rand() | (rand() % 2 ? 3 : 0)); // raw garbage, 32-bit or compressed-looking
  }
  const bytes = new Uint8Array(w.length * 4);
  const dv = new DataView(bytes.buffer);
  w.forEach((x, i) => dv.setUint32(i * 4, x >>> 0, true));
  return bytes;
}

async function runCase(image: Uint8Array, sbi: boolean): Promise<MachineExit> {
  const m = new Machine({
    jitThreshold: testJitThreshold(),
    memoryBytes: 64 << 20, bios: sbi ? null : image, kernel: sbi ? image : null, initrd: null, append: '',
    clock: { kind: 'virtual', shift: 4 }, stepLimit: STEPS,
    serial: { write() {} },
  });
  const t = setTimeout(() => m.stop(), IDLE_STOP_MS);
  const e = await m.run();
  clearTimeout(t);
  return e;
}

for (const sbi of [false, true]) {
  test(`random ${sbi ? 'S-mode kernels against the built-in SBI' : 'M-mode firmware'} never crash the host (seed ${SEED}, ${CASES} cases)`, { timeout: 120_000 }, async () => {
    const rand = prng(SEED + (sbi ? 1 : 0));
    const reasons = new Map<string, number>();
    for (let c = 0; c < CASES; c++) {
      const e = await runCase(program(rand, sbi), sbi);
      reasons.set(e.reason, (reasons.get(e.reason) ?? 0) + 1);
      // 'error' means a host exception; 'panic' (a trap reaching M-mode with the built-in SBI) is the guest's doing.
      assert.notEqual(e.reason, 'error', `case ${c} (seed ${SEED}): host error: ${e.message}`);
      if (e.reason === 'panic') assert.ok(sbi && /unhandled trap to M-mode/.test(e.message ?? ''), `case ${c}: ${e.message}`);
      assert.ok(['stopped', 'poweroff', 'fail', 'reset', 'panic'].includes(e.reason));
    }
    assert.ok((reasons.get('stopped') ?? 0) + (reasons.get('poweroff') ?? 0) + (reasons.get('fail') ?? 0) + (reasons.get('reset') ?? 0) > 0);
  });
}
