/**
 * The snapshot file format: round trips (deflated and stored), the committed old-version
 * fixture, clear refusals (magic, major version, truncation, checksums, unknown required
 * sections, a snapshot for another machine), and a parser fuzz bounded by case count.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeSnapshot, decodeSnapshot, readSnapshotHeader, SnapshotError, encodeState, decodeState, toJson, useDeflateCodec, type SnapshotHeader } from '../../src/snapshot/format.js';
import { zlibCodec } from '../../src/host/snapshot-zlib.js';
import { crc32c, crc32cJs, crc32cKernel } from '../../src/snapshot/crc32c.js';
import type { MachineState } from '../../src/machine/machine.js';
import { repoRoot } from '../lib/toolchain.js';
import { prng } from '../lib/prng.js';
import { counterElf, counterMachine, COUNTER_HALF, COUNTER_MEMORY } from './counter.js';

const header: SnapshotHeader = {
  typevisor: 'test', created: new Date(0).toISOString(), machine: { kind: 'test' }, memoryBytes: COUNTER_MEMORY,
  disks: [{ path: '/x/disk.img', format: 'raw', readOnly: false, size: 1 << 20, mtimeMs: 1.5, headSha256: 'ab'.repeat(32) }],
};

async function halfway(): Promise<{ elf: Uint8Array; state: MachineState; out: string }> {
  const elf = await counterElf();
  const sink = { out: '' };
  const m = counterMachine(elf, sink, { stepLimit: COUNTER_HALF });
  assert.equal((await m.run()).reason, 'stopped');
  return { elf, state: m.save(), out: sink.out };
}

/** Resume `state` in a fresh counter machine; returns the rest of its output. */
async function finish(elf: Uint8Array, state: Parameters<ReturnType<typeof counterMachine>['load']>[0]): Promise<string> {
  const sink = { out: '' };
  const m = counterMachine(elf, sink);
  m.load(state);
  const e = await m.run();
  assert.equal(e.reason, 'poweroff');
  return sink.out;
}

test('CRC-32C matches the standard check value and is incremental', () => {
  const t = new TextEncoder().encode('123456789');
  assert.equal(crc32c(t), 0xe3069283);
  assert.equal(crc32c(t.subarray(5), crc32c(t.subarray(0, 5))), 0xe3069283);
  const big = new Uint8Array(1001).map((_, i) => (i * 7) & 0xff);
  let slow = ~0 >>> 0; // bitwise reference
  for (const b of big) { slow ^= b; for (let k = 0; k < 8; k++) slow = slow & 1 ? (slow >>> 1) ^ 0x82f63b78 : slow >>> 1; }
  assert.equal(crc32c(big), ~slow >>> 0);
});

test('the WebAssembly CRC-32C kernel agrees with the JavaScript one on random inputs, lengths, offsets and chunkings', () => {
  assert.equal(crc32cKernel(), 'wasm', 'Node has WebAssembly: the fast path runs');
  const rand = prng(0xc5c);
  const big = new Uint8Array(600 << 10).map(() => rand() & 0xff); // > the 256 KiB scratch buffer
  const bitwise = (d: Uint8Array, crc: number): number => {
    let c = ~crc >>> 0;
    for (const b of d) { c ^= b; for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1; }
    return ~c >>> 0;
  };
  for (let i = 0; i < 300; i++) {
    const at = rand() % 4096, len = i < 100 ? i : rand() % (i < 290 ? 70_000 : big.length - at);
    const d = big.subarray(at, at + len), seed = rand() >>> 0;
    const want = crc32cJs(d, seed);
    assert.equal(crc32c(d, seed), want, `length ${len} at ${at}`);
    if (len < 5000) assert.equal(want, bitwise(d, seed), `the JavaScript tables, length ${len}`);
    const cut = rand() % (len + 1);
    assert.equal(crc32c(d.subarray(cut), crc32c(d.subarray(0, cut), seed)), want, `incremental, cut at ${cut} of ${len}`);
  }
  assert.equal(crc32c(big), bitwise(big, 0), 'all 600 KiB against the bitwise reference');
});

