/**
 * The qcow2 reader and writer on mutated real images (made by qemu-img/qemu-io): bit flips,
 * truncations, header field overwrites and table entry overwrites, from a seeded PRNG. Each
 * case opens, reads, writes, zeroes, flushes, closes and checks the image in memory; the only
 * exception allowed is DiskError, and no case may hang.
 *   FUZZ_CASES=100000 node --test dist/tests/storage/fuzz.test.js   (a long run; default 3000)
 *   FUZZ_SEED=n picks another sequence.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DiskError, MemFile } from '../../src/host/storage/file.js';
import { Qcow2Disk } from '../../src/host/storage/qcow2.js';
import { RawDisk } from '../../src/host/storage/raw.js';
import { checkQcow2 } from '../../src/host/storage/check.js';
import { nodeInflate } from '../../src/host/storage/index.js';
import { tmp, qemu, prng } from './util.js';

const CASES = Number(process.env.FUZZ_CASES ?? 3000);
const SEED = Number(process.env.FUZZ_SEED ?? 20261126);
const CASE_TIMEOUT_MS = 5000;

/** Real images to mutate: small clusters keep them small and the tables dense. */
function seeds(): Array<{ name: string; bytes: Uint8Array }> {
  const dir = tmp('fuzz');
  const f = (n: string): string => join(dir, n);
  const out: Array<{ name: string; bytes: Uint8Array }> = [];
  const add = (n: string): void => { out.push({ name: n, bytes: new Uint8Array(readFileSync(f(n))) }); };
  qemu('qemu-img', 'create', '-f', 'qcow2', '-o', 'cluster_size=512', f('c512.qcow2'), '256k');
  qemu('qemu-io', '-c', 'write -P 0xab 0 40k', '-c', 'write -P 0x12 100k 8k', '-c', 'write -z 200k 4k', f('c512.qcow2'));
  add('c512.qcow2');
  qemu('qemu-img', 'create', '-f', 'qcow2', '-o', 'cluster_size=4k,refcount_bits=8', f('c4k.qcow2'), '1M');
  qemu('qemu-io', '-c', 'write -P 0x34 4k 64k', '-c', 'write -P 0x56 900k 12k', f('c4k.qcow2'));
  add('c4k.qcow2');
  qemu('qemu-img', 'convert', '-c', '-O', 'qcow2', '-o', 'cluster_size=4k', f('c4k.qcow2'), f('compressed.qcow2'));
  add('compressed.qcow2');
  qemu('qemu-img', 'create', '-f', 'qcow2', '-o', 'cluster_size=1k,compat=0.10', f('v2.qcow2'), '128k');
  qemu('qemu-io', '-c', 'write -P 0x78 1k 20k', f('v2.qcow2'));
  add('v2.qcow2');
  qemu('qemu-img', 'create', '-f', 'qcow2', '-o', 'cluster_size=2k', '-b', 'c4k.qcow2', '-F', 'qcow2', f('overlay.qcow2'), '1M');
  qemu('qemu-io', '-c', 'write -P 0x9a 10k 6k', f('overlay.qcow2'));
  add('overlay.qcow2');
  return out;
}

const HEADER_FIELDS = [[4, 4], [8, 8], [16, 4], [20, 4], [24, 8], [32, 4], [36, 4], [40, 8], [48, 8], [56, 4], [60, 4], [64, 8], [72, 8], [80, 8], [88, 8], [96, 4], [100, 4], [104, 1]];

