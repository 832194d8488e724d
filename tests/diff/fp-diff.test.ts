/**
 * Differential test of the F and D extensions against qemu-riscv64: one guest program walks a
 * table of records {variant, frm, a, b, c}; each variant is a small stub executing one
 * instruction with one rounding mode (static rm 0..4 or dynamic) and storing the full 64-bit
 * result register (so NaN-boxing is compared too) and fflags. The same ELF runs on typevisor
 * and under qemu; results and flags must match bit for bit.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildElf, runQemuUser } from '../lib/toolchain.js';
import { runUser } from '../lib/user.js';

/** Fixed by default (reproducible); FP_DIFF_SEED overrides it for exploratory runs. */
const SEED = Number(process.env.FP_DIFF_SEED ?? 0x5eed_f00d) >>> 0;
const RECORDS = Number(process.env.FP_DIFF_RECORDS ?? 300_000);
const REC_BYTES = 32;
const OUT_BYTES = 16;

/** Operand kinds: f32 (boxed), f64, integer. */
type Kind = 's' | 'd' | 'x';

interface Op {
  name: string;
  /** Encoding with rd/rs1/rs2/rs3/rm zero. */
  base: number;
  srcs: Kind[];
  dst: 'f' | 'x';
  hasRm: boolean;
}

const OP_FP = 0x53;
const enc = (f7: number, rs2 = 0, f3 = 0): number => ((f7 << 25) | (rs2 << 20) | (f3 << 12) | OP_FP) >>> 0;

function buildOps(): Op[] {
  const ops: Op[] = [];
  for (const fmt of [0, 1]) {
    const t = fmt === 0 ? 's' : 'd';
    const k: Kind = fmt === 0 ? 's' : 'd';
    for (const [n, opc] of [['fmadd', 0x43], ['fmsub', 0x47], ['fnmsub', 0x4b], ['fnmadd', 0x4f]] as const) {
      ops.push({ name: `${n}.${t}`, base: ((fmt << 25) | opc) >>> 0, srcs: [k, k, k], dst: 'f', hasRm: true });
    }
    for (const [n, f7] of [['fadd', 0], ['fsub', 4], ['fmul', 8], ['fdiv', 12]] as const) {
      ops.push({ name: `${n}.${t}`, base: enc(f7 | fmt), srcs: [k, k], dst: 'f', hasRm: true });
    }
    ops.push({ name: `fsqrt.${t}`, base: enc(0x2c | fmt), srcs: [k], dst: 'f', hasRm: true });
    for (const [n, f7, f3] of [['fsgnj', 0x10, 0], ['fsgnjn', 0x10, 1], ['fsgnjx', 0x10, 2], ['fmin', 0x14, 0], ['fmax', 0x14, 1]] as const) {
      ops.push({ name: `${n}.${t}`, base: enc(f7 | fmt, 0, f3), srcs: [k, k], dst: 'f', hasRm: false });
    }
    for (const [n, f3] of [['fle', 0], ['flt', 1], ['feq', 2]] as const) {
      ops.push({ name: `${n}.${t}`, base: enc(0x50 | fmt, 0, f3), srcs: [k, k], dst: 'x', hasRm: false });
    }
    ops.push({ name: `fclass.${t}`, base: enc(0x70 | fmt, 0, 1), srcs: [k], dst: 'x', hasRm: false });
    for (const [n, r2] of [['w', 0], ['wu', 1], ['l', 2], ['lu', 3]] as const) {
      ops.push({ name: `fcvt.${n}.${t}`, base: enc(0x60 | fmt, r2), srcs: [k], dst: 'x', hasRm: true });
      ops.push({ name: `fcvt.${t}.${n}`, base: enc(0x68 | fmt, r2), srcs: ['x'], dst: 'f', hasRm: true });
    }
  }
  ops.push({ name: 'fcvt.s.d', base: enc(0x20, 1), srcs: ['d'], dst: 'f', hasRm: true });
  ops.push({ name: 'fcvt.d.s', base: enc(0x21, 0), srcs: ['s'], dst: 'f', hasRm: true });
  ops.push({ name: 'fmv.x.w', base: enc(0x70), srcs: ['s'], dst: 'x', hasRm: false });
  ops.push({ name: 'fmv.x.d', base: enc(0x71), srcs: ['d'], dst: 'x', hasRm: false });
  ops.push({ name: 'fmv.w.x', base: enc(0x78), srcs: ['x'], dst: 'f', hasRm: false });
  ops.push({ name: 'fmv.d.x', base: enc(0x79), srcs: ['x'], dst: 'f', hasRm: false });
  return ops;
}

