/**
 * Network token buckets (Firecracker's per-interface rx/tx rate limiters): frames from the
 * guest leave at the bucket's rate (queued, bounded), frames for the guest are refused
 * while the bucket is empty and retried when it refills; limits change live; counters.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RateLimitedNet } from '../../src/vmm/limited-net.js';
import type { NetBackend, NetReceiver } from '../../src/devices/device.js';

class FakeBackend implements NetBackend {
  sent: number[] = [];
  nic: NetReceiver | null = null;
  retries = 0;
  closed = false;
  attach(nic: NetReceiver): void { this.nic = nic; }
  transmit(frame: Uint8Array): void { this.sent.push(performance.now()); void frame; }
  rxReady(): void { this.retries++; }
  close(): void { this.closed = true; }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('tx: 1000-byte frames leave at 100 kB/s after the initial bucket; a full queue drops and counts', async () => {
  const inner = new FakeBackend();
  const n = new RateLimitedNet(inner, { tx: { bandwidth: { size: 10_000, refillTimeMs: 100 } } });
  n.attach({ receive: () => true });
  const frame = new Uint8Array(1000);
  const t0 = performance.now();
  for (let i = 0; i < 40; i++) n.transmit(frame);
  assert.equal(inner.sent.length, 10, 'the full bucket lets 10 frames out at once');
  while (inner.sent.length < 40 && performance.now() - t0 < 3000) await sleep(10);
  const ms = inner.sent[39] - t0;
  // 30 more frames = 30,000 bytes at 100 bytes/ms: 300 ms.
  assert.ok(ms >= 270 && ms < 600, `40 frames took ${ms.toFixed(0)} ms`);
  assert.deepEqual({ ...n.counters }, { rxBytes: 0, rxPackets: 0, txBytes: 40_000, txPackets: 40, txDropped: 0 });
  // Beyond the 256-frame queue, frames are dropped.
  for (let i = 0; i < 300; i++) n.transmit(frame);
  assert.equal(n.counters.txDropped, 300 - 256 - (inner.sent.length - 40), 'what neither went out nor fits the queue is dropped');
  // Live: no limit any more; the queue drains at once.
  n.update({});
  await sleep(20);
  assert.equal(inner.sent.length + n.counters.txDropped, 340);
  n.close();
  assert.ok(inner.closed);
});

test('tx: the queue is bounded in bytes too (GSO frames are up to 64 KiB)', () => {
  const inner = new FakeBackend();
  const n = new RateLimitedNet(inner, { tx: { bandwidth: { size: 65_536, refillTimeMs: 60_000 } } });
  n.attach({ receive: () => true });
  const big = new Uint8Array(65_000);
  for (let i = 0; i < 100; i++) n.transmit(big);
  assert.equal(inner.sent.length, 1, 'the bucket lets one out');
  // 4 MiB of queue holds 64 of them; the rest are dropped and counted.
  assert.equal(n.counters.txDropped, 100 - 1 - Math.floor((4 << 20) / 65_000));
  n.close();
});

test('rx: refused while the bucket is empty, retried through rxReady when it refills', async () => {
  const inner = new FakeBackend();
  const got: number[] = [];
  const n = new RateLimitedNet(inner, { rx: { ops: { size: 2, refillTimeMs: 100 } } });
  n.attach({ receive: (f) => { got.push(f.length); return true; } });
  const f = new Uint8Array(60);
  assert.equal(inner.nic!.receive(f), true);
  assert.equal(inner.nic!.receive(f), true);
  assert.equal(inner.nic!.receive(f), false, 'the packet bucket is empty: not taken');
  assert.equal(inner.retries, 0);
  await sleep(120);
  assert.equal(inner.retries, 1, 'told to retry once tokens are back');
  assert.equal(inner.nic!.receive(f), true, 'the retried frame goes in');
  assert.deepEqual([n.counters.rxPackets, n.counters.rxBytes], [3, 180]);
  // A guest with no buffers: not counted.
  const m = new RateLimitedNet(new FakeBackend(), {});
  const b = new FakeBackend();
  const m2 = new RateLimitedNet(b, {});
  m2.attach({ receive: () => false });
  assert.equal(b.nic!.receive(f), false);
  assert.equal(m2.counters.rxPackets, 0);
  n.close(); m.close(); m2.close();
});
