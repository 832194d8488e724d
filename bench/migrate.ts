/**
 * Live migration of an idle 64 MiB Linux guest (at its shell prompt, a loop printing every
 * 200 ms) on this machine: typevisor daemon to daemon (`POST /v1/vms/{name}/migrate`)
 * against QEMU's `migrate` over QMP (tcp on loopback), both with a 50 ms downtime budget.
 * Figures: total time, downtime as each measures it, bytes sent, rounds (QEMU: dirty-sync count).
 * typevisor's VM then moves back and forth (at least 5 moves, or --runs): the downtimes' min,
 * median and max, and the stops' (from asking the source runner to pause, so including the
 * wait for it to take the request between two vCPU slices).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { guestDir, repoRoot } from '../tests/lib/toolchain.js';
import { bench, type Row } from './lib.js';
import { killRunners } from '../tests/lib/daemon-client.js';

const BIN = join(repoRoot, 'bin', 'typevisor.js');
const LOOP = '(i=0; while true; do i=$((i+1)); echo "count $i"; usleep 200000; done) &\n';

export async function poll(f: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

interface TvResult { totalMs: number; downtimeMs: number; stopMs: number; bytes: number; rounds: number }

async function typevisor(tmp: string): Promise<{ first: TvResult; all: TvResult[] }> {
  const procs: ChildProcess[] = [];
  try {
    const start = async (dir: string): Promise<{ url: string; token: string }> => {
      const d = spawn(process.execPath, [BIN, 'daemon', '--listen', '127.0.0.1:0'], { env: { ...process.env, TYPEVISOR_GUEST_DIR: guestDir, TYPEVISOR_STATE_DIR: dir }, stdio: ['ignore', 'ignore', 'pipe'] });
      procs.push(d);
      const url = await new Promise<string>((res, rej) => {
        let err = '';
        d.stderr!.on('data', (b: Buffer) => { err += b.toString(); const m = /listening on (http:\/\/[\d.:]+)/.exec(err); if (m) res(m[1]); });
        d.once('exit', () => rej(new Error(err)));
      });
      return { url, token: readFileSync(join(dir, 'token'), 'utf8').trim() };
    };
    const a = await start(join(tmp, 'a')), b = await start(join(tmp, 'b'));
    const api = (d: typeof a, method: string, path: string, body?: string, type = 'application/json'): Promise<Response> =>
      fetch(d.url + path, { method, headers: { authorization: `Bearer ${d.token}`, ...(body ? { 'content-type': type } : {}) }, body });
    await api(a, 'POST', '/v1/vms', JSON.stringify({ name: 'm', memory: '64M' }));
    await api(a, 'POST', '/v1/vms/m/start');
    await poll(async () => (await (await api(a, 'GET', '/v1/vms/m/console/log')).text()).endsWith('~ # '), 300_000, 'typevisor guest prompt');
    await api(a, 'POST', '/v1/vms/m/console/input', LOOP, 'text/plain');
    await new Promise((r) => setTimeout(r, 2000));
    const all: TvResult[] = [];
    let [from, to] = [a, b];
    for (let i = 0; i < Math.max(5, bench.runs); i++) {
      const r = await api(from, 'POST', '/v1/vms/m/migrate', JSON.stringify({ to: to.url, token: to.token }));
      if (!r.ok) throw new Error(`typevisor migrate: ${await r.text()}`);
      all.push(await r.json() as TvResult);
      [from, to] = [to, from];
      await new Promise((res) => setTimeout(res, 1000));
    }
    return { first: all[0], all };
  } finally {
    for (const p of procs) p.kill('SIGKILL');
    killRunners(tmp); // runners outlive their daemons by design
  }
}

/** A QMP client on a unix socket path, or on a socket already connected. */
export function qmp(path: string | Socket): { cmd: (execute: string, args?: object) => Promise<Record<string, unknown>>; close: () => void } {
  const s = typeof path === 'string' ? connect(path) : path;
  let buf = '';
  const waiters: Array<(v: Record<string, unknown>) => void> = [];
  s.on('data', (d) => {
    buf += d.toString();
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const msg = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
      buf = buf.slice(nl + 1);
      if ('return' in msg || 'error' in msg) waiters.shift()?.(msg);
    }
  });
  return {
    cmd: (execute, args) => new Promise((res) => { waiters.push(res); s.write(JSON.stringify({ execute, ...(args ? { arguments: args } : {}) }) + '\n'); }),
    close: () => s.destroy(),
  };
}