interface Variant { op: Op; rm: number }

const RM_NAMES = ['rne', 'rtz', 'rdn', 'rup', 'rmm', '?', '?', 'dyn'];

function variants(ops: Op[]): Variant[] {
  const v: Variant[] = [];
  for (const op of ops) {
    if (op.hasRm) for (const rm of [0, 1, 2, 3, 4, 7]) v.push({ op, rm });
    else v.push({ op, rm: 0 });
  }
  return v;
}

/** Instruction word: fa3 (f13) or a1 (x11) destination; sources fa0/fa1/fa2 or a0. */
function encode(v: Variant): number {
  const rd = 13 - (v.op.dst === 'x' ? 2 : 0);
  const rs2 = v.op.srcs.length >= 2 ? 11 : 0;
  let w = v.op.base | (rd << 7) | (10 << 15);
  if (v.op.srcs.length >= 2) w |= rs2 << 20;
  if (v.op.srcs.length === 3) w |= 12 << 27;
  if (v.op.hasRm) w |= v.rm << 12;
  return w >>> 0;
}

// ---- operand generation ----

/** mulberry32 */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const rnd = prng(SEED);
const ri = (n: number): number => Math.floor(rnd() * n);
const r32 = (): bigint => BigInt(ri(0x1_0000_0000));
const r64 = (): bigint => (r32() << 32n) | r32();
const pick = <T>(a: readonly T[]): T => a[ri(a.length)];

const dv = new DataView(new ArrayBuffer(8));
const dBits = (x: number): bigint => { dv.setFloat64(0, x, true); return dv.getBigUint64(0, true); };
const sBits = (x: number): bigint => { dv.setFloat32(0, x, true); return BigInt(dv.getUint32(0, true)); };
const bitsD = (b: bigint): number => { dv.setBigUint64(0, b, true); return dv.getFloat64(0, true); };
const bitsS = (b: bigint): number => { dv.setUint32(0, Number(b & 0xffffffffn), true); return dv.getFloat32(0, true); };

const SPECIAL_INT_VALUES = [0, 1, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.25, 0.75, 3, 1e-300, 2 ** 31, 2 ** 31 - 1, 2 ** 31 - 0.5,
  2 ** 31 + 0.5, 2 ** 32, 2 ** 32 - 1, 2 ** 32 - 0.5, 2 ** 32 + 1, 2 ** 63, 2 ** 63 - 1024, 2 ** 63 + 2048, 2 ** 64,
  2 ** 64 - 2048, 2 ** 53, 2 ** 53 + 2, 2 ** 52 + 0.5, 2 ** 24, 2 ** 24 + 1, 2 ** 31 - 64, 2 ** 31 + 128, 2 ** 63 - 2 ** 39,
  2 ** 64 - 2 ** 40, 2 ** 63 + 2 ** 40];

