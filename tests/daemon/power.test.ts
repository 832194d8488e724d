/**
 * Graceful shutdown through the daemon: `POST /v1/vms/NAME/shutdown` presses the VM's
 * power button (virtio-input KEY_POWER) and a guest that acts on it powers off by itself,
 * well before the destroy fallback; a guest that ignores it is destroyed after the timeout.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Daemon } from '../../src/daemon/server.js';
import { buildElf } from '../lib/toolchain.js';
import { buildPowerKeyGuest } from '../lib/power-key-guest.js';

const dir = mkdtempSync(join(tmpdir(), 'typevisor-power-'));
const daemon = new Daemon({ stateDir: dir, port: 0, env: process.env, log: () => {}, shutdownTimeoutMs: 3000 });
after(async () => { await daemon.close(); rmSync(dir, { recursive: true, force: true }); });
let base = '';

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown>; text: string }> {
  const headers: Record<string, string> = { authorization: `Bearer ${daemon.token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const r = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json: Record<string, unknown> = {};
  try { json = JSON.parse(text) as Record<string, unknown>; } catch { /* text */ }
  return { status: r.status, json, text };
}

async function until(f: () => Promise<boolean>, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const IGNORES = String.raw`
  .section .text.init
  .globl _start
_start:
  li t0, 0x10000000
  li t1, 'r'
  sb t1, 0(t0)
1: wfi
  j 1b
`;

test('daemon shutdown: the power button powers off a guest that handles it; one that does not is destroyed', { timeout: 60_000 }, async () => {
  base = `http://${(await daemon.listen()).replace(/^http:\/\//, "")}`;
  const key = await buildPowerKeyGuest();
  const deaf = await buildElf({ name: 'power-ignored', sources: { 'i.S': IGNORES } });
  assert.equal((await api('POST', '/v1/vms', { name: 'p', memory: '16M', kernel: key, bios: 'none' })).status, 201);
  assert.equal((await api('POST', '/v1/vms', { name: 'q', memory: '16M', kernel: deaf, bios: 'none' })).status, 201);
  assert.equal((await api('POST', '/v1/vms/p/start')).status, 200);
  assert.equal((await api('POST', '/v1/vms/q/start')).status, 200);
  await until(async () => (await api('GET', '/v1/vms/p/console/log')).text.includes('ready\n'), 'p ready');
  await until(async () => (await api('GET', '/v1/vms/q/console/log')).text.includes('r'), 'q started');

  const t0 = Date.now();
  assert.equal((await api('POST', '/v1/vms/p/shutdown', { timeoutMs: 20_000 })).status, 202);
  await until(async () => (await api('GET', '/v1/vms/p')).json.state === 'shutoff', 'p shutoff');
  const p = (await api('GET', '/v1/vms/p')).json;
  assert.deepEqual(p.lastExit, { reason: 'poweroff', code: 0 });
  assert.ok(Date.now() - t0 < 10_000, 'powered off by the guest, not by the 20 s fallback');
  assert.match((await api('GET', '/v1/vms/p/console/log')).text, /name: typevisor power button\nready\npower key\n/);

  assert.equal((await api('POST', '/v1/vms/q/shutdown', { timeoutMs: 1000 })).status, 202);
  await until(async () => (await api('GET', '/v1/vms/q')).json.state === 'shutoff', 'q destroyed');
  assert.equal((await api('GET', '/v1/vms/q')).json.lastExit && ((await api('GET', '/v1/vms/q')).json.lastExit as { reason: string }).reason, 'stopped');
});
