/**
 * The virtio-mmio transport and split virtqueues with hand-built rings (Virtio 1.2 §4.2,
 * §2.7): registers, feature negotiation, reset, interrupts, EVENT_IDX and NO_INTERRUPT
 * suppression, indirect tables, and every kind of malformed ring ending in
 * DEVICE_NEEDS_RESET without a host exception or a write outside the chain's buffers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TestDriver, RAM_BASE, RAM_SIZE, F_NEXT, F_WRITE, F_INDIRECT, EVENT_IDX, INDIRECT } from '../lib/virtio-driver.js';
import { VirtioRng } from '../../src/devices/virtio/rng.js';
import { VirtioMmio } from '../../src/devices/virtio/mmio.js';
import { VirtioBlk } from '../../src/devices/virtio/blk.js';
import { VirtioConsole } from '../../src/devices/virtio/console.js';
import { MemDisk } from '../lib/memdisk.js';
import { prng } from '../lib/prng.js';

const NEEDS_RESET = 64;

function rngDriver(features = 0): TestDriver {
  const d = new TestDriver(new VirtioRng());
  d.up(features, [8]);
  return d;
}

test('registers: magic, version 2, device ID, vendor; an empty slot answers device ID 0', () => {
  const d = new TestDriver(new VirtioRng());
  assert.equal(d.r(0x000), 0x74726976);
  assert.equal(d.r(0x004), 2);
  assert.equal(d.r(0x008), 4);
  assert.equal(d.r(0x00c), 0x554d4551);
  d.w(0x30, 0);
  assert.equal(d.r(0x034), 64, 'QueueNumMax');
  d.w(0x30, 1);
  assert.equal(d.r(0x034), 0, 'no queue 1');
  const empty = new TestDriver(null);
  assert.equal(empty.r(0x008), 0);
  assert.equal(empty.r(0x000), 0x74726976);
  empty.w(0x070, 0xf);
  assert.equal(empty.r(0x070), 0);
});

test('feature negotiation: VERSION_1 required, no bits beyond the offer, EVENT_IDX and INDIRECT_DESC offered', () => {
  const d = new TestDriver(new VirtioRng());
  const [lo, hi] = d.deviceFeatures();
  assert.equal(hi, 1, 'VIRTIO_F_VERSION_1');
  assert.ok(lo & EVENT_IDX && lo & INDIRECT);
  assert.equal(d.negotiate(0, 0), false, 'legacy driver refused');
  assert.equal(d.negotiate(1 << 5), false, 'unoffered feature refused');
  assert.equal(d.negotiate(EVENT_IDX | INDIRECT), true);
  // Features are frozen after FEATURES_OK.
  d.w(0x24, 0); d.w(0x20, 0);
  d.w(0x70, d.status | 4);
  assert.equal(d.status, 1 | 2 | 4 | 8);
});

test('rng: a writable buffer is filled; used-buffer interrupt; ACK lowers the line; reset clears everything', () => {
  const d = rngDriver();
  const buf = d.alloc(64);
  d.desc(0, 0, buf, 64, F_WRITE);
  d.post(0, 0);
  assert.equal(d.usedIdx(0), 1);
  assert.deepEqual(d.used(0, 0), { id: 0, len: 64 });
  assert.ok(d.get(buf, 64).some((b) => b !== 0));
  assert.equal(d.isr, 1);
  assert.equal(d.irqLevel, true);
  d.ack(1);
  assert.equal(d.isr, 0);
  assert.equal(d.irqLevel, false);
  // Two buffers give different bytes.
  d.desc(0, 1, buf + 64, 64, F_WRITE);
  d.post(0, 1);
  assert.notDeepEqual(d.get(buf, 64), d.get(buf + 64, 64));
  d.w(0x70, 0);
  assert.equal(d.status, 0);
  assert.equal(d.isr, 0);
  assert.equal(d.irqLevel, false);
  d.w(0x30, 0);
  assert.equal(d.r(0x44), 0, 'queue not ready after reset');
});

test('indirect descriptors: a table of two writable buffers', () => {
  const d = rngDriver(INDIRECT);
  const table = d.alloc(32), a = d.alloc(16), b = d.alloc(16);
  d.desc(0, 0, a, 16, F_WRITE | F_NEXT, 1, table);
  d.desc(0, 1, b, 16, F_WRITE, 0, table);
  d.desc(0, 0, table, 32, F_INDIRECT);
  d.post(0, 0);
  assert.deepEqual(d.used(0, 0), { id: 0, len: 32 });
  assert.ok(d.get(a, 16).some((x) => x !== 0) && d.get(b, 16).some((x) => x !== 0));
  assert.equal(d.status & NEEDS_RESET, 0);
});

test('EVENT_IDX: interrupts only when the used index passes used_event; avail_event tracks the device', () => {
  const d = rngDriver(EVENT_IDX);
  const buf = d.alloc(16);
  for (let i = 0; i < 8; i++) d.desc(0, i, buf, 16, F_WRITE);
  d.usedEvent(0, 2); // interrupt when used idx goes past 2 (i.e. entry 2 is used)
  d.post(0, 0); // first notification after setup always signals
  assert.equal(d.isr, 1); d.ack();
  d.post(0, 1);
  assert.equal(d.isr, 0, 'used idx 2: used_event 2 not yet passed');
  assert.equal(d.availEvent(0), 2);
  d.post(0, 2);
  assert.equal(d.isr, 1, 'used idx 3 passed used_event 2');
  d.ack();
  d.post(0, 3);
  assert.equal(d.isr, 0, 'used_event stale');
  assert.equal(d.usedIdx(0), 4);
});

test('without EVENT_IDX, VIRTQ_AVAIL_F_NO_INTERRUPT suppresses interrupts', () => {
  const d = rngDriver();
  const buf = d.alloc(16);
  d.desc(0, 0, buf, 16, F_WRITE);
  d.availFlags(0, 1);
  d.post(0, 0);
  assert.equal(d.usedIdx(0), 1);
  assert.equal(d.isr, 0);
  d.availFlags(0, 0);
  d.post(0, 0);
  assert.equal(d.isr, 1);
});

/** Each builds a malformed chain at head 0 of an 8-entry queue. */
const BAD: Array<[string, (d: TestDriver) => void]> = [
  ['buffer outside RAM', (d) => d.desc(0, 0, RAM_BASE + RAM_SIZE, 16, F_WRITE)],
  ['buffer crossing the end of RAM', (d) => d.desc(0, 0, RAM_BASE + RAM_SIZE - 8, 16, F_WRITE)],
  ['buffer below RAM (MMIO)', (d) => d.desc(0, 0, 0x1000_0000, 16, F_WRITE)],
  ['address above 2^53', (d) => d.desc(0, 0, 2 ** 60, 16, F_WRITE)],
  ['huge length', (d) => d.desc(0, 0, RAM_BASE, 0xffff_ffff, F_WRITE)],
  ['loop of two', (d) => { const b = d.alloc(16); d.desc(0, 0, b, 8, F_WRITE | F_NEXT, 1); d.desc(0, 1, b, 8, F_WRITE | F_NEXT, 0); }],
  ['self loop', (d) => { const b = d.alloc(16); d.desc(0, 0, b, 8, F_WRITE | F_NEXT, 0); }],
  ['next out of the table', (d) => { const b = d.alloc(16); d.desc(0, 0, b, 8, F_WRITE | F_NEXT, 8); }],
  ['readable after writable', (d) => { const b = d.alloc(16); d.desc(0, 0, b, 8, F_WRITE | F_NEXT, 1); d.desc(0, 1, b, 8, 0); }],
  ['indirect with NEXT', (d) => { const t = d.alloc(16); d.desc(0, 0, d.alloc(8), 8, F_WRITE, 0, t); d.desc(0, 0, t, 16, F_INDIRECT | F_NEXT, 1); }],
  ['indirect table not a multiple of 16', (d) => { const t = d.alloc(32); d.desc(0, 0, d.alloc(8), 8, F_WRITE, 0, t); d.desc(0, 0, t, 24, F_INDIRECT); }],
  ['indirect table of length 0', (d) => d.desc(0, 0, d.alloc(16), 0, F_INDIRECT)],
  ['indirect table outside RAM', (d) => d.desc(0, 0, RAM_BASE + RAM_SIZE - 16, 32, F_INDIRECT)],
  ['nested indirect', (d) => { const t = d.alloc(16); d.desc(0, 0, t, 16, F_INDIRECT, 0, t); d.desc(0, 0, t, 16, F_INDIRECT); }],
  ['loop inside an indirect table', (d) => { const t = d.alloc(32), b = d.alloc(8); d.desc(0, 0, b, 8, F_WRITE | F_NEXT, 1, t); d.desc(0, 1, b, 8, F_WRITE | F_NEXT, 0, t); d.desc(0, 0, t, 32, F_INDIRECT); }],
  ['indirect next beyond its table', (d) => { const t = d.alloc(32), b = d.alloc(8); d.desc(0, 0, b, 8, F_WRITE | F_NEXT, 2, t); d.desc(0, 1, b, 8, F_WRITE, 0, t); d.desc(0, 0, t, 32, F_INDIRECT); }],
  ['indirect table longer than the queue', (d) => { const t = d.alloc(16 * 9); for (let i = 0; i < 9; i++) d.desc(0, i, d.alloc(8), 8, F_WRITE | (i < 8 ? F_NEXT : 0), i + 1, t); d.desc(0, 0, t, 16 * 9, F_INDIRECT); }],
];

