/**
 * Consolidation: N VMs of 128 MiB (default 20; $TYPEVISOR_BENCH_VMS) booted at once.
 * typevisor: one daemon (in this process), N runner processes, all started through the API
 * at the same moment; QEMU: N qemu-system-riscv64 processes started at once; the same
 * kernel and initramfs. Measured for each: seconds until every console shows the prompt,
 * host memory per VM beyond its guest RAM (RSS and PSS, see overheadBytes) at once when all
 * are at the prompt and again after the idle spell, and the CPU all N use while idle (30 s).
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

/** TYPEVISOR_BENCH_ACCEL=interp|jit: the runners' engine (absent: the definition default, the translator). */
const ACCEL = process.env.TYPEVISOR_BENCH_ACCEL === 'interp' || process.env.TYPEVISOR_BENCH_ACCEL === 'jit' ? process.env.TYPEVISOR_BENCH_ACCEL : undefined;

const PROMPT = '~ # ';
const MEMORY = 128 << 20;
const BOOT_TIMEOUT_MS = 1_200_000;
const IDLE_MS = 30_000;
/** Past the runners' idle trim (IDLE_TRIM: two 5 s checks), so the idle window is the steady state. */
const SETTLE_MS = 20_000;

/**
 * Host memory beyond the guest RAM, from /proc/PID/smaps: RSS and PSS summed over every
 * mapping except those at least as large as the guest RAM (the RAM itself). PSS splits each
 * shared page among the processes that map it (the node or qemu binary and its libraries,
 * mapped by all N), so it is what each extra VM costs the host; RSS counts shared pages in full.
 */
export function overheadBytes(pid: number, guestBytes: number): { rss: number; pss: number } {
  const smaps = readFileSync(`/proc/${pid}/smaps`, 'utf8');
  let rss = 0, pss = 0, size = 0;
  for (const line of smaps.split('\n')) {
    const m = /^(Size|Rss|Pss):\s+(\d+) kB/.exec(line);
    if (!m) continue;
    const bytes = Number(m[2]) * 1024;
    if (m[1] === 'Size') size = bytes;
    else if (size < guestBytes) { if (m[1] === 'Rss') rss += bytes; else pss += bytes; }
  }
  return { rss, pss };
}

/** Medians over the N processes, in bytes. */
interface Overhead { rss: number; pss: number }
function medianOverhead(pids: number[]): Overhead {
  const o = pids.map((p) => overheadBytes(p, MEMORY));
  return { rss: median(o.map((x) => x.rss)), pss: median(o.map((x) => x.pss)) };
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

interface SetResult { seconds: number; atPrompt: Overhead; overhead: Overhead; idle: number }

async function typevisorSet(n: number, guestDir: string): Promise<SetResult> {
  const dir = mkdtempSync(join(tmpdir(), 'tv-b20-'));
  const daemon = new Daemon({ stateDir: dir, port: 0, env: { ...process.env, TYPEVISOR_GUEST_DIR: guestDir }, log: () => {} });
  try {
    const base = `http://${(await daemon.listen()).replace(/^http:\/\//, '')}`;
    const auth = { authorization: `Bearer ${daemon.token}` };
    const call = async (method: string, path: string, body?: unknown): Promise<Response> => fetch(base + path, body === undefined
      ? { method, headers: auth } : { method, headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const names = Array.from({ length: n }, (_, i) => `vm${i}`);
    for (const name of names) {
      const r = await call('POST', '/v1/vms', { name, memory: '128M', ...(ACCEL ? { accel: ACCEL } : {}) });
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
    const atPrompt = medianOverhead(pids);
    const idle = await idleCpuPercent(pids);
    return { seconds, atPrompt, overhead: medianOverhead(pids), idle };
  } finally {
    await daemon.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function qemuSet(n: number, kernel: string, initrd: string): Promise<SetResult> {
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
    const atPrompt = medianOverhead(pids);
    const idle = await idleCpuPercent(pids);
    return { seconds, atPrompt, overhead: medianOverhead(pids), idle };
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
      // After the idle spell (the figures the target is judged on: PSS, see docs/PERFORMANCE.md).
      vms: n, typevisorOverheadMiB: mib(tv.overhead.rss), qemuOverheadMiB: mib(q.overhead.rss),
      typevisorOverheadPssMiB: mib(tv.overhead.pss), qemuOverheadPssMiB: mib(q.overhead.pss),
      // At once when all are at the prompt (typevisor: decode caches still full).
      typevisorPromptOverheadMiB: mib(tv.atPrompt.rss), qemuPromptOverheadMiB: mib(q.atPrompt.rss),
      typevisorPromptOverheadPssMiB: mib(tv.atPrompt.pss), qemuPromptOverheadPssMiB: mib(q.atPrompt.pss),
      typevisorIdleCpuPercent: tv.idle, qemuIdleCpuPercent: q.idle,
    },
  };
}
