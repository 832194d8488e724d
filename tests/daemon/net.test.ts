/**
 * NICs in the daemon's definitions: a user-mode NIC with hostfwd and a per-VM default MAC,
 * the guest served over the forward, per-NIC counters in /metrics, network token buckets
 * changed live by PATCH, and a bad hostfwd refused with its field.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Daemon } from '../../src/daemon/server.js';
import { nicMac } from '../../src/daemon/store.js';
import { guestDir } from '../lib/toolchain.js';
import { freePort } from '../lib/net-servers.js';

const dir = mkdtempSync(join(tmpdir(), 'typevisor-net-'));
const daemon = new Daemon({ stateDir: dir, port: 0, env: { ...process.env, TYPEVISOR_GUEST_DIR: guestDir }, log: () => {} });
after(async () => { await daemon.close(); rmSync(dir, { recursive: true, force: true }); });
let base = '';

async function api(method: string, path: string, body?: unknown, raw?: string): Promise<{ status: number; json: Record<string, unknown>; text: string }> {
  const headers: Record<string, string> = { authorization: `Bearer ${daemon.token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (raw !== undefined) headers['content-type'] = 'text/plain';
  const r = await fetch(base + path, { method, headers, body: raw ?? (body === undefined ? undefined : JSON.stringify(body)) });
  const text = await r.text();
  let json: Record<string, unknown> = {};
  try { json = JSON.parse(text) as Record<string, unknown>; } catch { /* text */ }
  return { status: r.status, json, text };
}

async function consoleUntil(name: string, pattern: RegExp, ms = 240_000): Promise<string> {
  const end = Date.now() + ms;
  for (;;) {
    const log = (await api('GET', `/v1/vms/${name}/console/log`)).text;
    if (pattern.test(log)) return log;
    if (Date.now() > end) {
      const boots = log.split('Linux version').length - 1;
      const st = (await api('GET', `/v1/vms/${name}/stats`)).json;
      throw new Error(`no ${String(pattern)} on ${name}'s console (${boots} boot banners, state ${String((await api('GET', `/v1/vms/${name}`)).json.state)}, ` +
        `${String(st.instructions)} instructions, prompt at ${log.indexOf('~ # ')} of ${log.length}); tail:\n${log.slice(-3000)}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** GET through the forward; a few tries (the guest's httpd may still be starting on a slow host). */
async function get(url: string): Promise<string> {
  for (let i = 0; ; i++) {
    try { return await (await fetch(url, { signal: AbortSignal.timeout(20_000) })).text(); } catch (e) {
      if (i >= 4) throw new Error(`GET ${url}: ${(e as Error).message} (${String((e as { cause?: unknown }).cause)})`);
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
}

function metric(text: string, name: string, labels: string): number {
  const m = new RegExp(`^${name}\\{${labels}\\} (\\S+)$`, 'm').exec(text);
  assert.ok(m, `${name}{${labels}} in /metrics`);
  return Number(m[1]);
}

test('daemon NICs: hostfwd, per-VM MAC, /metrics counters, live net limits', { timeout: 400_000 }, async () => {
  base = `http://${(await daemon.listen()).replace(/^http:\/\//, '')}`;
  const bad = await api('POST', '/v1/vms', { name: 'bad', nics: [{ type: 'user', hostfwd: ['tcp::99999-:80'] }] });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.field, '/nics/0/hostfwd/0');
  assert.equal((await api('POST', '/v1/vms', { name: 'bad', nics: [{ type: 'user', pcap: '/tmp/x' }] })).status, 400, 'only the user options');

  const port = await freePort();
  const nic = { type: 'user' as const, hostfwd: [`tcp:127.0.0.1:${port}-:80`] };
  assert.equal((await api('POST', '/v1/vms', { name: 'n', memory: '128M', nics: [nic] })).status, 201);
  assert.equal((await api('POST', '/v1/vms/n/start')).status, 200);
  await consoleUntil('n', /~ # /);
  await api('POST', '/v1/vms/n/console/input', undefined,
    'cat /sys/class/net/eth0/address; mkdir -p /tmp/w; echo hello-net > /tmp/w/index.html; httpd -p 80 -h /tmp/w; ' +
    // The address DHCP would give (the prebuilt guest's rcS runs no DHCP client).
    'ip link set eth0 up; ip addr add 10.0.2.15/24 dev eth0 2>/dev/null; ip -4 addr show eth0; echo ok-$((1+1))\n');
  const log = await consoleUntil('n', /ok-2/, 60_000);
  const mac = nicMac('n', nic, 0);
  assert.match(log, new RegExp(`^${mac}\\r?$`, 'm'), 'the default MAC comes from the VM name');
  assert.notEqual(mac, nicMac('m', nic, 0));
  assert.match(mac, /^52:54:00:/);

  assert.match(log, /inet 10\.0\.2\.15\//, 'the guest has its address');
  const page = await get(`http://127.0.0.1:${port}/`);
  assert.equal(page.trim(), 'hello-net');
  let prom = (await api('GET', '/metrics')).text;
  const rx0 = metric(prom, 'typevisor_vm_net_rx_bytes', 'vm="n",nic="net0"');
  assert.ok(rx0 > 0 && metric(prom, 'typevisor_vm_net_tx_bytes', 'vm="n",nic="net0"') > 0);
  assert.ok(metric(prom, 'typevisor_vm_net_rx_packets', 'vm="n",nic="net0"') > 0);

  // Live limits: accepted on a running VM, and the guest still answers.
  const lim = { rx: { bandwidth: { size: 65536, refillTimeMs: 100 } }, tx: { bandwidth: { size: 65536, refillTimeMs: 100 }, ops: { size: 100, refillTimeMs: 100 } } };
  const p = await api('PATCH', '/v1/vms/n', { limits: { net: lim } });
  assert.equal(p.status, 200, p.text);
  assert.deepEqual((p.json.definition as { limits: { net: unknown } }).limits.net, lim);
  assert.equal((await get(`http://127.0.0.1:${port}/`)).trim(), 'hello-net');
  prom = (await api('GET', '/metrics')).text;
  assert.ok(metric(prom, 'typevisor_vm_net_rx_bytes', 'vm="n",nic="net0"') > rx0, 'counters move');
  assert.equal((await api('POST', '/v1/vms/n/destroy')).status, 200);
});
