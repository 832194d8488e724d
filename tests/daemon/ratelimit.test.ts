/**
 * Disk rate limits through the API: a VM's drive behind a 1 MiB/s token bucket (Firecracker
 * semantics: the bucket starts full), read with dd in the guest; the rate seen from the host
 * (bytes from /metrics over wall time) is within ±10%. PATCH raises it to 4 MiB/s live.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Daemon } from '../../src/daemon/server.js';
import { apiClient, waitConsole } from '../lib/daemon-client.js';
import { guestDir } from '../lib/toolchain.js';

const dir = mkdtempSync(join(tmpdir(), 'typevisor-rate-'));
const daemon = new Daemon({ stateDir: dir, port: 0, env: { ...process.env, TYPEVISOR_GUEST_DIR: guestDir }, log: () => {} });
after(async () => { await daemon.close(); rmSync(dir, { recursive: true, force: true }); });
const MiB = 1 << 20;

test('disk bandwidth limit 1 MiB/s then 4 MiB/s (PATCH, live) within ±10%; host memory ceiling', { timeout: 300_000 }, async () => {
  const base = await daemon.listen();
  const call = apiClient(base, daemon.token);
  const wait = (pattern: string, timeoutMs: number): Promise<void> => waitConsole(call, 'r', pattern, timeoutMs, 40);

  const readBytes = async (): Promise<number> => {
    const m = /typevisor_vm_disk_read_bytes\{vm="r",disk="vda"\} (\d+)/.exec((await call('GET', '/metrics')).text);
    assert.ok(m);
    return Number(m[1]);
  };
  const disk = join(dir, 'disk.raw');
  writeFileSync(disk, Buffer.alloc(48 * MiB));
  const bucket = (rate: number): { size: number; refillTimeMs: number } => ({ size: rate / 4, refillTimeMs: 250 });
  let r = await call('POST', '/v1/vms', { name: 'r', memory: '64M', drives: [{ file: disk }], limits: { disk: { bandwidth: bucket(MiB) } } });
  assert.equal(r.status, 201, r.text);
  r = await call('POST', '/v1/vms', { name: 'bad', drives: [{ file: disk }], limits: { disk: { bandwidth: { size: 0, refillTimeMs: 10 } } } });
  assert.equal(r.status, 400);
  assert.match(r.text, /limits\/disk\/bandwidth\/size/);
  assert.equal((await call('POST', '/v1/vms/r/start')).status, 200);
  await wait('~ # ', 240_000);
  await new Promise((res) => setTimeout(res, 1000)); // the bucket refills after boot-time probing

  /**
   * Read countMiB with four dd readers at once (a request always queued at the limiter) and
   * sample the drive's byte counter from /metrics while they run. The rate is the slope
   * over the steady part (after the bucket's free burst, before the tail), so the guest's
   * time to start dd does not count.
   */
  const measure = async (skipMiB: number, countMiB: number, tag: number, rate: number): Promise<number> => {
    const b0 = await readBytes();
    const part = countMiB / 4;
    const dds = [0, 1, 2, 3].map((k) => `dd if=/dev/vda of=/dev/null bs=64k skip=${(skipMiB + k * part) * 16} count=${part * 16} 2>/dev/null &`).join(' ');
    await call('POST', '/v1/vms/r/console/input', `${dds} wait; echo dd-$((${tag}+1))\n`);
    const samples: Array<[number, number]> = [];
    let done = false;
    const finished = wait(`dd-${tag + 1}`, 120_000).then(() => { done = true; });
    while (!done) {
      samples.push([performance.now(), (await readBytes()) - b0]);
      await new Promise((res) => setTimeout(res, 100));
    }
    await finished;
    const total = (await readBytes()) - b0;
    assert.ok(total >= countMiB * MiB, `read ${total} bytes`);
    const steady = samples.filter(([, b]) => b > rate / 4 + rate / 8 && b < total - rate / 4);
    assert.ok(steady.length >= 10, `${steady.length} samples in the steady part`);
    const [t1, b1] = steady[0], [t2, b2] = steady[steady.length - 1];
    const got = (b2 - b1) / ((t2 - t1) / 1000);
    console.log(`limit ${rate / MiB} MiB/s: ${total} bytes; steady ${b2 - b1} bytes in ${((t2 - t1) / 1000).toFixed(2)} s → ${(got / MiB).toFixed(3)} MiB/s`);
    return got;
  };
  const check = (got: number, rate: number): void => {
    assert.ok(Math.abs(got / rate - 1) <= 0.1, `rate ${(got / MiB).toFixed(3)} MiB/s against ${rate / MiB} MiB/s`);
  };
  check(await measure(0, 4, 100, MiB), MiB);
  assert.equal((await call('PATCH', '/v1/vms/r', { limits: { disk: { bandwidth: bucket(4 * MiB) } } })).status, 200);
  await new Promise((res) => setTimeout(res, 300));
  check(await measure(8, 16, 200, 4 * MiB), 4 * MiB);

  // A host memory ceiling below the runner's RSS: the runner is killed, the VM `crashed`.
  const rss = Number(/typevisor_vm_rss_bytes\{vm="r"\} (\d+)/.exec((await call('GET', '/metrics')).text)![1]);
  assert.ok(rss > 64 * MiB);
  assert.equal((await call('PATCH', '/v1/vms/r', { limits: { hostMemory: Math.floor(rss / 2) } })).status, 200);
  let info: { state: string; lastExit?: { reason: string; message?: string } } = { state: '' };
  for (let i = 0; i < 50 && info.state !== 'crashed'; i++) {
    await new Promise((res) => setTimeout(res, 100));
    info = JSON.parse((await call('GET', '/v1/vms/r')).text) as typeof info;
  }
  assert.equal(info.state, 'crashed');
  assert.equal(info.lastExit?.reason, 'memory');
  assert.match(info.lastExit?.message ?? '', /host memory limit: runner RSS \d+ bytes > \d+/);
});
