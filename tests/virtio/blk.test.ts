/**
 * virtio-blk request handling (Virtio 1.2 §5.2) against an in-memory backend: every request
 * type, header/data/status laid out across descriptors in different ways, range and
 * read-only checks, backend errors, asynchronous completion with wake(), FLUSH ordering
 * after writes, the in-flight bound, and completions after a reset being dropped.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TestDriver, F_NEXT, F_WRITE, F_INDIRECT, EVENT_IDX, INDIRECT } from '../lib/virtio-driver.js';
import { MemDisk } from '../lib/memdisk.js';
import { VirtioBlk } from '../../src/devices/virtio/blk.js';

const T_IN = 0, T_OUT = 1, T_FLUSH = 4, T_GET_ID = 8, T_DISCARD = 11, T_WRITE_ZEROES = 13;
const S_OK = 0, S_IOERR = 1, S_UNSUPP = 2;
const F_RO = 1 << 5;

function setup(opts: { readOnly?: boolean; size?: number } = {}): { d: TestDriver; disk: MemDisk } {
  const disk = new MemDisk(opts.size ?? 1 << 20, { readOnly: opts.readOnly, serial: 'SERIAL-0123456789abcdefXYZ' });
  for (let i = 0; i < disk.data.length; i++) disk.data[i] = (i * 7 + (i >> 9)) & 0xff;
  const d = new TestDriver(new VirtioBlk(disk));
  d.up(EVENT_IDX | INDIRECT, [64]);
  return { d, disk };
}

function header(type: number, sector: number): Uint8Array {
  const h = new Uint8Array(16), v = new DataView(h.buffer);
  v.setUint32(0, type, true); v.setUint32(8, sector >>> 0, true); v.setUint32(12, Math.floor(sector / 2 ** 32), true);
  return h;
}

/** Lay out a request Linux-style: header, data segments, status; returns the status address. */
function request(d: TestDriver, head: number, type: number, sector: number, data: Array<{ addr: number; len: number; write: boolean }>): number {
  const h = d.alloc(16); d.put(h, header(type, sector));
  const st = d.alloc(1); d.put(st, new Uint8Array([0xff]));
  const segs = [{ addr: h, len: 16, write: false }, ...data, { addr: st, len: 1, write: true }];
  segs.forEach((s, i) => d.desc(0, head + i, s.addr, s.len, (s.write ? F_WRITE : 0) | (i < segs.length - 1 ? F_NEXT : 0), head + i + 1));
  return st;
}

test('config space: capacity, seg_max, blk_size, topology, discard limits; RO feature for a read-only disk', () => {
  const { d } = setup({ size: 3 << 20 });
  assert.equal(d.r(0x100), (3 << 20) / 512);
  assert.equal(d.r(0x104), 0);
  assert.equal(d.r(0x10c), 254);
  assert.equal(d.r(0x114), 512);
  assert.equal(d.slot.read(0x118, 1), 3, 'physical_block_exp');
  assert.equal(d.r(0x128), 1, 'max_discard_seg');
  const [lo] = d.deviceFeatures();
  assert.equal(lo & F_RO, 0);
  assert.ok(lo & (1 << 9) && lo & (1 << 13) && lo & (1 << 14) && lo & (1 << 10) && lo & (1 << 6) && lo & (1 << 2));
  const ro = setup({ readOnly: true });
  assert.ok(ro.d.deviceFeatures()[0] & F_RO);
});

test('read across three data segments completes asynchronously and wakes the machine', async () => {
  const { d, disk } = setup();
  const a = d.alloc(512), b = d.alloc(1024), c = d.alloc(512);
  const st = request(d, 0, T_IN, 3, [{ addr: a, len: 512, write: true }, { addr: b, len: 1024, write: true }, { addr: c, len: 512, write: true }]);
  d.post(0, 0);
  assert.equal(d.usedIdx(0), 0, 'not complete before the host I/O');
  // A read asks the run loop to end its slice: a cached read's completion then runs before
  // the guest's next instruction.
  assert.equal(d.slicesEnded, 1);
  await d.settle();
  assert.equal(d.usedIdx(0), 1);
  assert.deepEqual(d.used(0, 0), { id: 0, len: 2049 });
  assert.equal(d.get(st, 1)[0], S_OK);
  const want = disk.data.subarray(3 * 512, 7 * 512);
  assert.deepEqual([...d.get(a, 512), ...d.get(b, 1024), ...d.get(c, 512)], [...want]);
  assert.ok(d.wakes >= 1);
  assert.equal(d.isr & 1, 1);
});

