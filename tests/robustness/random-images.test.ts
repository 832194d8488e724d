/**
 * A guest can only hurt itself, second angle: whole images of random 32-bit words, random
 * compressed parcels, and valid encodings with hostile operands (MMIO of every device,
 * holes, RAM edges, FP/AMO/LR-SC to devices, random CSR numbers, SBI calls with huge
 * DBCN ranges and random HSM/RFENCE/IPI masks), run as M-mode firmware and as an S-mode
 * kernel on the built-in SBI. Besides "no host exception", the host bytes past the end of
 * guest RAM (the slack of the last WebAssembly page) and a separate canary buffer must be
 * unchanged, and the WebAssembly memory must not have grown.
 * Seed: TYPEVISOR_FUZZ_SEED; cases per mode: TYPEVISOR_FUZZ_CASES.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Machine, type MachineExit } from '../../src/machine/machine.js';
import { STATE_REGION_BYTES } from '../../src/machine/bus.js';
import type { MmioDevice } from '../../src/devices/device.js';
import { prng } from '../lib/prng.js';
import { testJitThreshold } from '../lib/user.js';

const SEED = Number(process.env.TYPEVISOR_FUZZ_SEED ?? 0x5eed5);
const CASES = Number(process.env.TYPEVISOR_FUZZ_CASES ?? 16);
/** Each case runs this many steps (instructions + traps) on the virtual clock, so a seed reproduces a run exactly. */
const STEPS = 500_000;
/** Only for a guest asleep in WFI with no timer armed (nothing would ever wake it). */
const IDLE_STOP_MS = 5000;
/** Not a multiple of the 64 KiB WebAssembly page, so the buffer has a tail past RAM to watch. */
const MEM = (8 << 20) + 0x3000;
const CANARY = 0xa5;

const RAM_END = 0x8000_0000 + MEM;
const TARGETS = [
  0x0, 0x800, 0x1000, 0x1004, 0xfffc, 0x10000, 0x100000, 0x100004, 0x101000, 0x101008, 0x10100c, 0x101014, 0x10101c,
  0x2000000, 0x2000004, 0x2004000, 0x2004004, 0x200bff8, 0x200bffc, 0x200fffc, 0xc000000, 0xc000004, 0xc000028, 0xc001000,
  0xc002000, 0xc002080, 0xc1ffffc, 0xc200000, 0xc200004, 0xc201000, 0xc201004, 0xc5ffffc, 0x10000000, 0x10000001, 0x10000003,
  0x10000005, 0x10000007, 0x10001000, 0x10001070, 0x10002000, 0x10008ffc, 0x10009000, 0x2000_0000, 0x3000_0000,
  0x7fff_fff8, 0x7fff_fffe, 0x8000_0000, RAM_END - 8, RAM_END - 4, RAM_END - 2, RAM_END - 1, RAM_END, RAM_END + 0x1000, 0xffff_fff8,
];
const HOT_CSRS = [0x180, 0x300, 0x302, 0x303, 0x304, 0x305, 0x341, 0x344, 0x3a0, 0x3a2, 0x3b0, 0x3b1, 0x3bf, 0x105, 0x104,
  0x144, 0x14d, 0x100, 0x106, 0x306, 0x30a, 0x10a, 0x320, 0x7a0, 0x7b0, 0xb00, 0xc01, 0x001, 0x002, 0x003];
const DBCN = 0x4442434e, HSM = 0x48534d, RFENCE = 0x52464e43, IPI = 0x735049, TIME = 0x54494d45;

type Kind = 'words' | 'parcels' | 'encodings';