function special(fm: 's' | 'd'): bigint {
  const S = fm === 's';
  const E = S ? 8 : 11, F = S ? 23 : 52;
  const Fb = BigInt(F), expMax = BigInt((1 << E) - 1);
  const sign = ri(2) === 0 ? 0n : 1n << BigInt(E + F);
  const fmask = (1n << Fb) - 1n;
  switch (ri(12)) {
    case 0: return sign; // zero
    case 1: return sign | 1n; // min subnormal
    case 2: return sign | fmask; // max subnormal
    case 3: return sign | (1n << Fb); // min normal
    case 4: return sign | ((expMax - 1n) << Fb) | fmask; // max normal
    case 5: return sign | (expMax << Fb); // inf
    case 6: return (expMax << Fb) | (1n << (Fb - 1n)); // canonical qNaN
    case 7: return sign | (expMax << Fb) | (1n << (Fb - 1n)) | (r64() & fmask); // qNaN payload
    case 8: return sign | (expMax << Fb) | ((r64() & (fmask >> 1n)) || 1n); // sNaN
    case 9: return sign | (BigInt(ri(3)) << Fb) | (r64() & fmask); // subnormal / small normal
    case 10: return sign | ((expMax - 1n - BigInt(ri(3))) << Fb) | (r64() & fmask); // huge
    default: {
      const v = pick(SPECIAL_INT_VALUES) * (sign ? -1 : 1);
      return S ? sBits(v) : dBits(v);
    }
  }
}

/** A random value of format fm with a biased exponent near `center`. */
function around(fm: 's' | 'd', center: number, spread: number): bigint {
  const S = fm === 's';
  const E = S ? 8 : 11, F = S ? 23 : 52;
  const max = (1 << E) - 1;
  let e = center + ri(2 * spread + 1) - spread;
  if (e < 0) e = 0;
  if (e > max - 1) e = max - 1;
  let frac = r64() & ((1n << BigInt(F)) - 1n);
  if (ri(3) === 0) { // sparse mantissa: exact results and halfway cases
    frac = 0n;
    for (let i = ri(4); i > 0; i--) frac |= 1n << BigInt(ri(F));
  }
  const sign = ri(2) === 0 ? 0n : 1n << BigInt(E + F);
  return sign | (BigInt(e) << BigInt(F)) | frac;
}

function genF(fm: 's' | 'd'): bigint {
  const S = fm === 's';
  const bias = S ? 127 : 1023;
  switch (ri(10)) {
    case 0: case 1: return special(fm);
    case 2: return S ? r32() : r64();
    case 3: return around(fm, 1, 4); // subnormal boundary
    case 4: return around(fm, S ? 254 : 2046, 3); // overflow boundary
    case 5: // f64 values near the binary32 limits (fcvt.s.d)
      return S ? around(fm, bias, 40) : around(fm, pick([1023 - 126, 1023 - 149, 1023 + 127, 1023 - 140]), 3);
    case 6: return around(fm, bias + 31, 34); // near integer limits
    default: return around(fm, bias, 30);
  }
}

function genInt(): bigint {
  switch (ri(6)) {
    case 0: return BigInt.asUintN(64, BigInt(pick([0, 1, -1, 2, -2, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, 2 ** 32 - 1, 2 ** 53 + 1,
      2 ** 24 + 1, -(2 ** 53) - 1])));
    case 1: return pick([0x7fff_ffff_ffff_ffffn, 0x8000_0000_0000_0000n, 0xffff_ffff_ffff_ffffn, 0x8000_0000_0000_0001n,
      0x7fff_ffff_ffff_fc00n, 0x7fff_ffff_ffff_fe00n, 0x0020_0000_0000_0001n, 0xffff_ffff_0000_0000n]);
    case 2: return r64();
    case 3: return BigInt.asUintN(64, BigInt(ri(2 ** 26) - 2 ** 25)) << BigInt(ri(40)); // sparse: exact/halfway
    case 4: return BigInt.asUintN(64, BigInt.asIntN(32, r32()));
    default: return r64() >> BigInt(ri(64));
  }
}

/** Register image of a source operand: singles are NaN-boxed except rarely (tests boxing). */
function operand(k: Kind): bigint {
  if (k === 'x') return genInt();
  if (k === 'd') return genF('d');
  const b = genF('s');
  return ri(30) === 0 ? (r32() << 32n) | b : 0xffff_ffff_0000_0000n | b;
}

