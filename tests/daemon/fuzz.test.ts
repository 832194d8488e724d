/**
 * The API fuzzed: malformed JSON, wrong types, odd content types, unknown routes and
 * methods. Every answer is a JSON error below 500, and the daemon keeps serving.
 * Also: --image-root confines definition paths; definitions on disk are whole files.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { Daemon } from '../../src/daemon/server.js';
import { prng } from '../lib/prng.js';

const dir = mkdtempSync(join(tmpdir(), 'typevisor-fuzz-'));
const root = join(dir, 'images');
const daemon = new Daemon({ stateDir: dir, port: 0, imageRoot: root, log: () => {} });
after(async () => { await daemon.close(); rmSync(dir, { recursive: true, force: true }); });

const PIECES = ['{', '}', '[', ']', '"', ':', ',', 'null', 'true', '1e999', '-0', '"name"', '"memory"', '"64M"', '"drives"', '"limits"', '"cpu"', '0.5', '"\\u0000"', '\\', '{"name":"x"', '"__proto__"', '"constructor"', ' ', '\u00ff'];
const VALUES: unknown[] = [null, true, 0, -1, 1.5, 2 ** 60, '', 'x', '64M', '../../etc/passwd', [], [1], {}, { file: 1 }, { cpu: 'a' }, { cpu: 0.5 }, 'a'.repeat(5000)];
const FIELDS = ['name', 'memory', 'kernel', 'initrd', 'append', 'bios', 'drives', 'limits', 'autostart', '__proto__', 'timeoutMs', 'x'];
/** Paths with the method they take (the fuzz mostly uses it, sometimes another). */
const PATHS: Array<[string, string]> = [['/v1/vms', 'POST'], ['/v1/vms/f', 'PATCH'], ['/v1/vms/f/shutdown', 'POST'], ['/v1/vms/f/suspend', 'POST'],
  ['/v1/vms/f/console/input', 'POST'], ['/v1/vms/f/console/log', 'GET'], ['/v1/vms/f/stats', 'GET'], ['/v1/vms/%2e%2e', 'GET'], ['/v1/vms/a%00b', 'PATCH'],
  ['/v1/nope', 'POST'], ['/metrics', 'GET']];
const METHODS = ['GET', 'POST', 'PATCH', 'DELETE', 'PUT'];
const TYPES = ['application/json', 'text/plain', 'application/octet-stream', 'application/x-www-form-urlencoded', 'application/json; charset=latin1', 'multipart/form-data'];

test('API fuzz: malformed and mistyped requests get JSON 4xx errors, never a 5xx or a crash', { timeout: 120_000 }, async () => {
  const base = (await daemon.listen()).replace('localhost', '127.0.0.1');
  const auth = { authorization: `Bearer ${daemon.token}` };
  const define = await fetch(base + '/v1/vms', { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'f', memory: '64M' }) });
  assert.equal(define.status, 201);
  const rnd = prng(12345);
  const pick = <T>(a: readonly T[]): T => a[rnd() % a.length];
  const counts = new Map<number, number>();
  for (let i = 0; i < 600; i++) {
    const [path, usual] = pick(PATHS);
    const method = rnd() % 4 === 0 ? pick(METHODS) : usual;
    let body: string | undefined;
    const kind = rnd() % 3;
    if (kind === 0) body = Array.from({ length: rnd() % 12 }, () => pick(PIECES)).join('');
    else if (kind === 1) {
      const o: Record<string, unknown> = {};
      for (let k = rnd() % 5; k > 0; k--) o[pick(FIELDS)] = pick(VALUES);
      body = JSON.stringify(o);
    }
    const r = await fetch(base + path, { method, headers: { ...auth, ...(body !== undefined ? { 'content-type': pick(TYPES) } : {}) }, ...(method !== 'GET' && body !== undefined ? { body } : {}) });
    const text = await r.text();
    counts.set(r.status, (counts.get(r.status) ?? 0) + 1);
    if (method === 'DELETE' && r.status === 204) {
      await fetch(base + '/v1/vms', { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'f', memory: '64M' }) });
    }
    assert.ok(r.status < 500, `${method} ${path} ${body ?? ''} → ${r.status} ${text}`);
    if (r.status >= 400) {
      const e = JSON.parse(text) as { code: unknown; message: unknown };
      assert.equal(typeof e.code, 'string', text);
      assert.equal(typeof e.message, 'string', text);
    }
  }
  console.log(`statuses: ${JSON.stringify([...counts].sort())}`);
  assert.ok((counts.get(400) ?? 0) > 50, `400s: ${JSON.stringify([...counts])}`);
  // Still serving, and the VM 'f' is still defined (maybe renamed limits), its file whole JSON.
  const list = await fetch(base + '/v1/vms', { headers: auth });
  assert.equal(list.status, 200);
  for (const f of readdirSync(join(dir, 'vms'))) {
    assert.match(f, /\.json$/, 'no temp files left');
    JSON.parse(readFileSync(join(dir, 'vms', f), 'utf8'));
  }
});