test('a machine saved to bytes and read back resumes exactly (deflated and stored)', async () => {
  const { elf, state, out } = await halfway();
  assert.ok(out.length > 3 && out.length < 20, out);
  for (const compression of ['deflate', 'none'] as const) {
    const bytes = await encodeSnapshot(header, state, { compression });
    const snap = await decodeSnapshot(bytes);
    assert.deepEqual(snap.header, header);
    assert.deepEqual(snap.format, { major: 1, minor: 0 });
    assert.deepEqual(snap.state, state, `${compression}: the state read back equals the state saved`);
    assert.deepEqual(readSnapshotHeader(bytes), header);
    assert.equal(out + await finish(elf, snap.state), 'abcdefghijklmnopqrstuvwxyz');
    if (compression === 'deflate') assert.ok(bytes.length < 8192, `zero pages skipped, the rest deflated: ${bytes.length} bytes`);
  }
  // Decoding straight into a machine's RAM (restore without a copy) gives the same machine.
  const bytes = await encodeSnapshot(header, state);
  const sink = { out: '' };
  const m = counterMachine(elf, sink);
  m.board.bus.ram.fill(0xee, 0, 8192); // stale bytes where the snapshot has zero pages must be cleared
  const snap = await decodeSnapshot(bytes, { into: m.board.bus.ram });
  m.load(snap.state);
  assert.deepEqual(m.save().ram.bytes, state.ram.bytes);
});

test('restore into a fresh machine skips its untouched pages but clears what its loaders wrote', async () => {
  const { elf, state } = await halfway();
  // The snapshot's RAM is zero where a fresh machine's loader puts the program (and non-zero elsewhere).
  const ram = state.ram.bytes.slice();
  const fresh = counterMachine(elf, { out: '' });
  const written = fresh.ramWritten();
  assert.ok(written && written.length > 0 && written.every(([a, b]) => b > a), `a fresh machine reports its loaders' writes: ${JSON.stringify(written)}`);
  for (const [a, b] of written) ram.fill(0, a, b);
  ram.fill(0x5a, 1 << 20, (1 << 20) + 3 * 4096);
  assert.ok(written.some(([a, b]) => fresh.board.bus.ram.subarray(a, b).some((x) => x !== 0)), 'the fresh machine has non-zero bytes there');
  for (const compression of ['deflate', 'none'] as const) {
    const bytes = await encodeSnapshot(header, { ...state, ram: { ...state.ram, bytes: ram } }, { compression });
    const m = counterMachine(elf, { out: '' });
    const snap = await decodeSnapshot(bytes, { into: m.board.bus.ram, intoWritten: m.ramWritten() });
    m.load(snap.state);
    assert.ok(m.save().ram.bytes.every((x, i) => x === ram[i]), `${compression}: RAM equals the snapshot's, byte for byte`);
    assert.ok(m.ramWritten()?.some(([a, b]) => a === 0 && b === COUNTER_MEMORY), 'load() wrote all of RAM');
  }
  const ran = counterMachine(elf, { out: '' }, { stepLimit: 10 });
  await ran.run();
  assert.equal(ran.ramWritten(), null, 'unknown once the machine ran');
});

