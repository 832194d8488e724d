import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ByteWriter, ModuleBuilder, Op, ValType, BLOCK_VOID } from '../../src/cpu/jit/wasm.js';

test('LEB128 encodings match the spec examples and round-trip through a decoder', () => {
  const enc = (f: (w: ByteWriter) => void): number[] => { const w = new ByteWriter(); f(w); return [...w.finish()]; };
  assert.deepEqual(enc((w) => w.u32(624485)), [0xe5, 0x8e, 0x26]);
  assert.deepEqual(enc((w) => w.u32(0xffffffff)), [0xff, 0xff, 0xff, 0xff, 0x0f]);
  assert.deepEqual(enc((w) => w.s32(-123456)), [0xc0, 0xbb, 0x78]);
  assert.deepEqual(enc((w) => w.s32(63)), [0x3f]);
  assert.deepEqual(enc((w) => w.s32(64)), [0xc0, 0x00]);
  assert.deepEqual(enc((w) => w.s32(-64)), [0x40]);
  assert.deepEqual(enc((w) => w.s32(-65)), [0xbf, 0x7f]);
  // i64 extremes, decoded back.
  const dec = (b: number[]): bigint => {
    let r = 0n, sh = 0n, i = 0, x = 0;
    do { x = b[i++]; r |= BigInt(x & 0x7f) << sh; sh += 7n; } while (x & 0x80);
    if (x & 0x40) r -= 1n << sh;
    return r;
  };
  for (const v of [0n, -1n, 1n << 63n, (1n << 63n) - 1n, -(1n << 63n), 0x123456789abcdefn, -0x40n, 0x40n]) {
    assert.equal(dec(enc((w) => w.s64(v))), BigInt.asIntN(64, v));
  }
});

test('a module over an imported memory and table: loops, i64 math, calls, indirect calls', async () => {
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 1 });
  const table = new WebAssembly.Table({ initial: 4, element: 'anyfunc' });
  const m = new ModuleBuilder();
  const tHelper = m.type([ValType.I64], [ValType.I64]);
  const tSum = m.type([ValType.I32, ValType.I32], [ValType.I64]);
  const tVoid = m.type([], [ValType.I32]);
  const helper = m.importFunc('env', 'twice', tHelper);
  m.importMemory('env', 'memory', 1, 1);
  m.importTable('env', 'table', 4);

  // sum(ptr, n): twice(sum of n little-endian i64 at ptr).
  const { body: s, index: sumIdx } = m.func(tSum);
  const acc = s.local(ValType.I64);
  s.block(Op.block).block(Op.loop);
  s.get(1).op(Op.i32_eqz).br(Op.br_if, 1);
  s.get(acc).get(0).mem(Op.i64_load, 3, 0).op(Op.i64_add).set(acc);
  s.get(0).i32(8).op(Op.i32_add).set(0);
  s.get(1).i32(1).op(Op.i32_sub).set(1);
  s.br(Op.br, 0);
  s.op(Op.end).op(Op.end);
  s.get(acc).call(helper);
  m.export('sum', sumIdx);

  // viaTable(): call_indirect table[2] with type tVoid.
  const { body: k, index: constIdx } = m.func(tVoid);
  k.i32(-7);
  const { body: v, index: viaIdx } = m.func(tVoid);
  v.i32(2);
  v.code.byte(Op.call_indirect).u32(tVoid).u32(0);
  m.export('via', viaIdx);
  m.element(2, [constIdx]);
  // An if/else with a void block type still validates.
  const { body: e, index: eIdx } = m.func(tVoid);
  const r = e.local(ValType.I32);
  e.i32(1).block(Op.if, BLOCK_VOID).i32(5).set(r).op(Op.else).i32(6).set(r).op(Op.end).get(r);
  m.export('branch', eIdx);

  const bytes = m.encode();
  assert.equal(WebAssembly.validate(bytes), true);
  const { instance } = await WebAssembly.instantiate(bytes, { env: { memory, table, twice: (x: bigint) => x * 2n } });
  const dv = new DataView(memory.buffer);
  for (let i = 0; i < 10; i++) dv.setBigInt64(64 + i * 8, BigInt(i) * 1_000_000_007n - 3n, true);
  const ex = instance.exports as { sum(p: number, n: number): bigint; via(): number; branch(): number };
  let want = 0n;
  for (let i = 0; i < 10; i++) want += BigInt(i) * 1_000_000_007n - 3n;
  assert.equal(ex.sum(64, 10), want * 2n);
  assert.equal(ex.via(), -7);
  assert.equal(ex.branch(), 5);
  assert.equal(typeof table.get(2), 'function');
});

test('a module with an error is rejected by the engine, not silently accepted', () => {
  const m = new ModuleBuilder();
  const t = m.type([], [ValType.I64]);
  const { body } = m.func(t);
  body.i32(1); // wrong result type
  assert.equal(WebAssembly.validate(m.encode()), false);
  const m2 = new ModuleBuilder();
  m2.func(m2.type([], []));
  assert.throws(() => m2.importFunc('env', 'late', 0), /imports must precede/);
});
