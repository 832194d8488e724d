/**
 * openDisk as the device models use it: raw and qcow2 read/write/read-only, clear errors for
 * missing files, bad formats, broken headers and backing loops, -snapshot overlays that leave
 * the image untouched, durability (flush = fsync; kill -9 after a flush loses nothing) and
 * locking against QEMU (qemu-io holding the image) and against another typevisor.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync, readdirSync, chmodSync, statSync, mkdirSync, openSync, fsyncSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openDisk, DiskError } from '../../src/host/storage/index.js';
import { MemFile } from '../../src/host/storage/file.js';
import { NodeFile } from '../../src/host/storage/node-file.js';
import { nativeIo, nativeIoMissing, type NativeIo } from '../../src/host/storage/nowait.js';
import { Qcow2Disk } from '../../src/host/storage/qcow2.js';
import { RawDisk } from '../../src/host/storage/raw.js';
import { createQcow2 } from '../../src/host/storage/qcow2-format.js';
import { procLocks, lockDir } from '../../src/host/storage/lock.js';
import { nodeInflate } from '../../src/host/storage/index.js';
import { tmp, qemu, qemuStatus, qemuRawBytes, pattern, prng, firstDiff } from './util.js';

const dir = tmp('disk');
const f = (n: string): string => join(dir, n);
const storageIndex = resolve(fileURLToPath(import.meta.url), '..', '..', '..', 'src', 'host', 'storage', 'index.js');

async function rejects(p: Promise<unknown>, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof DiskError, `expected a DiskError, got ${String(e)}`);
    assert.match(e.message, re);
    return true;
  });
}

test('raw: read-write, read-only refuses writes, sizes in whole sectors, bounds', async () => {
  const init = pattern(prng(1), 1 << 20);
  writeFileSync(f('a.raw'), init);
  const d = await openDisk({ file: f('a.raw') });
  assert.equal(d.sizeBytes, 1 << 20);
  assert.equal(d.readOnly, false);
  const buf = new Uint8Array(4096);
  await d.read(8192, buf);
  assert.deepEqual(buf, init.subarray(8192, 8192 + 4096));
  const w = pattern(prng(2), 8192);
  await d.write(65536 - 512, w);
  await d.writeZeroes(0, 1024, false);
  await d.flush();
  await rejects(d.read((1 << 20) - 512, new Uint8Array(1024)), /outside the disk/);
  await d.close();
  const now = readFileSync(f('a.raw'));
  assert.deepEqual(new Uint8Array(now.subarray(65536 - 512, 65536 - 512 + 8192)), w);
  assert.equal(now.subarray(0, 1024).every((b) => b === 0), true);

  const ro = await openDisk({ file: f('a.raw'), readOnly: true });
  assert.equal(ro.readOnly, true);
  await rejects(ro.write(0, new Uint8Array(512)), /read-only/);
  await ro.close();
  // A guest may not turn a probed raw image into a qcow2 header (QEMU's rule): its backing file could be any host file.
  const magic = new Uint8Array(512); magic.set([0x51, 0x46, 0x49, 0xfb]);
  writeFileSync(f('probe.raw'), new Uint8Array(4096));
  const probed = await openDisk({ file: f('probe.raw') });
  await rejects(probed.write(0, magic), /format probed.*format=raw/);
  await probed.write(512, magic);
  await probed.close();
  const explicit = await openDisk({ file: f('probe.raw'), format: 'raw' });
  await explicit.write(0, magic);
  await explicit.close();
  writeFileSync(f('odd.raw'), new Uint8Array(1000));
  const odd = await openDisk({ file: f('odd.raw'), format: 'raw' });
  assert.equal(odd.sizeBytes, 512);
  await odd.close();
});

test('clear errors: missing file, directory, unknown format, bad qcow2 headers, backing loops and missing backing files', async () => {
  await rejects(openDisk({ file: f('nope.img') }), /nope\.img.*no such file/);
  mkdirSync(f('adir'), { recursive: true });
  await rejects(openDisk({ file: f('adir') }), /adir.*directory/);
  await rejects(openDisk({ file: f('a.raw'), format: 'vmdk' as 'raw' }), /unsupported format 'vmdk'/);
  qemu('qemu-img', 'create', '-f', 'qcow2', f('h.qcow2'), '1M');
  const good = readFileSync(f('h.qcow2'));
  const variants: Array<[string, (b: Buffer) => Buffer, RegExp]> = [
    ['truncated', (b) => b.subarray(0, 50), /too short/],
    ['version', (b) => { b.writeUInt32BE(4, 4); return b; }, /unsupported qcow2 version 4/],
    ['cluster bits', (b) => { b.writeUInt32BE(30, 20); return b; }, /cluster_bits 30/],
    ['encrypted', (b) => { b.writeUInt32BE(1, 32); return b; }, /encrypted/],
    ['L1 beyond EOF', (b) => { b.writeUInt32BE(0x100000, 44); return b; }, /L1 table.*beyond the end/],
    ['unknown feature', (b) => { b.writeUInt32BE(0x20, 76); return b; }, /unsupported qcow2 feature/],
    ['refcount table unaligned', (b) => { b.writeUInt32BE(0x10200, 52); return b; }, /not cluster aligned/],
    ['truncated tables', (b) => b.subarray(0, 0x20000), /beyond the end of the file/],
  ];
  for (const [name, mutate, re] of variants) {
    writeFileSync(f(`bad-${name}.qcow2`), mutate(Buffer.from(good)));
    await rejects(openDisk({ file: f(`bad-${name}.qcow2`) }), new RegExp(`bad-${name}\\.qcow2.*${re.source}`));
  }
  // Dirty/corrupt images open read-only only.
  const corrupt = Buffer.from(good); corrupt.writeUInt32BE(2, 76);
  writeFileSync(f('corrupt.qcow2'), corrupt);
  await rejects(openDisk({ file: f('corrupt.qcow2') }), /marked corrupt/);
  await (await openDisk({ file: f('corrupt.qcow2'), readOnly: true })).close();
  // A loop: a backs b backs a (qemu-img -u writes headers without opening the backing file).
  qemu('qemu-img', 'create', '-f', 'qcow2', '-u', '-b', 'loop-b.qcow2', '-F', 'qcow2', f('loop-a.qcow2'), '1M');
  qemu('qemu-img', 'create', '-f', 'qcow2', '-u', '-b', 'loop-a.qcow2', '-F', 'qcow2', f('loop-b.qcow2'), '1M');
  await rejects(openDisk({ file: f('loop-a.qcow2') }), /backing chain loop/);
  qemu('qemu-img', 'create', '-f', 'qcow2', '-u', '-b', 'loop-self.qcow2', '-F', 'qcow2', f('loop-self.qcow2'), '1M');
  await rejects(openDisk({ file: f('loop-self.qcow2') }), /loop/);
  qemu('qemu-img', 'create', '-f', 'qcow2', '-u', '-b', 'gone.raw', '-F', 'raw', f('orphan.qcow2'), '1M');
  await rejects(openDisk({ file: f('orphan.qcow2') }), /gone\.raw.*no such file/);
  // A chain of 20 is refused; the refusal comes before boot, not on first read.
  let prev = 'a.raw';
  for (let i = 0; i < 20; i++) { qemu('qemu-img', 'create', '-f', 'qcow2', '-u', '-b', prev, '-F', i ? 'qcow2' : 'raw', f(`chain${i}.qcow2`), '1M'); prev = `chain${i}.qcow2`; }
  await rejects(openDisk({ file: f('chain19.qcow2') }), /backing chain longer than/);
  await (await openDisk({ file: f('chain10.qcow2') })).close();
});

test('-snapshot: writes land in a throw-away overlay; the image (raw or qcow2, even read-only on disk) is untouched', async () => {
  qemu('qemu-img', 'create', '-f', 'qcow2', f('snap.qcow2'), '4M');
  qemu('qemu-io', '-c', 'write -P 0x11 0 2M', f('snap.qcow2'));
  writeFileSync(f('snap.raw'), pattern(prng(3), 2 << 20));
  chmodSync(f('snap.raw'), 0o444);
  const before = (): string[] => readdirSync(tmpdir()).filter((n) => n.startsWith('typevisor-snapshot-'));
  const tmpBefore = before();
  for (const file of [f('snap.qcow2'), f('snap.raw')]) {
    const orig = readFileSync(file);
    const d = await openDisk({ file, snapshot: true });
    assert.equal(d.readOnly, false);
    assert.equal(before().length, tmpBefore.length, 'the overlay is unlinked at once');
    const ref = new Uint8Array(d.sizeBytes);
    await d.read(0, ref);
    const next = prng(4);
    for (let i = 0; i < 100; i++) {
      const len = 512 * (1 + (next() % 200)), off = 512 * (next() % ((d.sizeBytes - len) / 512));
      const data = pattern(next, len);
      await d.write(off, data); ref.set(data, off);
    }
    await d.flush();
    const got = new Uint8Array(d.sizeBytes);
    await d.read(0, got);
    assert.equal(firstDiff(got, ref), -1);
    await d.close();
    assert.ok(readFileSync(file).equals(orig), `${file} unchanged`);
  }
});

test('durability: flush is fsync, cache=none syncs every write', async () => {
  const mem = new MemFile('mem.qcow2');
  await createQcow2(mem, { size: 1 << 20 });
  const d = await Qcow2Disk.open(mem, { readOnly: false, backing: null, inflate: nodeInflate });
  await d.write(0, new Uint8Array(4096).fill(1));
  assert.equal(mem.syncs, 0);
  await d.flush();
  assert.equal(mem.syncs, 1);
  const mem2 = new MemFile('mem2.qcow2', mem.bytes);
  const d2 = await Qcow2Disk.open(mem2, { readOnly: false, backing: null, inflate: nodeInflate, syncEachWrite: true });
  await d2.write(0, new Uint8Array(512).fill(2));
  await d2.write(1 << 19, new Uint8Array(512).fill(3));
  assert.equal(mem2.syncs, 2);
  await d.close(); await d2.close();
});

/** A typevisor process that opens `file` for writing, writes, flushes, reports, and waits to be killed. */
function writerChild(file: string, format: string, off: number, fill: number): Promise<{ child: ChildProcess }> {
  const code = `
    import { openDisk } from ${JSON.stringify(storageIndex)};
    const d = await openDisk({ file: ${JSON.stringify(file)}, format: ${JSON.stringify(format)} });
    await d.write(${off}, new Uint8Array(65536).fill(${fill}));
    await d.flush();
    process.stdout.write('flushed\\n');
    setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((res, rej) => {
    let out = '', err = '';
    const timer = setTimeout(() => { child.kill('SIGKILL'); rej(new Error(`writer child timed out: ${err}`)); }, 20_000);
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('flushed')) { clearTimeout(timer); res({ child }); } });
    child.on('exit', (c) => { clearTimeout(timer); rej(new Error(`writer child exited ${c}: ${err}`)); });
  });
}

function killed(child: ChildProcess): Promise<void> {
  return new Promise((res) => { child.removeAllListeners('exit'); child.on('exit', () => res()); child.kill('SIGKILL'); });
}

test('kill -9 after a guest flush loses nothing; the dead writer\'s lock is stale; another typevisor is refused while it lives', async () => {
  for (const format of ['raw', 'qcow2']) {
    const file = f(`kill.${format}`);
    qemu('qemu-img', 'create', '-f', format, file, '8M');
    const { child } = await writerChild(file, format, 3 << 20, 0x5c);
    await rejects(openDisk({ file }), new RegExp(`kill\\.${format}.*locked: typevisor process ${child.pid}`));
    await rejects(openDisk({ file, readOnly: true }), /locked/);
    await killed(child);
    if (format === 'qcow2') assert.equal(qemuStatus('qemu-img', 'check', file).status, 0, 'consistent after kill -9');
    const raw = qemuRawBytes(file, dir);
    assert.ok(raw.subarray(3 << 20, (3 << 20) + 65536).every((b) => b === 0x5c), 'the flushed write survived');
    const d = await openDisk({ file }); // the stale lock is taken over
    await rejects(openDisk({ file }), new RegExp(`locked: typevisor process ${process.pid}`));
    await d.close();
    await (await openDisk({ file })).close();
  }
});

function holdWithQemuIo(file: string, readOnly: boolean, system = false): Promise<ChildProcess> {
  const child = system
    ? spawn('qemu-system-riscv64', ['-M', 'virt', '-S', '-display', 'none', '-monitor', 'none', '-serial', 'none',
      '-drive', `file=${file},format=qcow2,if=none,id=d0`, '-device', 'virtio-blk-device,drive=d0'], { stdio: ['pipe', 'ignore', 'ignore'] })
    : spawn('qemu-io', [...(readOnly ? ['-r'] : []), file], { stdio: ['pipe', 'ignore', 'ignore'] });
  const st = statSync(file);
  return new Promise((res, rej) => {
    const t0 = Date.now();
    const poll = (): void => {
      if (procLocks(st.dev, st.ino).length) { res(child); return; }
      if (Date.now() - t0 > 10_000) { child.kill('SIGKILL'); rej(new Error('qemu-io took no lock (is /proc/locks readable?)')); return; }
      setTimeout(poll, 50);
    };
    poll();
  });
}

test('an image QEMU has open is refused (qemu-io read-write or read-only, qemu-system-riscv64 -drive)', async () => {
  const file = f('q-locked.qcow2');
  qemu('qemu-img', 'create', '-f', 'qcow2', file, '1M');
  const rw = await holdWithQemuIo(file, false);
  try {
    await rejects(openDisk({ file }), /q-locked\.qcow2' is locked: another process \(QEMU\?\)/);
    await rejects(openDisk({ file, readOnly: true }), /locked/);
    await rejects(openDisk({ file, snapshot: true }), /locked/);
  } finally { rw.stdin?.end(); await new Promise((r) => rw.on('exit', r)); }
  const ro = await holdWithQemuIo(file, true);
  try {
    await rejects(openDisk({ file }), /locked/);
    await (await openDisk({ file, readOnly: true })).close(); // readers may share with a QEMU reader
  } finally { ro.stdin?.end(); await new Promise((r) => ro.on('exit', r)); }
  await (await openDisk({ file })).close();
  const vm = await holdWithQemuIo(file, false, true);
  try {
    await rejects(openDisk({ file }), /q-locked\.qcow2' is locked/);
  } finally { vm.kill('SIGKILL'); await new Promise((r) => vm.on('exit', r)); }
});

/** A MemFile whose writes of one marked buffer are slow, to line up races deterministically. */
class SlowFile extends MemFile {
  slow: Uint8Array | null = null;
  override async pwrite(src: Uint8Array, position: number): Promise<void> {
    if (this.slow && src.length === this.slow.length && src[0] === this.slow[0]) await new Promise((r) => setTimeout(r, 50));
    return super.pwrite(src, position);
  }
}

test('a cluster freed by a discard while a write to it is in flight is not reused for metadata', async () => {
  const mem = new SlowFile('race.qcow2');
  await createQcow2(mem, { size: 1 << 30 });
  const d = await Qcow2Disk.open(mem, { readOnly: false, backing: null, inflate: nodeInflate });
  await d.write(0, new Uint8Array(65536).fill(1));
  const slow = new Uint8Array(4096).fill(0xee);
  mem.slow = slow;
  const inFlight = d.write(0, slow); // in place, slow
  await new Promise((r) => setTimeout(r, 5));
  await d.discard(0, 65536); // frees the cluster under the write
  await d.write(600 << 20, new Uint8Array(4096).fill(2)); // needs a new L2 table
  await inFlight;
  const got = new Uint8Array(4096);
  await d.read(600 << 20, got);
  assert.ok(got.every((b) => b === 2));
  await d.close();
  const { checkQcow2 } = await import('../../src/host/storage/check.js');
  const r = await checkQcow2(new MemFile('race.qcow2', mem.bytes));
  assert.deepEqual([r.errors, r.leaks], [0, 0], r.messages.join('\n'));
  const again = await Qcow2Disk.open(new MemFile('race.qcow2', mem.bytes), { readOnly: true, backing: null, inflate: nodeInflate });
  await again.read(600 << 20, got);
  assert.ok(got.every((b) => b === 2), 'the new L2 table on disk is intact');
});

test('a lock file naming a live pid with another start time (a reused pid) is stale', async () => {
  const file = f('reuse.raw');
  writeFileSync(file, new Uint8Array(4096));
  const st = statSync(file);
  mkdirSync(lockDir(), { recursive: true });
  const lock = join(lockDir(), `${st.dev}-${st.ino}.lock`);
  const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
  try {
    const stat = readFileSync(`/proc/${sleeper.pid}/stat`, 'utf8');
    const started = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    writeFileSync(lock, `${sleeper.pid}\n${started}\n${file}\n`);
    await rejects(openDisk({ file }), new RegExp(`locked: typevisor process ${sleeper.pid}`));
    writeFileSync(lock, `${sleeper.pid}\n${Number(started) + 1}\n${file}\n`);
    await (await openDisk({ file })).close();
  } finally { sleeper.kill('SIGKILL'); }
});

test('metadata corruption found while writing stops writes and marks the image corrupt, as QEMU does', async () => {
  const file = f('mark.qcow2');
  qemu('qemu-img', 'create', '-f', 'qcow2', file, '4M');
  qemu('qemu-io', '-c', 'write -P 7 0 64k', file);
  const img = Buffer.from(readFileSync(file));
  const l1 = Number(img.readBigUInt64BE(40));
  const l2 = Number(img.readBigUInt64BE(l1) & 0x00ff_ffff_ffff_fe00n);
  img.writeBigUInt64BE(BigInt(l1) | (1n << 63n), l2); // cluster 0's data "is" the L1 table
  writeFileSync(file, img);
  const d = await openDisk({ file });
  await rejects(d.write(0, new Uint8Array(512).fill(1)), /corrupt qcow2 image: data cluster .* overlaps metadata/);
  await rejects(d.write(1 << 20, new Uint8Array(512)), /found corrupt; writes are refused/);
  await d.close();
  assert.ok(readFileSync(file).subarray(l1, l1 + 4096).equals(img.subarray(l1, l1 + 4096)), 'the L1 table was not overwritten');
  assert.match(qemu('qemu-img', 'info', file), /corrupt: true/);
  await rejects(openDisk({ file }), /marked corrupt/);
});

test('an image open read-only (a backing file under a live overlay, a -snapshot base) cannot be opened for writing', async () => {
  qemu('qemu-img', 'create', '-f', 'raw', f('shared-base.raw'), '1M');
  qemu('qemu-img', 'create', '-f', 'qcow2', '-b', 'shared-base.raw', '-F', 'raw', f('ov1.qcow2'));
  qemu('qemu-img', 'create', '-f', 'qcow2', '-b', 'shared-base.raw', '-F', 'raw', f('ov2.qcow2'));
  const o1 = await openDisk({ file: f('ov1.qcow2') });
  const o2 = await openDisk({ file: f('ov2.qcow2') }); // readers share
  await rejects(openDisk({ file: f('shared-base.raw') }), new RegExp(`shared-base\\.raw' is locked: typevisor process ${process.pid} has it open read-only`));
  await o1.close();
  await rejects(openDisk({ file: f('shared-base.raw') }), /open read-only/);
  await o2.close();
  await (await openDisk({ file: f('shared-base.raw') })).close();
  const snap = await openDisk({ file: f('shared-base.raw'), snapshot: true });
  await rejects(openDisk({ file: f('shared-base.raw') }), /open read-only/);
  await snap.close();
  // A reader that died without cleaning up does not block.
  const st = statSync(f('shared-base.raw'));
  const dead = spawn('true');
  await new Promise((r) => dead.on('exit', r));
  writeFileSync(join(lockDir(), `${st.dev}-${st.ino}.r.${dead.pid}`), `${dead.pid}\n\n${f('shared-base.raw')}\n`);
  await (await openDisk({ file: f('shared-base.raw') })).close();
});

