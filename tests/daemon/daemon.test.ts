/**
 * The daemon end to end: a real server on an ephemeral loopback port with a temp state
 * dir, real runner processes booting the prebuilt guest. Auth, validation, lifecycle,
 * console (log, input, WebSocket), crash detection, metrics, CPU cap, suspend/resume and
 * a daemon restart that finds its definitions. At most 2 VMs boot at once (2 host cores).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, readdirSync } from 'node:fs';
import { tmpdir, getPriority } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { Daemon } from '../../src/daemon/server.js';
import { procCpuSeconds } from '../../src/daemon/vm.js';
import { guestDir } from '../lib/toolchain.js';

const PROMPT = '~ # ';
const dir = mkdtempSync(join(tmpdir(), 'typevisor-daemon-'));
const env = { ...process.env, TYPEVISOR_GUEST_DIR: guestDir };
let daemon = new Daemon({ stateDir: dir, port: 0, env, log: () => {}, shutdownTimeoutMs: 3000 });
let base = '';
after(async () => { await daemon.close(); rmSync(dir, { recursive: true, force: true }); });

interface Res { status: number; json: Record<string, unknown> & { state?: string; code?: string; field?: string }; text: string }
async function api(method: string, path: string, body?: unknown, opts: { token?: string | null; raw?: string; type?: string } = {}): Promise<Res> {
  const headers: Record<string, string> = {};
  const token = opts.token === undefined ? daemon.token : opts.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  let payload: string | undefined;
  if (opts.raw !== undefined) { payload = opts.raw; headers['content-type'] = opts.type ?? 'application/json'; }
  else if (body !== undefined) { payload = JSON.stringify(body); headers['content-type'] = 'application/json'; }
  const r = await fetch(base + path, { method, headers, body: payload });
  const text = await r.text();
  let json: Res['json'] = {};
  try { json = JSON.parse(text) as Res['json']; } catch { /* text */ }
  return { status: r.status, json, text };
}

/** Wait until the console log (after `from` chars) contains `pattern`; returns the log length after the match. */
async function waitConsole(name: string, pattern: string, from = 0, timeoutMs = 180_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const log = (await api('GET', `/v1/vms/${name}/console/log`)).text;
    const i = log.indexOf(pattern, from);
    if (i >= 0) return i + pattern.length;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${JSON.stringify(pattern)} on ${name}; log tail:\n${log.slice(-1500)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Run a shell command through /console/input and return the log from the command on. */
async function sh(name: string, cmd: string, marker: string): Promise<string> {
  const before = (await api('GET', `/v1/vms/${name}/console/log`)).text.length;
  const r = await api('POST', `/v1/vms/${name}/console/input`, undefined, { raw: cmd + '\n', type: 'text/plain' });
  assert.equal(r.status, 204, r.text);
  // The log is a 64 KiB window: once it is full, lengths stop growing, so search from a little before.
  const end = await waitConsole(name, marker, Math.max(0, before - 200), 60_000);
  return (await api('GET', `/v1/vms/${name}/console/log`)).text.slice(Math.max(0, before - 200), end);
}

/** A minimal Prometheus text-format checker: HELP/TYPE lines and samples `name{l="v",...} value`. */
function parseProm(text: string): Map<string, number> {
  const out = new Map<string, number>();
  const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*)?\})? (-?[0-9.e+-]+|NaN|[+-]Inf)$/;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
    const m = sample.exec(line);
    assert.ok(m, `not Prometheus text: ${line}`);
    out.set(m[1] + (m[2] ?? ''), Number(m[4]));
  }
  return out;
}

