import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TokenBucket, RateLimiter, type LimiterClock } from '../../src/vmm/rate-limiter.js';
import { RateLimitedBlock } from '../../src/vmm/limited-block.js';
import type { BlockBackend } from '../../src/devices/device.js';

/** A manual clock: timers fire only when the test advances time. */
class FakeClock implements LimiterClock {
  t = 0;
  private timers: { at: number; cb: () => void; id: number }[] = [];
  private nextId = 1;
  now(): number { return this.t; }
  setTimer(ms: number, cb: () => void): unknown {
    const id = this.nextId++;
    this.timers.push({ at: this.t + ms, cb, id });
    return id;
  }
  clearTimer(h: unknown): void { this.timers = this.timers.filter((x) => x.id !== h); }
  /** Advance to `t`, firing due timers in order. */
  async advance(to: number): Promise<void> {
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at);
      const next = this.timers[0];
      if (!next || next.at > to) break;
      this.timers.shift();
      this.t = next.at;
      next.cb();
      await Promise.resolve();
    }
    this.t = to;
    await new Promise((r) => setImmediate(r));
  }
}

test('token bucket: starts full, refills linearly, never above size', () => {
  const b = new TokenBucket({ size: 1000, refillTimeMs: 1000 }, 0);
  assert.equal(b.tryReduce(1000, 0), true);
  assert.equal(b.tryReduce(1, 0), false);
  assert.equal(b.msUntil(500, 0), 500);
  assert.equal(b.tryReduce(500, 499), false);
  assert.equal(b.tryReduce(500, 500), true);
  // After a long idle time the budget is capped at size.
  assert.equal(b.tryReduce(1000, 100_000), true);
  assert.equal(b.tryReduce(1, 100_000), false);
});

test('token bucket: one-time burst is spent first and never refills', () => {
  const b = new TokenBucket({ size: 100, refillTimeMs: 1000, oneTimeBurst: 250 }, 0);
  assert.equal(b.tryReduce(300, 0), true); // 250 burst + 50 budget
  assert.equal(b.remainingBurst, 0);
  assert.equal(b.tryReduce(50, 0), true);
  assert.equal(b.tryReduce(1, 0), false);
  assert.equal(b.tryReduce(100, 1_000_000), true);
  assert.equal(b.tryReduce(1, 1_000_000), false, 'the burst does not come back');
});

test('token bucket: an oversized request passes a full bucket and leaves debt', () => {
  const b = new TokenBucket({ size: 100, refillTimeMs: 1000 }, 0);
  assert.equal(b.tryReduce(300, 0), true);
  // 200 tokens of debt: a 100-token request waits 3 s (debt + a full bucket).
  assert.equal(b.msUntil(100, 0), 3000);
  assert.equal(b.tryReduce(100, 2999), false);
  assert.equal(b.tryReduce(100, 3000), true);
});

test('rate limiter: long-run throughput equals the refill rate (bytes and ops)', async () => {
  const clock = new FakeClock();
  const lim = new RateLimiter({ bandwidth: { size: 64 * 1024, refillTimeMs: 100 } }, clock); // 640 KiB/s
  let done = 0;
  const all: Promise<void>[] = [];
  for (let i = 0; i < 100; i++) all.push(lim.acquire(16 * 1024).then(() => { done++; }));
  await clock.advance(0);
  assert.equal(done, 4, 'the initial bucket admits 64 KiB at once');
  await clock.advance(1000);
  // 64 KiB at t=0 plus 640 KiB in one second: 44 requests of 16 KiB.
  assert.ok(Math.abs(done - 44) <= 1, `done=${done}`);
  await clock.advance(2500);
  assert.equal(done, 100);
  await Promise.all(all);
  assert.ok(lim.throttled >= 96);

  const ops = new RateLimiter({ ops: { size: 10, refillTimeMs: 1000 } }, clock);
  let n = 0;
  for (let i = 0; i < 50; i++) void ops.acquire(0).then(() => { n++; });
  await clock.advance(clock.t);
  assert.equal(n, 10);
  await clock.advance(clock.t + 2000);
  assert.ok(Math.abs(n - 30) <= 1, `ops n=${n}`);
  ops.close();
  await clock.advance(clock.t);
  assert.equal(n, 50, 'close() releases every waiter');
});

test('rate limiter: FIFO order, and update() changes limits of a waiting queue', async () => {
  const clock = new FakeClock();
  const lim = new RateLimiter({ bandwidth: { size: 100, refillTimeMs: 1000 } }, clock);
  const order: number[] = [];
  assert.equal(lim.tryConsume(100), true);
  void lim.acquire(50).then(() => order.push(1));
  void lim.acquire(10).then(() => order.push(2));
  assert.equal(lim.tryConsume(1), false, 'nothing overtakes the queue');
  await clock.advance(400);
  assert.deepEqual(order, []);
  lim.update({}); // unlimited now
  await clock.advance(400);
  assert.deepEqual(order, [1, 2]);
  assert.equal(lim.unlimited, true);
  assert.throws(() => lim.update({ bandwidth: { size: 0, refillTimeMs: 10 } }), /bandwidth\.size must be a positive integer/);
  assert.throws(() => lim.update({ ops: { size: 5, refillTimeMs: -1 } }), /ops\.refillTimeMs/);
});

test('rate-limited block backend: reads and writes are paced, data passes through', async () => {
  const clock = new FakeClock();
  const data = new Uint8Array(1 << 20);
  const calls: string[] = [];
  const inner: BlockBackend = {
    sizeBytes: data.length, readOnly: false, serial: 'mem',
    read: async (off, dst) => { calls.push(`r${off}`); dst.set(data.subarray(off, off + dst.length)); },
    write: async (off, src) => { calls.push(`w${off}`); data.set(src, off); },
    flush: async () => { calls.push('f'); },
    discard: async () => {}, writeZeroes: async () => {}, close: async () => {},
  };
  const blk = new RateLimitedBlock(inner, new RateLimiter({ bandwidth: { size: 4096, refillTimeMs: 1000 }, ops: { size: 2, refillTimeMs: 1000 } }, clock));
  assert.equal(blk.sizeBytes, 1 << 20);
  const w = blk.write(0, new Uint8Array(4096).fill(7));
  // Admitted: the backend starts in the same synchronous step (an await first would defer it
  // to the microtask queue, which a machine runs only when its run loop yields).
  assert.deepEqual(calls, ['w0'], 'an admitted write reaches the backend at once');
  const r = blk.read(0, new Uint8Array(512));
  assert.deepEqual(calls, ['w0'], 'a refused read waits');
  const f = blk.flush();
  await clock.advance(0);
  assert.deepEqual(calls, ['w0'], 'the read waits for bandwidth');
  await clock.advance(200);
  assert.deepEqual(calls, ['w0', 'r0'], 'after 125 ms the bucket has 512 bytes');
  await clock.advance(600);
  assert.deepEqual(calls, ['w0', 'r0', 'f'], 'flush waited for an op token, not bandwidth');
  await Promise.all([w, r, f]);
});