/** A MemFile that counts the reads and writes begun (at the call, before any await). */
class CountingFile extends MemFile {
  preads = 0;
  pwrites = 0;
  override pread(dst: Uint8Array, position: number): Promise<number> { this.preads++; return super.pread(dst, position); }
  override pwrite(src: Uint8Array, position: number): Promise<void> { this.pwrites++; return super.pwrite(src, position); }
}

test('a read or an in-place write whose metadata is cached starts its host I/O in the same synchronous step (raw and qcow2)', async () => {
  // The machine runs promise reactions only when its run loop yields: I/O begun after an
  // await started thousands of guest instructions late (a QD1 4 KiB qcow2 read: +13 µs).
  const mem = new CountingFile('sync.qcow2');
  await createQcow2(mem, { size: 1 << 20 });
  const q = await Qcow2Disk.open(mem, { readOnly: false, backing: null, inflate: nodeInflate });
  await q.write(0, new Uint8Array(65536).fill(1)); // allocates the cluster and its L2 table
  const buf = new Uint8Array(4096);
  await q.read(0, buf); // (the L2 table is cached from here)
  let n = mem.preads;
  const r = q.read(4096, buf);
  assert.equal(mem.preads, n + 1, 'qcow2 read: pread begun before read() returned');
  await r;
  assert.equal(buf[0], 1);
  n = mem.pwrites;
  const w = q.write(8192, new Uint8Array(4096).fill(2));
  assert.equal(mem.pwrites, n + 1, 'qcow2 in-place write: pwrite begun before write() returned');
  await w;
  await q.read(8192, buf);
  assert.equal(buf[0], 2);
  await q.close();
  const rf = new CountingFile('sync.raw', new Uint8Array(1 << 20));
  const raw = await RawDisk.open(rf, false);
  const rr = raw.read(0, buf);
  assert.equal(rf.preads, 1, 'raw read');
  const rw = raw.write(0, buf);
  assert.equal(rf.pwrites, 1, 'raw write');
  await Promise.all([rr, rw]);
});