test('the machine state on the wire (migration): raw byte arrays round-trip, the old JSON form still reads, damage is refused', async () => {
  const { elf, state, out } = await halfway();
  const noRam = { ...state, ram: { ...state.ram, bytes: new Uint8Array(0) } };
  const wire = encodeState(noRam);
  const json = new TextEncoder().encode(toJson(noRam));
  assert.ok(wire.length < json.length * 0.8, `raw bytes, not base64: ${wire.length} vs ${json.length} bytes`);
  assert.deepEqual(decodeState(wire), noRam);
  assert.deepEqual(decodeState(json), noRam, 'a source that sends JSON (older typevisor) is understood');
  const back = decodeState(wire) as MachineState;
  back.ram = state.ram;
  assert.equal(out + await finish(elf, back), 'abcdefghijklmnopqrstuvwxyz', 'the machine resumes from it');
  const refuse = (b: Uint8Array, re: RegExp): void => { assert.throws(() => decodeState(b), (e: unknown) => e instanceof SnapshotError && re.test(e.message)); };
  refuse(wire.subarray(0, 6), /neither TVST nor JSON/);
  const magic = wire.slice(); magic[1] ^= 1;
  refuse(magic, /neither TVST nor JSON/);
  refuse(wire.subarray(0, 100), /truncated/);
  refuse(wire.subarray(0, wire.length - 1), /outside it/);
  const jsonLen = new DataView(wire.buffer, wire.byteOffset).getUint32(4, true);
  const badJson = wire.slice(); badJson[8 + (jsonLen >> 1)] = 0xff;
  refuse(badJson, /not valid JSON/);
});

test('the committed format 1.0 fixture with a version 1 machine state loads and resumes', async () => {
  const bytes = new Uint8Array(readFileSync(join(repoRoot, 'tests', 'snapshot', 'fixtures', 'counter-v1.tvs')));
  const snap = await decodeSnapshot(bytes);
  assert.deepEqual(snap.format, { major: 1, minor: 0 });
  assert.equal(snap.state.v, 1, 'the fixture holds the old machine state version');
  assert.equal(snap.header.typevisor, '0.1.0');
  const rest = await finish(await counterElf(), snap.state);
  assert.equal(rest, 'hijklmnopqrstuvwxyz', 'resumed at the next letter');
});

/** Recompute the CRC of the section starting at `o` (after editing its payload). */
function fixCrc(b: Uint8Array, o: number): void {
  const dv = new DataView(b.buffer, b.byteOffset);
  const len = dv.getUint32(o + 4, true);
  dv.setUint32(o + 8 + len, crc32c(b.subarray(o + 8, o + 8 + len), crc32c(b.subarray(o, o + 8))), true);
}

function sectionOffsets(b: Uint8Array): number[] {
  const dv = new DataView(b.buffer, b.byteOffset);
  const out: number[] = [];
  for (let o = 16; o < b.length; o += 12 + dv.getUint32(o + 4, true)) out.push(o);
  return out;
}

test('refusals: wrong magic, other major versions, truncation, bit flips, unknown sections, another machine', async () => {
  const { elf, state } = await halfway();
  const good = await encodeSnapshot(header, state);
  const refuse = async (b: Uint8Array, re: RegExp): Promise<void> => {
    await assert.rejects(decodeSnapshot(b), (e: unknown) => e instanceof SnapshotError && re.test(e.message));
  };
  await refuse(new TextEncoder().encode('{"not": "a snapshot"}'), /not a typevisor snapshot \(bad magic\)/);
  const v2 = good.slice(); v2[8] = 2;
  await refuse(v2, /snapshot format 2\.0 is newer than this typevisor reads \(1\.x\): upgrade typevisor/);
  const v0 = good.slice(); v0[8] = 0;
  await refuse(v0, /snapshot format 0\.0 is no longer supported/);
  const minor = good.slice(); minor[10] = 7;
  assert.deepEqual((await decodeSnapshot(minor)).format, { major: 1, minor: 7 }, 'a newer minor version loads');
  await refuse(good.subarray(0, good.length - 1), /truncated/);
  await refuse(good.subarray(0, good.length - 16), /truncated/);
  await refuse(good.subarray(0, 40), /truncated/);
  const flip = good.slice(); flip[Math.floor(good.length / 2)] ^= 0x10;
  await refuse(flip, /checksum mismatch in section/);
  const extra = new Uint8Array(good.length + 3); extra.set(good);
  await refuse(extra, /bytes after the END section/);
  // An unknown section: optional (lower case) is skipped, required (upper case) refused.
  const offs = sectionOffsets(good);
  const endAt = offs[offs.length - 1];
  const withSection = (type: string): Uint8Array => {
    const payload = new Uint8Array([1, 2, 3]);
    const s = new Uint8Array(12 + payload.length);
    for (let i = 0; i < 4; i++) s[i] = type.charCodeAt(i);
    new DataView(s.buffer).setUint32(4, payload.length, true);
    s.set(payload, 8);
    const b = new Uint8Array(good.length + s.length);
    b.set(good.subarray(0, endAt)); b.set(s, endAt); b.set(good.subarray(endAt), endAt + s.length);
    fixCrc(b, endAt);
    const endNew = endAt + s.length;
    new DataView(b.buffer).setUint32(endNew + 8, new DataView(b.buffer).getUint32(endNew + 8, true) + 1, true);
    fixCrc(b, endNew);
    return b;
  };
  assert.deepEqual((await decodeSnapshot(withSection('note'))).state, state, 'an optional section is skipped');
  await refuse(withSection('NOTE'), /unknown required section 'NOTE'/);
  // Consistent files for another machine are the loader's to refuse, leaving the machine untouched.
  const big = counterMachine(elf, { out: '' }, { memoryBytes: 8 << 20 });
  await assert.rejects(decodeSnapshot(good, { into: big.board.bus.ram }), /snapshot has 4194304 bytes of RAM, the machine 8388608/);
  assert.throws(() => big.load(state), /saved with 4194304 bytes of RAM, this machine has 8388608/);
});

