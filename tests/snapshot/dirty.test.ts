/**
 * Dirty-block tracking and block sets (src/host/storage/dirty.ts) on in-memory raw disks:
 * marks per 64 KiB granule, a write in flight while the marks are taken is marked again
 * when it completes, copies in rounds equal the source, and block sets round-trip and
 * refuse damage. Bundles (writeBundle) on real files: the copies hold the disks as they were
 * at the freeze, checked byte for byte and with qemu-img compare on a qcow2 chain.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemFile } from '../../src/host/storage/file.js';
import { RawDisk } from '../../src/host/storage/raw.js';
import { DirtyBlock, GRANULE, allGranules, applyBlocks, checkBlocks, copyGranules, encodeBlocks } from '../../src/host/storage/dirty.js';
import type { BlockBackend } from '../../src/devices/device.js';
import { prng } from '../lib/prng.js';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDisk } from '../../src/host/storage/index.js';
import { writeBundle, bundleDisks, readSnapshotFile, checkDisks, diskIdentity } from '../../src/host/snapshot-file.js';
import type { DiskIdentity } from '../../src/snapshot/format.js';
import { qemuImg } from '../lib/ext4.js';

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

test('writeBundle: the copies hold what the disks held at the freeze (a qcow2 chain flattened, qemu-img compare), atomically', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'typevisor-bundle-'));
  try {
    const base = join(dir, 'base.raw'), top = join(dir, 'top.qcow2'), raw = join(dir, 'second.raw');
    writeFileSync(base, random(1 << 20, 11));
    writeFileSync(raw, random(1 << 20, 12));
    assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'raw', top]).status, 0);
    const q = new DirtyBlock(await openDisk({ file: top })), r = new DirtyBlock(await openDisk({ file: raw, format: 'raw' }));
    await q.write(3 * GRANULE, random(GRANULE, 13)); // before the bundle: in the overlay
    const expectR = random(GRANULE, 14), after = random(GRANULE, 15);
    const file = join(dir, 'vm.tvb');
    let ids: DiskIdentity[] = [];
    const res = await writeBundle(file, [{ disk: q, format: 'qcow2', readOnly: false, file: top }, { disk: r, format: 'raw', readOnly: false, file: raw }], async (finalPass) => {
      await r.write(5 * GRANULE, expectR); // the guest wrote while the copy ran: in the copy
      await finalPass();
      await r.write(6 * GRANULE, after); // after the snapshot point: not in the copy
      await q.write(0, after);
    }, async (d) => { ids = d; return Uint8Array.of(1, 2, 3); });
    assert.equal(res.bytes, 3);
    assert.deepEqual(readdirSync(dir).sort(), ['base.raw', 'second.raw', 'top.qcow2', 'vm.tvb'], 'no temporary directory left');
    assert.deepEqual(readdirSync(file).sort(), ['bundle.json', 'disk0.qcow2', 'disk1.raw', 'snapshot.tvs']);
    const copy = readFileSync(join(file, 'disk1.raw'));
    const now = readFileSync(raw);
    assert.deepEqual(copy.subarray(5 * GRANULE, 6 * GRANULE), now.subarray(5 * GRANULE, 6 * GRANULE));
    assert.notDeepEqual(copy.subarray(6 * GRANULE, 7 * GRANULE), now.subarray(6 * GRANULE, 7 * GRANULE));
    assert.deepEqual(copy.subarray(6 * GRANULE, 7 * GRANULE), Buffer.from(random(1 << 20, 12).subarray(6 * GRANULE, 7 * GRANULE)));
    // The qcow2 copy equals the chain as it was (undo the later write), with no backing file.
    await q.write(0, random(1 << 20, 11).subarray(0, GRANULE));
    await q.close(); await r.close();
    const cmp = qemuImg(['compare', top, join(file, 'disk0.qcow2')]);
    assert.equal(cmp.status, 0, cmp.out);
    assert.equal(qemuImg(['check', join(file, 'disk0.qcow2')]).status, 0);
    assert.doesNotMatch(qemuImg(['info', join(file, 'disk0.qcow2')]).out, /backing file/);
    // The identities the snapshot records are the copies', and a restore would accept them.
    checkDisks(ids, [diskIdentity(join(file, 'disk0.qcow2'), 'qcow2', false), diskIdentity(join(file, 'disk1.raw'), 'raw', false)]);
    assert.deepEqual(bundleDisks(file)?.map((d) => d.format), ['qcow2', 'raw']);
    assert.deepEqual([...readSnapshotFile(file)], [1, 2, 3]);

    // A failure leaves nothing behind and an existing non-bundle is never replaced.
    const r2 = new DirtyBlock(await openDisk({ file: raw, format: 'raw' }));
    await assert.rejects(writeBundle(join(dir, 'x.tvb'), [{ disk: r2, format: 'raw', readOnly: false, file: raw }], async (f) => f(), async () => { throw new Error('boom'); }), /cannot write bundle .*boom/);
    assert.equal(r2.tracking, false);
    await assert.rejects(writeBundle(base, [{ disk: r2, format: 'raw', readOnly: false, file: raw }], async (f) => f(), async () => new Uint8Array(1)), /exists and is not a bundle/);
    // Saving again over a bundle replaces it whole.
    await writeBundle(file, [{ disk: r2, format: 'raw', readOnly: true, file: raw }], async (f) => f(), async () => Uint8Array.of(4));
    await r2.close();
    assert.deepEqual(readdirSync(dir).sort(), ['base.raw', 'second.raw', 'top.qcow2', 'vm.tvb']);
    assert.deepEqual(readdirSync(file).sort(), ['bundle.json', 'disk0.raw', 'snapshot.tvs']);
    assert.deepEqual(bundleDisks(file)?.map((d) => d.readOnly), [true]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
