/**
 * `typevisor daemon` and `typevisor vm ...` as a user runs them: real processes, the token
 * read from the state dir, one VM booted and driven through `vm console` on a pipe.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { guestDir, repoRoot } from '../lib/toolchain.js';
import { killRunners } from '../lib/daemon-client.js';

const execFileP = promisify(execFile);
const BIN = join(repoRoot, 'bin', 'typevisor.js');
const dir = mkdtempSync(join(tmpdir(), 'typevisor-cli-daemon-'));
const env = { ...process.env, TYPEVISOR_GUEST_DIR: guestDir, TYPEVISOR_STATE_DIR: dir };
let daemon: ChildProcess | null = null;
/** The running daemon's stderr so far. */
let daemonErr = '';
after(() => {
  daemon?.kill('SIGKILL');
  // Runners outlive a killed daemon by design: stop any a failed run left.
  killRunners(dir);
  rmSync(dir, { recursive: true, force: true });
});

async function tv(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await execFileP(process.execPath, [BIN, ...args], { env, timeout: 60_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

test('typevisor daemon refuses a non-loopback address without TLS or --insecure', async () => {
  const r = await tv('daemon', '--listen', '0.0.0.0:8446');
  assert.equal(r.code, 2);
  assert.match(r.stderr, /not a loopback address: give --tls-cert\/--tls-key, or --insecure/);
  assert.equal((await tv('daemon', '--listen', 'nonsense')).code, 2);
  assert.equal((await tv('daemon', '--tls-cert', 'x')).code, 2);
  const bad = await tv('daemon', '--on-exit', 'pause');
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--on-exit pause: expected keep, shutdown or destroy/);
});

async function startDaemon(): Promise<string> {
  const d = spawn(process.execPath, [BIN, 'daemon', '--listen', '127.0.0.1:0'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  daemon = d;
  let err = '';
  daemonErr = '';
  return await new Promise<string>((resolve, reject) => {
    d.stderr!.on('data', (b: Buffer) => {
      err += b.toString();
      daemonErr = err;
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(err);
      if (m) resolve(m[1]);
    });
    d.once('exit', (c) => reject(new Error(`daemon exited ${c}: ${err}`)));
  });
}

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

test('typevisor vm: define, list, start, console, stats, set, shutdown fallback, undefine', { timeout: 300_000 }, async () => {
  let url = await startDaemon();
  const vm = (...a: string[]): Promise<{ code: number; stdout: string; stderr: string }> => tv('vm', '--connect', url, ...a);

  let r = await vm('define', 't', '-m', '64M', '--cpu', '50%');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "Domain 't' defined\n");
  writeFileSync(join(dir, 'u.json'), JSON.stringify({ name: 'u', memory: 'lots' }));
  r = await vm('define', join(dir, 'u.json'));
  assert.equal(r.code, 1);
  assert.match(r.stderr, /body\/memory/);
  r = await vm('list');
  assert.match(r.stdout, /^ t\s+shut off$/m);
  assert.doesNotMatch(r.stdout, /\bu\b/);
  r = await vm('start', 't');
  assert.equal(r.code, 0, r.stderr);
  assert.match((await vm('list')).stdout, /^ t\s+running$/m);
  assert.equal((await vm('start', 't')).code, 1);

  // `vm console` on a pipe: output flows out, the pipe's bytes flow in.
  const con = spawn(process.execPath, [BIN, 'vm', '--connect', url, 'console', 't'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  con.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  const deadline = Date.now() + 200_000;
  // Keep poking until the shell answers (the boot may still be running).
  while (!/cli-3/.test(out) && Date.now() < deadline) {
    if (out.includes('~ # ')) con.stdin.write('echo cli-$((1+2))\n');
    await new Promise((res) => setTimeout(res, 1000));
  }
  con.kill();
  assert.match(out, /cli-3/);

  // On a terminal (a pty from script(1)): raw mode, typed bytes reach the guest, Ctrl-]
  // detaches with status 0 and the VM keeps running.
  const tty = spawn('script', ['-qfec', `${process.execPath} ${BIN} vm --connect ${url} console t`, '/dev/null'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let ttyOut = '';
  tty.stdout.on('data', (d: Buffer) => { ttyOut += d.toString(); });
  for (let i = 0; i < 100 && !ttyOut.includes('Escape character is ^]'); i++) await new Promise((res) => setTimeout(res, 100));
  tty.stdin.write('echo tty-$((4+5))\r');
  for (let i = 0; i < 100 && !ttyOut.includes('tty-9'); i++) await new Promise((res) => setTimeout(res, 100));
  assert.match(ttyOut, /tty-9/);
  tty.stdin.write(Buffer.from([0x1d]));
  const ttyCode = await new Promise<number | null>((res) => tty.once('exit', res));
  assert.equal(ttyCode, 0, ttyOut);
  assert.match((await vm('list')).stdout, /^ t\s+running$/m);

  r = await vm('stats', 't');
  const st = JSON.parse(r.stdout) as { instructions: number; cpuSeconds: number; state: string };
  assert.equal(st.state, 'running');
  assert.ok(st.instructions > 2e7, `instructions retired: ${st.instructions} (a Linux boot is tens of millions)`);
  assert.equal((await vm('set', 't', '--cpu', '0.3', '--autostart', 'on')).code, 0);
  assert.match((await tv('vm', '--connect', url, 'set', 't')).stderr, /nothing to set/);

  // SIGTERM the daemon: by default its VMs keep running (as libvirtd's do), the CPU cap's
  // SIGSTOP lifted; a new daemon adopts the runner.
  const oldPid = (JSON.parse(readFileSync(join(dir, 'run', 't.pid'), 'utf8')) as { pid: number }).pid;
  assert.ok(alive(oldPid));
  const termed = new Promise<number | null>((res) => daemon!.once('exit', res));
  daemon!.kill('SIGTERM');
  assert.equal(await termed, 0);
  assert.match(daemonErr, /1 VM keep running; the next daemon on .* takes them over/);
  assert.ok(alive(oldPid), 'the runner outlives a stopped daemon');
  await new Promise((res) => setTimeout(res, 300));
  assert.notEqual(readFileSync(`/proc/${oldPid}/stat`, 'utf8').split(') ')[1][0], 'T', 'not left stopped by the CPU cap');
  url = await startDaemon();
  assert.match((await vm('list')).stdout, /^ t\s+running$/m);

  // kill -9 the daemon (the capped runner may be SIGSTOPped right then): the runner keeps
  // running; a new daemon reconnects to it (not an autostart): same pid, same VM, and it
  // answers on its console, with what it printed meanwhile kept.
  const dead = new Promise((res) => daemon!.once('exit', res));
  daemon!.kill('SIGKILL');
  await dead;
  await new Promise((res) => setTimeout(res, 300));
  assert.ok(alive(oldPid), 'the runner outlives its daemon');
  assert.equal(statSync(join(dir, 'run', 't.sock')).mode & 0o777, 0o600, 'its socket is private');
  url = await startDaemon();
  assert.match((await vm('list')).stdout, /^ t\s+running$/m);
  const newPid = (JSON.parse(readFileSync(join(dir, 'run', 't.pid'), 'utf8')) as { pid: number }).pid;
  assert.equal(newPid, oldPid, 'the same runner, adopted');
  const token = readFileSync(join(dir, 'token'), 'utf8').trim();
  const auth = { authorization: `Bearer ${token}` };
  assert.equal((await fetch(`${url}/v1/vms/t`, { headers: auth }).then((x) => x.json()) as { pid: number }).pid, oldPid);
  await fetch(`${url}/v1/vms/t/console/input`, { method: 'POST', headers: { ...auth, 'content-type': 'text/plain' }, body: 'echo back-$((20+22))\n' });
  let log = '';
  for (let i = 0; i < 100 && !/back-42/.test(log); i++) {
    await new Promise((res) => setTimeout(res, 200));
    log = await fetch(`${url}/v1/vms/t/console/log`, { headers: auth }).then((x) => x.text());
  }
  assert.match(log, /back-42/, 'the adopted VM answers on its console');

  // The guest ignores the request: after the timeout it is destroyed.
  r = await vm('shutdown', 't', '--timeout', '1');
  assert.equal(r.code, 0, r.stderr);
  let list = '';
  for (let i = 0; i < 50 && !/shut off/.test(list); i++) { await new Promise((res) => setTimeout(res, 200)); list = (await vm('list')).stdout; }
  assert.match(list, /^ t\s+shut off$/m);
  assert.equal((await vm('undefine', 't')).code, 0);
  assert.doesNotMatch((await vm('list')).stdout, /\bt\b/);
  assert.match((await vm('start', 't')).stderr, /no VM named 't'/);

  daemon!.kill('SIGTERM');
  const code = await new Promise<number | null>((res) => daemon!.once('exit', res));
  assert.equal(code, 0);
  daemon = null;
  assert.match((await tv('vm', '--connect', url, 'list')).stderr, /cannot reach the daemon/);
});