test('write with header and data in one descriptor, then read back through an indirect table', async () => {
  const { d, disk } = setup();
  const buf = d.alloc(16 + 1024);
  d.put(buf, header(T_OUT, 10));
  const payload = new Uint8Array(1024).map((_, i) => (i * 13) & 0xff);
  d.put(buf + 16, payload);
  const st = d.alloc(1);
  d.desc(0, 0, buf, 16 + 1024, F_NEXT, 1);
  d.desc(0, 1, st, 1, F_WRITE);
  d.post(0, 0);
  await d.settle();
  assert.equal(d.get(st, 1)[0], S_OK);
  assert.deepEqual(disk.data.subarray(5120, 6144), payload);
  // Read: data and status in one writable descriptor, inside an indirect table.
  const t = d.alloc(32), h = d.alloc(16), io = d.alloc(1025);
  d.put(h, header(T_IN, 10));
  d.desc(0, 0, h, 16, F_NEXT, 1, t);
  d.desc(0, 1, io, 1025, F_WRITE, 0, t);
  d.desc(0, 2, t, 32, F_INDIRECT);
  d.post(0, 2);
  await d.settle();
  assert.deepEqual(d.get(io, 1024), payload);
  assert.equal(d.get(io + 1024, 1)[0], S_OK);
  assert.deepEqual(d.used(0, 1), { id: 2, len: 1025 });
});

test('GET_ID writes the first 20 bytes of the serial', async () => {
  const { d } = setup();
  const id = d.alloc(20);
  const st = request(d, 0, T_GET_ID, 0, [{ addr: id, len: 20, write: true }]);
  d.post(0, 0);
  await d.settle();
  assert.equal(new TextDecoder().decode(d.get(id, 20)), 'SERIAL-0123456789abc');
  assert.equal(d.get(st, 1)[0], S_OK);
});

test('out-of-range, unaligned, read-only and unknown requests get IOERR/UNSUPP; a backend error is IOERR', async () => {
  const { d, disk } = setup({ size: 64 * 512 });
  const buf = d.alloc(1024);
  const cases: Array<[string, number, number, number, boolean, number]> = [
    ['read past the end', T_IN, 63, 1024, true, S_IOERR],
    ['write past the end', T_OUT, 64, 512, false, S_IOERR],
    ['sector 2^40', T_IN, 2 ** 40, 512, true, S_IOERR],
    ['partial sector', T_IN, 0, 100, true, S_IOERR],
    ['unknown type 99', 99, 0, 512, true, S_UNSUPP],
  ];
  for (const [name, type, sector, len, write, want] of cases) {
    const st = request(d, 0, type, sector, [{ addr: buf, len, write }]);
    d.post(0, 0);
    await d.settle();
    assert.equal(d.get(st, 1)[0], want, name);
    assert.equal(d.status & 64, 0, `${name}: a bad request is not a bad ring`);
  }
  disk.failNext = true;
  const st = request(d, 0, T_IN, 0, [{ addr: buf, len: 512, write: true }]);
  d.post(0, 0);
  await d.settle();
  assert.equal(d.get(st, 1)[0], S_IOERR);

  const ro = setup({ readOnly: true });
  const before = ro.disk.data.slice();
  for (const type of [T_OUT, T_DISCARD, T_WRITE_ZEROES]) {
    const b = ro.d.alloc(512);
    const s = request(ro.d, 0, type, 0, [{ addr: b, len: type === T_OUT ? 512 : 16, write: false }]);
    if (type !== T_OUT) ro.d.put(b, new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]));
    ro.d.post(0, 0);
    await ro.d.settle();
    assert.equal(ro.d.get(s, 1)[0], S_IOERR, `read-only type ${type}`);
  }
  assert.deepEqual(ro.disk.data, before);
});

test('a request over 32 MiB gets IOERR without a host buffer of its size', async () => {
  const disk = new MemDisk(64 << 20);
  const d = new TestDriver(new VirtioBlk(disk), 48 << 20);
  d.up(0, [64]);
  const big = d.alloc(33 << 20);
  const st = request(d, 0, T_IN, 0, [{ addr: big, len: 33 << 20, write: true }]);
  d.post(0, 0);
  await d.settle();
  assert.equal(d.get(st, 1)[0], S_IOERR);
  assert.equal(d.status & 64, 0);
});

test('a request with no status byte or a short header is a malformed ring (NEEDS_RESET)', () => {
  const { d } = setup();
  const h = d.alloc(16); d.put(h, header(T_IN, 0));
  d.desc(0, 0, h, 16, 0);
  d.post(0, 0);
  assert.equal(d.status & 64, 64);
  const e = setup();
  const s = e.d.alloc(8);
  e.d.desc(0, 0, s, 8, F_NEXT, 1); e.d.desc(0, 1, s, 1, F_WRITE);
  e.d.post(0, 0);
  assert.equal(e.d.status & 64, 64);
});

