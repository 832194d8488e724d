/**
 * Guest time: the host-paced default and the virtual clock (QEMU's -icount), in which time
 * advances only with retired instructions and a WFI sleep skips to the next deadline.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { GuestClock } from '../../src/machine/clock.js';
import { buildElf } from '../lib/toolchain.js';
import { runBare } from '../lib/bare.js';

test('virtual clock: 2^shift ns per instruction, mtime writes, skipping ahead, pause, save and load', () => {
  let insns = 0;
  const c = new GuestClock(() => { throw new Error('the virtual clock must not read the host clock'); }, { kind: 'virtual', shift: 4 });
  c.countInstructions(() => insns);
  assert.equal(c.now(), 0);
  insns = 1000;                    // 1000 x 16 ns = 16 us = 160 ticks of 100 ns
  assert.equal(c.now(), 160);
  c.set(5000);
  insns += 100;
  assert.equal(c.now(), 5016);
  c.advanceTo(9000);
  assert.equal(c.now(), 9000);
  c.advanceTo(100);
  assert.equal(c.now(), 9000, 'never backwards');
  const s = c.save();
  assert.deepEqual(s, { v: 1, ticks: 9000 });
  let other = 1000;
  const d = new GuestClock(() => 0, { kind: 'virtual', shift: 4 });
  d.countInstructions(() => other);
  d.load(s);
  assert.equal(d.now(), 9000);
  other += 100;
  assert.equal(d.now(), 9016);
  assert.throws(() => d.load({ v: 2, ticks: 0 } as unknown as typeof s), /version/);
  // Instructions until a deadline: exact near, bounded far (a guest may set stimecmp to ~2^64).
  assert.equal(d.instructionsUntil(d.now()), 0);
  assert.equal(d.instructionsUntil(d.now() + 16), 100);
  assert.equal(d.instructionsUntil(d.now() + 17), 107, 'the first instruction at or past the deadline');
  assert.equal(d.instructionsUntil(2 ** 63), 2 ** 40);
  assert.equal(d.instructionsUntil(Infinity), Infinity);
  assert.throws(() => new GuestClock(() => 0, { kind: 'virtual', shift: 11 }), /shift/);
});

test('host clock: follows the host; pause() stops guest time and resume() continues from there', () => {
  let ms = 100;
  const c = new GuestClock(() => ms);
  ms += 2;
  assert.equal(c.now(), 20000);
  c.pause();
  ms += 50;
  assert.equal(c.now(), 20000, 'paused');
  c.resume();
  ms += 1;
  assert.equal(c.now(), 30000);
});

const WFI_PROGRAM = String.raw`
  .section .text.init
  .globl _start
_start:
  li s0, 0x200bff8            # mtime
  li s1, 0x2004000            # mtimecmp
  ld s2, 0(s0)
  li t0, 100000000            # 10 s of guest time
  add t0, s2, t0
  sd t0, 0(s1)
  li t0, 1 << 7
  csrs mie, t0                # MTIE (mstatus.MIE stays 0: WFI wakes, no trap)
1: wfi
  csrr t0, mip
  andi t0, t0, 1 << 7
  beqz t0, 1b
  ld s3, 0(s0)
  sub a0, s3, s2
  li t0, 0x10000000
  li t1, 60
2: srl t2, a0, t1
  andi t2, t2, 15
  addi t2, t2, '0'
  li t3, '9'
  ble t2, t3, 3f
  addi t2, t2, 'a' - '9' - 1
3: sb t2, 0(t0)
  addi t1, t1, -4
  bgez t1, 2b
  li t1, 0x100000
  li t2, 0x5555
  sw t2, 0(t1)
4: j 4b
`;

test('virtual clock: a 10 s WFI sleep is skipped, not waited; runs repeat exactly', { timeout: 60_000 }, async () => {
  const elf = readFileSync(await buildElf({ name: 'wfi-virtual', sources: { 'w.S': WFI_PROGRAM } }));
  const t0 = performance.now();
  const a = await runBare(elf, { clock: { kind: 'virtual', shift: 4 }, timeoutMs: 20_000 });
  const wall = performance.now() - t0;
  assert.equal(a.reason, 'poweroff', a.message);
  const slept = BigInt('0x' + a.console);
  assert.ok(slept >= 100_000_000n && slept < 100_100_000n, `slept ${slept} ticks`);
  assert.ok(wall < 5000, `took ${wall} ms of wall time: the sleep was waited, not skipped`);
  const b = await runBare(elf, { clock: { kind: 'virtual', shift: 4 }, timeoutMs: 20_000 });
  assert.equal(b.console, a.console, 'deterministic');
});

test('yieldToHost: MessageChannel when setImmediate is absent (browsers clamp setTimeout(0) to 4 ms)', async () => {
  const { yieldToHost } = await import('../../src/machine/machine.js');
  const g = globalThis as { setImmediate?: unknown; MessageChannel: typeof MessageChannel };
  const saved = g.setImmediate, SavedChannel = g.MessageChannel;
  let posts = 0;
  class CountingChannel extends SavedChannel {
    constructor() {
      super();
      const post = this.port2.postMessage.bind(this.port2);
      this.port2.postMessage = (m: unknown) => { posts++; post(m); };
    }
  }
  const keepAlive = setInterval(() => {}, 1000); // the machine's port is unref'd in Node
  try {
    g.setImmediate = undefined;
    g.MessageChannel = CountingChannel;
    for (let i = 0; i < 20; i++) await yieldToHost();
  } finally {
    g.setImmediate = saved;
    g.MessageChannel = SavedChannel;
    clearInterval(keepAlive);
  }
  assert.equal(posts, 20, 'every yield went through the channel');
});
