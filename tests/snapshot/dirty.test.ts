/**
 * Dirty-block tracking and block sets (src/host/storage/dirty.ts) on in-memory raw disks:
 * marks per 64 KiB granule, a write in flight while the marks are taken is marked again
 * when it completes, copies in rounds equal the source, and block sets round-trip and
 * refuse damage.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemFile } from '../../src/host/storage/file.js';
import { RawDisk } from '../../src/host/storage/raw.js';
import { DirtyBlock, GRANULE, allGranules, applyBlocks, checkBlocks, copyGranules, encodeBlocks } from '../../src/host/storage/dirty.js';
import type { BlockBackend } from '../../src/devices/device.js';
import { prng } from '../lib/prng.js';

const SIZE = 3 * GRANULE + 4096; // the last granule is short

async function disk(bytes: Uint8Array = new Uint8Array(SIZE)): Promise<{ d: RawDisk; f: MemFile }> {
  const f = new MemFile('mem', bytes);
  return { d: await RawDisk.open(f, false), f };
}

function random(n: number, seed: number): Uint8Array<ArrayBuffer> {
  const r = prng(seed);
  return Uint8Array.from({ length: n }, () => r() & 0xff);
}

test('writes mark the granules they touch; takeDirty clears them; a write in flight is marked again when it completes', async () => {
  const { d } = await disk();
  const t = new DirtyBlock(d);
  await t.write(0, new Uint8Array(512));
  assert.deepEqual(t.takeDirty(), [], 'not tracking: nothing marked');
  t.startTracking();
  await t.write(GRANULE + 100, new Uint8Array(100));
  await t.writeZeroes(3 * GRANULE, 4096, true);
  assert.equal(t.dirtyCount, 2);
  assert.deepEqual(t.takeDirty(), [1, 3]);
  await t.discard(GRANULE - 512, 1024);
  assert.deepEqual(t.takeDirty(), [0, 1]);
  assert.deepEqual(t.takeDirty(), []);

  // A slow write: the copier takes the marks while it is in flight.
  let finish!: () => void;
  const slow: BlockBackend = {
    sizeBytes: d.sizeBytes, readOnly: false, serial: '', read: (o, b) => d.read(o, b), write: () => new Promise<void>((r) => { finish = r; }),
    flush: async () => {}, discard: async () => {}, writeZeroes: async () => {}, close: async () => {},
  };
  const s = new DirtyBlock(slow);
  s.startTracking();
  const w = s.write(2 * GRANULE, new Uint8Array(512));
  assert.deepEqual(s.takeDirty(), [2]);
  finish();
  await w;
  assert.deepEqual(s.takeDirty(), [2], 'marked again on completion');
  s.stopTracking();
  assert.equal(s.tracking, false);
});

test('a copy in rounds while the source is written equals the source; zero granules are skipped on a fresh target', async () => {
  const src = await disk(random(SIZE, 7));
  await src.d.write(GRANULE, new Uint8Array(GRANULE)); // one all-zero granule
  const t = new DirtyBlock(src.d);
  const dst = await disk();
  t.startTracking();
  const written = await copyGranules(t.inner, dst.d, allGranules(t), true);
  assert.equal(written, SIZE - GRANULE, 'the zero granule was not written');
  await t.write(5000, random(70_000, 8)); // granules 0 and 1
  await t.writeZeroes(2 * GRANULE, GRANULE, true); // granule 2 becomes zero: written as zeroes
  await copyGranules(t.inner, dst.d, t.takeDirty(), false);
  assert.deepEqual(dst.f.bytes, src.f.bytes);
});

test('block sets round-trip (zero granules carry no bytes) and refuse bit flips, truncation and foreign granules', async () => {
  const src = await disk(random(SIZE, 9));
  await src.d.write(0, new Uint8Array(GRANULE));
  const set = await encodeBlocks(src.d, 0, [0, 1, 3]);
  assert.equal(set.length, 8 + 12 + GRANULE + 4096 + 4, 'granule 0 is zero: no bytes');
  const dst = await disk(random(SIZE, 10));
  assert.equal(await applyBlocks(set, [dst.d]), 3);
  assert.deepEqual(dst.f.bytes.subarray(0, 2 * GRANULE), src.f.bytes.subarray(0, 2 * GRANULE));
  assert.deepEqual(dst.f.bytes.subarray(3 * GRANULE), src.f.bytes.subarray(3 * GRANULE));

  const flipped = set.slice(); flipped[30] ^= 4;
  assert.throws(() => checkBlocks(flipped, [SIZE]), /checksum mismatch/);
  assert.throws(() => checkBlocks(set.subarray(0, set.length - 1), [SIZE]), /bytes, the entries need/);
  assert.throws(() => checkBlocks(set, [2 * GRANULE]), /granule 3 outside disk 0/);
  assert.throws(() => checkBlocks(set, []), /disk 0, the machine has 0/);
  await assert.rejects(applyBlocks(flipped, [dst.d]), /checksum mismatch/);
});
