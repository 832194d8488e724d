/**
 * qcow2 against QEMU's own tools (Debian qemu-utils): images made by qemu-img/qemu-io read
 * back as `qemu-img convert -O raw` sees them; images typevisor wrote pass `qemu-img check`
 * with no errors or leaks and `qemu-img compare` equal to a raw image written the same way.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openDisk } from '../../src/host/storage/index.js';
import type { BlockBackend } from '../../src/devices/device.js';
import { tmp, qemu, qemuStatus, qemuRawBytes, pattern, prng, firstDiff } from './util.js';

const MiB = 1 << 20;
const dir = tmp('qcow2');

async function readAll(d: BlockBackend): Promise<Uint8Array> {
  const b = new Uint8Array(d.sizeBytes);
  // Odd-sized requests crossing clusters, as a guest would issue them.
  for (let off = 0; off < b.length;) {
    const n = Math.min(b.length - off, 512 * (1 + ((off / 512) % 300)));
    await d.read(off, b.subarray(off, off + n));
    off += n;
  }
  return b;
}

async function assertSameAsQemu(file: string, what: string): Promise<void> {
  const want = qemuRawBytes(file, dir);
  const d = await openDisk({ file, readOnly: true });
  try {
    assert.equal(d.sizeBytes, want.length, `${what}: size`);
    const got = await readAll(d);
    assert.equal(firstDiff(got, want), -1, `${what}: contents differ from qemu-img convert`);
  } finally { await d.close(); }
}

function assertCheckClean(file: string): void {
  const r = qemuStatus('qemu-img', 'check', file);
  assert.equal(r.status, 0, `qemu-img check ${file}:\n${r.out}`);
  assert.match(r.out, /No errors were found/);
}

test('qemu-img images read as QEMU reads them: empty, written, backing (raw and qcow2), compressed, small/large clusters, v2', async () => {
  const f = (n: string): string => join(dir, n);
  qemu('qemu-img', 'create', '-f', 'qcow2', f('empty.qcow2'), '8M');
  await assertSameAsQemu(f('empty.qcow2'), 'empty');

  qemu('qemu-img', 'create', '-f', 'qcow2', f('data.qcow2'), '8M');
  qemu('qemu-io', '-c', 'write -P 0xab 0 1M', '-c', 'write -P 0x17 3M 4k', '-c', 'write -z 1M 64k', '-c', 'write -P 0x01 7340544 512', f('data.qcow2'));
  await assertSameAsQemu(f('data.qcow2'), 'written');

  qemu('qemu-img', 'convert', '-O', 'raw', f('data.qcow2'), f('base.raw'));
  qemu('qemu-img', 'create', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', f('over-raw.qcow2'));
  qemu('qemu-io', '-c', 'write -P 0xcd 512k 8k', '-c', 'write -z 0 4k', f('over-raw.qcow2'));
  await assertSameAsQemu(f('over-raw.qcow2'), 'raw backing');

  qemu('qemu-img', 'create', '-f', 'qcow2', '-b', 'data.qcow2', '-F', 'qcow2', f('over-q.qcow2'), '12M');
  qemu('qemu-io', '-c', 'write -P 0xee 900k 300k', '-c', 'write -P 0x42 10M 1M', f('over-q.qcow2'));
  await assertSameAsQemu(f('over-q.qcow2'), 'qcow2 backing, larger overlay');

  qemu('qemu-img', 'convert', '-c', '-O', 'qcow2', f('over-q.qcow2'), f('compressed.qcow2'));
  assert.match(qemu('qemu-img', 'check', f('compressed.qcow2')), /compressed clusters/);
  await assertSameAsQemu(f('compressed.qcow2'), 'compressed');

  for (const [name, opts] of [['c512', 'cluster_size=512'], ['c2m', 'cluster_size=2M'], ['v2', 'compat=0.10'], ['r1', 'refcount_bits=1'], ['r64', 'refcount_bits=64']]) {
    qemu('qemu-img', 'create', '-f', 'qcow2', '-o', opts, f(`${name}.qcow2`), '6M');
    qemu('qemu-io', '-c', 'write -P 0x5a 100k 1M', '-c', 'write -P 0x77 5M 4k', f(`${name}.qcow2`));
    await assertSameAsQemu(f(`${name}.qcow2`), opts);
  }
});

/** Applies the same seeded random writes to a typevisor qcow2 and to a raw reference. */
async function randomWrites(d: BlockBackend, ref: Uint8Array, seed: number, count: number, maxLen: number): Promise<void> {
  const next = prng(seed);
  for (let i = 0; i < count; i++) {
    const sectors = ref.length / 512;
    const len = Math.min(1 + (next() % (maxLen / 512)), sectors) * 512;
    const off = (next() % (sectors - len / 512 + 1)) * 512;
    const kind = next() % 10;
    if (kind === 0) {
      await d.writeZeroes(off, len, (next() & 1) === 0);
      ref.fill(0, off, off + len);
    } else {
      const data = pattern(next, len);
      // Some requests run concurrently, as a guest's queue does.
      if (kind === 1) {
        const data2 = pattern(next, 512), off2 = (next() % sectors) * 512;
        await Promise.all([d.write(off, data), d.write(off2, data2)]);
        ref.set(data, off);
        if (off2 < off || off2 >= off + len) ref.set(data2, off2);
        else await d.write(off2, data2).then(() => ref.set(data2, off2));
      } else {
        await d.write(off, data);
        ref.set(data, off);
      }
    }
    if (i % 50 === 0) await d.flush();
  }
}