test('--image-root: paths outside it are refused with the field', async () => {
  const base = daemon.app.listeningOrigin.replace('localhost', '127.0.0.1');
  const post = async (body: unknown): Promise<{ status: number; field?: string }> => {
    const r = await fetch(base + '/v1/vms', { method: 'POST', headers: { authorization: `Bearer ${daemon.token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: r.status, ...(await r.json() as { field?: string }) };
  };
  assert.deepEqual(await post({ name: 'k', kernel: '/etc/passwd' }), { status: 400, code: 'forbidden_path', message: "/kernel: '/etc/passwd' is outside the image root", field: '/kernel' });
  assert.equal((await post({ name: 'k', drives: [{ file: join(root, '..', 'x.img') }] })).field, '/drives/0/file');
  assert.equal((await post({ name: 'k', kernel: join(root, 'Image'), bios: 'none' })).status, 201);
});

test('the console WebSocket and the events stream need the token; OpenAPI lists the routes', async () => {
  const base = daemon.app.listeningOrigin.replace('localhost', '127.0.0.1');
  const status = await new Promise<number>((resolve, reject) => {
    const ws = new WebSocket(base.replace('http', 'ws') + '/v1/vms/f/console');
    ws.on('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); ws.terminate(); });
    ws.on('open', () => { ws.close(); reject(new Error('opened without a token')); });
    ws.on('error', () => { /* after unexpected-response */ });
  });
  assert.equal(status, 401);
  assert.equal((await fetch(base + '/v1/events')).status, 401);
  const plain = await fetch(base + '/v1/vms/f/console', { headers: { authorization: `Bearer ${daemon.token}` } });
  assert.equal(plain.status, 426);
  assert.equal(((await plain.json()) as { code: string }).code, 'upgrade_required');
  const doc = await (await fetch(base + '/v1/openapi.json', { headers: { authorization: `Bearer ${daemon.token}` } })).json() as { openapi: string; paths: Record<string, Record<string, unknown>> };
  assert.equal(doc.openapi, '3.0.3');
  for (const [path, method] of [['/v1/vms', 'post'], ['/v1/vms/{name}', 'patch'], ['/v1/vms/{name}/start', 'post'], ['/v1/vms/{name}/console/input', 'post'], ['/v1/vms/{name}/console', 'get'], ['/v1/events', 'get']]) {
    assert.ok(doc.paths[path]?.[method], `${method} ${path} in the OpenAPI document`);
  }
});

test('events over a WebSocket: a start that fails shows running then shutoff', async () => {
  const base = daemon.app.listeningOrigin.replace('localhost', '127.0.0.1');
  const auth = { authorization: `Bearer ${daemon.token}` };
  const ws = new WebSocket(base.replace('http', 'ws') + '/v1/events', { headers: auth });
  const events: Array<{ name: string; state: string; lastExit?: { reason: string; message?: string } }> = [];
  ws.on('message', (d: Buffer) => events.push(JSON.parse(d.toString()) as (typeof events)[number]));
  await new Promise<void>((res, rej) => { ws.once('open', () => res()); ws.once('error', rej); });
  const post = (path: string, body?: object): Promise<Response> => fetch(base + path, { method: 'POST', headers: { ...auth, ...(body ? { 'content-type': 'application/json' } : {}) }, ...(body ? { body: JSON.stringify(body) } : {}) });
  assert.equal((await post('/v1/vms', { name: 'e', kernel: join(root, 'missing-Image') })).status, 201);
  const r = await post('/v1/vms/e/start');
  assert.equal(r.status, 400);
  const err = await r.json() as { code: string; message: string };
  assert.equal(err.code, 'start_failed');
  assert.match(err.message, /missing-Image/);
  for (let i = 0; i < 50 && events.length < 2; i++) await new Promise((res) => setTimeout(res, 50));
  ws.close();
  assert.deepEqual(events.map((e) => [e.name, e.state]), [['e', 'running'], ['e', 'shutoff']]);
  assert.equal(events[1].lastExit?.reason, 'config');
});