test('discard and write-zeroes (with and without UNMAP) reach the backend; bad flags are UNSUPP', async () => {
  const { d, disk } = setup();
  const seg = (sector: number, n: number, flags: number): Uint8Array => {
    const b = new Uint8Array(16), v = new DataView(b.buffer);
    v.setUint32(0, sector, true); v.setUint32(8, n, true); v.setUint32(12, flags, true);
    return b;
  };
  const run = async (type: number, body: Uint8Array): Promise<number> => {
    const b = d.alloc(16); d.put(b, body);
    const st = request(d, 0, type, 0, [{ addr: b, len: 16, write: false }]);
    d.post(0, 0);
    await d.settle();
    return d.get(st, 1)[0];
  };
  assert.equal(await run(T_DISCARD, seg(8, 8, 0)), S_OK);
  assert.deepEqual(disk.discards, [[4096, 4096]]);
  assert.equal(await run(T_WRITE_ZEROES, seg(16, 4, 1)), S_OK);
  assert.equal(await run(T_WRITE_ZEROES, seg(32, 2, 0)), S_OK);
  assert.deepEqual(disk.zeroes, [[8192, 2048, true], [16384, 1024, false]]);
  assert.ok(disk.data.subarray(8192, 8192 + 2048).every((x) => x === 0));
  assert.equal(await run(T_DISCARD, seg(0, 1, 1)), S_UNSUPP, 'UNMAP on discard');
  assert.equal(await run(T_WRITE_ZEROES, seg(0, 1, 2)), S_UNSUPP, 'unknown flag');
  assert.equal(await run(T_DISCARD, seg(4096, 8, 0)), S_IOERR, 'past the end');
});

test('FLUSH completes only after the writes submitted before it, then the backend flush', async () => {
  const { d, disk } = setup();
  disk.writeDelayMs = 30;
  const data = d.alloc(4096);
  request(d, 0, T_OUT, 0, [{ addr: data, len: 4096, write: false }]);
  request(d, 3, T_OUT, 8, [{ addr: data, len: 4096, write: false }]);
  const st = request(d, 6, T_FLUSH, 0, []);
  d.post(0, 0, false); d.post(0, 3, false); d.post(0, 6);
  await d.settle();
  assert.equal(d.usedIdx(0), 0, 'slow writes still running');
  await d.settle(80);
  assert.equal(d.usedIdx(0), 3);
  assert.deepEqual(disk.flushSawWrites, [2], 'the flush started after both writes completed');
  assert.equal(disk.flushes, 1);
  assert.equal(d.get(st, 1)[0], S_OK);
  assert.equal(d.used(0, 2).id, 6, 'the flush completes last');
});

test('in-flight requests are bounded (64); the rest are taken as completions free slots', async () => {
  const disk = new MemDisk(1 << 20);
  const d = new TestDriver(new VirtioBlk(disk));
  d.up(EVENT_IDX, [256]);
  disk.writeDelayMs = 10;
  const reqs = 120;
  for (let k = 0; k < reqs; k++) {
    const b = d.alloc(16 + 512); d.put(b, header(T_OUT, k));
    const st = d.alloc(1);
    d.desc(0, 2 * k, b, 16 + 512, F_NEXT, 2 * k + 1);
    d.desc(0, 2 * k + 1, st, 1, F_WRITE);
    d.post(0, 2 * k, k === reqs - 1);
  }
  assert.equal(disk.active, 64);
  const vb = d.slot.device as VirtioBlk;
  assert.equal(vb.busy, true);
  await vb.drain();
  assert.equal(vb.busy, false);
  assert.equal(d.usedIdx(0), reqs);
  assert.equal(disk.writesDone, reqs);
  assert.equal(disk.maxActive, 64);
});

test('completions after a device reset are dropped: the old rings are not written', async () => {
  const { d, disk } = setup();
  disk.writeDelayMs = 20;
  const data = d.alloc(512);
  const st = request(d, 0, T_OUT, 0, [{ addr: data, len: 512, write: false }]);
  d.post(0, 0);
  d.w(0x70, 0);
  await d.settle(50);
  assert.equal(d.usedIdx(0), 0);
  assert.equal(d.get(st, 1)[0], 0xff);
  assert.equal(d.isr, 0);
});

test('a FLUSH with no write in flight reaches the backend at once; one after a write waits for it', async () => {
  const { d, disk } = setup();
  const st = request(d, 0, T_FLUSH, 0, []);
  d.post(0, 0);
  // (Started from the microtask queue, the fsync would wait for the machine's run loop to yield.)
  assert.deepEqual(disk.flushSawWrites, [0], 'flush started in the notify');
  await d.settle();
  assert.equal(d.get(st, 1)[0], S_OK);
  disk.writeDelayMs = 20;
  const buf = d.alloc(512);
  request(d, 4, T_OUT, 1, [{ addr: buf, len: 512, write: false }]);
  d.post(0, 4);
  const st2 = request(d, 8, T_FLUSH, 0, []);
  d.post(0, 8);
  assert.deepEqual(disk.flushSawWrites, [0], 'the second flush waits for the write');
  await d.settle();
  await new Promise((r) => setTimeout(r, 40));
  await d.settle();
  assert.deepEqual(disk.flushSawWrites, [0, 1], 'and then sees it done');
  assert.equal(d.get(st2, 1)[0], S_OK);
});
