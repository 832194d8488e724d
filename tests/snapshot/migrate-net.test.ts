/**
 * Live migration with a user-mode NIC: the guest's TCP connections survive the move. A
 * host client is connected through a hostfwd port to an echo server in the guest, and the
 * guest holds a connection out to the host, echoing what we send on it; after the move both
 * still carry bytes both ways (a line, then 256 KiB checked byte for byte), the forwarded
 * port is bound by the destination (a new HTTP request reaches the guest's httpd there),
 * and the source's runner lives on only to relay the moved connections: it exits once they
 * are closed.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Daemon } from '../../src/daemon/server.js';
import { guestDir } from '../lib/toolchain.js';
import { apiClient, killRunners } from '../lib/daemon-client.js';

const root = mkdtempSync(join(tmpdir(), 'typevisor-migrate-net-'));
const env = { ...process.env, TYPEVISOR_GUEST_DIR: guestDir };
const src = new Daemon({ stateDir: join(root, 'src'), port: 0, env, log: () => {} });
const dst = new Daemon({ stateDir: join(root, 'dst'), port: 0, env, log: () => {} });
after(async () => { await src.close(); await dst.close(); killRunners(root); rmSync(root, { recursive: true, force: true }); });

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const p = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return p;
}

/** A socket that collects what it reads, with a wait for a given amount. */
function collector(s: Socket): { wait: (n: number, ms?: number) => Promise<Buffer>; take: () => Buffer } {
  let buf = Buffer.alloc(0);
  s.on('data', (d: Buffer) => { buf = Buffer.concat([buf, d]); });
  return {
    wait: async (n, ms = 60_000) => {
      const end = Date.now() + ms;
      while (buf.length < n) {
        if (Date.now() > end) throw new Error(`got ${buf.length} of ${n} bytes: ${JSON.stringify(buf.subarray(0, 80).toString())}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      return buf;
    },
    take: () => { const b = buf; buf = Buffer.alloc(0); return b; },
  };
}

function alive(pid: number): boolean { try { process.kill(pid, 0); return true; } catch { return false; } }

test('live migration keeps the guest TCP connections of its user network, and re-binds its forwarded ports', { timeout: 400_000 }, async () => {
  const sUrl = (await src.listen()).replace('localhost', '127.0.0.1'), dUrl = (await dst.listen()).replace('localhost', '127.0.0.1');
  const srcApi = apiClient(sUrl, src.token), dstApi = apiClient(dUrl, dst.token);
  const api = async (d: Daemon, _url: string, method: string, path: string, body?: unknown, raw?: string): Promise<{ status: number; json: Record<string, unknown>; text: string }> => {
    const r = await (d === src ? srcApi : dstApi)(method, path, raw ?? (body as object | undefined));
    let json: Record<string, unknown> = {};
    try { json = JSON.parse(r.text) as Record<string, unknown>; } catch { /* text */ }
    return { ...r, json };
  };
  const consoleUntil = async (d: Daemon, url: string, re: RegExp, ms = 240_000): Promise<string> => {
    const end = Date.now() + ms;
    for (;;) {
      const log = (await api(d, url, 'GET', '/v1/vms/n/console/log')).text;
      if (re.test(log)) return log;
      if (Date.now() > end) throw new Error(`no ${String(re)} on the console; tail:\n${log.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  };

  // Our end of the guest's outgoing connection (the guest's `cat` echoes what we send).
  const echoOut = createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => undefined); });
  await new Promise<void>((r) => echoOut.listen(0, '127.0.0.1', () => r()));
  const outPort = (echoOut.address() as { port: number }).port;
  let outConn: Socket | null = null;
  echoOut.on('connection', (s) => { outConn = s; });

  const echoPort = await freePort(), httpPort = await freePort();
  const nic = { type: 'user', hostfwd: [`tcp:127.0.0.1:${echoPort}-:7`, `tcp:127.0.0.1:${httpPort}-:80`] };
  assert.equal((await api(src, sUrl, 'POST', '/v1/vms', { name: 'n', memory: '64M', nics: [nic] })).status, 201);
  assert.equal((await api(src, sUrl, 'POST', '/v1/vms/n/start')).status, 200);
  await consoleUntil(src, sUrl, /~ # /);
  await api(src, sUrl, 'POST', '/v1/vms/n/console/input', undefined,
    'ip link set eth0 up; ip addr add 10.0.2.15/24 dev eth0 2>/dev/null; mkdir -p /tmp/w; echo hello-net > /tmp/w/index.html; httpd -p 80 -h /tmp/w; ' +
    `nc -l -p 7 -e cat & nc 10.0.2.2 ${outPort} -e cat & sleep 1; echo ok-$((1+1))\n`);
  await consoleUntil(src, sUrl, /ok-2/, 60_000);

  // The guest's connection out, echoing through `cat` in the guest.
  for (let i = 0; i < 100 && !outConn; i++) await new Promise((r) => setTimeout(r, 100));
  assert.ok(outConn, 'the guest connected out to the host');
  const out = collector(outConn);
  (outConn as Socket).write('out-1\n');
  assert.equal((await out.wait(6)).toString(), 'out-1\n');
  out.take();
  // A host client through the forwarded port, to the guest's echo server.
  const inConn = connect(echoPort, '127.0.0.1');
  inConn.on('error', () => undefined);
  const inc = collector(inConn);
  inConn.write('in-1\n');
  assert.equal((await inc.wait(5)).toString(), 'in-1\n');
  inc.take();

  const before = await api(src, sUrl, 'GET', '/v1/vms/n');
  const srcPid = before.json.pid as number;
  assert.ok(srcPid > 0);
  const mig = await api(src, sUrl, 'POST', '/v1/vms/n/migrate', { to: dUrl, token: dst.token });
  assert.equal(mig.status, 200, mig.text);
  console.log(`migration: ${mig.text}`);
  assert.equal((await api(dst, dUrl, 'GET', '/v1/vms/n')).json.state, 'running');
  assert.equal((await api(src, sUrl, 'GET', '/v1/vms/n')).status, 404, 'gone from the source');

  // Both connections carry on: a line, then 256 KiB of random bytes, each way through the guest.
  (outConn as Socket).write('out-2\n');
  inConn.write('in-2\n');
  assert.equal((await out.wait(6)).toString(), 'out-2\n');
  assert.equal((await inc.wait(5)).toString(), 'in-2\n');
  out.take(); inc.take();
  const big = randomBytes(256 * 1024);
  inConn.write(big);
  assert.ok((await inc.wait(big.length, 120_000)).equals(big), 'the 256 KiB came back intact through the moved hostfwd connection');
  (outConn as Socket).write(big);
  assert.ok((await out.wait(big.length, 120_000)).equals(big), 'the 256 KiB came back intact through the moved outgoing connection');

  // The forwarded port is the destination's now: a new connection reaches the guest there.
  const page = await (await fetch(`http://127.0.0.1:${httpPort}/`, { signal: AbortSignal.timeout(30_000) })).text();
  assert.equal(page.trim(), 'hello-net');

  // The source's process stays only while it relays: closing both connections ends it.
  assert.ok(alive(srcPid), 'the source runner relays the moved connections');
  inConn.end(); (outConn as Socket).end();
  for (let i = 0; i < 150 && alive(srcPid); i++) await new Promise((r) => setTimeout(r, 100));
  assert.ok(!alive(srcPid), 'the source runner exited once the relayed connections closed');
  echoOut.close();
  assert.equal((await api(dst, dUrl, 'POST', '/v1/vms/n/destroy')).status, 200);
});
