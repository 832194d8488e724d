/**
 * `typevisor daemon --tls-cert/--tls-key` serves HTTPS (a self-signed certificate made with
 * openssl for the test); plain HTTP to it fails, the token is still required.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Daemon } from '../../src/daemon/server.js';

const dir = mkdtempSync(join(tmpdir(), 'typevisor-tls-'));
let daemon: Daemon | null = null;
after(async () => { await daemon?.close(); rmSync(dir, { recursive: true, force: true }); });

function get(url: string, ca: Buffer, token?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, headers: token ? { authorization: `Bearer ${token}` } : {} }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => { body += d.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('HTTPS with --tls-cert/--tls-key; the token is still required', async () => {
  const cert = join(dir, 'cert.pem'), key = join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  daemon = new Daemon({ stateDir: join(dir, 'state'), port: 0, tls: { cert, key }, log: () => {} });
  const base = await daemon.listen();
  assert.match(base, /^https:\/\/127\.0\.0\.1:\d+$/);
  const ca = readFileSync(cert);
  assert.equal((await get(base + '/v1/vms', ca)).status, 401);
  const ok = await get(base + '/v1/vms', ca, daemon.token);
  assert.equal(ok.status, 200);
  assert.equal(ok.body, '[]');
  await assert.rejects(fetch(base.replace('https', 'http') + '/v1/vms'));
});
