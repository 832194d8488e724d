/**
 * The long test: 8 VMs booted concurrently under one daemon, each to its prompt, a command
 * run in each through the API, then kill -9 of one runner while the others keep answering.
 * About a minute of both cores, so it runs alone: `npm test` runs it last (`npm run test:many`,
 * TYPEVISOR_LONG=1), after the suites that measure time; in the parallel run it reports itself
 * as skipped.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Daemon } from '../../src/daemon/server.js';
import { apiClient, waitConsole } from '../lib/daemon-client.js';
import { guestDir } from '../lib/toolchain.js';

const N = 8;
const LONG = process.env.TYPEVISOR_LONG === '1';
const dir = mkdtempSync(join(tmpdir(), 'typevisor-many-'));
const daemon = new Daemon({ stateDir: dir, port: 0, env: { ...process.env, TYPEVISOR_GUEST_DIR: guestDir }, log: () => {} });
after(async () => { await daemon.close(); rmSync(dir, { recursive: true, force: true }); });

test(`${N} VMs boot concurrently under one daemon; one killed, the others answer`, { skip: LONG ? false : 'runs alone afterwards: npm run test:many (TYPEVISOR_LONG=1)', timeout: 1_800_000 }, async () => {
  const base = await daemon.listen();
  const call = apiClient(base, daemon.token);
  const wait = (name: string, pattern: string, timeoutMs: number): Promise<void> => waitConsole(call, name, pattern, timeoutMs);

  const names = Array.from({ length: N }, (_, i) => `vm${i}`);
  const t0 = performance.now();
  for (const n of names) {
    assert.equal((await call('POST', '/v1/vms', { name: n, memory: '64M' })).status, 201);
    assert.equal((await call('POST', `/v1/vms/${n}/start`)).status, 200);
  }
  await Promise.all(names.map((n) => wait(n, '~ # ', 1_500_000)));
  console.log(`${N} VMs at their prompts after ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  await Promise.all(names.map(async (n, i) => {
    assert.equal((await call('POST', `/v1/vms/${n}/console/input`, `echo answer-$((${i}*1000+7))\n`)).status, 204);
    await wait(n, `answer-${i * 1000 + 7}`, 300_000);
  }));
  const victim = JSON.parse((await call('GET', '/v1/vms/vm3')).text) as { pid: number };
  process.kill(victim.pid, 'SIGKILL');
  for (let i = 0; i < 100 && !(await call('GET', '/v1/vms/vm3')).text.includes('"crashed"'); i++) await new Promise((r) => setTimeout(r, 100));
  assert.match((await call('GET', '/v1/vms/vm3')).text, /"state":"crashed"/);
  await Promise.all(names.filter((n) => n !== 'vm3').map(async (n, i) => {
    await call('POST', `/v1/vms/${n}/console/input`, `echo again-$((${i}+500))\n`);
    await wait(n, `again-${i + 500}`, 300_000);
  }));
});