for (const [name, build] of BAD) {
  test(`malformed ring: ${name} → DEVICE_NEEDS_RESET, config interrupt, nothing written`, () => {
    const d = rngDriver(INDIRECT | EVENT_IDX);
    build(d);
    d.post(0, 0, false);
    const before = d.bus.u8.slice();
    assert.doesNotThrow(() => d.w(0x50, 0));
    assert.equal(d.status & NEEDS_RESET, NEEDS_RESET);
    assert.equal(d.isr & 2, 2);
    assert.equal(d.irqLevel, true);
    assert.equal(d.usedIdx(0), 0, 'nothing used');
    // Only the avail_event field may have changed.
    const changed: number[] = [];
    for (let i = 0; i < before.length; i++) if (before[i] !== d.bus.u8[i]) changed.push(i);
    const ae = d.bus.ramOffset(d.qbase[0] + 0x2000 + 4 + 8 * 8, 2);
    assert.ok(changed.every((i) => i === ae || i === ae + 1), `bytes changed at ${changed.slice(0, 4).join(',')}`);
    // A failed device ignores further notifications, and a reset brings it back.
    d.post(0, 0);
    assert.equal(d.usedIdx(0), 0);
    d.up(0, [8]);
    assert.equal(d.status & NEEDS_RESET, 0);
    const b = d.alloc(16);
    d.desc(0, 0, b, 16, F_WRITE);
    d.post(0, 0);
    assert.deepEqual(d.used(0, 0), { id: 0, len: 16 });
  });
}