async function qemu(tmp: string): Promise<{ totalMs: number; downtimeMs: number; bytes: number; rounds: number }> {
  const port = 40000 + Math.floor(Math.random() * 20000);
  const args = (sock: string): string[] => ['-M', 'virt', '-m', '64M', '-nographic', '-kernel', join(guestDir, 'Image'), '-initrd', join(guestDir, 'initramfs.cpio.gz'),
    '-append', 'console=ttyS0', '-qmp', `unix:${sock},server=on,wait=off`];
  const src = spawn('qemu-system-riscv64', args(join(tmp, 'src.qmp')), { stdio: ['pipe', 'pipe', 'ignore'] });
  const dst = spawn('qemu-system-riscv64', [...args(join(tmp, 'dst.qmp')), '-incoming', `tcp:127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'ignore'] });
  try {
    let out = '';
    src.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    await poll(async () => out.endsWith('~ # '), 120_000, 'qemu guest prompt');
    src.stdin!.write(LOOP);
    await new Promise((r) => setTimeout(r, 2000));
    const q = qmp(join(tmp, 'src.qmp'));
    await q.cmd('qmp_capabilities');
    await q.cmd('migrate-set-parameters', { 'downtime-limit': 50 });
    await q.cmd('migrate', { uri: `tcp:127.0.0.1:${port}` });
    let info: Record<string, unknown> = {};
    await poll(async () => {
      info = (await q.cmd('query-migrate')).return as Record<string, unknown>;
      if (info.status === 'failed') throw new Error('qemu migration failed');
      return info.status === 'completed';
    }, 120_000, 'qemu migration');
    q.close();
    const ram = info.ram as { transferred: number; 'dirty-sync-count': number };
    return { totalMs: info['total-time'] as number, downtimeMs: info.downtime as number, bytes: ram.transferred, rounds: ram['dirty-sync-count'] };
  } finally {
    src.kill('SIGKILL'); dst.kill('SIGKILL');
  }
}

export async function benchMigrate(): Promise<Row> {
  const tmp = mkdtempSync(join(tmpdir(), 'typevisor-bench-migrate-'));
  try {
    const { first: t, all } = await typevisor(tmp);
    const sorted = (k: 'downtimeMs' | 'stopMs'): number[] => all.map((r) => r[k]).sort((x, y) => x - y);
    const dt = sorted('downtimeMs'), st = sorted('stopMs');
    const q = await qemu(tmp);
    return {
      name: 'migrate-64M-idle', unit: 'total s (daemon to daemon vs QMP migrate)',
      typevisorSeconds: t.totalMs / 1000, qemuSeconds: q.totalMs / 1000, ratio: t.totalMs / q.totalMs,
      detail: {
        typevisorDowntimeMs: t.downtimeMs, qemuDowntimeMs: q.downtimeMs, typevisorMoves: all.length,
        typevisorDowntimeMinMs: dt[0], typevisorDowntimeMedianMs: dt[dt.length >> 1], typevisorDowntimeMaxMs: dt[dt.length - 1],
        typevisorStopMinMs: st[0], typevisorStopMedianMs: st[st.length >> 1], typevisorStopMaxMs: st[st.length - 1], typevisorMiB: +(t.bytes / 1048576).toFixed(1),
        qemuMiB: +(q.bytes / 1048576).toFixed(1), typevisorRounds: t.rounds, qemuRounds: q.rounds,
      },
    };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
