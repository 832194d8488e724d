/**
 * Live migration between two daemons on this machine while a loop in the guest counts:
 * the connection between them is cut at random points first (each time the source VM keeps
 * running and counting, and the destination holds nothing), then the move completes: the
 * VM runs on the destination under the same name, the count goes on from where it was, the
 * tmpfs file is there, the source no longer has it, and the result reports the measured
 * downtime.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { guestDir, repoRoot } from '../lib/toolchain.js';
import { prng } from '../lib/prng.js';
import { killRunners } from '../lib/daemon-client.js';

const execFileP = promisify(execFile);
const BIN = join(repoRoot, 'bin', 'typevisor.js');
const root = mkdtempSync(join(tmpdir(), 'typevisor-migrate-'));
const daemons: ChildProcess[] = [];
after(() => { for (const d of daemons) d.kill('SIGKILL'); killRunners(root); rmSync(root, { recursive: true, force: true }); });

async function startDaemon(dir: string): Promise<{ url: string; token: string }> {
  const env = { ...process.env, TYPEVISOR_GUEST_DIR: guestDir, TYPEVISOR_STATE_DIR: dir };
  const d = spawn(process.execPath, [BIN, 'daemon', '--listen', '127.0.0.1:0'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  daemons.push(d);
  const url = await new Promise<string>((resolve, reject) => {
    let err = '';
    d.stderr!.on('data', (b: Buffer) => { if (process.env.DEBUG_DAEMON) process.stderr.write(b); err += b.toString(); const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(err); if (m) resolve(m[1]); });
    d.once('exit', (c) => reject(new Error(`daemon exited ${c}: ${err}`)));
  });
  return { url, token: readFileSync(join(dir, 'token'), 'utf8').trim() };
}

/**
 * A TCP relay to `port` that cuts the first connection to reach the cut point, in either
 * direction; later connections pass. The cut point is a byte count, 'finish' (the request
 * that completes the move never arrives) or 'finish-reply' (it arrives and the destination
 * runs the VM, but its answer is lost).
 */
function cuttingProxy(port: number, cutAt: number | 'finish' | 'finish-reply'): Promise<{ url: string; server: Server; cut: () => boolean }> {
  let cutDone = false;
  const server = createServer((a: Socket) => {
    const b = connect(port, '127.0.0.1');
    let n = 0, finishSeen = false;
    const armed = !cutDone;
    const cut = (): void => { cutDone = true; a.destroy(); b.destroy(); };
    a.on('data', (d: Buffer) => {
      n += d.length;
      if (armed && !cutDone) {
        if (cutAt === 'finish' && d.includes('/finish')) { cut(); return; }
        if (cutAt === 'finish-reply' && d.includes('/finish')) finishSeen = true;
        if (typeof cutAt === 'number' && n >= cutAt) { cut(); return; }
      }
      b.write(d);
    });
    b.on('data', (d: Buffer) => {
      n += d.length;
      if (armed && !cutDone && ((cutAt === 'finish-reply' && finishSeen) || (typeof cutAt === 'number' && n >= cutAt))) { cut(); return; }
      a.write(d);
    });
    a.on('error', () => b.destroy()); b.on('error', () => a.destroy());
    a.on('close', () => b.destroy()); b.on('close', () => a.destroy());
  });
  return new Promise((res) => server.listen(0, '127.0.0.1', () => {
    res({ url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, server, cut: () => cutDone });
  }));
}

function counts(text: string): number[] {
  return [...text.matchAll(/count (\d+)\r?\n/g)].map((m) => Number(m[1]));
}

