/**
 * `typevisor img` as a process, checked against qemu-img: images it creates are clean and
 * the right size and format for QEMU; info reads QEMU's images; convert round-trips; check
 * gives qemu-img's exit statuses (0 clean, 3 leaks, 2 corruption, 63 raw, 1 unreadable).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, spawn } from 'node:child_process';
import { readFileSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../lib/toolchain.js';
import { tmp, qemu, qemuStatus } from './util.js';
import { procLocks } from '../../src/host/storage/lock.js';
import { openDisk } from '../../src/host/storage/index.js';

const BIN = join(repoRoot, 'bin', 'typevisor.js');
const dir = tmp('img');
const f = (n: string): string => join(dir, n);

function tv(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, 'img', ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface QemuInfo { 'virtual-size': number; format: string; 'backing-filename'?: string; 'backing-filename-format'?: string; 'cluster-size'?: number }
const qinfo = (file: string): QemuInfo => JSON.parse(qemu('qemu-img', 'info', '--output', 'json', file)) as QemuInfo;

test('img create: raw and qcow2 (sizes in K/M/G, cluster_size, backing files) as qemu-img sees them', () => {
  let r = tv('create', '-f', 'qcow2', f('a.qcow2'), '10G');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /Formatting '.*a\.qcow2', fmt=qcow2 cluster_size=65536 size=10737418240/);
  assert.deepEqual([qinfo(f('a.qcow2'))['virtual-size'], qinfo(f('a.qcow2')).format], [10737418240, 'qcow2']);
  assert.equal(qemuStatus('qemu-img', 'check', f('a.qcow2')).status, 0);

  assert.equal(tv('create', f('b.raw'), '1000').status, 0);
  assert.equal(statSync(f('b.raw')).size, 1024, 'rounded up to 512 like qemu-img');
  assert.equal(tv('create', '-f', 'raw', f('c.raw'), '3M').status, 0);
  assert.equal(statSync(f('c.raw')).size, 3 << 20);

  assert.equal(tv('create', '-f', 'qcow2', '-o', 'cluster_size=4k', f('small.qcow2'), '1G').status, 0);
  assert.equal(qinfo(f('small.qcow2'))['cluster-size'], 4096);
  assert.equal(qemuStatus('qemu-img', 'check', f('small.qcow2')).status, 0);

  r = tv('create', '-f', 'qcow2', '-b', 'c.raw', '-F', 'raw', f('over.qcow2'));
  assert.equal(r.status, 0, r.stderr);
  const i = qinfo(f('over.qcow2'));
  assert.deepEqual([i['virtual-size'], i['backing-filename'], i['backing-filename-format']], [3 << 20, 'c.raw', 'raw']);
  assert.equal(qemuStatus('qemu-img', 'check', f('over.qcow2')).status, 0);
  r = tv('create', '-f', 'qcow2', '-b', 'over.qcow2', f('over2.qcow2'), '8M'); // format probed
  assert.equal(r.status, 0, r.stderr);
  assert.equal(qinfo(f('over2.qcow2'))['backing-filename-format'], 'qcow2');

  r = tv('create', '-f', 'vdi', f('x'), '1M');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /unsupported format 'vdi'/);
  r = tv('create', '-f', 'qcow2', '-b', 'missing.raw', f('y.qcow2'));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /missing\.raw.*no such file/);
});

test('img info reads QEMU\'s images (human and json)', () => {
  qemu('qemu-img', 'create', '-f', 'qcow2', f('q.qcow2'), '64M');
  qemu('qemu-img', 'create', '-f', 'qcow2', '-b', 'q.qcow2', '-F', 'qcow2', f('qo.qcow2'));
  let r = tv('info', f('qo.qcow2'));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /file format: qcow2\nvirtual size: 64 MiB \(67108864 bytes\)/);
  assert.match(r.stdout, /backing file: q\.qcow2/);
  assert.match(r.stdout, /backing file format: qcow2/);
  r = tv('info', '--output', 'json', f('qo.qcow2'));
  const mine = JSON.parse(r.stdout) as QemuInfo, theirs = qinfo(f('qo.qcow2'));
  for (const k of ['virtual-size', 'format', 'cluster-size', 'backing-filename', 'backing-filename-format'] as const) assert.equal(mine[k], theirs[k], k);
  qemu('qemu-img', 'create', '-f', 'qcow2', '-o', 'compat=0.10', '-b', 'q.qcow2', '-F', 'qcow2', f('v2.qcow2'));
  r = tv('info', f('v2.qcow2'));
  assert.match(r.stdout, /backing file format: qcow2\n[^]*compat: 0\.10/, 'version 2 header extensions');
  r = tv('info', f('nothere.img'));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /nothere\.img.*no such file/);
});

test('img convert: qcow2 <-> raw round trip, identical to QEMU\'s view', () => {
  qemu('qemu-img', 'create', '-f', 'qcow2', f('src.qcow2'), '16M');
  qemu('qemu-io', '-c', 'write -P 0x3c 1M 2M', '-c', 'write -P 0x99 15M 512', f('src.qcow2'));
  let r = tv('convert', '-O', 'raw', f('src.qcow2'), f('out.raw'));
  assert.equal(r.status, 0, r.stderr);
  assert.equal(qemuStatus('qemu-img', 'compare', f('src.qcow2'), f('out.raw')).status, 0);
  assert.ok(statSync(f('out.raw')).blocks * 512 < 8 << 20, 'zeros stay sparse');
  r = tv('convert', '-f', 'raw', '-O', 'qcow2', f('out.raw'), f('back.qcow2'));
  assert.equal(r.status, 0, r.stderr);
  assert.equal(qemuStatus('qemu-img', 'check', f('back.qcow2')).status, 0);
  assert.equal(qemuStatus('qemu-img', 'compare', f('src.qcow2'), f('back.qcow2')).status, 0);
  assert.ok(statSync(f('back.qcow2')).size < 4 << 20, 'only the data clusters are allocated');
  r = tv('convert', '-O', 'qcow2', f('back.qcow2'), f('back.qcow2'));
  assert.equal(r.status, 2);
});

test('img convert reads only what is stored: a 4 TiB overlay with three pieces of data', { timeout: 60_000 }, async () => {
  // Before block status, convert read every virtual byte: 4 TiB would take hours.
  writeFileSync(f('base.raw'), new Uint8Array(8 << 20).fill(0x5a, 2 << 20, (2 << 20) + 4096));
  qemu('qemu-img', 'create', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', f('huge.qcow2'), '4T');
  qemu('qemu-io', '-c', 'write -P 0x11 0 64k', '-c', 'write -z 1M 64k', '-c', 'write -P 0x22 3T 4k', f('huge.qcow2'));
  const d = await openDisk({ file: f('huge.qcow2'), readOnly: true });
  try {
    assert.ok(d.blockStatus);
    // Stored data, then unallocated over the raw backing (data too), up to the zero cluster.
    assert.deepEqual(await d.blockStatus(0, 4 << 20), { zero: false, length: 1 << 20 });
    assert.deepEqual(await d.blockStatus(1 << 20, 1 << 20), { zero: true, length: 64 << 10 }, 'zero cluster');
    assert.deepEqual(await d.blockStatus(8 << 20, 2 ** 40), { zero: true, length: 2 ** 40 }, 'past the backing file, no L2 tables: zeroes');
  } finally { await d.close(); }
  const r = tv('convert', '-O', 'qcow2', f('huge.qcow2'), f('huge-flat.qcow2'));
  assert.equal(r.status, 0, r.stderr);
  assert.equal(qemuStatus('qemu-img', 'check', f('huge-flat.qcow2')).status, 0);
  assert.equal(qemuStatus('qemu-img', 'compare', f('huge.qcow2'), f('huge-flat.qcow2')).status, 0);
  assert.ok(statSync(f('huge-flat.qcow2')).size < 16 << 20, 'only data clusters allocated');
});

test('img check: exit statuses and messages as qemu-img', () => {
  qemu('qemu-img', 'create', '-f', 'qcow2', f('c.qcow2'), '4M');
  qemu('qemu-io', '-c', 'write -P 1 0 256k', f('c.qcow2'));
  let r = tv('check', f('c.qcow2'));
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /No errors were found on the image\.\n4\/64 = 6\.25% allocated/);
  // A leak: one more cluster at the end of the file, counted but unused.
  const img = Buffer.from(readFileSync(f('c.qcow2')));
  const rb = Number(img.readBigUInt64BE(Number(img.readBigUInt64BE(48))));
  const end = img.length / 65536;
  const leaky = Buffer.concat([img, Buffer.alloc(65536)]); leaky.writeUInt16BE(1, rb + 2 * end);
  writeFileSync(f('leak.qcow2'), leaky);
  r = tv('check', f('leak.qcow2'));
  assert.equal(r.status, 3, r.stdout);
  assert.match(r.stdout, new RegExp(`Leaked cluster ${end} refcount=1 reference=0\n\n1 leaked clusters were found`));
  assert.equal(qemuStatus('qemu-img', 'check', f('leak.qcow2')).status, 3, 'qemu-img agrees');
  r = tv('check', '-r', 'leaks', f('leak.qcow2'));
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /1 leaked clusters\n {4}0 corruptions\n\nDouble checking the fixed image now...\nNo errors were found/);
  assert.equal(qemuStatus('qemu-img', 'check', f('leak.qcow2')).status, 0, 'qemu-img finds the repaired image clean');
  // Corruption: the header's refcount dropped to 0.
  const bad = Buffer.from(img); bad.writeUInt16BE(0, rb);
  writeFileSync(f('bad.qcow2'), bad);
  r = tv('check', f('bad.qcow2'));
  assert.equal(r.status, 2, r.stdout);
  assert.match(r.stdout, /ERROR cluster 0 refcount=0 reference=1/);
  assert.equal(qemuStatus('qemu-img', 'check', f('bad.qcow2')).status, 2, 'qemu-img agrees');
  writeFileSync(f('r.raw'), new Uint8Array(4096));
  assert.equal(tv('check', f('r.raw')).status, 63);
  writeFileSync(f('trunc.qcow2'), img.subarray(0, 40));
  r = tv('check', '-f', 'qcow2', f('trunc.qcow2'));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /trunc\.qcow2.*too short/);
});

test('img create and convert refuse to overwrite an image QEMU has open', async () => {
  qemu('qemu-img', 'create', '-f', 'qcow2', f('busy.qcow2'), '1M');
  const before = readFileSync(f('busy.qcow2'));
  const holder = spawn('qemu-io', [f('busy.qcow2')], { stdio: ['pipe', 'ignore', 'ignore'] });
  try {
    const st = statSync(f('busy.qcow2'));
    for (let i = 0; i < 200 && procLocks(st.dev, st.ino).length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    writeFileSync(f('busy-src.raw'), new Uint8Array(4096));
    let r = tv('create', '-f', 'raw', f('busy.qcow2'), '1M');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /busy\.qcow2' is locked/);
    r = tv('convert', '-O', 'raw', f('busy-src.raw'), f('busy.qcow2'));
    assert.equal(r.status, 1);
    assert.match(r.stderr, /busy\.qcow2' is locked/);
    assert.ok(readFileSync(f('busy.qcow2')).equals(before), 'the image is untouched');
  } finally { holder.stdin.end(); await new Promise((res) => holder.on('exit', res)); }
});
