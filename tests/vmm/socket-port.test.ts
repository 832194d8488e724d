/**
 * The runner protocol over a Unix socket (src/vmm/socket-port.ts): messages both ways, and
 * frames as large as guest RAM (a snapshot or a migration round) arrive whole and in time,
 * split into the socket's small chunks. Frames used to be joined chunk by chunk (quadratic)
 * and capped at 16 MiB, which hung a 64 MiB guest's migration.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RunnerSocketServer, SocketPort, connectRunner } from '../../src/vmm/socket-port.js';
import type { FromRunner, ToRunner } from '../../src/vmm/protocol.js';

const dir = mkdtempSync(join(tmpdir(), 'tv-sock-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('socket port: messages both ways; a 96 MiB frame arrives whole, quickly', { timeout: 60_000 }, async () => {
  const path = join(dir, 'r.sock');
  let server!: RunnerSocketServer;
  await new Promise<void>((resolve, reject) => { server = new RunnerSocketServer(path, resolve, reject); });
  const fromManager: ToRunner[] = [];
  server.onMessage((m) => fromManager.push(m));
  const port = new SocketPort<FromRunner, ToRunner>(await connectRunner(path, 5000));
  const got: FromRunner[] = [];
  const arrived = new Promise<void>((resolve) => port.onMessage((m) => { got.push(m); if (got.length === 2) resolve(); }));
  port.post({ type: 'stats', id: 7 });
  const big = new Uint8Array(96 << 20);
  for (let i = 0; i < big.length; i += 4096) big[i] = (i >>> 12) & 0xff;
  const t0 = performance.now();
  server.post({ type: 'console', data: Uint8Array.of(1, 2, 3) });
  server.post({ type: 'console', data: big });
  await arrived;
  const ms = performance.now() - t0;
  assert.deepEqual(got[0], { type: 'console', data: Uint8Array.of(1, 2, 3) });
  const m = got[1] as Extract<FromRunner, { type: 'console' }>;
  assert.equal(m.data.length, big.length);
  for (let i = 0; i < big.length; i += 4096) if (m.data[i] !== big[i]) assert.fail(`byte ${i} differs`);
  console.log(`# 96 MiB frame in ${ms.toFixed(0)} ms`);
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(fromManager, [{ type: 'stats', id: 7 }]);
  port.close();
  server.close();
});