test('live migration between two daemons: cut connections leave the source untouched; then the VM moves and keeps counting', { timeout: 400_000 }, async () => {
  const srcDir = join(root, 'src'), dstDir = join(root, 'dst');
  const src = await startDaemon(srcDir), dst = await startDaemon(dstDir);
  const api = async (d: { url: string; token: string }, method: string, path: string, body?: string): Promise<Response> =>
    fetch(d.url + path, { method, headers: { authorization: `Bearer ${d.token}`, ...(body !== undefined ? { 'content-type': 'text/plain' } : {}) }, body });
  const log = async (d: typeof src): Promise<string> => (await api(d, 'GET', '/v1/vms/c/console/log')).text();
  const waitLog = async (d: typeof src, re: RegExp, ms = 150_000): Promise<string> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const t = await log(d);
      if (re.test(t)) return t;
      if (Date.now() > deadline) throw new Error(`no ${String(re)} in ${JSON.stringify(t.slice(-800))}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  const env = { ...process.env, TYPEVISOR_STATE_DIR: srcDir };
  const vm = async (...a: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
    try {
      const r = await execFileP(process.execPath, [BIN, 'vm', '--connect', src.url, ...a], { env, timeout: 200_000 });
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (e) {
      const x = e as { code: number; stdout: string; stderr: string };
      return { code: x.code, stdout: x.stdout, stderr: x.stderr };
    }
  };
  assert.equal((await vm('define', 'c', '-m', '64M')).code, 0);
  assert.equal((await vm('start', 'c')).code, 0);
  await waitLog(src, /~ # $/);
  await api(src, 'POST', '/v1/vms/c/console/input', 'mount -t tmpfs none /mnt && echo kept-$((6*7)) > /mnt/f\n');
  await api(src, 'POST', '/v1/vms/c/console/input', '(i=0; while true; do i=$((i+1)); echo "count $i"; usleep 200000; done) &\n');
  await waitLog(src, /count 3\r?\n/);

  const tokenFile = join(dstDir, 'token');
  const rand = prng(Number(process.env.MIGRATE_SEED ?? 0x316a));
  // Cut points: in the setup request, in round 0's pages, the completing request, and its answer.
  for (const cutAfter of [200 + (rand() % 400), 1_000_000 + (rand() % 8_000_000), 'finish', 'finish-reply'] as const) {
    const proxy = await cuttingProxy(Number(new URL(dst.url).port), cutAfter);
    const before = Math.max(...counts(await log(src)));
    const r = await vm('migrate', 'c', '--to', proxy.url, '--to-token-file', tokenFile);
    proxy.server.close();
    if (!proxy.cut()) {
      // The whole move fit before the cut point: nothing to check here.
      assert.equal(r.code, 0, r.stderr);
      throw new Error(`cut point ${cutAfter} was past the end of the migration`);
    }
    assert.equal(r.code, 1, `cut after ${cutAfter} bytes: ${r.stdout} ${r.stderr}`);
    assert.match(r.stderr, /migration of 'c' failed, it keeps running here/);
    assert.match((await vm('list')).stdout, /^ c\s+running$/m, 'the source VM is still running');
    await waitLog(src, new RegExp(`count ${before + 3}\\r?\\n`), 30_000);
    const there = await (await api(dst, 'GET', '/v1/vms')).json() as Array<{ name: string }>;
    assert.deepEqual(there, [], `cut after ${cutAfter} bytes: the destination holds nothing`);
  }

  const last = Math.max(...counts(await log(src)));
  const r = await vm('migrate', 'c', '--to', dst.url, '--to-token-file', tokenFile);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /^round 0: \d+\.\d MiB sent, \d+ pages, dirty [\d.]+ MiB\/s, expected downtime \d+ ms$/m);
  const result = JSON.parse(r.stdout) as { totalMs: number; downtimeMs: number; bytes: number; rounds: number };
  assert.ok(result.bytes > 1 << 20 && result.rounds >= 2 && result.downtimeMs > 0 && result.totalMs >= result.downtimeMs, JSON.stringify(result));
  console.log(`migration: ${JSON.stringify(result)}`);
  assert.doesNotMatch((await vm('list')).stdout, /\bc\b/, 'gone from the source');
  const info = await (await api(dst, 'GET', '/v1/vms/c')).json() as { state: string };
  assert.equal(info.state, 'running');
  const text = await waitLog(dst, /count \d+\r?\n/, 30_000);
  const first = counts(text)[0];
  assert.ok(first > last && first <= last + 2 + Math.ceil(result.totalMs / 200), `the count goes on: ${last} before, ${first} first on the destination`);
  const next = counts(await waitLog(dst, new RegExp(`count ${first + 3}\\r?\\n`), 30_000));
  assert.deepEqual(next.slice(0, 4), [first, first + 1, first + 2, first + 3], 'consecutive');
  await api(dst, 'POST', '/v1/vms/c/console/input', 'kill %1; cat /mnt/f\n');
  await waitLog(dst, /kept-42/, 30_000);
  assert.ok(readFileSync(join(dstDir, 'vms', 'c.json'), 'utf8').includes('"name": "c"'), 'the destination stored the definition');

  // Back again while the guest rewrites 4 MiB of page cache in a loop, with a small round
  // limit: the move still completes (auto-converge throttles the vCPU past half the limit).
  await api(dst, 'POST', '/v1/vms/c/console/input', 'dd if=/dev/urandom of=/mnt/r bs=1M count=4 2>/dev/null; echo made-$((2*3))\n');
  await waitLog(dst, /made-6/, 60_000);
  await api(dst, 'POST', '/v1/vms/c/console/input', '(while true; do cp /mnt/r /mnt/r2; done) &\n');
  await new Promise((res) => setTimeout(res, 1000));
  const back = await fetch(`${dst.url}/v1/vms/c/migrate`, {
    method: 'POST', headers: { authorization: `Bearer ${dst.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ to: src.url, token: src.token, downtimeMs: 5, maxRounds: 4 }),
  });
  const br = await back.json() as { totalMs: number; downtimeMs: number; bytes: number; rounds: number; message?: string };
  assert.equal(back.status, 200, br.message);
  assert.ok(br.rounds <= 5, `completed at the round limit: ${JSON.stringify(br)}`);
  console.log(`migration back under a writing guest: ${JSON.stringify(br)}`);
  assert.match((await vm('list')).stdout, /^ c\s+running$/m);
  await api(src, 'POST', '/v1/vms/c/console/input', 'echo back-$((5*5)); cat /mnt/f\n');
  await waitLog(src, /back-25[\s\S]*kept-42/, 30_000);
});
