/**
 * Consolidation: N VMs of 128 MiB (default 20; $TYPEVISOR_BENCH_VMS) booted at once.
 * typevisor: one daemon (in this process), N runner processes, all started through the API
 * at the same moment; QEMU: N qemu-system-riscv64 processes started at once; the same
 * kernel and initramfs. Measured for each: seconds until every console shows the prompt,
 * host memory per VM beyond its guest RAM (process RSS minus the resident part of the
 * guest-RAM mapping, from /proc/PID/smaps), and the CPU all N use while idle (30 s).
 * The two sets run one after the other, never together.
 */
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Daemon } from '../src/daemon/server.js';
import { requireGuest } from '../tests/lib/guest.js';
import { cpuSecondsOf } from './idle.js';
import type { Row } from './lib.js';

const PROMPT = '~ # ';
const MEMORY = 128 << 20;
const BOOT_TIMEOUT_MS = 1_200_000;
const IDLE_MS = 30_000;
const SETTLE_MS = 5_000;

/** RSS beyond the guest RAM: total Rss minus the Rss of mappings at least as large as the guest RAM. */
export function overheadBytes(pid: number, guestBytes: number): number {
  const smaps = readFileSync(`/proc/${pid}/smaps`, 'utf8');
  let total = 0, guest = 0, size = 0;
  for (const line of smaps.split('\n')) {
    let m = /^Size:\s+(\d+) kB/.exec(line);
    if (m) { size = Number(m[1]) * 1024; continue; }
    m = /^Rss:\s+(\d+) kB/.exec(line);
    if (m) {
      const rss = Number(m[1]) * 1024;
      total += rss;
      if (size >= guestBytes) guest += rss;
    }
  }
  return total - guest;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function idleCpuPercent(pids: number[]): Promise<number> {
  await new Promise((r) => setTimeout(r, SETTLE_MS));
  const c0 = pids.map(cpuSecondsOf);
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, IDLE_MS));
  const wall = (performance.now() - t0) / 1000;
  const used = pids.reduce((a, p, i) => a + cpuSecondsOf(p) - c0[i], 0);
  return +(100 * used / wall).toFixed(2);
}

async function typevisorSet(n: number, guestDir: string): Promise<{ seconds: number; overhead: number; idle: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'tv-b20-'));
  const daemon = new Daemon({ stateDir: dir, port: 0, env: { ...process.env, TYPEVISOR_GUEST_DIR: guestDir }, log: () => {} });
  try {
    const base = `http://${(await daemon.listen()).replace(/^http:\/\//, '')}`;
    const auth = { authorization: `Bearer ${daemon.token}` };
    const call = async (method: string, path: string, body?: unknown): Promise<Response> => fetch(base + path, body === undefined
      ? { method, headers: auth } : { method, headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const names = Array.from({ length: n }, (_, i) => `vm${i}`);
    for (const name of names) {
      const r = await call('POST', '/v1/vms', { name, memory: '128M' });
      if (r.status !== 201) throw new Error(`define ${name}: ${r.status} ${await r.text()}`);
    }
    const t0 = performance.now();
    await Promise.all(names.map(async (name) => {
      const r = await call('POST', `/v1/vms/${name}/start`);
      if (r.status !== 200) throw new Error(`start ${name}: ${r.status} ${await r.text()}`);
    }));
    const pending = new Set(names);
    while (pending.size > 0) {
      if (performance.now() - t0 > BOOT_TIMEOUT_MS) throw new Error(`typevisor: ${pending.size} VMs not at the prompt`);
      for (const name of [...pending]) {
        const log = await (await call('GET', `/v1/vms/${name}/console/log`)).text();
        if (log.includes(PROMPT)) pending.delete(name);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    const seconds = (performance.now() - t0) / 1000;
    const pids = await Promise.all(names.map(async (name) => ((await (await call('GET', `/v1/vms/${name}`)).json()) as { pid: number }).pid));
    const idle = await idleCpuPercent(pids);
    const overhead = median(pids.map((p) => overheadBytes(p, MEMORY)));
    return { seconds, overhead, idle };
  } finally {
    await daemon.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function qemuSet(n: number, kernel: string, initrd: string): Promise<{ seconds: number; overhead: number; idle: number }> {
  const procs: ChildProcess[] = [];
  try {
    const t0 = performance.now();
    const prompts = Array.from({ length: n }, () => new Promise<void>((resolve, reject) => {
      const q = spawn('qemu-system-riscv64', ['-M', 'virt', '-m', '128M', '-nographic', '-kernel', kernel, '-initrd', initrd, '-append', 'console=ttyS0'], { stdio: ['pipe', 'pipe', 'ignore'] });
      procs.push(q);
      let tail = '';
      q.stdout!.on('data', (d: Buffer) => { tail = (tail + d.toString('latin1')).slice(-256); if (tail.includes(PROMPT)) resolve(); });
      q.on('error', reject);
      q.on('exit', (c) => reject(new Error(`qemu exited (${c}) before its prompt`)));
    }));
    const timer = new Promise<never>((_, rej) => setTimeout(() => rej(new Error('qemu: not all at the prompt')), BOOT_TIMEOUT_MS).unref());
    await Promise.race([Promise.all(prompts), timer]);
    const seconds = (performance.now() - t0) / 1000;
    const pids = procs.map((p) => p.pid!);
    const idle = await idleCpuPercent(pids);
    const overhead = median(pids.map((p) => overheadBytes(p, MEMORY)));
    return { seconds, overhead, idle };
  } finally {
    for (const p of procs) p.kill('SIGKILL');
  }
}

export async function benchVms20(): Promise<Row> {
  const n = Number(process.env.TYPEVISOR_BENCH_VMS ?? 20);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new Error(`TYPEVISOR_BENCH_VMS must be 1..64, not ${process.env.TYPEVISOR_BENCH_VMS}`);
  const g = requireGuest();
  const tv = await typevisorSet(n, g.dir);
  const q = await qemuSet(n, g.kernel, g.initrd);
  const mib = (b: number): number => +(b / 2 ** 20).toFixed(1);
  return {
    name: `vms${n}`, unit: `seconds until ${n} VMs of 128 MiB, started at once, are all at the prompt`,
    typevisorSeconds: tv.seconds, qemuSeconds: q.seconds, ratio: tv.seconds / q.seconds,
    detail: {
      vms: n, typevisorOverheadMiB: mib(tv.overhead), qemuOverheadMiB: mib(q.overhead),
      typevisorIdleCpuPercent: tv.idle, qemuIdleCpuPercent: q.idle,
    },
  };
}