test('malformed ring: head index ≥ queue size, and an available index more than a queue ahead', () => {
  const d = rngDriver();
  d.post(0, 8);
  assert.equal(d.status & NEEDS_RESET, NEEDS_RESET);
  const e = rngDriver();
  e.setAvailIdx(0, 9); e.w(0x50, 0);
  assert.equal(e.status & NEEDS_RESET, NEEDS_RESET);
});

test('QueueReady with misplaced rings → DEVICE_NEEDS_RESET', () => {
  const cases: Array<[string, number, { desc: number; avail: number; used: number }]> = [
    ['size not a power of 2', 6, { desc: RAM_BASE, avail: RAM_BASE + 0x1000, used: RAM_BASE + 0x2000 }],
    ['size above QueueNumMax', 128, { desc: RAM_BASE, avail: RAM_BASE + 0x1000, used: RAM_BASE + 0x2000 }],
    ['misaligned descriptor table', 8, { desc: RAM_BASE + 8, avail: RAM_BASE + 0x1000, used: RAM_BASE + 0x2000 }],
    ['used ring outside RAM', 8, { desc: RAM_BASE, avail: RAM_BASE + 0x1000, used: RAM_BASE + RAM_SIZE - 8 }],
    ['avail ring in MMIO space', 8, { desc: RAM_BASE, avail: 0x1000_0000, used: RAM_BASE + 0x2000 }],
  ];
  for (const [name, num, a] of cases) {
    const d = new TestDriver(new VirtioRng());
    assert.ok(d.negotiate(0));
    d.setupQueue(0, num, a);
    assert.equal(d.status & NEEDS_RESET, NEEDS_RESET, name);
    d.w(0x30, 0);
    assert.equal(d.r(0x44), 0, `${name}: queue not ready`);
  }
});