/** Correlated operands: cancellation and near-ties for add/sub/fma. */
function correlate(op: Op, ops: bigint[]): void {
  const k = op.srcs[0];
  if (k === 'x' || ri(3) !== 0) return;
  const S = k === 's';
  const box = S ? 0xffff_ffff_0000_0000n : 0n;
  const toV = (b: bigint): number => (S ? bitsS(b) : bitsD(b));
  const toB = (v: number): bigint => (S ? box | sBits(v) : dBits(v));
  const flip = (b: bigint): bigint => b ^ BigInt(ri(8));
  if (op.srcs.length === 2) {
    ops[1] = flip(toB(-toV(ops[0]) * (ri(2) === 0 ? 1 : 1 + 2 ** -ri(60))));
  } else if (op.srcs.length === 3) {
    const sparse = (): bigint => box | (S ? sBits(1 + 2 ** -ri(13) + (ri(2) ? 2 ** -ri(24) : 0)) : dBits(1 + 2 ** -ri(27) + (ri(2) ? 2 ** -ri(53) : 0)));
    if (ri(2) === 0) { ops[0] = sparse(); ops[1] = sparse(); } // products landing on midpoints
    const p = toV(ops[0]) * toV(ops[1]);
    switch (ri(3)) {
      case 0: ops[2] = flip(toB(ri(2) === 0 ? -p : p)); break; // cancellation
      case 1: ops[2] = toB((ri(2) === 0 ? -p : p) * 2 ** -(ri(120) + 20)); break; // tiny addend: sticky bits
      default: ops[2] = toB((ri(2) === 0 ? -p : p) * 2 ** (ri(40) - 20) * (1 + rnd())); break;
    }
  }
}

interface Rec { v: number; frm: number; ops: bigint[] }

function generate(vs: Variant[]): Rec[] {
  const recs: Rec[] = [];
  for (let i = 0; i < RECORDS; i++) {
    const v = ri(vs.length);
    const op = vs[v].op;
    const ops = op.srcs.map(operand);
    correlate(op, ops);
    recs.push({ v, frm: ri(5), ops });
  }
  return recs;
}

function program(vs: Variant[], dataPath: string): string {
  const stubs = vs.map((v, i) => {
    const store = v.op.dst === 'x' ? 'sd a1, 0(s2)' : 'fsd fa3, 0(s2)';
    return `v${i}:\n  .word 0x${encode(v).toString(16)} # ${v.op.name} ${RM_NAMES[v.rm]}\n  ${store}\n  j back\n`;
  }).join('');
  return `
  .section .text.init
  .globl _start
_start:
  la s0, records
  la s1, records_end
  la s2, outbuf
  la s3, jumptable
loop:
  bgeu s0, s1, finish
  lwu t0, 0(s0)
  lwu t1, 4(s0)
  fsrm t1
  fsflags zero
  fld fa0, 8(s0)
  fld fa1, 16(s0)
  fld fa2, 24(s0)
  ld a0, 8(s0)
  slli t0, t0, 3
  add t0, t0, s3
  ld t0, 0(t0)
  jr t0
back:
  frflags t2
  sd t2, 8(s2)
  addi s2, s2, ${OUT_BYTES}
  addi s0, s0, ${REC_BYTES}
  j loop
finish:
  li a0, 1
  la a1, outbuf
  sub a2, s2, a1
  li a7, 64
  ecall
  li a0, 0
  li a7, 93
  ecall
${stubs}
  .section .rodata
  .balign 8
jumptable:
${vs.map((_, i) => `  .dword v${i}`).join('\n')}
  .balign 8
records:
  .incbin "${dataPath}"
records_end:
  .section .bss
  .balign 16
outbuf:
  .space ${RECORDS * OUT_BYTES}
`;
}

function fmtOp(k: Kind, b: bigint): string {
  const hex = `0x${b.toString(16).padStart(16, '0')}`;
  if (k === 'x') return `${hex} (${BigInt.asIntN(64, b)})`;
  if (k === 'd') return `${hex} (${bitsD(b)})`;
  return `${hex} (${(b >> 32n) === 0xffffffffn ? bitsS(b) : 'unboxed'})`;
}