test('deflate through Node zlib (the CLI and runners): the same files as CompressionStream, bombs and damage refused', async () => {
  const { elf, state, out } = await halfway();
  const ram = state.ram.bytes.slice();
  ram.fill(0x11, 0, 8192); // two non-zero pages in the first RAM section, compressible
  const st = { ...state, ram: { ...state.ram, bytes: ram } };
  const viaStreams = await encodeSnapshot(header, st);
  useDeflateCodec(zlibCodec);
  try {
    const viaZlib = await encodeSnapshot(header, st);
    for (const [what, b] of [['zlib file, zlib inflate', viaZlib], ['streams file, zlib inflate', viaStreams]] as const) {
      const snap = await decodeSnapshot(b);
      assert.ok(snap.state.ram.bytes.every((x, i) => x === ram[i]), `${what}: RAM read back`);
      assert.equal(out + await finish(elf, { ...snap.state, ram: state.ram }), 'abcdefghijklmnopqrstuvwxyz', what);
    }
    useDeflateCodec(null);
    assert.ok((await decodeSnapshot(viaZlib)).state.ram.bytes.every((x, i) => x === ram[i]), 'a zlib file inflates through DecompressionStream');
    useDeflateCodec(zlibCodec);
    // The first RAM section says one page (bitmap and length) but its stream inflates to two: refused, not written past.
    const ramAt = sectionOffsets(viaZlib).find((o) => viaZlib[o] === 0x52 && viaZlib[o + 1] === 0x41)!;
    const bomb = viaZlib.slice();
    const dv = new DataView(bomb.buffer);
    assert.equal(bomb[ramAt + 8 + 16], 0b11, 'pages 0 and 1 are in the bitmap');
    bomb[ramAt + 8 + 16] = 0b01;
    dv.setUint32(ramAt + 8 + 12, 4096, true);
    fixCrc(bomb, ramAt);
    await assert.rejects(decodeSnapshot(bomb), (e: unknown) => e instanceof SnapshotError && /corrupt: RAM at page 0/.test(e.message));
    // A stream cut short (checksum fixed, so the inflater sees it).
    const len = dv.getUint32(ramAt + 4, true);
    const cut = viaZlib.slice();
    const cdv = new DataView(cut.buffer);
    const bl = 32; // bitmap of 256 pages
    const dataAt = ramAt + 8 + 16 + bl;
    cut.fill(0, dataAt + 4, ramAt + 8 + len);
    fixCrc(cut, ramAt);
    assert.equal(cdv.getUint32(ramAt + 4, true), len);
    await assert.rejects(decodeSnapshot(cut), (e: unknown) => e instanceof SnapshotError && /corrupt: RAM at page 0/.test(e.message));
  } finally {
    useDeflateCodec(null);
  }
});