test('daemon: listens on loopback, token file 0600, 401 without the token', async () => {
  base = `http://${(await daemon.listen()).replace(/^http:\/\//, '')}`;
  assert.match(base, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(statSync(join(dir, 'token')).mode & 0o777, 0o600);
  assert.equal((await api('GET', '/v1/vms', undefined, { token: null })).status, 401);
  const wrong = await api('GET', '/v1/vms', undefined, { token: 'x'.repeat(64) });
  assert.equal(wrong.status, 401);
  assert.equal(wrong.json.code, 'unauthorized');
  assert.equal((await api('GET', '/metrics', undefined, { token: null })).status, 401);
  const list = await api('GET', '/v1/vms');
  assert.equal(list.status, 200);
  assert.deepEqual(list.json, []);
});

test('daemon: bad requests are 400 with the field, unknown VMs 404, wrong states 409', async () => {
  const bad = await api('POST', '/v1/vms', undefined, { raw: '{"name": "a",' });
  assert.equal(bad.status, 400, bad.text);
  const cases: Array<[unknown, string]> = [
    [{ name: 'a', memory: true }, 'body/memory'],
    [{ name: 'a', memory: '12X' }, 'body/memory'],
    [{ name: '../etc', memory: '64M' }, 'body/name'],
    [{ memory: '64M' }, 'body/name'],
    [{ name: 'a', colour: 'red' }, 'body/colour'],
    [{ name: 'a', drives: [{ file: 3 }] }, 'body/drives/0/file'],
    [{ name: 'a', limits: { cpu: -1 } }, 'body/limits/cpu'],
    [[1, 2], 'body'],
    ['text', 'body'],
  ];
  for (const [body, field] of cases) {
    const r = await api('POST', '/v1/vms', body);
    assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
    assert.equal(r.json.code, 'invalid', r.text);
    assert.equal(r.json.field, field, `${JSON.stringify(body)}: ${r.text}`);
  }
  const mem = await api('POST', '/v1/vms', { name: 'a', memory: '1K' });
  assert.equal(mem.status, 400);
  assert.equal(mem.json.field, '/memory');
  const nf = await api('GET', '/v1/vms/nope');
  assert.equal(nf.status, 404);
  assert.equal(nf.json.code, 'not_found');
  assert.equal((await api('POST', '/v1/vms/nope/start')).status, 404);
  assert.equal((await api('GET', '/v1/openapi.json')).json.openapi, '3.0.3');
  // Nothing was stored by the refused requests.
  assert.deepEqual(readdirSync(join(dir, 'vms')), []);
});

test('daemon: two VMs boot, console log/input/WebSocket, metrics, CPU cap, suspend, crash, restart', { timeout: 600_000 }, async () => {
  for (const name of ['a', 'b']) {
    const r = await api('POST', '/v1/vms', { name, memory: '64M', nics: [{ type: 'switch', switch: 'lan0' }] });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.json.state, 'shutoff');
  }
  assert.equal((await api('POST', '/v1/vms', { name: 'a' })).status, 409);
  assert.equal((await api('POST', '/v1/vms/a/resume')).status, 409);
  // SSE: collect state events while the VMs start.
  const events: string[] = [];
  const ac = new AbortController();
  const sse = fetch(base + '/v1/events', { headers: { authorization: `Bearer ${daemon.token}` }, signal: ac.signal }).then(async (r) => {
    const dec = new TextDecoder();
    for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) events.push(dec.decode(chunk));
  }).catch(() => {});

  for (const name of ['a', 'b']) {
    const r = await api('POST', `/v1/vms/${name}/start`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.state, 'running');
  }
  assert.equal((await api('POST', '/v1/vms/a/start')).status, 409);
  await Promise.all(['a', 'b'].map((n) => waitConsole(n, PROMPT)));
  assert.match(await sh('a', 'uname -m; echo done-$((40+2))', 'done-42'), /riscv64/);
  assert.match(await sh('b', 'echo b-$((6*7))', 'b-42'), /b-42/);

  // Both VMs have a NIC on the daemon's switch lan0: one L2 segment between two runners.
  await sh('a', 'ip addr add 10.0.9.1/24 dev eth0; ip link set eth0 up; echo a-up-$((1+1))', 'a-up-2');
  await sh('b', 'ip addr add 10.0.9.2/24 dev eth0; ip link set eth0 up; echo b-up-$((1+1))', 'b-up-2');
  assert.match(await sh('a', 'ping -c 2 -W 3 10.0.9.2; echo pinged-$((1+1))', 'pinged-2'), /2 packets transmitted, 2 packets received/);

  // Console WebSocket: binary frames both ways.
  const ws = new WebSocket(base.replace('http', 'ws') + '/v1/vms/a/console', { headers: { authorization: `Bearer ${daemon.token}` } });
  let wsText = '';
  ws.on('message', (d: Buffer) => { wsText += d.toString('utf8'); });
  await new Promise<void>((res, rej) => { ws.once('open', () => res()); ws.once('error', rej); });
  ws.send(Buffer.from('echo ws-$((3*5))\n'));
  for (let i = 0; i < 200 && !wsText.includes('ws-15'); i++) await new Promise((r) => setTimeout(r, 100));
  assert.match(wsText, /ws-15/);
  ws.close();

  // Metrics parse as Prometheus text and carry per-VM figures.
  const met = await api('GET', '/metrics');
  assert.equal(met.status, 200);
  const m = parseProm(met.text);
  assert.equal(m.get('typevisor_vm_state{vm="a",state="running"}'), 1);
  assert.equal(m.get('typevisor_vm_state{vm="b",state="crashed"}'), 0);
  assert.ok((m.get('typevisor_vm_instructions_retired{vm="a"}') ?? 0) > 2e7, 'instructions retired (a Linux boot is tens of millions)');
  assert.ok((m.get('typevisor_vm_cpu_seconds{vm="a"}') ?? 0) > 0.3, 'cpu seconds');
  assert.ok((m.get('typevisor_vm_rss_bytes{vm="a"}') ?? 0) > 64 << 20, 'rss');
  assert.equal(m.get('typevisor_vm_memory_bytes{vm="b"}'), 64 << 20);

  // CPU cap 25% on a busy guest, changed live by PATCH; measured from /proc over 5 s.
  await sh('b', 'while :; do :; done & echo spin-started', 'spin-started');
  const patched = await api('PATCH', '/v1/vms/b', { limits: { cpu: 0.25 } });
  assert.equal(patched.status, 200, patched.text);
  const pid = (await api('GET', '/v1/vms/b')).json.pid as number;
  await new Promise((r) => setTimeout(r, 2000)); // let the window correction settle
  const c0 = procCpuSeconds(pid)!, t0 = performance.now();
  await new Promise((r) => setTimeout(r, 5000));
  const used = (procCpuSeconds(pid)! - c0) / ((performance.now() - t0) / 1000);
  console.log(`CPU cap 25%: measured ${(used * 100).toFixed(1)}%`);
  assert.ok(Math.abs(used - 0.25) <= 0.05, `CPU cap 25%: measured ${(used * 100).toFixed(1)}%`);
  assert.equal((await api('PATCH', '/v1/vms/b', { limits: { cpu: 1, cpuWeight: 25 } })).status, 200);
  assert.equal(getPriority(pid), getPriority() + 6, 'cpu.weight 25 is nice +6 relative to the daemon');
  await sh('b', 'kill %1; echo spin-stopped', 'spin-stopped');

  // Suspend: the guest runs nothing and its clock stands still; input typed meanwhile
  // arrives after resume.
  // The marker is computed by the shell, so the echoed command line does not match it.
  const uptime = async (n: number): Promise<number> => {
    const out = await sh('b', `echo up-$((${n}+1)) $(cut -d' ' -f1 /proc/uptime) end-$((${n}+1))`, `end-${n + 1}`);
    const m = new RegExp(`up-${n + 1} ([0-9.]+) end-${n + 1}`).exec(out);
    assert.ok(m, out);
    return Number(m[1]);
  };
  const g0 = await uptime(100), w0 = performance.now();
  assert.equal((await api('POST', '/v1/vms/b/suspend')).json.state, 'paused');
  const i0 = parseProm((await api('GET', '/metrics')).text).get('typevisor_vm_instructions_retired{vm="b"}')!;
  await api('POST', '/v1/vms/b/console/input', undefined, { raw: 'echo after-$((2+2))\n', type: 'text/plain' });
  await new Promise((r) => setTimeout(r, 3000));
  const i1 = parseProm((await api('GET', '/metrics')).text).get('typevisor_vm_instructions_retired{vm="b"}')!;
  assert.equal(i1, i0, 'no instructions while suspended');
  assert.doesNotMatch((await api('GET', '/v1/vms/b/console/log')).text, /after-4/);
  assert.equal((await api('POST', '/v1/vms/b/resume')).json.state, 'running');
  await waitConsole('b', 'after-4', 0, 30_000);
  const g1 = await uptime(200), wall = (performance.now() - w0) / 1000;
  assert.ok(g1 - g0 < wall - 2.5, `guest time ${(g1 - g0).toFixed(2)} s over ${wall.toFixed(2)} s of wall time with 3 s suspended`);
  assert.ok(g1 > g0);

  // Reboot: the machine is rebuilt and boots again; the runner process stays.
  const bpid = (await api('GET', '/v1/vms/b')).json.pid;
  const logLen = (await api('GET', '/v1/vms/b/console/log')).text.length;
  assert.equal((await api('POST', '/v1/vms/b/reboot')).status, 200);
  await waitConsole('b', 'Linux version', Math.max(0, logLen - 100));
  await waitConsole('b', PROMPT, (await api('GET', '/v1/vms/b/console/log')).text.lastIndexOf('Linux version'));
  assert.equal((await api('GET', '/v1/vms/b')).json.pid, bpid);
  assert.equal((await sh('b', 'echo up2-$(cut -d. -f1 /proc/uptime)', 'up2-')).length > 0, true);

  // kill -9 one runner: it is `crashed` with its last console lines; the other still answers.
  const apid = (await api('GET', '/v1/vms/a')).json.pid as number;
  process.kill(apid, 'SIGKILL');
  for (let i = 0; i < 100 && (await api('GET', '/v1/vms/a')).json.state !== 'crashed'; i++) await new Promise((r) => setTimeout(r, 100));
  const a = (await api('GET', '/v1/vms/a')).json;
  assert.equal(a.state, 'crashed');
  assert.match(JSON.stringify(a.lastExit), /SIGKILL/);
  assert.match(String(a.lastConsole), /~ # /);
  assert.match(await sh('b', 'echo still-$((1+1))', 'still-2'), /still-2/);
  assert.equal((await api('DELETE', '/v1/vms/b')).status, 409);

  // Shutdown: the guest powers off by itself within the timeout → shutoff.
  assert.equal((await api('POST', '/v1/vms/b/shutdown', { timeoutMs: 30_000 })).status, 202);
  await api('POST', '/v1/vms/b/console/input', undefined, { raw: 'poweroff\n', type: 'text/plain' });
  for (let i = 0; i < 300 && (await api('GET', '/v1/vms/b')).json.state !== 'shutoff'; i++) await new Promise((r) => setTimeout(r, 100));
  const b = (await api('GET', '/v1/vms/b')).json;
  assert.equal(b.state, 'shutoff');
  assert.equal((b.lastExit as { reason: string }).reason, 'poweroff');

  ac.abort();
  await sse;
  const ev = events.join('');
  assert.match(ev, /event: state\ndata: \{"name":"a","state":"crashed"/);
  assert.match(ev, /"name":"b","state":"shutoff"/);

  // A new daemon on the same state dir finds both definitions (and its token).
  const token = daemon.token;
  await daemon.close();
  daemon = new Daemon({ stateDir: dir, port: 0, env, log: () => {} });
  base = `http://${(await daemon.listen()).replace(/^http:\/\//, '')}`;
  assert.equal(daemon.token, token);
  const list = (await api('GET', '/v1/vms')).json as unknown as Array<{ name: string; state: string; definition: { memory: string } }>;
  assert.deepEqual(list.map((v) => [v.name, v.state, v.definition.memory]).sort(), [['a', 'shutoff', '64M'], ['b', 'shutoff', '64M']]);
  assert.equal((await api('DELETE', '/v1/vms/a')).status, 204);
  assert.deepEqual(readdirSync(join(dir, 'vms')), ['b.json']);
});