for (const variant of ['fresh', 'backing', 'small clusters', 'v2', 'refcount_bits=1', 'refcount_bits=64', 'cluster_size=2M']) {
  test(`typevisor writes to qcow2 (${variant}): qemu-img check clean, qemu-img compare identical`, async () => {
    const f = (n: string): string => join(dir, `${variant.replace(/\W/g, '_')}-${n}`);
    const size = 16 * MiB;
    let ref: Uint8Array = new Uint8Array(size);
    if (variant === 'backing') {
      qemu('qemu-img', 'create', '-f', 'qcow2', f('base.qcow2'), '16M');
      qemu('qemu-io', '-c', 'write -P 0x33 0 5M', '-c', 'write -P 0x44 9M 3M', f('base.qcow2'));
      qemu('qemu-img', 'create', '-f', 'qcow2', '-b', f('base.qcow2'), '-F', 'qcow2', f('img.qcow2'));
      ref = qemuRawBytes(f('base.qcow2'), dir);
    } else {
      const o = variant === 'small clusters' ? 'cluster_size=512' : variant === 'v2' ? 'compat=0.10' : variant.includes('=') ? variant : 'cluster_size=65536';
      qemu('qemu-img', 'create', '-f', 'qcow2', '-o', o, f('img.qcow2'), '16M');
    }
    const rtBefore = readFileSync(f('img.qcow2')).readBigUInt64BE(48);
    const d = await openDisk({ file: f('img.qcow2') });
    // Small clusters: 12 MiB of writes outgrow the first refcount table (64 blocks of 256 clusters).
    const [count, maxLen] = variant === 'small clusters' ? [400, 64 * 1024] : [300, 256 * 1024];
    await randomWrites(d, ref, 1234 + variant.length, count, maxLen);
    if (variant === 'small clusters') await d.write(0, pattern(prng(9), 12 * MiB)).then(() => ref.set(pattern(prng(9), 12 * MiB), 0));
    const got = await readAll(d);
    assert.equal(firstDiff(got, ref), -1, 'typevisor reads back what it wrote');
    await d.close();
    if (variant === 'small clusters') assert.notEqual(readFileSync(f('img.qcow2')).readBigUInt64BE(48), rtBefore, 'the refcount table was moved to grow');
    assertCheckClean(f('img.qcow2'));
    writeFileSync(f('ref.raw'), ref);
    const cmp = qemuStatus('qemu-img', 'compare', '-f', 'qcow2', '-F', 'raw', f('img.qcow2'), f('ref.raw'));
    assert.equal(cmp.status, 0, cmp.out);
    assert.match(cmp.out, /Images are identical/);
    // typevisor's own checker agrees with qemu-img.
    const { main } = await import('../../src/cli/main.js');
    let out = '';
    const status = await main(['img', 'check', f('img.qcow2')], { stdout: { write: (s: string | Uint8Array) => { out += String(s); return true; } } as never, stderr: { write: () => true } as never });
    assert.equal(status, 0, out);
  });
}

