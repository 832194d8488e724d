/**
 * Snapshots through the daemon: a VM counting on its console with a file on tmpfs is saved
 * with `typevisor vm save` (suspended, so the last count is known; and once while running,
 * which it survives), then `typevisor vm restore` defines a new VM from the file and starts
 * it in a new runner process: the count continues at the next number and the file is there.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { guestDir, repoRoot } from '../lib/toolchain.js';
import { killRunners } from '../lib/daemon-client.js';

const execFileP = promisify(execFile);
const BIN = join(repoRoot, 'bin', 'typevisor.js');
const dir = mkdtempSync(join(tmpdir(), 'typevisor-snap-daemon-'));
const images = join(dir, 'images');
const env = { ...process.env, TYPEVISOR_GUEST_DIR: guestDir, TYPEVISOR_STATE_DIR: dir };
let daemon: ChildProcess | null = null;
after(() => { daemon?.kill('SIGKILL'); killRunners(dir); rmSync(dir, { recursive: true, force: true }); });

async function tv(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await execFileP(process.execPath, [BIN, ...args], { env, timeout: 120_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

function counts(text: string): number[] {
  return [...text.matchAll(/count (\d+)\r?\n/g)].map((m) => Number(m[1]));
}

test('vm save and vm restore: the count continues in a new runner, the tmpfs file is intact', { timeout: 300_000 }, async () => {
  const { mkdirSync } = await import('node:fs');
  mkdirSync(images);
  const d = spawn(process.execPath, [BIN, 'daemon', '--listen', '127.0.0.1:0', '--image-root', images], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  daemon = d;
  const url = await new Promise<string>((resolve, reject) => {
    let err = '';
    d.stderr!.on('data', (b: Buffer) => { err += b.toString(); const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(err); if (m) resolve(m[1]); });
    d.once('exit', (c) => reject(new Error(`daemon exited ${c}: ${err}`)));
  });
  const token = readFileSync(join(dir, 'token'), 'utf8').trim();
  const api = async (method: string, path: string, body?: string): Promise<Response> =>
    fetch(url + path, { method, headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'text/plain' } : {}) }, body });
  const log = async (name: string): Promise<string> => (await api('GET', `/v1/vms/${name}/console/log`)).text();
  const waitLog = async (name: string, re: RegExp, ms = 150_000): Promise<string> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const t = await log(name);
      if (re.test(t)) return t;
      if (Date.now() > deadline) throw new Error(`${name}: no ${String(re)} in ${JSON.stringify(t.slice(-1000))}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  const vm = (...a: string[]): ReturnType<typeof tv> => tv('vm', '--connect', url, ...a);

  assert.equal((await vm('define', 'c', '-m', '64M')).code, 0);
  assert.equal((await vm('start', 'c')).code, 0);
  await waitLog('c', /~ # $/);
  await api('POST', '/v1/vms/c/console/input', 'mount -t tmpfs none /mnt && echo kept-$((6*7)) > /mnt/f\n');
  await api('POST', '/v1/vms/c/console/input', '(i=0; while true; do i=$((i+1)); echo "count $i"; usleep 300000; done) &\n');
  await waitLog('c', /count 3\r?\n/);

  // Saved while running: the VM keeps running and counting.
  const live = join(images, 'live.tvs');
  let r = await vm('save', 'c', live);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Domain 'c' saved to .*live\.tvs \(\d+\.\d MiB in \d+ ms\)\n$/);
  const n0 = Math.max(...counts(await log('c')));
  await waitLog('c', new RegExp(`count ${n0 + 2}\\r?\\n`), 30_000);
  assert.match((await vm('list')).stdout, /^ c\s+running$/m);

  // Saved while suspended: the last count before the save is known exactly.
  assert.equal((await vm('suspend', 'c')).code, 0);
  const file = join(images, 'c.tvs');
  r = await vm('save', 'c', file);
  assert.equal(r.code, 0, r.stderr);
  const last = Math.max(...counts(await log('c')));
  assert.ok(statSync(file).size > 0);
  // Outside --image-root: refused.
  r = await vm('save', 'c', join(dir, 'outside.tvs'));
  assert.equal(r.code, 1);
  assert.match(r.stderr, /outside the image root/);
  assert.equal((await vm('destroy', 'c')).code, 0);

  r = await vm('restore', 'd', file);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Domain 'd' restored from/);
  const def = await (await api('GET', '/v1/vms/d')).json() as { state: string };
  assert.equal(def.state, 'running');
  const text = await waitLog('d', /count \d+\r?\n/, 60_000);
  assert.equal(counts(text)[0], last + 1, `the count continues after ${last}: ${JSON.stringify(text.slice(0, 200))}`);
  await api('POST', '/v1/vms/d/console/input', 'kill %1; cat /mnt/f\n');
  await waitLog('d', /kept-42/, 30_000);
  // The definition came from the snapshot (memory), and `restore` was cleared once used.
  const stored = JSON.parse(readFileSync(join(dir, 'vms', 'd.json'), 'utf8')) as { memory: number; restore?: string };
  assert.equal(stored.memory, 64 << 20);
  assert.equal(stored.restore, undefined);
  assert.equal((await vm('destroy', 'd')).code, 0);

  // A corrupt file is refused when the VM is defined.
  const bad = readFileSync(file); bad[bad.length >> 1] ^= 1;
  const { writeFileSync } = await import('node:fs');
  writeFileSync(join(images, 'bad.tvs'), bad);
  r = await vm('restore', 'e', join(images, 'bad.tvs'));
  assert.equal(r.code, 1);
  assert.match(r.stderr, /checksum mismatch/);
});