/** Drop a clean file's pages from the host cache. */
function dropCache(io: NativeIo, fd: number): void {
  assert.equal(io.dropCache(fd, 0, 0), 0);
}

test('a read the host page cache holds is done at once (native preadv2 RWF_NOWAIT); a miss goes to the thread pool; both give the file\'s bytes', async () => {
  const io = nativeIo();
  assert.ok(io !== null, `the native disk helper is in use: ${nativeIoMissing ?? ''}`);
  const data = pattern(prng(7), 1 << 20);
  writeFileSync(f('nowait.raw'), data);
  const fd = openSync(f('nowait.raw'), 'r');
  fsyncSync(fd); // (clean pages: the cache can drop them below)
  const file = await NodeFile.open(f('nowait.raw'), false);
  try {
    // Cached (just written): the bytes are in place before pread() returns.
    const dst = new Uint8Array(4096);
    const p = file.pread(dst, 65536);
    assert.equal(firstDiff(dst, data.subarray(65536, 65536 + 4096)), -1, 'filled in the same synchronous step');
    assert.equal(await p, 4096);
    assert.deepEqual(file.reads, { inline: 1, pool: 0 });
    // Dropped from the cache: the read goes to the pool. (A miss may start readahead, so
    // each probe below follows a drop of its own.)
    dropCache(io, fd);
    dst.fill(0);
    const q = file.pread(dst, 524288);
    // (Not `dst` still zero here: the pool thread fills it while this thread goes on.)
    assert.deepEqual(file.reads, { inline: 1, pool: 1 }, 'the miss went to the pool');
    assert.equal(await q, 4096);
    assert.equal(firstDiff(dst, data.subarray(524288, 524288 + 4096)), -1);
    dropCache(io, fd);
    assert.equal(io.preadNowait(fd, dst, 786432), -io.errno.EAGAIN, 'RWF_NOWAIT: not cached');
    // End of file: a short read, then 0 (RawDisk zero-fills past it).
    assert.equal(await file.pread(new Uint8Array(8192), (1 << 20) - 4096), 4096);
    assert.equal(await file.pread(dst, 1 << 20), 0);
    // Through a disk: the same bytes as the file.
    const d = await openDisk({ file: f('nowait.raw'), format: 'raw', readOnly: true });
    const big = new Uint8Array(256 << 10);
    await d.read(1 << 19, big);
    assert.equal(firstDiff(big, data.subarray(1 << 19, (1 << 19) + big.length)), -1);
    await d.close();
  } finally {
    await file.close();
    closeSync(fd);
  }
  // The helper reports errors as -errno and checks its arguments.
  assert.equal(io.preadNowait(-1, new Uint8Array(16), 0), -io.errno.EBADF);
  assert.equal(io.preadNowait(0, new Uint8Array(16), -1), -io.errno.EINVAL);
  assert.equal(io.preadNowait(0, new Uint8Array(16), 0.5), -io.errno.EINVAL);
  assert.throws(() => io.preadNowait(0, [1, 2] as unknown as Uint8Array, 0), TypeError);
  assert.throws(() => io.preadNowait('x' as unknown as number, new Uint8Array(1), 0), TypeError);
  assert.throws(() => io.dropCache(0, 0, '0' as unknown as number), TypeError);
});