test('writing into compressed clusters and zero clusters rewrites them; discard frees', async () => {
  const f = (n: string): string => join(dir, `cz-${n}`);
  qemu('qemu-img', 'create', '-f', 'qcow2', f('src.qcow2'), '4M');
  qemu('qemu-io', '-c', 'write -P 0x61 0 2M', '-c', 'write -P 0x62 2M 1M', f('src.qcow2'));
  qemu('qemu-img', 'convert', '-c', '-O', 'qcow2', f('src.qcow2'), f('img.qcow2'));
  qemu('qemu-io', '-c', 'write -z 3M 128k', '-c', 'write -z -u 0 64k', f('img.qcow2'));
  const ref = qemuRawBytes(f('img.qcow2'), dir);
  const d = await openDisk({ file: f('img.qcow2') });
  const patch = pattern(prng(5), 4096);
  for (const off of [512, 70_000 - (70_000 % 512), 3 * MiB + 512, 2 * MiB - 1024]) { await d.write(off, patch); ref.set(patch, off); }
  await d.discard(MiB, 128 * 1024);
  ref.fill(0, MiB, MiB + 128 * 1024); // a v3 discard leaves zero clusters
  const got = await readAll(d);
  await d.close();
  assert.equal(firstDiff(got, ref), -1);
  assertCheckClean(f('img.qcow2'));
  writeFileSync(f('ref.raw'), ref);
  assert.equal(qemuStatus('qemu-img', 'compare', '-f', 'qcow2', '-F', 'raw', f('img.qcow2'), f('ref.raw')).status, 0);
});

test('overlapping concurrent writes to the same new clusters allocate once', async () => {
  const file = join(dir, 'conc.qcow2');
  qemu('qemu-img', 'create', '-f', 'qcow2', file, '4M');
  const d = await openDisk({ file });
  const ref = new Uint8Array(4 * MiB);
  const writes: Array<Promise<void>> = [];
  for (let s = 0; s < 256; s++) {
    const data = new Uint8Array(512).fill(s + 1);
    const off = (s * 7 % 256) * 512 + (s % 4) * 65536;
    ref.set(data, off);
    writes.push(d.write(off, data));
  }
  await Promise.all(writes);
  const got = await readAll(d);
  assert.equal(firstDiff(got, ref), -1);
  assert.ok(readFileSync(file).length <= 10 * 65536, 'no duplicate allocations');
  // Multi-cluster writes racing over the same fresh clusters (the run allocator and the per-cluster path).
  const before = readFileSync(file).length;
  const big: Array<Promise<void>> = [];
  for (let s = 0; s < 16; s++) big.push(d.write(MiB + ((s * 3) % 8) * 65536 + (s & 1) * 512, new Uint8Array(3 * 65536 - (s & 1) * 1024).fill(s + 1)));
  await Promise.all(big);
  await d.close();
  assert.ok(readFileSync(file).length <= before + 10 * 65536, `no cluster allocated twice (${readFileSync(file).length - before} bytes more)`);
  assertCheckClean(file);
});

test('discarded clusters are reused; racing writes and discards leave a consistent image', async () => {
  const file = join(dir, 'reuse.qcow2');
  qemu('qemu-img', 'create', '-f', 'qcow2', file, '8M');
  const d = await openDisk({ file });
  const data = pattern(prng(11), 2 * MiB);
  await d.write(0, data);
  const grown = readFileSync(file).length;
  for (let round = 0; round < 5; round++) {
    await d.discard(0, 2 * MiB);
    await d.write(4 * MiB, data);
    await d.discard(4 * MiB, 2 * MiB);
    await d.write(0, data);
  }
  assert.ok(readFileSync(file).length <= grown + 2 * 65536, `the file did not grow with rewrites (${readFileSync(file).length} vs ${grown})`);
  const next = prng(12);
  const ops: Array<Promise<void>> = [];
  for (let i = 0; i < 400; i++) {
    const off = (next() % 64) * 65536 + (next() % 4) * 512, len = 512 * (1 + (next() % 256));
    const end = Math.min(8 * MiB, off + len);
    ops.push(next() % 3 === 0 ? d.discard(off - (off % 65536), Math.min(8 * MiB - (off - (off % 65536)), 131072)) : d.write(off, data.subarray(0, end - off)));
  }
  await Promise.all(ops);
  await d.close();
  assertCheckClean(file);
});