test('random rings and register writes never throw and never write outside the buffers the guest named', () => {
  const rand = prng(0x5eed);
  for (let round = 0; round < 300; round++) {
    const d = rngDriver(rand() & 1 ? INDIRECT | EVENT_IDX : 0);
    const table = d.qbase[0];
    // Fill the descriptor table and avail ring with garbage, biased towards RAM addresses.
    for (let i = 0; i < 8; i++) {
      const addr = rand() & 3 ? RAM_BASE + (rand() % (RAM_SIZE + 0x1000)) : rand() * 2 ** (rand() % 24);
      d.desc(0, i, addr, rand() & 1 ? rand() % 5000 : rand(), rand() & 7, rand() & 15, table);
    }
    for (let k = 0; k < 1 + (rand() % 3); k++) d.post(0, rand() & 15, false);
    assert.doesNotThrow(() => {
      d.w(0x50, 0);
      for (let k = 0; k < 4; k++) d.w((rand() % 0x40) * 4, rand());
      d.w(0x50, rand() & 3);
    });
    assert.ok(d.status === 0 || (d.status & 0xf) !== 0);
  }
});

test('random rings for virtio-blk (async completions) and virtio-console never throw', async () => {
  const rand = prng(0xb10c);
  let completed = 0, failed = 0;
  for (let round = 0; round < 150; round++) {
    const kind = round % 2;
    let out = 0;
    const dev = kind === 0 ? new VirtioBlk(new MemDisk(64 << 10)) : new VirtioConsole({ write: (b) => { out += b.length; } });
    const d = new TestDriver(dev);
    d.up(rand() & 1 ? INDIRECT | EVENT_IDX : 0, kind === 0 ? [16] : [8, 8]);
    for (let q = 0; q < (kind === 0 ? 1 : 2); q++) {
      for (let i = 0; i < 8; i++) {
        const addr = rand() & 3 ? RAM_BASE + 0x20_0000 + (rand() % 0x1000) : rand() * 2 ** (rand() % 24);
        // Valid-looking blk headers now and then.
        if (kind === 0) d.put(RAM_BASE + 0x20_0000 + 0x400 * i, new Uint8Array([rand() % 16, 0, 0, 0, 0, 0, 0, 0, rand() & 127, 0, 0, 0, 0, 0, 0, 0]));
        if (rand() % 8) {
          // Mostly sane chains of three (header, data, status) starting at even heads...
          const k = i % 3;
          d.desc(q, i, RAM_BASE + 0x20_0000 + 0x400 * i, k === 0 ? 16 : k === 1 ? 512 : 1, (k < 2 ? F_NEXT : 0) | (k > 0 || kind === 1 ? F_WRITE : 0), i + 1);
        } else {
          // ...with garbage mixed in.
          d.desc(q, i, addr, rand() & 1 ? rand() % 1100 : rand(), rand() & 7, rand() & 15);
        }
      }
      for (let k = 0; k < 1 + (rand() % 3); k++) d.post(q, rand() % 16 ? 3 * (rand() % 2) : rand() & 15, false);
    }
    assert.doesNotThrow(() => {
      d.w(0x50, 0);
      d.w(0x50, 1);
      if (dev instanceof VirtioConsole) dev.receive(new Uint8Array(rand() % 300));
    });
    await d.settle();
    if (d.usedIdx(0) > 0 || (kind === 1 && d.usedIdx(1) > 0)) completed++;
    if (d.status & NEEDS_RESET) failed++;
    assert.ok(out >= 0);
  }
  // The generator reaches both outcomes: requests completed and rings refused.
  assert.ok(completed > 10 && failed > 10, `completed ${completed}, failed ${failed}`);
});

test('save/load: a transport restored from plain data continues the same rings', () => {
  const d = rngDriver(EVENT_IDX);
  const buf = d.alloc(16);
  d.desc(0, 0, buf, 16, F_WRITE);
  d.post(0, 0); d.post(0, 0);
  const state = structuredClone(d.slot.save());
  assert.equal(JSON.parse(JSON.stringify(state)).queues[0].usedIdx, 2);
  const slot2 = new VirtioMmio(0, d.bus, { set() {} }, () => {});
  slot2.plug(new VirtioRng());
  slot2.load(state);
  assert.equal(slot2.read(0x70, 4), d.status);
  slot2.write(0x64, 4, 3);
  // Post through the old driver view (same RAM), notify the new transport.
  d.post(0, 0, false);
  slot2.write(0x50, 4, 0);
  assert.equal(d.usedIdx(0), 3);
  assert.throws(() => slot2.load({ ...state, v: 2 as 1 }), /version/);
});
