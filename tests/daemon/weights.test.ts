/**
 * CPU weights are relative, as cgroup cpu.shares (libvirt's `<shares>`): the highest weight
 * among running VMs (at least 100) runs at the daemon's nice value and the others are placed
 * below it, CFS's 1.25× per nice level; so a weight above 100 works without CAP_SYS_NICE.
 * Two VMs that sleep in WFI (a two-instruction kernel, bios none): no guest to boot.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { getPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Daemon } from '../../src/daemon/server.js';
import { apiClient } from '../lib/daemon-client.js';

const dir = mkdtempSync(join(tmpdir(), 'tv-weights-'));
const daemon = new Daemon({ stateDir: dir, port: 0, env: process.env, log: () => {} });
after(async () => { await daemon.close(); rmSync(dir, { recursive: true, force: true }); });

test('CPU weights: a weight above 100 lowers the others relative to it; back to 100 restores them', { timeout: 60_000 }, async () => {
  const kernel = join(dir, 'wfi.bin');
  writeFileSync(kernel, new Uint8Array(new Uint32Array([0x10500073, 0xffdff06f]).buffer)); // wfi; j .-4
  const call = apiClient(`http://${(await daemon.listen()).replace(/^http:\/\//, '')}`, daemon.token);
  const base = getPriority();
  for (const [name, limits] of [['a', { cpuWeight: 400 }], ['b', {}]] as const) {
    assert.equal((await call('POST', '/v1/vms', { name, memory: '16M', kernel, bios: 'none', limits })).status, 201);
  }
  const nice = async (name: string): Promise<number> => getPriority((JSON.parse((await call('GET', `/v1/vms/${name}`)).text) as { pid: number }).pid);
  try {
    assert.equal((await call('POST', '/v1/vms/b/start')).status, 200);
    assert.equal(await nice('b'), base, 'alone at weight 100: the daemon\'s nice');
    assert.equal((await call('POST', '/v1/vms/a/start')).status, 200);
    // 400 is the reference now: a runs at the daemon's nice, b log(4)/log(1.25) ≈ 6 levels below.
    assert.equal(await nice('a'), base);
    assert.equal(await nice('b'), Math.min(19, base + 6));
    assert.equal((await call('PATCH', '/v1/vms/a', { limits: { cpuWeight: 100 } })).status, 200);
    assert.equal(await nice('b'), base, 'the reference went back to 100');
    assert.equal((await call('PATCH', '/v1/vms/a', { limits: { cpuWeight: 1000 } })).status, 200);
    assert.equal(await nice('b'), Math.min(19, base + 10));
    // The heavy VM stops: the reference is the highest running weight again.
    assert.equal((await call('POST', '/v1/vms/a/destroy')).status, 200);
    assert.equal(await nice('b'), base);
  } finally {
    await call('POST', '/v1/vms/a/destroy');
    await call('POST', '/v1/vms/b/destroy');
  }
});