function mutate(src: Uint8Array, next: () => number): Uint8Array {
  const b = src.slice();
  const dv = new DataView(b.buffer);
  const cs = 2 ** Math.min(21, Math.max(9, dv.getUint32(20)));
  const interesting = (): number => {
    const pick = [0, 1, 0xffff_ffff, 0x8000_0000, cs, cs - 1, b.length, b.length - cs, 0x200, next()];
    return pick[next() % pick.length] >>> 0;
  };
  const rounds = 1 + (next() % 4);
  for (let r = 0; r < rounds; r++) {
    switch (next() % 6) {
      case 0: { // bit flips, biased to the first clusters where the metadata is
        const span = next() & 1 ? Math.min(b.length, cs * 8) : b.length;
        const at = next() % span;
        b[at] ^= 1 << (next() & 7);
        break;
      }
      case 1: { // a header field
        const [at, len] = HEADER_FIELDS[next() % HEADER_FIELDS.length];
        if (len === 1) b[at] = next() & 0xff;
        else if (len === 4) dv.setUint32(at, interesting());
        else { dv.setUint32(at, next() & 1 ? 0 : interesting()); dv.setUint32(at + 4, interesting()); }
        break;
      }
      case 2: case 3: { // a 64-bit table entry anywhere past the header
        const at = (cs + (next() % Math.max(1, b.length - cs - 8))) & ~7;
        if (at + 8 > b.length) break;
        const flags = [0, 0x8000_0000, 0x4000_0000, 0xc000_0000][next() & 3];
        dv.setUint32(at, (flags | (next() & 1 ? 0 : next() & 0xff)) >>> 0);
        dv.setUint32(at + 4, next() & 1 ? ((next() % Math.max(1, b.length / cs + 4)) * cs) >>> 0 : interesting());
        break;
      }
      case 4: return b.subarray(0, next() % b.length); // truncation
      default: { // a run of random bytes
        const at = next() % b.length, n = Math.min(b.length - at, 1 + (next() % 64));
        for (let i = 0; i < n; i++) b[at + i] = next() & 0xff;
      }
    }
  }
  return b;
}

async function exercise(bytes: Uint8Array, next: () => number, withBacking: Uint8Array | null): Promise<void> {
  const mem = new MemFile('fuzz.qcow2', bytes, 64 << 20);
  const backing = withBacking ? await RawDisk.open(new MemFile('base.raw', withBacking), true) : null;
  const readOnly = (next() & 7) === 0;
  const d = await Qcow2Disk.open(mem, { readOnly, backing, inflate: nodeInflate });
  const size = d.sizeBytes, sectors = size / 512;
  const op = async (fn: () => Promise<void>): Promise<void> => {
    try { await fn(); } catch (e) { if (!(e instanceof DiskError)) throw e; }
  };
  const range = (max: number): [number, number] => {
    if (sectors === 0) return [0, 0];
    const n = Math.min(sectors, 1 + (next() % max));
    return [512 * (next() % (sectors - n + 1)), 512 * n];
  };
  for (let i = 0; i < 6; i++) {
    const [off, len] = range(128);
    const k = next() % 6;
    if (k <= 1) await op(() => d.read(off, new Uint8Array(len)));
    else if (k <= 3) await op(() => d.write(off, new Uint8Array(len).fill(next() & 0xff)));
    else if (k === 4) await op(() => d.writeZeroes(off, len, (next() & 1) === 0));
    else await op(() => d.discard(off, len));
  }
  await op(() => d.flush());
  await op(() => d.close());
  await op(async () => { await checkQcow2(new MemFile('fuzz.qcow2', mem.bytes)); });
}

test(`fuzz: ${CASES} mutated qcow2 images give only DiskErrors, never a crash or hang`, async (t) => {
  const imgs = seeds();
  const base = new Uint8Array(1 << 20).fill(0x44);
  const next = prng(SEED);
  const counts = { opened: 0, refused: 0 };
  // Sanity: the unmutated seeds open, and a clean write keeps them consistent.
  for (const s of imgs) {
    const mem = new MemFile(s.name, s.bytes);
    const d = await Qcow2Disk.open(mem, { readOnly: false, backing: s.name === 'overlay.qcow2' ? await RawDisk.open(new MemFile('b', base), true) : null, inflate: nodeInflate });
    await d.write(0, new Uint8Array(4096).fill(1));
    await d.close();
    const r = await checkQcow2(new MemFile(s.name, mem.bytes));
    assert.deepEqual([r.errors, r.leaks], [0, 0], `${s.name}: ${r.messages.join('; ')}`);
  }
  for (let c = 0; c < CASES; c++) {
    const s = imgs[next() % imgs.length];
    const bytes = mutate(s.bytes, next);
    const caseSeed = next();
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        exercise(bytes, prng(caseSeed), s.name === 'overlay.qcow2' ? base : null).then(() => { counts.opened++; }),
        new Promise((_, rej) => { timer = setTimeout(() => rej(new Error('hang')), CASE_TIMEOUT_MS); }),
      ]);
    } catch (e) {
      if (e instanceof DiskError) { counts.refused++; continue; }
      assert.fail(`case ${c} (${s.name}, FUZZ_SEED=${SEED}): ${(e as Error).stack ?? String(e)}`);
    } finally { clearTimeout(timer); }
  }
  t.diagnostic(JSON.stringify(counts));
  assert.ok(counts.opened > CASES / 10 && counts.refused > CASES / 10, `both outcomes exercised: ${JSON.stringify(counts)}`);
});