test('F/D differential test against qemu-riscv64', async () => {
  const ops = buildOps();
  const vs = variants(ops);
  const recs = generate(vs);
  const data = new Uint8Array(recs.length * REC_BYTES);
  const dview = new DataView(data.buffer);
  recs.forEach((r, i) => {
    const o = i * REC_BYTES;
    dview.setUint32(o, r.v, true);
    dview.setUint32(o + 4, r.frm, true);
    r.ops.forEach((b, j) => dview.setBigUint64(o + 8 + 8 * j, b, true));
  });
  const hash = createHash('sha256').update(data).digest('hex').slice(0, 16);
  const dir = join(tmpdir(), 'typevisor-fp-diff');
  mkdirSync(dir, { recursive: true });
  const dataPath = join(dir, `records-${hash}.bin`);
  if (!existsSync(dataPath)) writeFileSync(dataPath, data);
  const src = program(vs, dataPath);
  const elfPath = await buildElf({ name: 'fp-diff', sources: { 'fp.S': src } });
  const elf = readFileSync(elfPath);

  const t0 = performance.now();
  const ours = runUser(elf, { maxInsns: 50_000_000 });
  const t1 = performance.now();
  const ref = await runQemuUser(elfPath);
  console.log(`fp-diff: seed=0x${SEED.toString(16)} records=${recs.length} variants=${vs.length} ` +
    `typevisor ${(t1 - t0).toFixed(0)} ms (${ours.instructions} insns)`);
  assert.equal(ref.code, 0, `qemu failed: ${ref.stderr}`);
  assert.equal(ours.code, 0);
  assert.equal(ref.stdout.length, recs.length * OUT_BYTES, 'qemu output length');
  assert.equal(ours.stdout.length, recs.length * OUT_BYTES, 'typevisor output length');
  // The same program in U-mode under Sv39 (every load, store and fetch translated) gives the same bytes.
  const paged = runUser(elf, { maxInsns: 50_000_000, paging: true });
  assert.equal(paged.code, 0);
  assert.ok(Buffer.from(paged.stdout).equals(Buffer.from(ours.stdout)), 'U-mode/Sv39 run differs from the S-mode run');
  const a = new DataView(ours.stdout.buffer, ours.stdout.byteOffset, ours.stdout.length);
  const b = new DataView(ref.stdout.buffer, ref.stdout.byteOffset, ref.stdout.length);
  let mismatches = 0;
  const perOp = new Map<string, number>();
  for (let i = 0; i < recs.length; i++) {
    const o = i * OUT_BYTES;
    const ra = a.getBigUint64(o, true), rb = b.getBigUint64(o, true);
    const fa = a.getBigUint64(o + 8, true), fb = b.getBigUint64(o + 8, true);
    if (ra === rb && fa === fb) continue;
    mismatches++;
    const r = recs[i];
    const v = vs[r.v];
    perOp.set(v.op.name, (perOp.get(v.op.name) ?? 0) + 1);
    if (mismatches <= 25) {
      console.log(`MISMATCH #${i} ${v.op.name} rm=${RM_NAMES[v.rm]}${v.rm === 7 ? ` frm=${RM_NAMES[r.frm]}` : ''}\n` +
        r.ops.map((x, j) => `    op${j}: ${fmtOp(v.op.srcs[j], x)}`).join('\n') +
        `\n    typevisor: 0x${ra.toString(16).padStart(16, '0')} flags=0x${fa.toString(16)}` +
        `\n    qemu:      0x${rb.toString(16).padStart(16, '0')} flags=0x${fb.toString(16)}`);
    }
  }
  if (mismatches > 0) console.log('mismatches per op:', Object.fromEntries(perOp));
  console.log(`fp-diff: ${mismatches} mismatches in ${recs.length} operations`);
  assert.equal(mismatches, 0);
});