test('fuzz: bit flips, truncations and checksum-fixed corruptions are refused or load whole, never half', { timeout: 120_000 }, async () => {
  const { elf, state } = await halfway();
  const good = await encodeSnapshot(header, state);
  const offs = sectionOffsets(good);
  const rand = prng(Number(process.env.FUZZ_SEED ?? 0x5eed));
  const cases = Number(process.env.FUZZ_CASES ?? 3000);
  const target = counterMachine(elf, { out: '' });
  const pristine = target.save();
  let refused = 0, loaded = 0, loadRefused = 0;
  for (let i = 0; i < cases; i++) {
    const kind = i % 3;
    let b: Uint8Array;
    if (kind === 0) {
      b = good.slice();
      const flips = 1 + (rand() % 3);
      for (let k = 0; k < flips; k++) b[rand() % b.length] ^= 1 << (rand() % 8);
    } else if (kind === 1) {
      b = good.subarray(0, rand() % good.length);
    } else {
      // Past the checksums: corrupt a payload byte and fix that section's CRC, so the parsers behind it are exercised.
      b = good.slice();
      const o = offs[rand() % offs.length];
      const len = new DataView(b.buffer).getUint32(o + 4, true);
      if (len === 0) continue;
      b[o + 8 + (rand() % len)] ^= 1 << (rand() % 8);
      fixCrc(b, o);
    }
    let snap;
    try {
      useDeflateCodec(i % 2 ? zlibCodec : null); // both inflaters
      snap = await decodeSnapshot(b);
    } catch (e) {
      assert.ok(e instanceof SnapshotError, `case ${i}: ${String(e)}`);
      refused++;
      continue;
    }
    try {
      target.load(snap.state);
      loaded++;
      target.load(pristine); // back to the start for the next case
    } catch (e) {
      assert.ok(e instanceof Error, `case ${i}: ${String(e)}`);
      loadRefused++;
      const now = target.save();
      assert.deepEqual({ ...now, ram: null }, { ...pristine, ram: null }, `case ${i}: a refused load left the machine as it was`);
    }
  }
  useDeflateCodec(null);
  assert.ok(refused > cases / 2, `most corruptions are refused by the format (${refused} of ${cases}; ${loaded} loaded, ${loadRefused} refused by the machine)`);
});

test('migration page sets: zero pages carry no bytes, the rest round-trips, damage and bad indices are refused', async () => {
  const { encodePages, applyPages } = await import('../../src/snapshot/pages.js');
  const ram = new Uint8Array(16 * 4096);
  ram.fill(7, 3 * 4096, 4 * 4096); ram[9 * 4096 + 5] = 1;
  const set = encodePages(ram, [0, 3, 9, 15]);
  assert.equal(set.length, 4 + 16 + 2 * 4096 + 4, 'two pages of data, two zero pages as entries only');
  const dst = new Uint8Array(16 * 4096).fill(0xaa);
  assert.equal(applyPages(set, dst), 4);
  for (const p of [0, 3, 9, 15]) assert.deepEqual(dst.subarray(p * 4096, (p + 1) * 4096), ram.subarray(p * 4096, (p + 1) * 4096));
  assert.equal(dst[4096], 0xaa, 'pages not in the set are untouched');
  const bad = set.slice(); bad[30] ^= 1;
  assert.throws(() => applyPages(bad, dst), /checksum mismatch/);
  assert.throws(() => applyPages(set, new Uint8Array(8 * 4096)), /page outside RAM/);
  assert.throws(() => applyPages(set.subarray(0, 100), dst), /bytes for/);
});