function r32(w: number[], x: number): void { w.push(x >>> 0); }
const I = (imm: number, rs1: number, f3: number, rd: number, op: number): number => ((imm & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op;
const S = (imm: number, rs2: number, rs1: number, f3: number, op: number): number =>
  (((imm >> 5) & 0x7f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 0x1f) << 7) | op;

/** Load a 64-bit constant into rd: lui/addi for the low 32 bits, then slli/addi for a small high part. */
function li(w: number[], rd: number, v: number, hi = 0): void {
  const lo = ((v & 0xfff) << 20) >> 20;
  w.push(((((v - lo) >>> 12) & 0xfffff) << 12) | (rd << 7) | 0x37, I(lo, rd, 0, rd, 0x13));
  if (v >= 0x8000_0000 || v < 0) w.push(I(32, rd, 1, rd, 0x13), I(32, rd, 5, rd, 0x13)); // zero-extend
  if (hi !== 0) { w.push(I(hi, 0, 0, 31, 0x13), I(32, 31, 1, 31, 0x13), (31 << 20) | (rd << 15) | (rd << 7) | 0x33); }
}

const B = (off: number, rs2: number, rs1: number, f3: number): number =>
  ((((off >> 12) & 1) << 31) | (((off >> 5) & 0x3f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (((off >> 1) & 0xf) << 8) | (((off >> 11) & 1) << 7) | 0x63) >>> 0;
const J = (off: number, rd: number): number =>
  ((((off >> 20) & 1) << 31) | (((off >> 1) & 0x3ff) << 21) | (((off >> 11) & 1) << 20) | (((off >> 12) & 0xff) << 12) | (rd << 7) | 0x6f) >>> 0;

/**
 * A fixed trap handler so random code keeps making progress instead of re-trapping at one
 * spot: exceptions skip the faulting instruction, fetch faults resume at the body start,
 * interrupts disable xie (else a pending level interrupt livelocks). Uses only x31 + xscratch.
 */
function handler(w: number[], sbi: boolean, step: number): void {
  const [scratch, cause, epc, ie, xret] = sbi ? [0x140, 0x142, 0x141, 0x104, 0x10200073] : [0x340, 0x342, 0x341, 0x304, 0x30200073];
  w.push(
    I(scratch, 31, 1, 31, 0x73), // 0 csrrw x31, xscratch, x31
    I(cause, 0, 2, 31, 0x73), //    1 csrr x31, xcause
    B(56, 0, 31, 4), //             2 blt x31, zero, 16 (interrupt)
    I(-2, 31, 0, 31, 0x13), //      3 cause 0/1: fetch misaligned/access fault
    B(32, 0, 31, 4), //             4 blt -> 12
    I(-10, 31, 0, 31, 0x13), //     5 cause 12: fetch page fault
    B(24, 0, 31, 0), //             6 beq -> 12
    I(epc, 0, 2, 31, 0x73), //      7 csrr x31, xepc
    I(step, 31, 0, 31, 0x13), //    8 skip the instruction
    I(epc, 31, 1, 0, 0x73), //      9 csrw xepc, x31
    I(scratch, 31, 1, 31, 0x73), // 10 restore x31
    xret, //                        11
    (31 << 7) | 0x17, //            12 auipc x31, 0
    I(24, 31, 0, 31, 0x13), //      13 x31 = body (18)
    I(epc, 31, 1, 0, 0x73), //      14 csrw xepc, x31
    J(-20, 0), //                   15 j 10
    I(ie, 0, 1, 0, 0x73), //        16 csrw xie, zero
    J(-28, 0), //                   17 j 10
  );
}

function image(rand: () => number, kind: Kind, base: number, sbi: boolean): Uint8Array {
  const w: number[] = [];
  const pick = <T>(a: readonly T[]): T => a[rand() % a.length];
  const body = 4096; // words of random code after the prologue
  // Prologue: registers point at targets, the trap vector is the handler, then the random body.
  // RAM targets: in S-mode the image is at base, and below it lies 2 MiB of zeros to trap through one by one.
  const target = (): number => { const t = pick(TARGETS); return t === 0x8000_0000 ? base : t; };
  for (let r = 1; r < 32; r++) li(w, r, rand() % 4 === 0 ? rand() : target(), rand() % 8 === 0 ? (rand() % 4) - 2 : 0);
  const at = w.length + 6; // after the li (up to 4 words), csrw and j below
  li(w, 31, base + 4 * at);
  while (w.length < at - 2) w.push(0x13); // nop
  w.push(I(sbi ? 0x105 : 0x305, 31, 1, 0, 0x73)); // csrw xtvec, x31
  w.push(J(4 * 19, 0)); // j over the handler to the body
  handler(w, sbi, kind === 'parcels' ? 2 : 4);
  const bodyStart = w.length;
  const sbiCall = (eid: number): void => {
    li(w, 17, eid); li(w, 16, rand() % 2 ? rand() % 8 : rand());
    for (let a = 10; a < 16; a++) {
      const c = rand() % 4;
      if (c === 0) li(w, a, target(), rand() % 3 === 0 ? (rand() % 4096) - 2048 : 0); // high parts: huge/negative
      else if (c === 1) li(w, a, rand(), -1);
      else if (c === 2) li(w, a, pick([0, 1, 0x7fffffff, 0xffffffff, 0x100000, 0x100001]));
      else li(w, a, rand());
    }
    w.push(0x00000073);
  };
  if (kind === 'encodings') {
    // A sweep first, so every device and SBI extension is hit in every case; chaos follows.
    for (const dev of [0x1000, 0x101000, 0x2000000, 0x2004000, 0x200bff8, 0xc000000, 0xc002000, 0xc200000, 0xc201004, 0x10000000, 0x10001000, 0x10008000]) {
      li(w, 5, dev + (rand() % 8) * 4);
      w.push(S(rand() % 8, 1 + (rand() % 31), 5, rand() % 4, 0x23), I(rand() % 8, 5, rand() % 7, 6, 0x03));
    }
    if (sbi) for (const eid of [DBCN, HSM, RFENCE, IPI]) sbiCall(eid);
  }
  for (let i = 0; i < body; i++) {
    const rd = 1 + (rand() % 31), rs = 1 + (rand() % 31), rs2 = 1 + (rand() % 31);
    if (kind === 'words') { r32(w, rand()); continue; }
    if (kind === 'parcels') {
      // two 16-bit parcels: mostly compressed (low bits != 3), sometimes the start of a 32-bit one
      const two: number[] = [];
      for (let k = 0; k < 2; k++) { let p = rand() & 0xffff; if (rand() % 8 !== 0 && (p & 3) === 3) p &= ~1; two.push(p); }
      w.push((two[0] | (two[1] << 16)) >>> 0);
      continue;
    }
    const k = rand() % 100;
    if (k < 22) w.push(I((rand() % 32) - 16, rs, rand() % 7, rd, 0x03)); // integer loads
    else if (k < 40) w.push(S((rand() % 32) - 16, rs2, rs, rand() % 4, 0x23)); // integer stores
    else if (k < 44) w.push(I((rand() % 32) - 16, rs, 2 + (rand() % 2), rd, 0x07)); // flw/fld
    else if (k < 48) w.push(S((rand() % 32) - 16, rs2, rs, 2 + (rand() % 2), 0x27)); // fsw/fsd
    else if (k < 54) w.push(((pick([0, 1, 2, 3, 4, 8, 12, 16, 20, 24, 28]) << 27) | (rs2 << 20) | (rs << 15) | ((2 + (rand() % 2)) << 12) | (rd << 7) | 0x2f) >>> 0);
    else if (k < 64) {
      let csr = rand() % 3 === 0 ? rand() & 0xfff : pick(HOT_CSRS);
      if (csr === 0x305 || csr === 0x105) csr = 0x340; // keep the handler installed: coverage, not kindness
      w.push(I(csr, rs, 1 + (rand() % 7), rd, 0x73));
    }
    else if (k < 67) w.push(pick([0x00000073, 0x00100073, 0x30200073, 0x10200073, 0x10500073, 0x12000073, 0x0000100f, 0x0ff0000f, 0x7b200073]));
    else if (k < 70) w.push(I(0, rs, 0, rd, 0x67)); // jalr into a target
    else if (k < 73) w.push(J((1 + (rand() % 256)) * 4 + (rand() % 4 === 0 ? 2 : 0), rd)); // jal forward (no tight loops), sometimes mid-instruction
    else if (k < 82) li(w, rd, rand() % 2 ? target() + (rand() % 64) - 32 : rand(), rand() % 6 === 0 ? rand() % 2048 - 1024 : 0);
    else if (k < 90 && sbi) sbiCall(rand() % 2 ? pick([DBCN, HSM, RFENCE, IPI]) : pick([DBCN, TIME, 0x10, 0, 1, 2, 3, 4, 5, 6, 7]));
    else w.push(rand());
  }
  // Falling off the end of the body loops back to its start rather than trapping through zeros.
  for (let i = 0; i < 8; i++) w.push(J(-4 * (w.length - bodyStart), 0));
  const bytes = new Uint8Array(w.length * 4);
  const dv = new DataView(bytes.buffer);
  w.forEach((x, i) => dv.setUint32(i * 4, x >>> 0, true));
  return bytes;
}

/** Which devices the guests reached, and how many SBI calls they made: the fuzzer must reach its targets. */
const hits = new Map<string, number>();
const count = (k: string): void => { hits.set(k, (hits.get(k) ?? 0) + 1); };

async function runCase(img: Uint8Array, sbi: boolean): Promise<{ exit: MachineExit; tailOk: boolean; grew: boolean }> {
  const m = new Machine({
    jitThreshold: testJitThreshold(),
    memoryBytes: MEM, bios: sbi ? null : img, kernel: sbi ? img : null, initrd: null, append: '',
    clock: { kind: 'virtual', shift: 4 }, stepLimit: STEPS,
    serial: { write() {} },
  });
  const bus = m.board.bus;
  for (const r of bus.mmioRegions) {
    const d = r.device as { name: string; read: MmioDevice['read']; write: MmioDevice['write'] };
    const rd = d.read.bind(d), wr = d.write.bind(d), name = d.name.replace(/\d+$/, '');
    d.read = (o, sz) => { count(name); return rd(o, sz); };
    d.write = (o, sz, v) => { count(name); wr(o, sz, v); };
  }
  const sbiImpl = m.hart.sbi;
  if (sbiImpl) {
    const ecall = sbiImpl.ecall.bind(sbiImpl);
    sbiImpl.ecall = (h) => { count(`sbi:${BigInt.asUintN(32, h.x[17]).toString(16)}`); ecall(h); };
  }
  const len0 = bus.memory.buffer.byteLength;
  const tail = STATE_REGION_BYTES + MEM;
  assert.ok(len0 > tail, 'the buffer has a tail past RAM');
  bus.u8.fill(CANARY, tail);
  const t = setTimeout(() => m.stop(), IDLE_STOP_MS);
  const exit = await m.run();
  clearTimeout(t);
  if (process.env.TYPEVISOR_FUZZ_DEBUG) {
    const h = m.hart, x = (v: bigint): string => BigInt.asUintN(64, v).toString(16);
    console.log(`# pc=${x(h.pc)} priv=${h.priv} insns=${h.icount} scause=${x(h.scause)} sepc=${x(h.sepc)} stvec=${x(h.stvec)} mcause=${x(h.mcause)} satp=${x(h.satp)}`);
  }
  const u8 = new Uint8Array(bus.memory.buffer);
  let tailOk = true;
  for (let i = tail; i < u8.length; i++) if (u8[i] !== CANARY) { tailOk = false; break; }
  return { exit, tailOk, grew: bus.memory.buffer.byteLength !== len0 };
}

const canary = new Uint8Array(new ArrayBuffer(1 << 16)).fill(0x3c);

let combo = 0;
for (const kind of ['words', 'parcels', 'encodings'] as const) {
  for (const sbi of [false, true]) {
    const seed = (SEED + ++combo * 0x9e3779b1) >>> 0;
    test(`random ${kind} as ${sbi ? 'an S-mode kernel on the built-in SBI' : 'M-mode firmware'}: no host error, nothing outside RAM touched (seed ${seed}, ${CASES} cases)`, { timeout: 60_000 }, async () => {
      const rand = prng(seed);
      const reasons = new Map<string, number>();
      hits.clear();
      for (let c = 0; c < CASES; c++) {
        const { exit, tailOk, grew } = await runCase(image(rand, kind, sbi ? 0x8020_0000 : 0x8000_0000, sbi), sbi);
        reasons.set(exit.reason, (reasons.get(exit.reason) ?? 0) + 1);
        const where = `${kind} ${sbi ? 'S' : 'M'} case ${c} (seed ${seed})`;
        // 'error' is a host exception; 'panic' (a trap reaching M-mode with the built-in SBI) is the guest's own doing.
        assert.notEqual(exit.reason, 'error', `${where}: host error: ${exit.message}`);
        if (exit.reason === 'panic') assert.ok(sbi && /^unhandled trap to M-mode/.test(exit.message ?? ''), `${where}: ${exit.message}`);
        assert.ok(tailOk, `${where}: host bytes past the end of guest RAM changed`);
        assert.ok(!grew, `${where}: WebAssembly memory grew`);
        assert.ok(canary.every((b) => b === 0x3c), `${where}: canary buffer changed`);
      }
      console.log(`# ${kind} ${sbi ? 'S' : 'M'} seed ${seed}: exits ${JSON.stringify([...reasons])} hits ${JSON.stringify([...hits])}`);
      if (kind === 'encodings') {
        for (const dev of ['clint', 'plic', 'uart', 'goldfish_rtc', 'virtio_mmio', 'mrom']) {
          assert.ok([...hits.keys()].some((k) => k.startsWith(dev.slice(0, 4))), `no guest access reached ${dev}: ${JSON.stringify([...hits])}`);
        }
        if (sbi) for (const eid of [DBCN, HSM, RFENCE, IPI]) assert.ok(hits.has(`sbi:${eid.toString(16)}`), `no SBI call to ${eid.toString(16)}`);
      }
    });
  }
}
